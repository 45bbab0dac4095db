//! Unrolling one cell over a sequence in one direction: the time loop every layer runs.
//!
//! A forward pass is two kinds of work. The input projection `zx = x · W_ihᵀ` does not depend
//! on the recurrence, so it runs as one GEMM per chunk of [`chunk_steps`] time steps (chunks
//! keep the workspace, and inference memory, independent of the sequence length). Then the
//! time loop: per step one GEMM for the recurrent projection `zh = h_prev · W_hhᵀ`, the
//! cell's fused elementwise step (which adds the biases and yields `h` and `c`), the
//! projection `h = W_hr · h` of an LSTMP layer, and the per-row settling of the state (rows
//! whose step is masked keep theirs). Every buffer the loop touches is allocated before it
//! starts.
//!
//! [`Direction`] is one (layer, direction) set up for one call, [`Run`] its state between
//! chunks, [`DirectionTape`] what a training pass records for `bptt.rs`. The regularisers of
//! `masks.rs` act at three points: the input before the projection (input dropout, one
//! elementwise pass per chunk before the GEMM), `h_prev` before the recurrent GEMM (recurrent
//! dropout; weight drop uses a masked copy of `weight_hh` made once per call), and the state
//! after the step (zoneout).
//!
//! At batch 1, with two threads, a cell whose units do not read each other runs each chunk
//! split by units instead (`units.rs`): each thread projects, multiplies and steps half of
//! the units, and only `h` crosses between the cores.
//!
//! [`Rnn`] is the plain public face of one direction: no masks, no projection.

use std::borrow::Cow;
use std::sync::OnceLock;

use ndarray::{
    Array1, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, CowArray,
    Ix2, Order, s,
};
use num_traits::{One, Zero};

use crate::error::{Error, Result, expect_shape};
use crate::linalg::StepRhs;
use crate::mask::{InvalidOutput, Validity};
use crate::masks::{InRecurrence, mask_rows};
use crate::units::{Chunk, SideTape, SplitBuffers, UnitSplit};
use crate::{Cell, CellDims, Float, StepIo, duet, linalg, split};

/// Multiply-adds of a call's recurrent products from which its time loop runs in a duet.
const DUET_MIN_WORK: usize = 1 << 22;

/// Time steps whose input projection runs as one GEMM, at most.
const CHUNK_STEPS: usize = 64;

/// Rows (steps × batch) of a chunk's input projection from which it takes fewer steps: the
/// GEMM runs at full speed from about a thousand rows, and its result, `gates · hidden`
/// values per row, is workspace that training holds beside the whole tape.
const CHUNK_ROWS: usize = 1024;

/// Time steps whose input projection runs as one GEMM at `batch` rows per step: enough for
/// [`CHUNK_ROWS`] rows, at most [`CHUNK_STEPS`].
pub(crate) fn chunk_steps(batch: usize) -> usize {
    CHUNK_ROWS.div_ceil(batch.max(1)).clamp(1, CHUNK_STEPS)
}

/// One recurrent layer in one direction: a cell unrolled over time.
///
/// The layer owns the cell and its weights. Inputs are time-major, `(seq_len, batch,
/// input_size)` (PyTorch's default `batch_first=False`). For masks, lengths, stacking,
/// bidirectional layers and projections use [`crate::Lstm`].
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
        let direction = Direction::new(
            &self.cell,
            None,
            "",
            Setup {
                dims,
                validity: &validity,
                invalid_output: InvalidOutput::Zero,
                reverse: false,
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
        let mut run = direction.start(h0.view(), c0.view(), seq_len);
        let mut output = Array3::zeros((seq_len, batch, dims.hidden_size));
        direction.run_sequence(input, &mut run, Some(output.view_mut()), None)?;
        Ok(RnnOutput {
            output,
            h_n: run.state.h,
            c_n: run.state.c,
        })
    }
}

