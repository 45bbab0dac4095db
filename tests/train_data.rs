//! `lstm train --data` and `lstm predict` end to end, through the built binary, on small
//! data sets written here: each objective `y` can choose, with lengths and with a mask, the
//! validation options, early stopping with the best checkpoint kept, the metrics and the
//! plot, CSV windows, and predictions of the shapes the contract gives.

use std::path::Path;
use std::process::{Command, Output};

use lstm::checkpoint::Checkpoint;
use lstm::io::{Tensor, TensorMap, read_npy};
use lstm::ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 48;
const T: usize = 6;

fn lstm(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lstm"));
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    command.output().expect("the lstm binary runs")
}

/// `lstm predict` of the run `run` on the arrays of `data`, into `output`.
fn predict(run: &Path, data: &Path, output: &Path) -> Output {
    lstm(
        &["predict"],
        &[("--run", run), ("--data", data), ("--output", output)],
    )
}

fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Inputs of `N` sequences, with lengths 1..=T.
fn inputs(seed: u64) -> (Array3<f32>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array3::from_shape_fn((N, T, 2), |_| rng.random_range(-1.0f32..1.0));
    let lengths = (0..N).map(|_| rng.random_range(1..=T as i64)).collect();
    (x, lengths)
}

/// The class of a sequence: whether the first feature sums above 0 over its valid steps.
fn sign_class(x: &Array3<f32>, n: usize, length: usize) -> i64 {
    let sum: f32 = (0..length).map(|t| x[[n, t, 0]]).sum();
    i64::from(sum > 0.0)
}

fn write(path: &Path, arrays: Vec<(&str, Tensor)>) {
    let mut map = TensorMap::new();
    for (name, tensor) in arrays {
        map.insert(name, tensor);
    }
    map.write_npz(path).unwrap();
}

