//! `lstm infer` end to end: the built binary run on parity fixtures (PyTorch lengths, a Keras
//! mask with zero outputs, a custom cell with initial states, f32), its output files compared
//! with what PyTorch and Keras computed, and bad input reported in one line with a non-zero
//! exit code. The flags that stand for a library option (`--merge-mode`, `--go-backwards`,
//! `--no-return-sequences`, `--constants`, `--record`) are compared with the library call they
//! stand for, computed here; `--constants` on a cell of this file's own, run through the
//! command line as a binary of one's own runs it (`lstm::cli::main_with`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::Parser;
use ndarray::{Array2, Array3, ArrayD, Axis, Ix2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::fixtures::{Fixture, assert_close};
use common::parity::{case_config, case_weights};
use lstm::cli::{Catalog, Cli, CliCell};
use lstm::io::{Tensor, TensorMap, keras_to_pytorch, lstm_from_pytorch_with, read_npy, write_npy};
use lstm::{Call, LstmConfig, LstmGradients, LstmOutput, MergeMode, OutputGrad, lstm_cell};

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
    let (y, h_n, c_n, grads, states_out) = (
        scratch.path("y.npy"),
        scratch.path("h_n.npy"),
        scratch.path("c_n.npy"),
        scratch.path("grads.safetensors"),
        scratch.path("states.safetensors"),
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
        Path::new("--grad-output"),
        &grad_output,
        Path::new("--grads"),
        &grads,
        Path::new("--state-out"),
        &states_out,
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
    // Initial states besides `h` and `c` (`n0.npy`, `m0.npy`) go in by name.
    let state_in = scratch.path("state_in.safetensors");
    let mut initial = TensorMap::default();
    for name in ["n", "m"] {
        if let Some(value) = fixture.tensor(&format!("{name}0")) {
            initial.insert(name, value);
        }
    }
    if initial.names().next().is_some() {
        initial.write_safetensors(&state_in).unwrap();
        args.push(Path::new("--state-in"));
        args.push(&state_in);
    }
    // A cell without a cell state (a GRU) has no `c_n` to write.
    let has_c = fixture.has("c_n.npy");
    if has_c {
        args.push(Path::new("--c-n"));
        args.push(&c_n);
    }
    args.extend(extra.iter().map(Path::new));
    let run = lstm(&args);
    assert!(
        run.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    let tolerance = fixture.tolerance();
    let states = [("y", &y), ("h_n", &h_n), ("c_n", &c_n)];
    for (stem, path) in &states[..if has_c { 3 } else { 2 }] {
        let written = read_npy(path).unwrap();
        let expected = fixture.tensor(stem).unwrap();
        assert_eq!(
            written.dtype(),
            expected.dtype(),
            "{case} {stem}: dtype follows the input"
        );
        compare(&format!("{case} {stem}"), &written, &expected, tolerance);
    }
    // The states besides `h` and `c` (the sLSTM's `n`, `m`), each under its name.
    let written = TensorMap::read_safetensors(&states_out).unwrap();
    let extra: Vec<&str> = ["m", "n"]
        .into_iter()
        .filter(|name| fixture.has(&format!("{name}_n.npy")))
        .collect();
    assert_eq!(
        written.names().collect::<Vec<_>>(),
        extra,
        "{case}: --state-out"
    );
    for name in extra {
        let expected = fixture.tensor(&format!("{name}_n")).unwrap();
        let found = written.get(name).unwrap();
        compare(&format!("{case} {name}_n"), found, &expected, tolerance);
    }
    let written = TensorMap::read_safetensors(&grads).unwrap();
    let expected = fixture.tensors("grads.safetensors");
    for (key, tensor) in expected.iter() {
        if ["h0", "c0", "n0", "m0"].contains(&key) {
            continue;
        }
        let found = written
            .get(key)
            .unwrap_or_else(|| panic!("{case}: no gradient {key}"));
        compare(&format!("{case} d{key}"), found, tensor, tolerance);
    }
    let keys = |map: &TensorMap| -> Vec<String> {
        map.names()
            .filter(|key| !["h0", "c0", "n0", "m0"].contains(key))
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
fn gru_is_torch_nn_gru_with_h0_alone() {
    for (case, extra) in [
        ("cell_gru_f32", &[][..]),
        ("cell_gru_stacked_bidirectional", &["--batch-first"][..]),
    ] {
        let weights = Fixture::load(case).path("weights.safetensors");
        infer_matches_fixture(case, "gru", &weights, extra);
    }
}

#[test]
fn slstm_runs_with_heads_read_off_the_weights_and_writes_its_states() {
    for (case, extra) in [
        ("cell_slstm", &[][..]),
        ("cell_slstm_heads", &[][..]),
        ("cell_slstm_stacked_bidirectional", &[][..]),
        ("cell_slstm_initial_state", &[][..]),
    ] {
        let weights = Fixture::load(case).path("weights.safetensors");
        infer_matches_fixture(case, "slstm", &weights, extra);
    }
}

#[test]
fn state_flags_follow_the_cell() {
    let fixture = Fixture::load("cell_gru_stacked_bidirectional");
    let scratch = Scratch::new("state-flags");
    let (weights, x, h0) = (
        fixture.path("weights.safetensors"),
        fixture.path("x.npy"),
        fixture.path("h0.npy"),
    );
    let y = scratch.path("y.npy");
    let gru = [
        Path::new("--batch-first"),
        Path::new("--cell"),
        Path::new("gru"),
    ];
    for extra in [
        &[Path::new("--h0"), &h0, Path::new("--c0"), &h0][..],
        &[Path::new("--c-n"), &scratch.path("c.npy")][..],
    ] {
        let message = infer_failure(&weights, &x, &y, &[&gru[..], extra].concat());
        assert!(message.contains("`gru` has no cell state"), "{message}");
    }
    let lstm_case = Fixture::load("pytorch_initial_state");
    let (weights, x, h0) = (
        lstm_case.path("weights.safetensors"),
        lstm_case.path("x.npy"),
        lstm_case.path("h0.npy"),
    );
    let message = infer_failure(&weights, &x, &y, &[Path::new("--h0"), &h0]);
    assert!(message.contains("`--h0` and `--c0` together"), "{message}");
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

/// Runs `lstm infer` of `weights` on `input` into `output` with `extra` flags, expecting
/// failure; returns its one-line message.
fn infer_failure(weights: &Path, input: &Path, output: &Path, extra: &[&Path]) -> String {
    let mut args = vec![
        Path::new("--weights"),
        weights,
        Path::new("--input"),
        input,
        Path::new("--output"),
        output,
    ];
    args.extend_from_slice(extra);
    failure(&args)
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
    let message = run(&weights, &x, "mgu");
    assert!(message.contains("no cell is called `mgu`"), "{message}");
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

/// A written `.npy` as f64.
fn read_f64(path: &Path) -> ArrayD<f64> {
    read_npy(path)
        .unwrap()
        .to_float(&path.display().to_string())
        .unwrap()
}

/// Writes `values` as an f64 `.npy` at `path`.
fn write_f64(path: &Path, values: ArrayD<f64>) {
    write_npy(path, &Tensor::F64(values)).unwrap();
}

/// Asserts that the files `lstm infer` wrote hold exactly what the library call returned.
fn assert_written_equals(
    what: &str,
    written: &[(&str, &Path)],
    output: &LstmOutput<f64>,
    grads: &LstmGradients<f64>,
    grads_file: &Path,
) {
    for (name, path) in written {
        let expected = match *name {
            "y" => output.output.view().to_owned(),
            "y_reverse" => output.output_reverse.as_ref().unwrap().view().to_owned(),
            "h_n" => output.h_n.clone().unwrap().into_dyn(),
            "c_n" => output.c_n.clone().unwrap().into_dyn(),
            other => panic!("no output {other}"),
        };
        assert_eq!(read_f64(path), expected, "{what}: {name}");
    }
    let file = TensorMap::read_safetensors(grads_file).unwrap();
    let mut expected: Vec<(String, ArrayD<f64>)> = grads
        .params
        .iter()
        .map(|(key, values)| (key.to_string(), values.to_owned()))
        .collect();
    expected.push(("input".into(), grads.input.clone().into_dyn()));
    if let Some(constants) = &grads.constants {
        expected.push(("constants".into(), constants.clone().into_dyn()));
    }
    for (key, values) in &expected {
        let found: ArrayD<f64> = file
            .get(key)
            .unwrap_or_else(|| panic!("{what}: no gradient {key}"))
            .to_float(key)
            .unwrap();
        assert_eq!(&found, values, "{what}: d{key}");
    }
    assert_eq!(
        file.names().count(),
        expected.len(),
        "{what}: gradient keys"
    );
}

/// `lstm infer` with the flags that say what the Keras fixture's `case.json` says (merge mode,
/// `go_backwards`, `return_sequences`), against the library call with the same options
/// (bit for bit: the same computation) and against Keras' own numbers.
fn keras_case_matches_the_library(case: &str) {
    let fixture = Fixture::load(case);
    assert_eq!(fixture.cell(), "lstm", "{case}");
    let scratch = Scratch::new(case);

    // The library call.
    let weights = case_weights(&fixture);
    let config = case_config::<lstm::zoo::Lstm<f64>>(&fixture, &weights);
    let mut layer =
        lstm_from_pytorch_with::<lstm::zoo::Lstm<f64>>(&weights, config.clone()).unwrap();
    let x: ArrayD<f64> = fixture.array("x").unwrap();
    let mask = fixture
        .mask()
        .map(|mask| mask.into_dimensionality::<Ix2>().unwrap());
    let mut call = Call::new();
    if let Some(mask) = &mask {
        call = call.with_mask(mask.view());
    }
    let grad_output: ArrayD<f64> = fixture.array("grad_output").unwrap();
    let apart = config.bidirectional && config.merge_mode == MergeMode::None;
    let (output, tape) = layer.forward_train(x.view(), call).unwrap();
    let grad = if apart {
        // Keras returns both directions under `merge_mode=None`: the fixture stacks them.
        OutputGrad {
            output: Some(grad_output.index_axis(Axis(0), 0)),
            output_reverse: Some(grad_output.index_axis(Axis(0), 1)),
            ..OutputGrad::default()
        }
    } else {
        OutputGrad {
            output: Some(grad_output.view()),
            ..OutputGrad::default()
        }
    };
    let grads = layer.backward(tape, grad).unwrap();

    // The command line, told the same options by flags.
    let (y, y_reverse, h_n, c_n, grads_file) = (
        scratch.path("y.npy"),
        scratch.path("y_reverse.npy"),
        scratch.path("h_n.npy"),
        scratch.path("c_n.npy"),
        scratch.path("grads.safetensors"),
    );
    let (keras_weights, x_file, mask_file) = (
        fixture.path("keras.safetensors"),
        fixture.path("x.npy"),
        fixture.path("mask.npy"),
    );
    let (grad_file, grad_reverse_file) = (
        scratch.path("grad_output.npy"),
        scratch.path("grad_output_reverse.npy"),
    );
    let records_file = scratch.path("records.safetensors");
    let mut args: Vec<&Path> = [
        ("--weights", keras_weights.as_path()),
        ("--input", &x_file),
        ("--output", &y),
        ("--h-n", &h_n),
        ("--c-n", &c_n),
        ("--grad-output", &grad_file),
        ("--grads", &grads_file),
        ("--record", Path::new("i,f,g,o,c,h")),
        ("--record-out", &records_file),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [Path::new(flag), path])
    .collect();
    let merge_mode = config.merge_mode.keras_name();
    if config.bidirectional {
        args.extend([Path::new("--merge-mode"), Path::new(merge_mode)]);
    }
    for (on, flag) in [
        (config.batch_first, "--batch-first"),
        (config.go_backwards, "--go-backwards"),
        (!config.return_sequences, "--no-return-sequences"),
        (config.zero_output_for_mask, "--zero-output-for-mask"),
    ] {
        if on {
            args.push(Path::new(flag));
        }
    }
    if mask.is_some() {
        args.extend([Path::new("--mask"), &mask_file]);
    }
    let mut written = vec![("y", y.as_path()), ("h_n", &h_n), ("c_n", &c_n)];
    if apart {
        write_f64(&grad_file, grad_output.index_axis(Axis(0), 0).to_owned());
        write_f64(
            &grad_reverse_file,
            grad_output.index_axis(Axis(0), 1).to_owned(),
        );
        args.extend([
            Path::new("--output-reverse"),
            &y_reverse,
            Path::new("--grad-output-reverse"),
            &grad_reverse_file,
        ]);
        written.push(("y_reverse", &y_reverse));
    } else {
        write_f64(&grad_file, grad_output.clone());
    }
    let run = lstm(&args);
    assert!(
        run.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_written_equals(case, &written, &output, &grads, &grads_file);
    let names = ["i", "f", "g", "o", "c", "h"];
    let recorded = layer.forward(x.view(), call.with_record(&names)).unwrap();
    let file = TensorMap::read_safetensors(&records_file).unwrap();
    assert_eq!(
        file.names().count(),
        recorded.records.len(),
        "{case}: records"
    );
    let directions = if config.bidirectional { 2 } else { 1 };
    assert_eq!(recorded.records.len(), names.len() * directions, "{case}");
    for (key, values) in &recorded.records {
        let found: ArrayD<f64> = file.get(key).unwrap().to_float(key).unwrap();
        assert_eq!(found, values.clone().into_dyn(), "{case}: record {key}");
    }

    // And what Keras computed.
    let expected_y: ArrayD<f64> = fixture.array("y").unwrap();
    let tolerance = fixture.tolerance();
    if apart {
        for (index, path) in [(0, &y), (1, &y_reverse)] {
            let found = read_f64(path);
            let expected = expected_y.index_axis(Axis(0), index);
            assert_close(case, found.view(), expected, tolerance);
        }
    } else {
        assert_close(case, read_f64(&y).view(), expected_y.view(), tolerance);
    }
}

#[test]
fn merge_modes_are_the_library_merge_modes() {
    for mode in ["concat", "sum", "mul", "ave", "none"] {
        keras_case_matches_the_library(&format!("keras_bidirectional_{mode}"));
    }
}

#[test]
fn go_backwards_is_the_library_go_backwards() {
    keras_case_matches_the_library("keras_go_backwards");
}

#[test]
fn no_return_sequences_is_the_library_return_sequences_false() {
    for case in ["keras_last_output", "keras_bidirectional_last_output"] {
        keras_case_matches_the_library(case);
    }
}

#[test]
fn flags_that_do_not_fit_the_weights_are_one_line_errors() {
    let fixture = Fixture::load("pytorch_lstm");
    let scratch = Scratch::new("misfit-flags");
    let (weights, x, y) = (
        fixture.path("weights.safetensors"),
        fixture.path("x.npy"),
        scratch.path("y.npy"),
    );
    let constants = scratch.path("constants.npy");
    write_f64(&constants, ArrayD::zeros(vec![3, 2]));
    let base = [
        Path::new("--weights"),
        &weights,
        Path::new("--input"),
        &x,
        Path::new("--output"),
        &y,
    ];
    let with = |extra: &[&Path]| infer_failure(&weights, &x, &y, extra);
    // The zoo's `lstm` reads no constant input.
    let message = with(&[Path::new("--constants"), &constants]);
    assert!(message.contains("constants"), "{message}");
    // A unidirectional layer has no reverse output to write.
    let message = with(&[
        Path::new("--merge-mode"),
        Path::new("none"),
        Path::new("--output-reverse"),
        &scratch.path("y_reverse.npy"),
    ]);
    assert!(message.contains("output_reverse"), "{message}");
    // A value the cell does not evaluate, named with what it records.
    let records = scratch.path("records.safetensors");
    let message = with(&[
        Path::new("--record"),
        Path::new("f,q"),
        Path::new("--record-out"),
        &records,
    ]);
    assert!(
        message.contains("record")
            && message.contains("`q`")
            && message.contains("i, f, g, o, c, h"),
        "{message}"
    );
    assert!(
        !y.exists() && !records.exists(),
        "no output is written on failure"
    );
    // `--record` needs somewhere to write.
    let mut args = base.to_vec();
    args.extend([Path::new("--record"), Path::new("c")]);
    let run = lstm(&args);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("--record-out"), "{stderr}");
    // A mode Keras does not have is refused by the argument parser, naming it.
    let mut args = base.to_vec();
    args.extend([Path::new("--merge-mode"), Path::new("average")]);
    let run = lstm(&args);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("'average'"), "{stderr}");
}

/// A cell of this test's own with a constant input (Keras `constants`): every gate sees the
/// sequence's style vector, projected.
#[lstm_cell(z = z + style, f = sigmoid(z_f + forget_bias))]
pub struct Styled {
    /// The per-sequence style vector.
    style: Constant,
    /// Added to the forget gate's pre-activation.
    #[init(ones)]
    forget_bias: PerUnit,
}

/// Runs the command line in this process, as a binary of one's own does (`main_with`), with
/// [`Styled`] besides the zoo.
fn own_command_line(args: &[&str]) -> Result<(), lstm::cli::Error> {
    let catalog = Catalog::with(&[CliCell::of::<Styled<f32>, Styled<f64>>()])?;
    let cli = Cli::try_parse_from(std::iter::once("lstm").chain(args.iter().copied()))
        .expect("the arguments parse");
    lstm::cli::run_with(cli, &catalog)
}

#[test]
fn own_cells_run_through_the_command_line_with_constants() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (seq_len, batch, input_size, hidden, constant_size) = (6, 3, 4, 5, 2);
    let config = LstmConfig::new(input_size, hidden)
        .with_bidirectional(true)
        .with_constant_size(constant_size);
    let mut layer = lstm::Lstm::<Styled<f64>>::new(config, &mut rng).unwrap();
    let scratch = Scratch::new("own-cell");
    let path = |file: &str| scratch.path(file).display().to_string();
    TensorMap::from_parameters(&layer)
        .write_safetensors(scratch.path("w.safetensors"))
        .unwrap();
    let x = Array3::from_shape_fn((seq_len, batch, input_size), |_| {
        rng.random_range(-1.0..1.0)
    });
    let constants = Array2::from_shape_fn((batch, constant_size), |_| rng.random_range(-1.0..1.0));
    let grad_output = Array3::from_shape_fn((seq_len, batch, 2 * hidden), |_| {
        rng.random_range(-1.0..1.0)
    });
    write_f64(&scratch.path("x.npy"), x.clone().into_dyn());
    write_f64(&scratch.path("c.npy"), constants.clone().into_dyn());
    write_f64(&scratch.path("g.npy"), grad_output.clone().into_dyn());

    own_command_line(&[
        "infer",
        "--cell",
        "styled",
        "--weights",
        &path("w.safetensors"),
        "--input",
        &path("x.npy"),
        "--constants",
        &path("c.npy"),
        "--output",
        &path("y.npy"),
        "--h-n",
        &path("h_n.npy"),
        "--c-n",
        &path("c_n.npy"),
        "--grad-output",
        &path("g.npy"),
        "--grads",
        &path("grads.safetensors"),
    ])
    .unwrap();

    let call = Call::new().with_constants(constants.view());
    let (output, tape) = layer.forward_train(x.view(), call).unwrap();
    let grad = OutputGrad {
        output: Some(grad_output.view().into_dyn()),
        ..OutputGrad::default()
    };
    let grads = layer.backward(tape, grad).unwrap();
    assert!(grads.constants.is_some(), "the constants get a gradient");
    let written = [
        ("y", scratch.path("y.npy")),
        ("h_n", scratch.path("h_n.npy")),
        ("c_n", scratch.path("c_n.npy")),
    ];
    let written: Vec<(&str, &Path)> = written
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    assert_written_equals(
        "styled",
        &written,
        &output,
        &grads,
        &scratch.path("grads.safetensors"),
    );

    // Without the constants the cell cannot run: an error naming them.
    let err = own_command_line(&[
        "infer",
        "--cell",
        "styled",
        "--weights",
        &path("w.safetensors"),
        "--input",
        &path("x.npy"),
        "--output",
        &path("y2.npy"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("constants"), "{err}");
    // A misspelt name lists the zoo and the binary's own cells.
    let err = own_command_line(&[
        "infer",
        "--cell",
        "stiled",
        "--weights",
        &path("w.safetensors"),
        "--input",
        &path("x.npy"),
        "--output",
        &path("y2.npy"),
    ])
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no cell is called `stiled`")
            && message.contains("lstm, ")
            && message.contains("styled"),
        "{message}"
    );
}
