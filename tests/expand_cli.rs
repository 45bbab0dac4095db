//! `lstm expand`, run as a user runs it: the Rust it prints for a cell of our own compiles and
//! computes what the macro's own expansion computes, `--equations` prints the derived
//! backward step, and mistakes are errors that say what is wrong.

use std::path::Path;
use std::process::{Command, Output};

const MY_CELL: &str = "tests/cells/my_cell.rs";

fn lstm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the lstm binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "lstm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// The printed expansion, put in a program next to the macro's own expansion of the same
/// file, must compile, and both cells must give the same layer outputs bit for bit.
#[test]
fn printed_code_compiles_and_computes_what_the_macro_does() {
    let expanded = stdout(&lstm(&["expand", MY_CELL]));
    assert!(expanded.contains("pub struct MyCell<F: ::lstm::Float = f32>"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(MY_CELL);
    let program =
        format!("mod printed {{\n{expanded}}}\n\n#[path = {source:?}]\nmod by_macro;\n{MAIN}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("expand");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("my_cell_printed.rs");
    std::fs::write(&path, program).unwrap();
    trybuild::TestCases::new().pass(&path);
}

/// Runs both cells' layers, forward and backward, from the same seed.
const MAIN: &str = r#"
use lstm::ndarray::Array3;
use lstm::rand::SeedableRng;
use lstm::{Call, Cell, Lstm, LstmConfig, OutputGrad};

fn run<C: Cell<Elem = f64>>() -> Vec<f64> {
    let config = LstmConfig::new(3, 5).with_num_layers(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut layer = Lstm::<C>::new(config, &mut rng).unwrap();
    let x = Array3::from_shape_fn((4, 2, 3), |(t, b, k)| (t + 2 * b) as f64 * 0.1 - k as f64 * 0.2);
    let (out, tape) = layer.forward_train(x.view(), Call::new()).unwrap();
    let output = out.output.sequence().unwrap().clone();
    let d_output = output.mapv(|v| v * 0.5 + 0.1).into_dyn();
    let grad = OutputGrad { output: Some(d_output.view()), ..Default::default() };
    let grads = layer.backward(tape, grad).unwrap();
    let mut values: Vec<f64> = output.iter().copied().collect();
    values.extend(grads.input.iter().copied());
    values
}

fn main() {
    assert_eq!(<printed::MyCell<f64> as Cell>::SPEC.name, "my_cell");
    let printed = run::<printed::MyCell<f64>>();
    let by_macro = run::<by_macro::MyCell<f64>>();
    assert!(printed.iter().all(|v| v.is_finite()));
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&printed), bits(&by_macro));
}
"#;

#[test]
fn equations_print_the_derived_backward_step() {
    let text = stdout(&lstm(&[
        "expand",
        MY_CELL,
        "--cell",
        "my_cell",
        "--equations",
    ]));
    for line in [
        "MyCell: gates f, g, o",
        "  i = 1.0 - f",
        "  g = tanh(z_g / temperature)",
        "backward",
        "  d_c = ",
        "  d_f = ",
        "  d_temperature = ",
        "  d_peep = d_z_o · c",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn mistakes_are_errors_that_name_them() {
    let unknown = lstm(&["expand", MY_CELL, "--cell", "NoSuchCell"]);
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success());
    assert!(
        stderr.contains("no cell named `NoSuchCell`; it defines MyCell"),
        "{stderr}"
    );

    let no_cells = lstm(&["expand", "tests/expand_cli.rs"]);
    let stderr = String::from_utf8_lossy(&no_cells.stderr);
    assert!(!no_cells.status.success());
    assert!(
        stderr.contains("tests/expand_cli.rs defines no #[lstm_cell] struct"),
        "{stderr}"
    );

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("expand");
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("wrong_cell.rs");
    std::fs::write(
        &wrong,
        "\n#[lstm_cell(f = sigmoid(z_x))]\npub struct Wrong;\n",
    )
    .unwrap();
    let spec_error = lstm(&["expand", wrong.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&spec_error.stderr);
    assert!(!spec_error.status.success());
    assert!(stderr.contains("error: unknown name `z_x`"), "{stderr}");
    assert!(stderr.contains("wrong_cell.rs:2:25"), "{stderr}");
    assert!(
        stderr.contains("2 | #[lstm_cell(f = sigmoid(z_x))]\n  |                         ^^^"),
        "{stderr}"
    );
}