/// What a (layer, direction) needs to know about the call besides its weights.
pub(crate) struct Setup<'a, F> {
    /// The dims the weights must have.
    pub(crate) dims: CellDims,
    /// Which steps of which rows are real.
    pub(crate) validity: &'a Validity,
    /// What invalid steps output.
    pub(crate) invalid_output: InvalidOutput,
    /// Walk the steps `t = T−1..0` instead of `0..T`.
    pub(crate) reverse: bool,
    /// The call's constant input `(batch, constant_size)`, for a cell that reads one.
    pub(crate) constants: Option<ArrayView2<'a, F>>,
    /// The regularisers the loop applies in this call.
    pub(crate) regularization: InRecurrence<'a, F>,
}

/// One (layer, direction) set up for one call: the cell, its optional projection, the biases
/// as steps read them, the constant input's projection, and the call's validity.
pub(crate) struct Direction<'a, C: Cell> {
    pub(crate) cell: &'a C,
    /// LSTMP projection `(proj_size, hidden_size)`.
    pub(crate) weight_hr: Option<&'a Array2<C::Elem>>,
    pub(crate) dims: CellDims,
    pub(crate) biases: Biases<'a, C::Elem>,
    /// `constants · W_cᵀ`, `(batch, gates · hidden_size)`, computed once per call; `(0, 0)`
    /// for a cell without a constant input.
    pub(crate) constant: Array2<C::Elem>,
    pub(crate) reverse: bool,
    pub(crate) validity: &'a Validity,
    pub(crate) invalid_output: InvalidOutput,
    /// The regularisers the loop applies in this call.
    pub(crate) reg: InRecurrence<'a, C::Elem>,
    /// `weight_hh ⊙ mask` under weight drop, made once per call.
    weight_hh_dropped: Option<Array2<C::Elem>>,
    /// [`Self::weight_hh`] packed for the forward steps' `h_prev · W_hhᵀ`, on first use (a
    /// direction set up for backward only never packs it).
    recurrent: OnceLock<StepRhs>,
    /// The cell split by units for batch-1 steps on two threads (`units.rs`), made by
    /// [`Self::start`] when the call's steps run that way.
    units: OnceLock<Option<UnitSplit<C>>>,
}

/// The biases as every step reads them: gate-stacked slices, zeros for a cell without bias.
pub(crate) struct Biases<'a, F: Clone> {
    /// `b_ih`: `gates · hidden_size`.
    pub(crate) ih: Cow<'a, [F]>,
    /// `b_hh`: `gates · hidden_size`.
    pub(crate) hh: Cow<'a, [F]>,
}

/// The recurrent state carried from one step to the next.
pub(crate) struct State<F> {
    /// `(batch, recurrent_size)`.
    pub(crate) h: Array2<F>,
    /// `(batch, hidden_size)`.
    pub(crate) c: Array2<F>,
    /// Whether each row has had a valid step yet: its output at an invalid step repeats `h`
    /// (carried from that step) under Keras semantics, or is zero before any.
    pub(crate) seen: Vec<bool>,
}

/// What one step writes, allocated once per call and reused by every step.
pub(crate) struct StepBuffers<F> {
    /// Recurrent projection `h_prev · W_hhᵀ`: `(batch, gates · hidden_size)`.
    zh: Array2<F>,
    /// The cell's new hidden state, before any projection: `(batch, hidden_size)`.
    h_cell: Array2<F>,
    /// The projected new hidden state: `(batch, recurrent_size)`; `(0, 0)` without projection.
    h_proj: Array2<F>,
    /// The step's new cell state: `(batch, hidden_size)`.
    c: Array2<F>,
    /// The cell's working memory: `(batch, spec.scratch.len(hidden_size))`.
    scratch: Array2<F>,
    /// `h_prev` under recurrent dropout: `(batch, recurrent_size)`, or `(0, 0)`.
    h_dropped: Array2<F>,
    /// Which rows the step is valid for.
    valid: Vec<bool>,
}

