//! A cell of our own, defined as a user's crate defines it: `tests/cell_snapshots.rs`
//! snapshots its expansion and gradient (the README's recipe), `tests/expand_cli.rs` prints
//! it with `lstm expand` and compiles what it printed.

use lstm::lstm_cell;

/// Coupled gates, a learned temperature on the candidate, a peephole on the output gate.
#[lstm_cell(
    i = 1.0 - f,
    g = tanh(z_g / temperature),
    o = sigmoid(z_o + peep * c),
)]
pub struct MyCell {
    #[init(constant(1.0))]
    temperature: Scalar,
    #[init(zeros)]
    peep: PerUnit,
}