fn classification_file(path: &Path, seed: u64) {
    let (x, lengths) = inputs(seed);
    let y: Array1<i64> = (0..N)
        .map(|n| sign_class(&x, n, lengths[n] as usize))
        .collect();
    write(
        path,
        vec![
            ("x", Tensor::F32(x.into_dyn())),
            ("y", Tensor::I64(y.into_dyn())),
            ("lengths", Tensor::I64(Array1::from(lengths).into_dyn())),
        ],
    );
}

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn sequence_classification_learns_and_predicts_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.npz"), dir.path().join("val.npz"));
    classification_file(&train, 1);
    classification_file(&val, 2);
    let run = dir.path().join("run");
    let stdout = succeeded(&lstm(
        &[
            "train",
            "--hidden",
            "12",
            "--epochs",
            "25",
            "--batch",
            "8",
            "--lr",
            "0.02",
            "--schedule",
            "cosine",
            "--warmup",
            "5",
            "--quiet",
        ],
        &[("--data", &train), ("--val", &val), ("--out", &run)],
    ));
    assert!(stdout.contains("sequence_classification"), "{stdout}");
    for file in [
        "best.safetensors",
        "checkpoint.safetensors",
        "metrics.json",
        "loss.png",
    ] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let metrics = metrics(&run);
    let accuracy = metrics["val_accuracy"].as_f64().unwrap();
    // Guessing scores about 0.5; the sign of a sum of at most 6 values is easy to learn.
    assert!(accuracy > 0.8, "{metrics}");
    let best = metrics["best_epoch"].as_u64().unwrap() as usize;
    let history = metrics["history"].as_array().unwrap();
    assert_eq!(history.len(), 25);
    let best_loss = history[best - 1]["val_loss"].as_f64().unwrap();
    assert_eq!(metrics["val_loss"].as_f64().unwrap(), best_loss);
    assert!(
        history
            .iter()
            .all(|epoch| epoch["val_loss"].as_f64().unwrap() >= best_loss)
    );

    let predictions = dir.path().join("p.npy");
    succeeded(&predict(&run, &val, &predictions));
    let Tensor::F32(probabilities) = read_npy(&predictions).unwrap() else {
        panic!("f32 probabilities");
    };
    assert_eq!(probabilities.shape(), [N, 2]);
    let labels = TensorMap::read_npz(&val).unwrap();
    let Some(Tensor::I64(y)) = labels.get("y") else {
        panic!("int64 labels");
    };
    let mut correct = 0;
    for (row, probabilities) in probabilities.outer_iter().enumerate() {
        assert!((probabilities.sum() - 1.0).abs() < 1e-5);
        let predicted = i64::from(probabilities[1] > probabilities[0]);
        correct += usize::from(predicted == y[row]);
    }
    // The best checkpoint's accuracy on the validation file, as the metrics recorded it.
    assert!(
        ((correct as f64 / N as f64) - accuracy).abs() < 1e-9,
        "{correct} vs {accuracy}"
    );
    // An existing output is not replaced unasked.
    let again = predict(&run, &val, &predictions);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn per_step_objectives_with_masks_predict_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let (x, lengths) = inputs(3);
    let mask = Array2::from_shape_fn((N, T), |(n, t)| t < lengths[n] as usize);
    let classes = Array2::from_shape_fn((N, T), |(n, t)| i64::from(x[[n, t, 0]] > 0.0) * 2);
    let values = Array3::from_shape_fn((N, T, 2), |(n, t, o)| f64::from(x[[n, t, o]]) * 0.5);
    for (name, y, width) in [
        ("classes", Tensor::I64(classes.into_dyn()), 3),
        ("values", Tensor::F64(values.into_dyn()), 2),
    ] {
        let data = dir.path().join(format!("{name}.npz"));
        write(
            &data,
            vec![
                ("x", Tensor::F32(x.clone().into_dyn())),
                ("y", y),
                ("mask", Tensor::Bool(mask.clone().into_dyn())),
            ],
        );
        let run = dir.path().join(name);
        succeeded(&lstm(
            &[
                "train",
                "--hidden",
                "6",
                "--epochs",
                "3",
                "--val-fraction",
                "0.25",
                "--layers",
                "2",
                "--bidirectional",
                "--schedule",
                "plateau",
                "--quiet",
                "--precision",
                "f64",
            ],
            &[("--data", &data), ("--out", &run)],
        ));
        let metrics = metrics(&run);
        assert_eq!(metrics["val_sequences"], 12);
        assert_eq!(metrics["val_accuracy"].is_null(), name == "values");
        let output = dir.path().join(format!("{name}.npy"));
        succeeded(&predict(&run, &data, &output));
        let Tensor::F64(predictions) = read_npy(&output).unwrap() else {
            panic!("f64 predictions of an f64 run");
        };
        assert_eq!(predictions.shape(), [N, T, width]);
    }
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npz");
    classification_file(&data, 4);
    let run = dir.path().join("run");
    // A rate this high overshoots: the validation loss stops improving within a few epochs.
    succeeded(&lstm(
        &[
            "train",
            "--hidden",
            "8",
            "--epochs",
            "60",
            "--lr",
            "0.5",
            "--patience",
            "3",
            "--val-fraction",
            "0.5",
            "--quiet",
        ],
        &[("--data", &data), ("--out", &run)],
    ));
    let metrics = metrics(&run);
    let epochs = metrics["epochs"].as_u64().unwrap();
    let best = metrics["best_epoch"].as_u64().unwrap();
    assert!(epochs < 60, "{metrics}");
    assert_eq!(epochs, best + 3, "{metrics}");
}

#[test]
fn csv_windows_train_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("series.csv");
    let mut text = String::from("t,level\n");
    for t in 0..80 {
        text.push_str(&format!("{t},{}\n", (t as f64 * 0.3).sin()));
    }
    std::fs::write(&csv, text).unwrap();
    let run = dir.path().join("run");
    let stdout = succeeded(&lstm(
        &[
            "train",
            "--column",
            "level",
            "--window",
            "10",
            "--horizon",
            "1",
            "--hidden",
            "8",
            "--epochs",
            "4",
            "--quiet",
        ],
        &[("--csv", &csv), ("--out", &run)],
    ));
    assert!(stdout.contains("sequence_regression"), "{stdout}");
    let metrics = metrics(&run);
    assert_eq!(metrics["train_sequences"], 70);
    assert_eq!(metrics["outputs"], 1);
}

#[test]
fn a_huge_npz_member_claim_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    // A real archive whose `x.npy` header claims (100000, 300, 250) float32: 30 GB.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 300, 250), }";
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(&[0; 4]);
    let path = dir.path().join("huge.npz");
    let mut archive = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    archive
        .start_file("x.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut archive, &npy).unwrap();
    archive.finish().unwrap();
    let output = lstm(
        &["train", "--quiet"],
        &[("--data", &path), ("--out", &dir.path().join("run"))],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("[100000, 300, 250]") && stderr.contains("30.0 GB"),
        "{stderr}"
    );
}