/// A direction's state between chunks, with its workspaces.
pub(crate) struct Run<F> {
    pub(crate) state: State<F>,
    buffers: StepBuffers<F>,
    /// Input projection of one chunk: `(chunk steps · batch, gates · hidden_size)`.
    zx: Array2<F>,
    /// One chunk's input under input dropout: `(chunk steps · batch, input_size)`, or
    /// `(0, 0)`.
    x_dropped: Array2<F>,
    /// The two threads' workspaces when the steps are split by units (`units.rs`).
    units: Option<SplitBuffers<F>>,
}

/// What a training pass records about one direction, for backward (`bptt.rs`). Per-step
/// blocks of `batch` rows; "by time" blocks sit at the step's time index `t`, "by processing
/// order" blocks at the step's position `s` in the walk (`s = t`, or `T − 1 − t` reversed).
#[derive(Clone, Debug)]
pub(crate) struct DirectionTape<F> {
    /// Steps recorded.
    pub(crate) seq_len: usize,
    /// The cell's cache of every step, by time: `(T · batch, spec.cache.len(hidden))`.
    pub(crate) cache: Array2<F>,
    /// The recurrent input `h_prev` of every step, by time: `(T · batch, recurrent_size)`.
    pub(crate) h_prev: Array2<F>,
    /// The cell's `h` before projection, by time: `(T · batch, hidden_size)`; `(0, hidden)`
    /// without projection.
    pub(crate) h_cell: Array2<F>,
    /// The cell state before the first step and after every step, by processing order:
    /// `((T + 1) · batch, hidden_size)`, block `s` is the `c_prev` of step `s`.
    pub(crate) c_states: Array2<F>,
    /// Under zoneout of `c`, the cell's own new `c` (before zoneout kept some units' old
    /// values), by time: `(T · batch, hidden_size)`; `(0, hidden_size)` otherwise.
    pub(crate) c_cell: Array2<F>,
}

impl<'a, C: Cell> Direction<'a, C> {
    /// Sets up `cell` (and its projection) for one call, after checking every weight against
    /// `setup.dims`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] or [`Error::NotContiguous`] naming the weight (with `suffix`,
    /// `_l1_reverse`, appended), [`Error::Config`] naming `constants` if the cell reads a
    /// constant input and none is given.
    pub(crate) fn new(
        cell: &'a C,
        weight_hr: Option<&'a Array2<C::Elem>>,
        suffix: &str,
        setup: Setup<'a, C::Elem>,
    ) -> Result<Self> {
        let dims = setup.dims;
        check_weights(cell, weight_hr, dims, suffix)?;
        let gate_rows = C::SPEC.num_gates() * dims.hidden_size;
        let weights = cell.weights();
        let constant = match (weights.weight_constant, setup.constants) {
            (Some(weight), Some(constants)) => {
                let mut projection = Array2::zeros((constants.nrows(), gate_rows));
                linalg::matmul_nt(
                    C::Elem::one(),
                    constants,
                    weight.view(),
                    C::Elem::zero(),
                    projection.view_mut(),
                )?;
                projection
            }
            (Some(_), None) => {
                return Err(Error::Config {
                    option: "constants".into(),
                    reason: format!(
                        "cell `{}` reads the constant input `{}`; pass it in the call",
                        C::SPEC.name,
                        C::SPEC.constant.unwrap_or("constant"),
                    ),
                });
            }
            (None, _) => Array2::zeros((0, 0)),
        };
        let reg = setup.regularization;
        let weight_hh_dropped = reg.weight_hh.map(|mask| &mask * weights.weight_hh);
        Ok(Direction {
            cell,
            weight_hr,
            dims,
            biases: Biases {
                ih: bias_slice(weights.bias_ih, gate_rows),
                hh: bias_slice(weights.bias_hh, gate_rows),
            },
            constant,
            reverse: setup.reverse,
            validity: setup.validity,
            invalid_output: setup.invalid_output,
            reg,
            weight_hh_dropped,
            recurrent: OnceLock::new(),
            units: OnceLock::new(),
        })
    }

