//! The guard of a run directory, taken before a run writes anything: it creates the
//! directory, locks it against a second process (`run.lock`, an advisory lock the operating
//! system releases when the process ends, however it ends), removes temporary files a killed
//! run left behind, and refuses to start a fresh run over an earlier one unless asked to
//! (`--resume` continues it, `--overwrite` replaces it).

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TrainError;

/// The lock file's name in a run directory. It stays after the run (removing it could race
/// with a process that has just opened it); only the lock on it matters.
pub const LOCK_FILE: &str = "run.lock";

/// What a run does with a run directory that already holds a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// Start afresh; an earlier run in the directory is an error.
    #[default]
    Fresh,
    /// Continue the run in the directory.
    Resume,
    /// Start afresh, deleting the earlier run's files (the ones named in `run_files`).
    Overwrite,
}

/// A locked run directory; the lock is released when this is dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// Held for the lock's sake.
    _lock: File,
}

impl RunDir {
    /// Creates (if needed) and locks `path`, removes stale temporary files, and checks it
    /// against `start`: a [`Start::Fresh`] run needs a directory without files besides the
    /// lock; [`Start::Overwrite`] deletes `run_files` first.
    ///
    /// # Errors
    ///
    /// - [`TrainError::Locked`] if another process holds the directory's lock.
    /// - [`TrainError::RunExists`] naming the directory and a file in it, for a fresh start
    ///   over an earlier run.
    /// - [`TrainError::Io`] if the directory or its lock cannot be created or read.
    pub fn open(path: &Path, start: Start, run_files: &[&str]) -> Result<Self, TrainError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(path).map_err(io_error(path))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(TrainError::Locked {
                    dir: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(TrainError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        // Who holds the lock, for a person looking at the directory.
        lock.set_len(0)
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io_error(&lock_path))?;
        let mut others = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_error(path))? {
            let entry = entry.map_err(io_error(path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == LOCK_FILE {
                continue;
            }
            if lstm::io::is_temporary(&name) {
                // Only a killed writer leaves these, and we hold the lock: nobody is writing.
                let stale = entry.path();
                std::fs::remove_file(&stale).map_err(io_error(&stale))?;
                continue;
            }
            others.push(name);
        }
        others.sort();
        match start {
            Start::Resume => {}
            Start::Fresh => {
                if let Some(first) = others.first() {
                    return Err(TrainError::RunExists {
                        dir: path.to_path_buf(),
                        file: first.clone(),
                    });
                }
            }
            Start::Overwrite => {
                for name in run_files {
                    let file = path.join(name);
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(TrainError::Io { path: file, source }),
                    }
                }
            }
        }
        Ok(RunDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_start_over_an_earlier_run_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        drop(RunDir::open(&run, Start::Fresh, &["a.json"]).unwrap());
        std::fs::write(run.join("a.json"), "kept").unwrap();
        let err = RunDir::open(&run, Start::Fresh, &["a.json"]).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, TrainError::RunExists { .. }), "{message}");
        assert!(message.contains(&run.display().to_string()), "{message}");
        assert!(message.contains("--overwrite"), "{message}");
        assert_eq!(std::fs::read_to_string(run.join("a.json")).unwrap(), "kept");
        drop(RunDir::open(&run, Start::Resume, &["a.json"]).unwrap());
        assert!(run.join("a.json").exists());
        drop(RunDir::open(&run, Start::Overwrite, &["a.json"]).unwrap());
        assert!(!run.join("a.json").exists());
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunDir::open(dir.path(), Start::Fresh, &[]).unwrap();
        let err = RunDir::open(dir.path(), Start::Resume, &[]).unwrap_err();
        assert!(matches!(err, TrainError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another process"), "{err}");
        drop(first);
        RunDir::open(dir.path(), Start::Fresh, &[]).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed_and_do_not_count_as_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".checkpoint-a1B2c3.tmp");
        std::fs::write(&stale, "half a checkpoint").unwrap();
        RunDir::open(dir.path(), Start::Fresh, &[]).unwrap();
        assert!(!stale.exists());
    }
}
