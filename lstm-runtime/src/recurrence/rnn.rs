//! [`Rnn`]: one cell unrolled over a sequence in one direction, the plain public face of the
//! time loop: no masks, no projection, no stacking (those are
//! [`Lstm`](crate::layer::Lstm)'s).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3};

use super::Record;
use super::mask::{InvalidOutput, Validity};
use super::pass::{Pass, Setup};
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result, expect_shape};
use crate::regularization::in_recurrence::InRecurrence;

/// One recurrent layer in one direction: a cell unrolled over time.
///
/// The layer owns the cell and its weights. Inputs are time-major, `(seq_len, batch,
/// input_size)` (PyTorch's default `batch_first=False`). For masks, lengths, stacking,
/// bidirectional layers and projections use [`Lstm`](crate::layer::Lstm).
#[derive(Clone, Debug)]
pub struct Rnn<C: Cell> {
    cell: C,
}

/// The state a sequence starts from, `(h0, c0)` as in PyTorch: `h0` is
/// `(batch, recurrent_size)`, `c0` is `(batch, hidden_size)`.
pub type InitialState<'a, F> = (ArrayView2<'a, F>, ArrayView2<'a, F>);

/// What [`Rnn::forward`] returns: PyTorch's `output, (h_n, c_n)` for one layer and direction.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnOutput<F> {
    /// The hidden state after every step: `(seq_len, batch, hidden_size)`.
    pub output: Array3<F>,
    /// The hidden state after the last step: `(batch, hidden_size)`.
    pub h_n: Array2<F>,
    /// The cell state after the last step: `(batch, hidden_size)`.
    pub c_n: Array2<F>,
}

impl<C: Cell> Rnn<C> {
    /// A layer that unrolls `cell`.
    pub fn new(cell: C) -> Self {
        Rnn { cell }
    }

    /// The cell and its weights.
    pub fn cell(&self) -> &C {
        &self.cell
    }

    /// The cell and its weights, mutably (to load or update weights).
    pub fn cell_mut(&mut self) -> &mut C {
        &mut self.cell
    }

    /// The cell, giving up the layer.
    pub fn into_cell(self) -> C {
        self.cell
    }

    /// Runs the layer over a sequence, in inference mode: nothing of the steps is kept except
    /// the outputs.
    ///
    /// `input` is `(seq_len, batch, input_size)`, time-major, of any memory layout.
    /// `initial` is `(h0, c0)` with `h0: (batch, recurrent_size)` and
    /// `c0: (batch, hidden_size)`; `None` starts from zeros, as in PyTorch.
    ///
    /// An empty sequence (`seq_len = 0`) returns an empty `output` and the initial state as
    /// the final state. An empty batch is allowed too and returns empty arrays.
    ///
    /// # Errors
    ///
    /// - [`Error::ShapeMismatch`] naming `input`, `h0` or `c0` if its shape does not fit the
    ///   cell, or naming a weight (`weight_ih`, `bias_hh`, a spec parameter) whose shape does
    ///   not fit the cell's [`Cell::dims`].
    /// - [`Error::NotContiguous`] naming a weight not stored in standard layout.
    /// - [`Error::Config`] if the cell's `recurrent_size` differs from its `hidden_size` (this
    ///   layer has no projection, so `h` itself is the recurrent input), or naming
    ///   `constants` if the cell reads a constant input.
    pub fn forward(
        &self,
        input: ArrayView3<'_, C::Elem>,
        initial: Option<InitialState<'_, C::Elem>>,
    ) -> Result<RnnOutput<C::Elem>> {
        let dims = self.cell.dims();
        if let Some(constant) = C::SPEC.constant {
            return Err(Error::Config {
                option: "constants".into(),
                reason: format!(
                    "the cell reads the constant input `{constant}`, which `Rnn` does not take; \
                     run it in a layer that is given constants"
                ),
            });
        }
        if dims.recurrent_size != dims.hidden_size {
            return Err(Error::Config {
                option: "recurrent_size".into(),
                reason: format!(
                    "expected {}, the hidden size (a layer without projection feeds `h` back \
                     as the recurrent input); found {}",
                    dims.hidden_size, dims.recurrent_size
                ),
            });
        }
        let validity = Validity::All;
        let pass = Pass::new(
            &self.cell,
            None,
            "",
            Setup {
                dims,
                validity: &validity,
                invalid_output: InvalidOutput::Zero,
                direction: Direction::Forward,
                constants: None,
                regularization: InRecurrence::off(),
            },
        )?;
        let (seq_len, batch, _) = input.dim();
        expect_shape("input", &[seq_len, batch, dims.input_size], input.shape())?;
        let (h0, c0) = match initial {
            Some((h0, c0)) => {
                expect_shape("h0", &[batch, dims.recurrent_size], h0.shape())?;
                expect_shape("c0", &[batch, dims.hidden_size], c0.shape())?;
                (h0.to_owned(), c0.to_owned())
            }
            None => (
                Array2::zeros((batch, dims.recurrent_size)),
                Array2::zeros((batch, dims.hidden_size)),
            ),
        };
        let mut run = pass.start(h0.view(), c0.view(), seq_len);
        let mut output = Array3::zeros((seq_len, batch, dims.hidden_size));
        pass.run_sequence(input, &mut run, Some(output.view_mut()), Record::Nothing)?;
        Ok(RnnOutput {
            output,
            h_n: run.state.h,
            c_n: run.state.c,
        })
    }
}