    /// The recurrent weights the steps multiply by: `weight_hh`, masked under weight drop.
    pub(crate) fn weight_hh(&self) -> ArrayView2<'_, C::Elem> {
        match &self.weight_hh_dropped {
            Some(dropped) => dropped.view(),
            None => self.cell.weights().weight_hh.view(),
        }
    }

    /// Rows of the gate-stacked weights: `gates · hidden_size`.
    pub(crate) fn gate_rows(&self) -> usize {
        C::SPEC.num_gates() * self.dims.hidden_size
    }

    /// The time index of the `s`-th step of the walk over `seq_len` steps.
    pub(crate) fn time_of(&self, s: usize, seq_len: usize) -> usize {
        if self.reverse { seq_len - 1 - s } else { s }
    }

    /// A run starting from `(h0, c0)` with workspaces for chunks of up to [`chunk_steps`]
    /// steps of a `seq_len`-step sequence.
    pub(crate) fn start(
        &self,
        h0: ArrayView2<'_, C::Elem>,
        c0: ArrayView2<'_, C::Elem>,
        seq_len: usize,
    ) -> Run<C::Elem> {
        let batch = c0.nrows();
        let hidden = self.dims.hidden_size;
        let gate_rows = self.gate_rows();
        let proj_rows = if self.weight_hr.is_some() { batch } else { 0 };
        let chunk_rows = seq_len.min(chunk_steps(batch)) * batch;
        let if_some = |mask: Option<ArrayView2<'_, C::Elem>>, rows: usize| match mask {
            Some(mask) => (rows, mask.ncols()),
            None => (0, 0),
        };
        Run {
            state: State {
                h: standard(h0),
                c: standard(c0),
                seen: vec![false; batch],
            },
            buffers: StepBuffers {
                zh: Array2::zeros((batch, gate_rows)),
                h_cell: Array2::zeros((batch, hidden)),
                h_proj: Array2::zeros((proj_rows, self.dims.recurrent_size)),
                c: Array2::zeros((batch, hidden)),
                scratch: Array2::zeros((batch, C::SPEC.scratch.len(hidden))),
                h_dropped: Array2::zeros(if_some(self.reg.recurrent, batch)),
                valid: vec![true; batch],
            },
            zx: Array2::zeros((chunk_rows, gate_rows)),
            x_dropped: Array2::zeros(if_some(self.reg.input, chunk_rows)),
            units: self
                .unit_split(seq_len, batch)
                .map(|split| split.buffers(seq_len.min(chunk_steps(batch)))),
        }
    }

    /// The cell split by units (`units.rs`) if this call's `seq_len` steps of `batch` rows run
    /// that way: one row, a cell whose units do not interact, no projection, no masks, no
    /// dropout or zoneout, two threads and enough work for a duet, and `f32` with the packed
    /// kernels.
    fn unit_split(&self, seq_len: usize, batch: usize) -> Option<&UnitSplit<C>> {
        let applies = batch == 1
            && UnitSplit::<C>::applies(self.dims.hidden_size)
            && self.weight_hr.is_none()
            && *self.validity == Validity::All
            && self.reg.input.is_none()
            && self.reg.recurrent.is_none()
            && !self.reg.zoneout_c.is_on()
            && !self.reg.zoneout_h.is_on()
            && linalg::num_threads() >= 2
            && self.duet_worth_it(seq_len, batch);
        if !applies {
            return None;
        }
        self.units
            .get_or_init(|| {
                UnitSplit::new(
                    self.cell,
                    self.weight_hh(),
                    &self.biases.ih,
                    &self.biases.hh,
                    self.constant.view(),
                )
            })
            .as_ref()
    }

    /// An empty tape for a `seq_len`-step pass starting from `c0`.
    pub(crate) fn tape(
        &self,
        seq_len: usize,
        c0: ArrayView2<'_, C::Elem>,
    ) -> DirectionTape<C::Elem> {
        let batch = c0.nrows();
        let hidden = self.dims.hidden_size;
        let mut c_states = Array2::zeros(((seq_len + 1) * batch, hidden));
        c_states.slice_mut(s![..batch, ..]).assign(&c0);
        let cell_rows = if self.weight_hr.is_some() {
            seq_len * batch
        } else {
            0
        };
        DirectionTape {
            seq_len,
            cache: Array2::zeros((seq_len * batch, C::SPEC.cache.len(hidden))),
            h_prev: Array2::zeros((seq_len * batch, self.dims.recurrent_size)),
            h_cell: Array2::zeros((cell_rows, hidden)),
            c_states,
            c_cell: Array2::zeros((
                if self.reg.zoneout_c.is_on() {
                    seq_len * batch
                } else {
                    0
                },
                hidden,
            )),
        }
    }

    /// Runs every step of `input: (seq_len, batch, input_size)` (time-major, any layout) in
    /// this direction's order, chunk by chunk. Writes each step's output at its time index
    /// into `output: (seq_len, batch, recurrent_size)` if given, and records into `tape` if
    /// given.
    pub(crate) fn run_sequence(
        &self,
        input: ArrayView3<'_, C::Elem>,
        run: &mut Run<C::Elem>,
        mut output: Option<ArrayViewMut3<'_, C::Elem>>,
        mut tape: Option<&mut DirectionTape<C::Elem>>,
    ) -> Result<()> {
        let seq_len = input.len_of(Axis(0));
        let batch = input.len_of(Axis(1));
        let chunk = chunk_steps(batch);
        let mut starts: Vec<usize> = (0..seq_len).step_by(chunk).collect();
        if self.reverse {
            starts.reverse();
        }
        duet::with_duet(self.duet_worth_it(seq_len, batch), || {
            for t0 in starts {
                let t1 = (t0 + chunk).min(seq_len);
                let chunk_output = output
                    .as_mut()
                    .map(|output| output.slice_mut(s![t0..t1, .., ..]));
                self.run_chunk(
                    input.slice(s![t0..t1, .., ..]),
                    t0,
                    seq_len,
                    run,
                    chunk_output,
                    tape.as_deref_mut(),
                )?;
            }
            Ok(())
        })
    }

    /// Whether `seq_len` steps of `batch` rows are worth a duet (`duet.rs`) for their time
    /// loop: the helper thread costs tens of microseconds to start.
    pub(crate) fn duet_worth_it(&self, seq_len: usize, batch: usize) -> bool {
        let work = seq_len
            .saturating_mul(batch)
            .saturating_mul(self.gate_rows())
            .saturating_mul(self.dims.recurrent_size);
        work >= DUET_MIN_WORK
    }

    /// Runs the steps `t0 .. t0 + steps` of a `seq_len`-step sequence, given their input
    /// `(steps, batch, input_size)`, in this direction's order; outputs go to `output`
    /// `(steps, batch, recurrent_size)` at the step's offset in the chunk.
    pub(crate) fn run_chunk(
        &self,
        input: ArrayView3<'_, C::Elem>,
        t0: usize,
        seq_len: usize,
        run: &mut Run<C::Elem>,
        mut output: Option<ArrayViewMut3<'_, C::Elem>>,
        mut tape: Option<&mut DirectionTape<C::Elem>>,
    ) -> Result<()> {
        let (steps, batch, input_size) = input.dim();
        let step_len = batch * self.gate_rows();
        let rows: CowArray<'_, C::Elem, Ix2> = input
            .to_shape(((steps * batch, input_size), Order::RowMajor))
            // Same element count, and `to_shape` copies when the layout needs it: infallible.
            .expect("(steps, batch, input_size) always reshapes to (steps · batch, input_size)");
        if let (Some(Some(split)), Some(buffers)) = (self.units.get(), run.units.as_mut())
            && duet::active()
        {
            let x = rows.as_standard_layout();
            let at = split.at();
            let output = match output {
                Some(output) => {
                    let (first, second) = output.index_axis_move(Axis(1), 0).split_at(Axis(1), at);
                    [Some(first), Some(second)]
                }
                None => [None, None],
            };
            let tape = match tape {
                Some(tape) => {
                    let (rows, hidden) = (tape.cache.nrows(), self.dims.hidden_size);
                    let cache = tape
                        .cache
                        .view_mut()
                        .into_shape_with_order((rows, C::SPEC.cache.per_unit, hidden))
                        .expect(
                            "a unit-local cell caches only per-unit values (`UnitSplit::applies`)",
                        );
                    let (cache, cache2) = cache.split_at(Axis(2), at);
                    let (h_prev, h_prev2) = tape.h_prev.view_mut().split_at(Axis(1), at);
                    let (c_states, c_states2) = tape.c_states.view_mut().split_at(Axis(1), at);
                    [
                        Some(SideTape {
                            cache,
                            h_prev,
                            c_states,
                        }),
                        Some(SideTape {
                            cache: cache2,
                            h_prev: h_prev2,
                            c_states: c_states2,
                        }),
                    ]
                }
                None => [None, None],
            };
            split.run_chunk(
                Chunk {
                    x: x.view(),
                    reverse: self.reverse,
                    t0,
                    seq_len,
                },
                flat_mut(&mut run.state.h),
                flat_mut(&mut run.state.c),
                buffers,
                output,
                tape,
            );
            if steps > 0 {
                run.state.seen.fill(true);
            }
            return Ok(());
        }
        // Input dropout: the same mask at every step, applied once before the projection.
        let rows = match self.reg.input {
            Some(mask) => {
                let dropped = run.x_dropped.slice_mut(s![..steps * batch, ..]);
                mask_rows(rows.view(), mask, dropped, |out, x| *out = x);
                run.x_dropped.slice(s![..steps * batch, ..])
            }
            None => rows.view(),
        };
        linalg::matmul_nt(
            C::Elem::one(),
            rows,
            self.cell.weights().weight_ih.view(),
            C::Elem::zero(),
            run.zx.slice_mut(s![..steps * batch, ..]),
        )?;
        let zx = flat(&run.zx);
        for k in 0..steps {
            let k = if self.reverse { steps - 1 - k } else { k };
            let t = t0 + k;
            let zx_t = &zx[k * step_len..(k + 1) * step_len];
            self.step(
                t,
                seq_len,
                zx_t,
                &mut run.state,
                &mut run.buffers,
                tape.as_deref_mut(),
            )?;
            if let Some(output) = output.as_mut() {
                self.write_output(
                    &run.state,
                    &run.buffers.valid,
                    output.index_axis_mut(Axis(0), k),
                );
            }
        }
        Ok(())
    }

    /// One time step `t`: the recurrent GEMM, the cell's step, the projection, and the
    /// settling of masked rows; `state` becomes the new state.
    fn step(
        &self,
        t: usize,
        seq_len: usize,
        zx_t: &[C::Elem],
        state: &mut State<C::Elem>,
        buffers: &mut StepBuffers<C::Elem>,
        mut tape: Option<&mut DirectionTape<C::Elem>>,
    ) -> Result<()> {
        let all_valid = self.validity.fill_step(t, &mut buffers.valid);
        let batch = state.c.nrows();
        if state.c.is_empty() {
            // No batch rows or no units: nothing to compute, and generated steps need not
            // handle empty blocks.
            return Ok(());
        }
        // Recurrent dropout: the step sees `h_prev ⊙ mask`; the carried state is undropped.
        let h_in = match self.reg.recurrent {
            Some(mask) => {
                ndarray::Zip::from(&mut buffers.h_dropped)
                    .and(&state.h)
                    .and(&mask)
                    .for_each(|dropped, &h, &m| *dropped = h * m);
                &buffers.h_dropped
            }
            None => &state.h,
        };
        if let Some(tape) = tape.as_deref_mut() {
            tape.h_prev
                .slice_mut(s![t * batch..(t + 1) * batch, ..])
                .assign(h_in);
        }
        self.recurrent
            .get_or_init(|| StepRhs::transposed(self.weight_hh()))
            .product(self.weight_hh(), h_in.view(), buffers.zh.view_mut(), false)?;
        linalg::prefetch(flat(&buffers.zh));
        let h_prev: &[C::Elem] = if C::SPEC.reads_h_prev {
            flat(h_in)
        } else {
            &[]
        };
        let io = StepIo {
            rows: batch,
            zx: zx_t,
            zh: flat(&buffers.zh),
            bias_ih: &self.biases.ih,
            bias_hh: &self.biases.hh,
            constant: flat(&self.constant),
            c_prev: flat(&state.c),
            h_prev,
            h: flat_mut(&mut buffers.h_cell),
            c: flat_mut(&mut buffers.c),
            scratch: flat_mut(&mut buffers.scratch),
        };
        let cache = tape.as_deref_mut().map(|tape| {
            let cache_len = C::SPEC.cache.len(self.dims.hidden_size) * batch;
            &mut flat_mut(&mut tape.cache)[t * cache_len..(t + 1) * cache_len]
        });
        split::step(self.cell, io, self.gate_rows(), cache);
        let next_h = match self.weight_hr {
            Some(weight_hr) => {
                linalg::matmul_nt(
                    C::Elem::one(),
                    buffers.h_cell.view(),
                    weight_hr.view(),
                    C::Elem::zero(),
                    buffers.h_proj.view_mut(),
                )?;
                if let Some(tape) = tape.as_deref_mut() {
                    tape.h_cell
                        .slice_mut(s![t * batch..(t + 1) * batch, ..])
                        .assign(&buffers.h_cell);
                }
                &mut buffers.h_proj
            }
            None => &mut buffers.h_cell,
        };
        // Zoneout: some units keep their previous state (in inference, the expectation).
        if self.reg.zoneout_c.is_on() {
            if let Some(tape) = tape.as_deref_mut() {
                tape.c_cell
                    .slice_mut(s![t * batch..(t + 1) * batch, ..])
                    .assign(&buffers.c);
            }
            self.reg
                .zoneout_c
                .blend(t, state.c.view(), buffers.c.view_mut());
        }
        self.reg
            .zoneout_h
            .blend(t, state.h.view(), next_h.view_mut());
        // Rows whose step is masked keep their state: copied, not blended, so whatever the
        // step computed for them is dropped.
        if !all_valid {
            for (row, _) in buffers.valid.iter().enumerate().filter(|(_, v)| !**v) {
                next_h.row_mut(row).assign(&state.h.row(row));
                buffers.c.row_mut(row).assign(&state.c.row(row));
            }
        }
        std::mem::swap(&mut state.h, next_h);
        std::mem::swap(&mut state.c, &mut buffers.c);
        for (seen, valid) in state.seen.iter_mut().zip(&buffers.valid) {
            *seen |= *valid;
        }
        if let Some(tape) = tape {
            let s = if self.reverse { seq_len - 1 - t } else { t };
            tape.c_states
                .slice_mut(s![(s + 1) * batch..(s + 2) * batch, ..])
                .assign(&state.c);
        }
        Ok(())
    }

    /// The step's output `(batch, recurrent_size)`: the new `h` of valid rows; for the others
    /// zeros, or under Keras' repeat policy the carried `h` (the row's last valid output)
    /// once the row has had a valid step.
    fn write_output(
        &self,
        state: &State<C::Elem>,
        valid: &[bool],
        mut output: ArrayViewMut2<'_, C::Elem>,
    ) {
        let repeat = self.invalid_output == InvalidOutput::RepeatPrevious;
        for (row, mut out) in output.axis_iter_mut(Axis(0)).enumerate() {
            if valid[row] || (repeat && state.seen[row]) {
                out.assign(&state.h.row(row));
            } else {
                out.fill(C::Elem::zero());
            }
        }
    }
}

