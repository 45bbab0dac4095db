//! Unrolling one cell over a sequence in one direction: [`Rnn`], the single-layer,
//! single-direction recurrence every bigger layer (stacked, bidirectional) is built from.
//!
//! A forward pass is two kinds of work. The input projection `zx = x · W_ihᵀ` does not depend
//! on the recurrence, so it runs once for all time steps as one GEMM of `(seq_len · batch)`
//! rows. Then the time loop: per step one GEMM for the recurrent projection
//! `zh = h_prev · W_hhᵀ`, and the cell's fused elementwise step, which adds the biases and
//! produces the new `h` and `c`. Every buffer the loop touches is allocated before it starts.
//!
//! The loop lives in [`Rnn::forward`] and the work of one step in `Rnn::advance`: iteration
//! order (a reversed direction), per-row state updates (masks) and a projection of `h` each
//! change only one of the two.

use std::borrow::Cow;

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis, CowArray, Ix2, Order};
use num_traits::{One, Zero};

use crate::error::{Error, Result, expect_shape};
use crate::{Cell, CellDims, Float, StepIo, linalg};

/// One recurrent layer in one direction: a cell unrolled over time.
///
/// The layer owns the cell and its weights. Inputs are time-major, `(seq_len, batch,
/// input_size)` (PyTorch's default `batch_first=False`).
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

/// The recurrent state carried from one step to the next.
struct State<F> {
    /// `(batch, recurrent_size)`.
    h: Array2<F>,
    /// `(batch, hidden_size)`.
    c: Array2<F>,
}

/// The biases as every step reads them: gate-stacked slices, zeros for a cell without bias.
struct Biases<'a, F: Clone> {
    /// `b_ih`: `gates · hidden_size`.
    ih: Cow<'a, [F]>,
    /// `b_hh`: `gates · hidden_size`.
    hh: Cow<'a, [F]>,
}

/// What one step writes, allocated once per forward pass and reused by every step.
struct StepBuffers<F> {
    /// Recurrent projection `h_prev · W_hhᵀ`: `(batch, gates · hidden_size)`.
    zh: Array2<F>,
    /// The step's new hidden state: `(batch, hidden_size)`.
    h: Array2<F>,
    /// The step's new cell state: `(batch, hidden_size)`.
    c: Array2<F>,
    /// The cell's working memory: `(batch, spec.scratch.len(hidden_size))`.
    scratch: Array2<F>,
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
    /// - [`Error::Config`] if the cell's `recurrent_size` differs from its `hidden_size`: this
    ///   layer has no projection, so `h` itself is the recurrent input.
    pub fn forward(
        &self,
        input: ArrayView3<'_, C::Elem>,
        initial: Option<InitialState<'_, C::Elem>>,
    ) -> Result<RnnOutput<C::Elem>> {
        let dims = self.checked_dims()?;
        let (seq_len, batch, _) = input.dim();
        expect_shape("input", &[seq_len, batch, dims.input_size], input.shape())?;
        let mut state = initial_state(dims, batch, initial)?;
        let mut output = Array3::zeros((seq_len, batch, dims.hidden_size));

        let zx = self.project_inputs(input)?;
        let step_len = batch * self.gate_rows(dims);
        let zx = flat(&zx);
        let biases = self.biases(dims);
        let mut buffers = self.step_buffers(dims, batch);
        for (t, mut output_t) in output.axis_iter_mut(Axis(0)).enumerate() {
            let zx_t = &zx[t * step_len..(t + 1) * step_len];
            self.advance(zx_t, &biases, &mut state, &mut buffers)?;
            output_t.assign(&state.h);
        }
        Ok(RnnOutput {
            output,
            h_n: state.h,
            c_n: state.c,
        })
    }

    /// One time step: the recurrent GEMM, then the cell's step; `state` becomes the new state.
    ///
    /// `zx_t` is this step's slice of the input projection, `batch × gates · hidden_size`.
    fn advance(
        &self,
        zx_t: &[C::Elem],
        biases: &Biases<'_, C::Elem>,
        state: &mut State<C::Elem>,
        buffers: &mut StepBuffers<C::Elem>,
    ) -> Result<()> {
        if state.c.is_empty() {
            // No batch rows or no units: nothing to compute, and generated steps need not
            // handle empty blocks.
            return Ok(());
        }
        let rows = state.c.nrows();
        let weight_hh = self.cell.weights().weight_hh;
        linalg::matmul_nt(
            C::Elem::one(),
            state.h.view(),
            weight_hh.view(),
            C::Elem::zero(),
            buffers.zh.view_mut(),
        )?;
        let h_prev: &[C::Elem] = if C::SPEC.reads_h_prev {
            flat(&state.h)
        } else {
            &[]
        };
        self.cell.step(StepIo {
            rows,
            zx: zx_t,
            zh: flat(&buffers.zh),
            bias_ih: &biases.ih,
            bias_hh: &biases.hh,
            constant: &[],
            c_prev: flat(&state.c),
            h_prev,
            h: flat_mut(&mut buffers.h),
            c: flat_mut(&mut buffers.c),
            scratch: flat_mut(&mut buffers.scratch),
        });
        // Without a projection the new `h` is the next step's recurrent input as it is.
        std::mem::swap(&mut state.h, &mut buffers.h);
        std::mem::swap(&mut state.c, &mut buffers.c);
        Ok(())
    }