/// `lstm train --data … --epochs E` with the test's small settings, validating on a third.
fn train_epochs(data: &Path, run: &Path, epochs: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--hidden",
        "6",
        "--batch",
        "10",
        "--epochs",
        epochs,
        "--val-fraction",
        "0.3",
        "--dropout",
        "0.1",
        "--schedule",
        "plateau",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    lstm(&args, &[("--data", data), ("--out", run)])
}

#[test]
fn a_resumed_data_run_ends_where_the_whole_run_ends_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npz");
    classification_file(&data, 5);
    let (whole, halves) = (dir.path().join("whole"), dir.path().join("halves"));
    succeeded(&train_epochs(&data, &whole, "5", &[]));
    succeeded(&train_epochs(&data, &halves, "2", &[]));
    succeeded(&train_epochs(&data, &halves, "5", &["--resume"]));
    // The files' headers list the metadata in no fixed order: compare what they hold.
    for file in ["checkpoint.safetensors", "best.safetensors"] {
        let read = |run: &Path| Checkpoint::<f32>::load(&run.join(file)).unwrap();
        assert!(read(&whole) == read(&halves), "{file} differs");
    }
    let (whole, halves) = (metrics(&whole), metrics(&halves));
    assert_eq!(whole["history"], halves["history"]);
    assert_eq!(whole["best_epoch"], halves["best_epoch"]);
    assert_eq!(halves["epochs"], 5);
}

#[test]
fn resuming_a_data_run_under_other_settings_is_an_error_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npz");
    classification_file(&data, 6);
    let run = dir.path().join("run");
    succeeded(&train_epochs(&data, &run, "2", &[]));
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let other_rate = train_epochs(&data, &run, "4", &["--resume", "--lr", "0.02"]);
    let stderr = String::from_utf8_lossy(&other_rate.stderr);
    assert_eq!(other_rate.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("checkpoint") && stderr.contains("lr 0.02"),
        "{stderr}"
    );
    // Past the asked epochs, and a run directory with nothing to resume.
    let fewer = train_epochs(&data, &run, "1", &["--resume"]);
    let stderr = String::from_utf8_lossy(&fewer.stderr);
    assert!(stderr.contains("past the 1 epochs asked for"), "{stderr}");
    let empty = train_epochs(&data, &dir.path().join("empty"), "2", &["--resume"]);
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(
        !empty.status.success() && stderr.contains("checkpoint.safetensors"),
        "{stderr}"
    );
    assert!(before == std::fs::read(run.join("checkpoint.safetensors")).unwrap());
}

/// `--heads K`: the layer's recurrence is block-diagonal (`weight_hh` `(4·H, H/K)` in the
/// checkpoint), `predict` rebuilds the headed model from the run, a resume must keep the heads,
/// and heads that do not divide the hidden units are an error naming them.
#[test]
fn a_headed_data_run_trains_predicts_and_resumes_only_with_its_heads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npz");
    classification_file(&data, 7);
    let run = dir.path().join("run");
    succeeded(&train_epochs(&data, &run, "2", &["--heads", "3"]));
    let checkpoint = Checkpoint::<f32>::load(&run.join("checkpoint.safetensors")).unwrap();
    let (_, weight_hh) = checkpoint
        .model
        .iter()
        .find(|(name, _)| name.ends_with("weight_hh_l0"))
        .expect("the layer's recurrent weights");
    assert_eq!(weight_hh.shape(), [4 * 6, 6 / 3]);
    assert_eq!(checkpoint.metadata["data.heads"], "3");

    let predictions = dir.path().join("p.npy");
    succeeded(&predict(&run, &data, &predictions));
    let Tensor::F32(probabilities) = read_npy(&predictions).unwrap() else {
        panic!("f32 probabilities");
    };
    assert_eq!(probabilities.shape(), [N, 2]);

    let dense = train_epochs(&data, &run, "3", &["--resume"]);
    let stderr = String::from_utf8_lossy(&dense.stderr);
    assert_eq!(dense.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("heads"), "{stderr}");
    succeeded(&train_epochs(
        &data,
        &run,
        "3",
        &["--resume", "--heads", "3"],
    ));

    let uneven = train_epochs(&data, &dir.path().join("uneven"), "1", &["--heads", "4"]);
    let stderr = String::from_utf8_lossy(&uneven.stderr);
    assert_eq!(uneven.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("heads"), "{stderr}");
}