impl<F: Float> Run<F> {
    /// Each row's last valid output `(batch, recurrent_size)`: its `h` after its last valid
    /// step, zeros for a row that had none.
    pub(crate) fn last_output(&self) -> Array2<F> {
        let mut last = self.state.h.clone();
        for (mut row, seen) in last.axis_iter_mut(Axis(0)).zip(&self.state.seen) {
            if !seen {
                row.fill(F::zero());
            }
        }
        last
    }
}

/// Checks every weight of `cell` (and the projection) against `dims`: shapes, and standard
/// layout (generated steps read weights as flat slices). Names carry `suffix`.
pub(crate) fn check_weights<C: Cell>(
    cell: &C,
    weight_hr: Option<&Array2<C::Elem>>,
    dims: CellDims,
    suffix: &str,
) -> Result<()> {
    let gate_rows = C::SPEC.num_gates() * dims.hidden_size;
    let weights = cell.weights();
    let name = |base: &str| format!("{base}{suffix}");
    expect_shape(
        &name("weight_ih"),
        &[gate_rows, dims.input_size],
        weights.weight_ih.shape(),
    )?;
    expect_shape(
        &name("weight_hh"),
        &[gate_rows, dims.recurrent_size],
        weights.weight_hh.shape(),
    )?;
    for (base, bias) in [("bias_ih", weights.bias_ih), ("bias_hh", weights.bias_hh)] {
        match bias {
            Some(bias) => expect_shape(&name(base), &[gate_rows], bias.shape())?,
            None if dims.bias => return Err(Error::shape_mismatch(name(base), &[gate_rows], &[])),
            None => {}
        }
    }
    if let Some(weight) = weights.weight_constant {
        expect_shape(
            &name(&format!(
                "weight_{}",
                C::SPEC.constant.unwrap_or("constant")
            )),
            &[gate_rows, dims.constant_size],
            weight.shape(),
        )?;
    }
    match weight_hr {
        Some(weight_hr) => expect_shape(
            &name("weight_hr"),
            &[dims.recurrent_size, dims.hidden_size],
            weight_hr.shape(),
        )?,
        None if dims.recurrent_size != dims.hidden_size => {
            return Err(Error::shape_mismatch(
                name("weight_hr"),
                &[dims.recurrent_size, dims.hidden_size],
                &[],
            ));
        }
        None => {}
    }
    let mut tensors = Ok(());
    cell.visit(&mut |tensor_name, tensor| {
        if tensors.is_err() {
            return;
        }
        let spec = C::SPEC
            .params
            .iter()
            .find(|param| param.name == tensor_name);
        if let Some(spec) = spec {
            let len = spec.shape.len(C::SPEC.num_gates(), dims.hidden_size);
            tensors = expect_shape(&name(tensor_name), &[len], tensor.shape());
        }
        if tensors.is_ok() && !tensor.is_standard_layout() {
            tensors = Err(Error::NotContiguous {
                what: name(tensor_name),
            });
        }
    });
    tensors
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

/// An owned copy of `view` in standard layout, whatever the layout of `view`.
pub(crate) fn standard<F: Float>(view: ArrayView2<'_, F>) -> Array2<F> {
    let mut owned = Array2::zeros(view.raw_dim());
    owned.assign(&view);
    owned
}

/// The elements of a buffer this crate allocated, in row-major order.
pub(crate) fn flat<F>(buffer: &Array2<F>) -> &[F] {
    // Every buffer passed here comes from `Array2::zeros` (or `standard`), which is in
    // standard layout, and is never re-strided, so the slice always exists.
    buffer
        .as_slice()
        .expect("layer buffers are in standard layout")
}

/// The elements of a buffer this crate allocated, in row-major order, mutably.
pub(crate) fn flat_mut<F>(buffer: &mut Array2<F>) -> &mut [F] {
    // As in `flat`: allocated by `Array2::zeros`, never re-strided.
    buffer
        .as_slice_mut()
        .expect("layer buffers are in standard layout")
}
