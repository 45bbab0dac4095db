//! Snapshot tests of a cell of our own, as the README's recipe writes them: the code
//! `#[lstm_cell]` generates for it and the backward equations it derived, reviewed once and
//! then checked on every run (`cargo insta review`, or `INSTA_UPDATE=always`, after a change).

#[test]
fn my_cell_expansion_and_gradient() {
    let cells = lstm_codegen::cells(include_str!("cells/my_cell.rs")).unwrap();
    let my_cell = cells.iter().find(|cell| cell.name() == "MyCell").unwrap();
    insta::assert_snapshot!("my_cell_expansion", my_cell.expand());
    insta::assert_snapshot!("my_cell_equations", my_cell.equations().to_string());
}
