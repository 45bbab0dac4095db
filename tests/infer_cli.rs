//! `lstm infer` end to end: the built binary run on parity fixtures (PyTorch lengths, a Keras
//! mask with zero outputs, a custom cell with initial states, f32), its output files compared
//! with what PyTorch and Keras computed, and bad input reported in one line with a non-zero
//! exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::ArrayD;

use common::fixtures::{Fixture, assert_close};
use lstm::io::{TensorMap, keras_to_pytorch, read_npy};

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lstm-infer-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lstm(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm"))
        .arg("infer")
        .args(args)
        .output()
        .expect("the lstm binary runs")
}

/// Runs `lstm infer` on the case with every output requested, and checks them all.
fn infer_matches_fixture(case: &str, cell: &str, weights: &Path, extra: &[&str]) {
    let fixture = Fixture::load(case);
    let scratch = Scratch::new(case);
    let (y, h_n, c_n, grads) = (
        scratch.path("y.npy"),
        scratch.path("h_n.npy"),
        scratch.path("c_n.npy"),
        scratch.path("grads.safetensors"),
    );
    let x = fixture.path("x.npy");
    let grad_output = fixture.path("grad_output.npy");
    let mut args: Vec<&Path> = vec![
        Path::new("--weights"),
        weights,
        Path::new("--input"),
        &x,
        Path::new("--cell"),
        Path::new(cell),
        Path::new("--output"),
        &y,
        Path::new("--h-n"),
        &h_n,
        Path::new("--c-n"),
        &c_n,
        Path::new("--grad-output"),
        &grad_output,
        Path::new("--grads"),
        &grads,
    ];
    let optional: Vec<(&str, PathBuf)> = [
        ("--lengths", "lengths.npy"),
        ("--mask", "mask.npy"),
        ("--h0", "h0.npy"),
        ("--c0", "c0.npy"),
    ]
    .into_iter()
    .filter(|(_, file)| fixture.has(file))
    .map(|(flag, file)| (flag, fixture.path(file)))
    .collect();
    for (flag, path) in &optional {
        args.push(Path::new(flag));
        args.push(path);
    }
    args.extend(extra.iter().map(Path::new));
    let run = lstm(&args);
    assert!(
        run.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    let tolerance = fixture.tolerance();
    for (stem, path) in [("y", &y), ("h_n", &h_n), ("c_n", &c_n)] {
        let written = read_npy(path).unwrap();
        let expected = fixture.tensor(stem).unwrap();
        assert_eq!(
            written.dtype(),
            expected.dtype(),
            "{case} {stem}: dtype follows the input"
        );
        compare(&format!("{case} {stem}"), &written, &expected, tolerance);
    }
    let written = TensorMap::read_safetensors(&grads).unwrap();
    let expected = fixture.tensors("grads.safetensors");
    for (key, tensor) in expected.iter() {
        if key == "h0" || key == "c0" {
            continue;
        }
        let found = written
            .get(key)
            .unwrap_or_else(|| panic!("{case}: no gradient {key}"));
        compare(&format!("{case} d{key}"), found, tensor, tolerance);
    }
    let keys = |map: &TensorMap| -> Vec<String> {
        map.names()
            .filter(|key| *key != "h0" && *key != "c0")
            .map(String::from)
            .collect()
    };
    assert_eq!(keys(&written), keys(&expected), "{case}: gradient keys");
}

fn compare(what: &str, found: &lstm::io::Tensor, expected: &lstm::io::Tensor, tolerance: f64) {
    let found: ArrayD<f64> = found.to_float(what).unwrap();
    let expected: ArrayD<f64> = expected.to_float(what).unwrap();
    assert_close(what, found.view(), expected.view(), tolerance);
}

#[test]
fn stacked_bidirectional_layer_with_lengths_batch_first_and_initial_states() {
    let fixture = Fixture::load("pytorch_stacked_bidirectional_lengths");
    let weights = fixture.path("weights.safetensors");
    infer_matches_fixture(
        "pytorch_stacked_bidirectional_lengths",
        "lstm",
        &weights,
        &["--batch-first"],
    );
}

#[test]
fn projection_and_f32() {
    for case in ["pytorch_proj", "pytorch_bidirectional_lengths_f32"] {
        let weights = Fixture::load(case).path("weights.safetensors");
        infer_matches_fixture(case, "lstm", &weights, &[]);
    }
}

#[test]
fn custom_cells_by_name() {
    for (case, cell) in [
        ("cell_peephole_stacked_bidirectional", "peephole"),
        ("cell_cifg", "cifg"),
        ("cell_layer_norm_bidirectional", "layer_norm"),
        ("cell_forget_bias_f32", "forget_bias"),
    ] {
        let weights = Fixture::load(case).path("weights.safetensors");
        infer_matches_fixture(case, cell, &weights, &[]);
    }
}

#[test]
fn keras_masks_with_converted_weights() {
    for (case, extra) in [
        ("keras_mask", &["--batch-first"][..]),
        (
            "keras_mask_zero_output",
            &["--batch-first", "--zero-output-for-mask"],
        ),
        ("keras_mask_f32", &["--batch-first"]),
        ("keras_hard_sigmoid", &["--batch-first"]),
    ] {
        let fixture = Fixture::load(case);
        let cell = fixture.cell().to_string();
        // Keras' own names, in both file formats, and converted to PyTorch's.
        infer_matches_fixture(case, &cell, &fixture.path("keras.safetensors"), extra);
        infer_matches_fixture(case, &cell, &fixture.path("keras.npz"), extra);
        let scratch = Scratch::new(&format!("{case}-weights"));
        let weights = scratch.path("weights.safetensors");
        keras_to_pytorch(&fixture.tensors("keras.safetensors"))
            .unwrap()
            .write_safetensors(&weights)
            .unwrap();
        infer_matches_fixture(case, &cell, &weights, extra);
    }
}

/// Runs `lstm infer` expecting failure; returns its one-line message.
fn failure(args: &[&Path]) -> String {
    let run = lstm(args);
    assert!(!run.status.success(), "succeeded: {args:?}");
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("lstm: "), "{stderr}");
    stderr
}

