//! Cells written by hand against the `Cell` contract, so the runtime can be tested without the
//! `#[lstm_cell]` macro: the standard PyTorch LSTM, and a one-gate cell that reads `h_prev`
//! and has a spec parameter, so nothing in the runtime can quietly assume four gates.

pub mod blend;
pub mod hand_lstm;

use ndarray::{Array1, Array2};
use rand::Rng;

use lstm_runtime::{CellDims, Float, Init};

/// A `(rows, cols)` matrix with PyTorch's default init for a cell of `hidden` units.
pub fn default_init<F: Float, R: Rng + ?Sized>(
    rows: usize,
    cols: usize,
    hidden: usize,
    rng: &mut R,
) -> Array2<F> {
    let mut values = vec![F::zero(); rows * cols];
    Init::Default.fill(&mut values, hidden, rng);
    Array2::from_shape_vec((rows, cols), values).expect("rows · cols values")
}

/// The two biases of a cell with `gate_rows` rows, PyTorch-initialised, if `dims.bias`.
pub fn default_biases<F: Float, R: Rng + ?Sized>(
    dims: CellDims,
    gate_rows: usize,
    rng: &mut R,
) -> (Option<Array1<F>>, Option<Array1<F>>) {
    if !dims.bias {
        return (None, None);
    }
    let mut bias =
        || default_init(1, gate_rows, dims.hidden_size, rng).remove_axis(ndarray::Axis(0));
    (Some(bias()), Some(bias()))
}