    /// `zx = x · W_ihᵀ` for every step at once: `(seq_len · batch, gates · hidden_size)`,
    /// step `t` in rows `t · batch .. (t + 1) · batch`.
    fn project_inputs(&self, input: ArrayView3<'_, C::Elem>) -> Result<Array2<C::Elem>> {
        let (seq_len, batch, input_size) = input.dim();
        let weight_ih = self.cell.weights().weight_ih;
        let rows: CowArray<'_, C::Elem, Ix2> = input
            .to_shape(((seq_len * batch, input_size), Order::RowMajor))
            // Same element count, and `to_shape` copies when the layout needs it: infallible.
            .expect(
                "(seq_len, batch, input_size) always reshapes to (seq_len · batch, input_size)",
            );
        let mut zx = Array2::zeros((seq_len * batch, weight_ih.nrows()));
        linalg::matmul_nt(
            C::Elem::one(),
            rows.view(),
            weight_ih.view(),
            C::Elem::zero(),
            zx.view_mut(),
        )?;
        Ok(zx)
    }

    fn biases(&self, dims: CellDims) -> Biases<'_, C::Elem> {
        let gate_rows = self.gate_rows(dims);
        let weights = self.cell.weights();
        Biases {
            ih: bias_slice(weights.bias_ih, gate_rows),
            hh: bias_slice(weights.bias_hh, gate_rows),
        }
    }

    fn step_buffers(&self, dims: CellDims, batch: usize) -> StepBuffers<C::Elem> {
        StepBuffers {
            zh: Array2::zeros((batch, self.gate_rows(dims))),
            h: Array2::zeros((batch, dims.hidden_size)),
            c: Array2::zeros((batch, dims.hidden_size)),
            scratch: Array2::zeros((batch, C::SPEC.scratch.len(dims.hidden_size))),
        }
    }

    /// Rows of the gate-stacked weights: `gates · hidden_size`.
    fn gate_rows(&self, dims: CellDims) -> usize {
        C::SPEC.num_gates() * dims.hidden_size
    }

    /// The cell's dims, after checking that every weight has the shape they imply, is
    /// contiguous (generated steps read weights as flat slices), and that the layer can run
    /// them.
    fn checked_dims(&self) -> Result<CellDims> {
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
        let gate_rows = self.gate_rows(dims);
        let weights = self.cell.weights();
        expect_shape(
            "weight_ih",
            &[gate_rows, dims.input_size],
            weights.weight_ih.shape(),
        )?;
        expect_shape(
            "weight_hh",
            &[gate_rows, dims.recurrent_size],
            weights.weight_hh.shape(),
        )?;
        for (name, bias) in [("bias_ih", weights.bias_ih), ("bias_hh", weights.bias_hh)] {
            if let Some(bias) = bias {
                expect_shape(name, &[gate_rows], bias.shape())?;
            }
        }
        let mut tensors = Ok(());
        self.cell.visit(&mut |name, tensor| {
            if tensors.is_err() {
                return;
            }
            let spec = C::SPEC.params.iter().find(|param| param.name == name);
            if let Some(spec) = spec {
                let len = spec.shape.len(C::SPEC.num_gates(), dims.hidden_size);
                tensors = expect_shape(name, &[len], tensor.shape());
            }
            if tensors.is_ok() && !tensor.is_standard_layout() {
                tensors = Err(Error::NotContiguous { what: name.into() });
            }
        });
        tensors.map(|()| dims)
    }
}

/// `(h0, c0)` checked against the cell, copied into the state buffers; zeros when absent.
fn initial_state<F: Float>(
    dims: CellDims,
    batch: usize,
    initial: Option<InitialState<'_, F>>,
) -> Result<State<F>> {
    // Allocated in standard layout whatever the layout of `h0`, `c0`: steps take flat slices.
    let mut state = State {
        h: Array2::zeros((batch, dims.recurrent_size)),
        c: Array2::zeros((batch, dims.hidden_size)),
    };
    if let Some((h0, c0)) = initial {
        expect_shape("h0", state.h.shape(), h0.shape())?;
        expect_shape("c0", state.c.shape(), c0.shape())?;
        state.h.assign(&h0);
        state.c.assign(&c0);
    }
    Ok(state)
}

/// A bias as a slice: borrowed when contiguous, copied otherwise, zeros when absent.
fn bias_slice<F: Float>(bias: Option<&Array1<F>>, gate_rows: usize) -> Cow<'_, [F]> {
    match bias {
        Some(bias) => match bias.as_slice() {
            Some(values) => Cow::Borrowed(values),
            None => Cow::Owned(bias.to_vec()),
        },
        None => Cow::Owned(vec![F::zero(); gate_rows]),
    }
}

/// The elements of a buffer this module allocated, in row-major order.
fn flat<F>(buffer: &Array2<F>) -> &[F] {
    // Every buffer here comes from `Array2::zeros`, which is in standard layout, and is never
    // re-strided, so the slice always exists.
    buffer
        .as_slice()
        .expect("layer buffers are in standard layout")
}

/// The elements of a buffer this module allocated, in row-major order, mutably.
fn flat_mut<F>(buffer: &mut Array2<F>) -> &mut [F] {
    // As in `flat`: allocated by `Array2::zeros`, never re-strided.
    buffer
        .as_slice_mut()
        .expect("layer buffers are in standard layout")
}