#[test]
fn bad_input_is_one_line_and_a_failure_exit() {
    let fixture = Fixture::load("pytorch_lstm");
    let scratch = Scratch::new("bad-input");
    let weights = fixture.path("weights.safetensors");
    let x = fixture.path("x.npy");
    let y = scratch.path("y.npy");
    let run = |weights: &Path, input: &Path, cell: &str| {
        failure(&[
            Path::new("--weights"),
            weights,
            Path::new("--input"),
            input,
            Path::new("--cell"),
            Path::new(cell),
            Path::new("--output"),
            &y,
        ])
    };

    let message = run(&weights, &x, "peephole");
    assert!(message.contains("peephole_i_l0"), "{message}");
    let message = run(&weights, &x, "gru");
    assert!(message.contains("no zoo cell is called `gru`"), "{message}");
    let message = run(&scratch.path("absent.safetensors"), &x, "lstm");
    assert!(message.contains("absent.safetensors"), "{message}");

    let truncated = scratch.path("truncated.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = run(&truncated, &x, "lstm");
    assert!(
        message.contains("is not a valid safetensors file"),
        "{message}"
    );

    // Lengths as input: int64, not float.
    let lengths = Fixture::load("pytorch_lengths").path("lengths.npy");
    let message = run(&weights, &lengths, "lstm");
    assert!(message.contains("expected f32 or f64"), "{message}");

    // Another case's input: 4 features where the weights expect them, so use a misfit one.
    let wide = Fixture::load("pytorch_stacked").path("weights.safetensors");
    let narrow_x = scratch.path("x2.npy");
    let x_values: ArrayD<f64> = read_npy(&x).unwrap().to_float("x").unwrap();
    lstm::io::write_npy(
        &narrow_x,
        &lstm::io::Tensor::F64(x_values.slice_move(ndarray::s![.., .., ..3]).into_dyn()),
    )
    .unwrap();
    let message = run(&wide, &narrow_x, "lstm");
    assert!(
        message.contains("[5, 3, 3]") && message.contains("input"),
        "{message}"
    );
    assert!(!y.exists(), "no output is written on failure");
}
