//! `lstm train` as a user meets it, through the built binary: a run is never lost (a second
//! run on the same directory is an error unless `--resume` or `--overwrite`, a second process
//! is refused by the lock, a killed writer's temporary files are cleaned up), and input that
//! cannot be served (sizes past memory, tampered checkpoints) is a one-line error with exit
//! code 1, never an abort, that leaves the run's files as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A few steps of a tiny model: each run takes well under a second.
const TINY: &[(&str, &str)] = &[
    ("--steps", "3"),
    ("--hidden", "4"),
    ("--batch", "4"),
    ("--seq-len", "5"),
];

/// `lstm train` of the tiny model into `out`, with `extra` options (which replace the tiny
/// model's of the same name).
fn lstm(out: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lstm"));
    command.args(["train", "--quiet"]);
    for (flag, value) in TINY {
        if !extra.contains(flag) {
            command.args([flag, value]);
        }
    }
    command
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("the lstm binary runs")
}

/// The standard error of a run that must have failed cleanly: exit code 1 (not 134, an
/// abort, nor 101, a panic) and one line.
fn clean_failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

/// Every file of a run directory and its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap() != "run.lock")
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_run_on_the_same_directory_is_an_error_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(lstm(&run, &[]).status.success());
    let before = snapshot(&run);
    assert_eq!(before.len(), 3, "{before:?}");

    let stderr = clean_failure(&lstm(&run, &["--seed", "1"]));
    assert!(stderr.contains(&run.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("--resume") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(snapshot(&run), before);

    // Asked for: resumed to more steps, or replaced.
    let resumed = lstm(&run, &["--resume", "--steps", "5"]);
    assert!(resumed.status.success(), "{resumed:?}");
    let replaced = lstm(&run, &["--overwrite", "--seed", "1"]);
    assert!(replaced.status.success(), "{replaced:?}");
    assert_ne!(snapshot(&run), before);
}

#[test]
fn a_second_process_on_a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path()).unwrap();
    // This test plays the first process: it holds the run's lock.
    let lock = std::fs::File::create(dir.path().join("run.lock")).unwrap();
    lock.try_lock().unwrap();
    let stderr = clean_failure(&lstm(dir.path(), &[]));
    assert!(stderr.contains("another process is training"), "{stderr}");
    assert!(!dir.path().join("checkpoint.safetensors").exists());
    drop(lock);
    assert!(lstm(dir.path(), &[]).status.success());
}

#[test]
fn a_killed_writers_temporary_files_are_removed_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let stale = [".checkpoint-Ab12Cd.tmp", ".loss-Xy34Zw.tmp.png"];
    for name in stale {
        std::fs::write(dir.path().join(name), "half a file").unwrap();
    }
    assert!(lstm(dir.path(), &[]).status.success());
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
}

#[test]
fn a_flipped_checkpoint_byte_is_an_error_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(lstm(dir.path(), &[]).status.success());
    let checkpoint = dir.path().join("checkpoint.safetensors");
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    // The last byte is the last value of the loss history's data.
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&checkpoint, &bytes).unwrap();
    let before = snapshot(dir.path());
    let stderr = clean_failure(&lstm(dir.path(), &["--resume", "--steps", "6"]));
    assert!(stderr.contains("checkpoint.safetensors"), "{stderr}");
    assert!(stderr.contains("does not match its checksum"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn sizes_past_memory_are_errors_naming_them_in_train_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--hidden", "100000000"),
        ("--batch", "100000000"),
        ("--seq-len", "1000000000"),
    ] {
        let run = dir.path().join(flag.trim_start_matches('-'));
        let stderr = clean_failure(&lstm(&run, &[flag, value]));
        assert!(stderr.contains("cannot allocate"), "{flag}: {stderr}");
        assert!(stderr.contains(value), "{flag}: {stderr}");
        assert!(!run.join("checkpoint.safetensors").exists());
    }
    let bench = |batch: &str, seq_len: &str, hidden: &str| {
        Command::new(env!("CARGO_BIN_EXE_lstm"))
            .args(["bench", "--repeats", "1", "--input-size", "4"])
            .args([
                "--batch",
                batch,
                "--seq-len",
                seq_len,
                "--hidden-size",
                hidden,
            ])
            .output()
            .unwrap()
    };
    for (output, value) in [
        (bench("2", "3", "100000000"), "100000000"),
        (bench("100000000", "50", "32"), "100000000"),
        (bench("2", "1000000000", "32"), "1000000000"),
    ] {
        let stderr = clean_failure(&output);
        assert!(stderr.contains("cannot allocate"), "{stderr}");
        assert!(stderr.contains(value), "{stderr}");
    }
}

#[test]
fn a_small_npy_claiming_30_gb_is_an_error_naming_the_shape() {
    let dir = tempfile::tempdir().unwrap();
    // A valid version-1 header for float32 of shape (100000, 300, 250): 30 GB of data,
    // followed by 4 bytes of it.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 300, 250), }";
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let input = dir.path().join("huge.npy");
    std::fs::write(&input, &bytes).unwrap();
    let err = lstm::io::read_npy(&input).unwrap_err().to_string();
    assert!(
        err.contains("[100000, 300, 250]") && err.contains("30.0 GB"),
        "{err}"
    );
    assert!(err.contains("huge.npy"), "{err}");
}
