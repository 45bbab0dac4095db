//! Errors of a source file through the library's API: every mistake of every cell, each at
//! the line and column of the token it is about, as `lstm expand` prints them.

use lstm_codegen::{Location, cells, equations, expand};

fn located(source: &str) -> Vec<(String, Location)> {
    let diagnostics = match cells(source) {
        Ok(_) => panic!("the source compiled"),
        Err(diagnostics) => diagnostics,
    };
    diagnostics
        .iter()
        .map(|d| (d.message.clone(), d.location.expect("located")))
        .collect()
}

#[test]
fn an_unknown_name_points_at_the_name() {
    let source = "use lstm::lstm_cell;\n\n#[lstm_cell(f = sigmoid(z_x))]\npub struct Wrong;\n";
    let errors = located(source);
    assert_eq!(errors.len(), 1);
    let (message, at) = &errors[0];
    assert!(
        message.starts_with("unknown name `z_x`; expected z_i"),
        "{message}"
    );
    assert_eq!(
        (at.line, at.column, at.end_line, at.end_column),
        (3, 25, 3, 28)
    );
}

#[test]
fn every_error_of_every_cell_is_reported() {
    let source = "\
#[lstm_cell(f = sigmoid(z_q), g = tanhh(z_g), o = clip(z_o))]
pub struct Several;

mod inner {
    #[lstm::lstm_cell(i = 1.0 - f)]
    pub struct Fine;

    #[lstm_cell(h = o * tanh(c), c = f * c_prev + i * g, c = c_prev)]
    pub struct Twice;
}
";
    let errors = located(source);
    let summary: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|(message, at)| (at.line, at.column, message.split(';').next().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, 25, "unknown name `z_q`"),
            (1, 35, "unknown function `tanhh`"),
            (
                1,
                51,
                "`clip` takes 3 arguments clip(x, low, high), found 1"
            ),
            (8, 58, "`c` is defined twice"),
        ]
    );
}

#[test]
fn an_error_about_the_whole_spec_points_at_the_attribute() {
    let source = "\n  #[lstm_cell(i = 0.5, f = sigmoid(c_prev), g = c_prev, o = 0.5)]\n  struct NoWeights;\n";
    let errors = located(source);
    let (message, at) = &errors[0];
    assert!(
        message.starts_with("the cell reads no gate pre-activation"),
        "{message}"
    );
    assert_eq!((at.line, at.column), (2, 3));
}

#[test]
fn a_syntax_error_is_located() {
    let errors = located("#[lstm_cell]\npub struct Broken {\n    peep: PerUnit,,\n}\n");
    assert_eq!(errors[0].1.line, 3);
}

#[test]
fn errors_render_as_the_compiler_prints_them() {
    let source = "use lstm::lstm_cell;\n\n#[lstm_cell(f = sigmoid(z_x))]\npub struct Wrong;\n";
    let rendered = cells(source).err().unwrap().render("src/cells.rs", source);
    let expected = "\
error: unknown name `z_x`; expected z_i, z_f, z_g, z_o, zx_i…, zh_i…, b_ih_i…, b_hh_i…, i, f, g, o, c (in o and h), c_prev, h_prev or a parameter
 --> src/cells.rs:3:25
  |
3 | #[lstm_cell(f = sigmoid(z_x))]
  |                         ^^^
";
    assert_eq!(rendered, expected);
}

#[test]
fn a_source_without_cells_is_an_error_to_expand() {
    let source = "pub struct NotACell;\n";
    assert!(cells(source).unwrap().is_empty());
    for error in [expand(source).unwrap_err(), equations(source).unwrap_err()] {
        assert_eq!(
            error.to_string(),
            "the source defines no #[lstm_cell] struct"
        );
        assert!(error.iter().all(|d| d.location.is_none()));
    }
}

#[test]
fn the_macro_reports_the_same_errors_as_compile_errors() {
    let args: proc_macro2::TokenStream = "f = sigmoid(z_x)".parse().unwrap();
    let item: proc_macro2::TokenStream = "pub struct Wrong;".parse().unwrap();
    let tokens = lstm_codegen::lstm_cell(args, item).to_string();
    assert!(tokens.contains("compile_error"), "{tokens}");
    assert!(tokens.contains("unknown name `z_x`"), "{tokens}");
}
