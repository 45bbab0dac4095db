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

/// The README's recipe is the test above, word for word.
#[test]
fn readme_quotes_the_recipe() {
    let this_file = include_str!("cell_snapshots.rs");
    let start = this_file.find("#[test]").unwrap();
    let recipe = &this_file[start..start + this_file[start..].find("\n}\n").unwrap() + 3];
    assert!(
        include_str!("../README.md").contains(recipe),
        "README.md does not quote:\n{recipe}"
    );
}
