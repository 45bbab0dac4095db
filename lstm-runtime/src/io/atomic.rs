//! Replacing a file so that a crash, a kill or a full disk at any point leaves the old file or
//! the new one, never half of one: the new contents go to a temporary file beside the
//! destination (`.{stem}-XXXXXX.tmp`), are flushed to disk, and the temporary file is renamed
//! over the destination; then the directory is flushed, which makes the rename durable.
//!
//! Checkpoints, metrics and plots of a training run all go through here. A process killed
//! between creating and renaming leaves its temporary file behind; [`is_temporary`]
//! recognises such leftovers so the next run in the directory can remove them.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The suffix every temporary file written here ends with, before any extension a writer
/// needs (a plot's `.png`).
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically (see the module documentation). The directory
/// must exist.
///
/// # Errors
///
/// [`Error::Io`] if the temporary file cannot be created, written, flushed or renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, "", |temporary| {
        std::fs::write(temporary, bytes).map_err(|err| err.to_string())
    })
}

/// Replaces `path` atomically with what `fill` writes to the path of a fresh temporary file
/// in the same directory, whose name ends with `.tmp{extension}` (for writers that pick a
/// format by extension, e.g. `".png"`).
///
/// # Errors
///
/// [`Error::Io`] naming `path` if `fill` fails (with its message), or if the temporary file
/// cannot be created, flushed or renamed. The temporary file is removed on every error.
pub fn write_atomically_with(
    path: &Path,
    extension: &str,
    fill: impl FnOnce(&Path) -> std::result::Result<(), String>,
) -> Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{stem}-"))
        .suffix(&format!("{TEMPORARY_SUFFIX}{extension}"))
        .tempfile_in(directory)
        .map_err(|err| Error::io("create a temporary file in", directory, &err))?;
    fill(temporary.path()).map_err(|message| Error::Io {
        action: "write".into(),
        path: path.display().to_string(),
        kind: std::io::ErrorKind::Other,
        message,
    })?;
    // `fill` wrote through its own handle to the same file; flushing ours flushes the file.
    temporary
        .flush()
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(|err| Error::io("write", temporary.path(), &err))?;
    // On failure the temporary file is deleted when the error drops it.
    temporary
        .persist(path)
        .map_err(|err| Error::io("rename into place", path, &err.error))?;
    sync_directory(directory)
}

/// Whether a file name is a temporary file of [`write_atomically`] (`.checkpoint-a1B2c3.tmp`,
/// `.loss-a1B2c3.tmp.png`): a leftover of a process killed mid-write when no write is under
/// way.
pub fn is_temporary(file_name: &str) -> bool {
    let Some(rest) = file_name.strip_prefix('.') else {
        return false;
    };
    let extension_after_suffix = rest
        .rsplit_once(".tmp.")
        .is_some_and(|(_, ext)| !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric()));
    rest.contains('-') && (rest.ends_with(TEMPORARY_SUFFIX) || extension_after_suffix)
}

/// Flushes a directory's entries to disk (Unix); elsewhere renames are durable on their own
/// or cannot be made so.
fn sync_directory(directory: &Path) -> Result<()> {
    if cfg!(unix) {
        std::fs::File::open(directory)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| Error::io("flush", directory, &err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomically_with(&path, ".png", |temporary| {
            assert!(is_temporary(
                &temporary.file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(temporary, "half").unwrap();
            Err("disk full".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(err.to_string().contains("loss.png"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_are_recognised_by_name() {
        for name in [
            ".checkpoint-a1B2c3.tmp",
            ".loss-XyZ123.tmp.png",
            ".metrics-q.tmp",
        ] {
            assert!(is_temporary(name), "{name}");
        }
        for name in [
            "checkpoint.safetensors",
            ".lock",
            "notes.tmp",
            ".hidden",
            "loss.png",
        ] {
            assert!(!is_temporary(name), "{name}");
        }
    }
}
