//! Expansion snapshots of every zoo cell, read from the zoo's own source so a new zoo cell is
//! snapshotted without touching this file. Each snapshot is the prettyplease-formatted code a
//! reviewer reads: the weight struct, the fused forward steps and the derived backward step.

const ZOO: &str = include_str!("../../lstm-runtime/src/zoo.rs");

#[test]
fn zoo_has_every_cell_of_the_foundation() {
    let cells = crate::cells(ZOO).expect("the zoo compiles");
    let names: Vec<String> = cells.iter().map(|cell| cell.name()).collect();
    for expected in [
        "Lstm",
        "ForgetBias",
        "ScaledForget",
        "Peephole",
        "Cifg",
        "HardSigmoid",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "zoo lacks {expected}: {names:?}"
        );
    }
}

#[test]
fn zoo_expansions() {
    for cell in crate::cells(ZOO).expect("the zoo compiles") {
        insta::assert_snapshot!(cell.name(), cell.expand());
    }
}

#[test]
fn zoo_equations() {
    for cell in crate::cells(ZOO).expect("the zoo compiles") {
        insta::assert_snapshot!(
            format!("{}_equations", cell.name()),
            cell.equations().to_string()
        );
    }
}
