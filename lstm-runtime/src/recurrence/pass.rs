//! [`Pass`]: one (layer, direction) set up for one call, what the forward and backward time
//! loops (`forward.rs`, `backward.rs`) run on. Setting up checks the weights against the
//! config's dims, borrows the biases as flat slices, projects the constant input once, and
//! applies weight drop to a copy of `weight_hh`; [`Run`] is a pass's state and workspaces
//! between chunks, allocated once per call, and [`DirectionTape`] what a training pass
//! records for backward.

use std::borrow::Cow;
use std::sync::OnceLock;

use ndarray::{Array, Array1, Array2, Array3, ArrayView2, Axis, Dimension, IntoDimension, s};
use num_traits::{One, Zero};

use super::mask::{InvalidOutput, Validity};
use super::split_units::{SplitBuffers, UnitSplit};
use crate::cell::{Cell, CellDims};
use crate::direction::Direction;
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::linalg::ordered::FewRows;
use crate::linalg::{self, heads::Blocks, step::StepRhs};
use crate::parallel::helper_thread;
use crate::parallel::threads::num_threads;
use crate::regularization::in_recurrence::InRecurrence;

/// Multiply-adds of a call's recurrent products from which its time loop runs with a helper
/// thread (`parallel/helper_thread.rs`), which costs tens of microseconds to start (once per
/// calling thread) or to wake after it has gone to sleep between calls.
const HELPER_MIN_WORK: usize = 1 << 22;

/// Multiply-adds of one step's recurrent product from which a stepper splits its steps on a
/// helper thread:
/// below, the hand-overs between the cores cost about what the split saves (README,
/// Performance).
const STEP_HELPER_MIN_WORK: usize = 1 << 15;

/// Time steps whose input projection runs as one GEMM, at most.
const CHUNK_STEPS: usize = 64;

/// Rows (steps × batch) of a chunk's input projection from which it takes fewer steps: the
/// GEMM runs at full speed from about a thousand rows, and its result, `gates · hidden`
/// values per row, is workspace that training holds beside the whole tape.
const CHUNK_ROWS: usize = 1024;

/// Values of a chunk's input projection (rows × `gates · hidden`) that a layer narrower than
/// 2048 gate rows still fills, with more than [`CHUNK_ROWS`] rows: each GEMM call packs all
/// of `W_ih`, which a narrow layer's few multiply-adds per row repay only over more rows.
const CHUNK_VALUES: usize = 1 << 21;

/// Time steps whose input projection runs as one GEMM at `batch` rows per step and
/// `gate_rows` projected values per row: enough for [`CHUNK_ROWS`] rows and
/// [`CHUNK_VALUES`] values, at most [`CHUNK_STEPS`].
pub(crate) fn chunk_steps(batch: usize, gate_rows: usize) -> usize {
    let rows = CHUNK_ROWS.max(CHUNK_VALUES / gate_rows.max(1));
    rows.div_ceil(batch.max(1)).clamp(1, CHUNK_STEPS)
}

/// What a (layer, direction) needs to know about the call besides its weights.
pub(crate) struct Setup<'a, F> {
    /// The dims the weights must have.
    pub(crate) dims: CellDims,
    /// Which steps of which rows are real.
    pub(crate) validity: &'a Validity,
    /// What invalid steps output.
    pub(crate) invalid_output: InvalidOutput,
    /// The order of the walk over the steps.
    pub(crate) direction: Direction,
    /// The call's constant input `(batch, constant_size)`, for a cell that reads one.
    pub(crate) constants: Option<ArrayView2<'a, F>>,
    /// The regularisers the loop applies in this call.
    pub(crate) regularization: InRecurrence<'a, F>,
}

/// One (layer, direction) set up for one call: the cell, its optional projection, the biases
/// as steps read them, the constant input's projection, and the call's validity.
pub(crate) struct Pass<'a, C: Cell> {
    pub(crate) cell: &'a C,
    /// LSTMP projection `(proj_size, hidden_size)`.
    pub(crate) weight_hr: Option<&'a Array2<C::Elem>>,
    pub(crate) dims: CellDims,
    pub(crate) biases: Biases<'a, C::Elem>,
    /// `constants · W_cᵀ`, `(batch, gates · hidden_size)`, computed once per call; `(0, 0)`
    /// for a cell without a constant input.
    pub(crate) constant: Array2<C::Elem>,
    pub(crate) direction: Direction,
    pub(crate) validity: &'a Validity,
    pub(crate) invalid_output: InvalidOutput,
    /// The regularisers the loop applies in this call.
    pub(crate) reg: InRecurrence<'a, C::Elem>,
    /// `weight_hh ⊙ mask` under weight drop, made once per call.
    weight_hh_dropped: Option<Array2<C::Elem>>,
    /// [`Self::weight_hh`] packed for the forward steps' `h_prev · W_hhᵀ`, on first use (a
    /// pass set up for backward only never packs it).
    pub(super) recurrent: OnceLock<StepRhs>,
    /// `weight_ih` laid out for the input projections that do not run on the `gemm` crate
    /// (too few rows for its blocked kernels, or any f32 projection at the AVX-512 level;
    /// `linalg/ordered.rs`), on first use.
    pub(super) weight_ih_few: OnceLock<FewRows<C::Elem>>,
    /// The cell split by units for batch-1 steps on two threads (`split_units/`), made by
    /// [`Self::start`] when the call's steps run that way.
    pub(super) units: OnceLock<Option<UnitSplit<C>>>,
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
    /// The other carried states, packed: `(batch, states · hidden_size)`
    /// ([`CellSpec::states`](crate::CellSpec::states), `c` first).
    pub(crate) c: Array2<F>,
    /// Whether each row has had a valid step yet: its output at an invalid step repeats `h`
    /// (carried from that step) under Keras semantics, or is zero before any.
    pub(crate) seen: Vec<bool>,
}

/// What one step writes, allocated once per call and reused by every step.
pub(crate) struct StepBuffers<F> {
    /// Recurrent projection `h_prev · W_hhᵀ`: `(batch, gates · hidden_size)`.
    pub(super) zh: Array2<F>,
    /// The cell's new hidden state, before any projection: `(batch, hidden_size)`.
    pub(super) h_cell: Array2<F>,
    /// The projected new hidden state: `(batch, recurrent_size)`; `(0, 0)` without projection.
    pub(super) h_proj: Array2<F>,
    /// The step's new carried states: `(batch, states · hidden_size)`.
    pub(super) c: Array2<F>,
    /// The cell's working memory: `(batch, spec.scratch.len(hidden_size))`.
    pub(super) scratch: Array2<F>,
    /// `h_prev` under recurrent dropout: `(batch, recurrent_size)`, or `(0, 0)`.
    pub(super) h_dropped: Array2<F>,
    /// Which rows the step is valid for.
    pub(super) valid: Vec<bool>,
    /// What a recording call keeps of every step ([`Run::record`]).
    pub(super) recording: Option<Recording<F>>,
}

/// The values a recording call keeps of one (layer, direction) at every step.
pub(crate) struct Recording<F> {
    /// Every gate of the cell's `SPEC.record` at the current step:
    /// `(batch, record.len() · hidden_size)`.
    gates: Array2<F>,
    /// Each wanted value (a gate's letter, `c` or `h`) and its values `(seq_len, batch,
    /// hidden_size)`, zero at invalid steps.
    pub(crate) values: Vec<(&'static str, Array3<F>)>,
}

/// A direction's state between chunks, with its workspaces.
pub(crate) struct Run<F> {
    pub(crate) state: State<F>,
    pub(super) buffers: StepBuffers<F>,
    /// Input projection of one chunk: `(chunk steps · batch, gates · hidden_size)`.
    pub(super) zx: Array2<F>,
    /// One chunk's input under input dropout: `(chunk steps · batch, input_size)`, or
    /// `(0, 0)`.
    pub(super) x_dropped: Array2<F>,
    /// The two threads' workspaces when the steps are split by units (`split_units/`).
    pub(super) units: Option<SplitBuffers<F>>,
}

/// What a training pass records about one direction, for backward (`backward.rs`). Per-step
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
    /// The carried states before the first step and after every step, by processing order:
    /// `((T + 1) · batch, states · hidden_size)`, block `s` is the `c_prev` of step `s`.
    pub(crate) c_states: Array2<F>,
    /// Under zoneout of `c`, the cell's own new `c` (before zoneout kept some units' old
    /// values), by time: `(T · batch, hidden_size)`; `(0, hidden_size)` otherwise (zoneout
    /// of `c` is for cells whose only carried state besides `h` is `c`).
    pub(crate) c_cell: Array2<F>,
}

impl<'a, C: Cell> Pass<'a, C> {
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
        Ok(Pass {
            cell,
            weight_hr,
            dims,
            biases: Biases {
                ih: bias_slice(weights.bias_ih, gate_rows),
                hh: bias_slice(weights.bias_hh, gate_rows),
            },
            constant,
            direction: setup.direction,
            validity: setup.validity,
            invalid_output: setup.invalid_output,
            reg,
            weight_hh_dropped,
            recurrent: OnceLock::new(),
            weight_ih_few: OnceLock::new(),
            units: OnceLock::new(),
        })
    }

    /// Whether the time loop runs nothing between one step's cell update and the next step's
    /// product: no projection of `h`, no recurrent dropout, no zoneout. Each step then reads
    /// only what the cell wrote, so the steps of a row (or of a unit) can follow each other on
    /// one thread.
    pub(crate) fn nothing_between_steps(&self) -> bool {
        self.weight_hr.is_none()
            && self.reg.recurrent.is_none()
            && !self.reg.zoneout_c.is_on()
            && !self.reg.zoneout_h.is_on()
    }

    /// The dense recurrent product's operand: the weights `weight_hh` returns, made ready
    /// once per call (packed where the kernels of `linalg/packed.rs` run). A block-diagonal
    /// recurrence has its own (`linalg/heads.rs`).
    pub(crate) fn dense_rhs(&self) -> &StepRhs {
        self.recurrent
            .get_or_init(|| StepRhs::transposed(self.weight_hh()))
    }

    /// The recurrent weights the steps multiply by: `weight_hh`, masked under weight drop.
    pub(crate) fn weight_hh(&self) -> ArrayView2<'_, C::Elem> {
        match &self.weight_hh_dropped {
            Some(dropped) => dropped.view(),
            None => self.cell.weights().weight_hh.view(),
        }
    }

    /// The blocks of a block-diagonal recurrence (`heads > 1`), whose products run block by
    /// block (`linalg/heads.rs`); `None` for a dense one, which runs as it always has.
    pub(crate) fn blocks(&self) -> Option<Blocks> {
        (self.dims.heads > 1).then_some(Blocks {
            gates: C::SPEC.num_gates(),
            hidden: self.dims.hidden_size,
            heads: self.dims.heads,
        })
    }

    /// Rows of the gate-stacked weights: `gates · hidden_size`.
    pub(crate) fn gate_rows(&self) -> usize {
        C::SPEC.num_gates() * self.dims.hidden_size
    }

    /// Whether `seq_len` steps of `batch` rows are worth a helper thread for their time loop
    /// (`parallel/helper_thread.rs`), which costs tens of microseconds to start.
    pub(crate) fn helper_worth_it(&self, seq_len: usize, batch: usize) -> bool {
        let work = seq_len
            .saturating_mul(batch)
            .saturating_mul(self.gate_rows())
            .saturating_mul(self.dims.head_size());
        work >= HELPER_MIN_WORK
    }

    /// Whether one step of `batch` rows is worth a helper thread kept beside a caller that
    /// steps one call at a time (a stepper): from [`STEP_HELPER_MIN_WORK`] multiply-adds of
    /// the recurrent product.
    pub(crate) fn step_worth_a_helper(&self, batch: usize) -> bool {
        batch
            .saturating_mul(self.gate_rows())
            .saturating_mul(self.dims.head_size())
            >= STEP_HELPER_MIN_WORK
    }

    /// A run starting from `(h0, c0)` (`c0` packs every carried state) with workspaces for chunks of up to [`chunk_steps`]
    /// steps of a `seq_len`-step sequence.
    pub(crate) fn start(
        &self,
        h0: ArrayView2<'_, C::Elem>,
        c0: ArrayView2<'_, C::Elem>,
        seq_len: usize,
    ) -> Run<C::Elem> {
        let helper = self.helper_worth_it(seq_len, h0.nrows());
        self.start_with(h0, c0, seq_len, helper)
    }

    /// As [`Pass::start`], for steps that run with a helper thread (`parallel/helper_thread.rs`)
    /// if `helper`, whatever their number.
    pub(crate) fn start_with(
        &self,
        h0: ArrayView2<'_, C::Elem>,
        c0: ArrayView2<'_, C::Elem>,
        seq_len: usize,
        helper: bool,
    ) -> Run<C::Elem> {
        let batch = h0.nrows();
        let hidden = self.dims.hidden_size;
        let gate_rows = self.gate_rows();
        let proj_rows = if self.weight_hr.is_some() { batch } else { 0 };
        let chunk_rows = seq_len.min(chunk_steps(batch, gate_rows)) * batch;
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
                c: Array2::zeros((batch, C::SPEC.state_width(hidden))),
                scratch: Array2::zeros((batch, C::SPEC.scratch.len(hidden))),
                h_dropped: Array2::zeros(if_some(self.reg.recurrent, batch)),
                valid: vec![true; batch],
                recording: None,
            },
            zx: zeros_by_both((chunk_rows, gate_rows)),
            x_dropped: Array2::zeros(if_some(self.reg.input, chunk_rows)),
            units: self
                .unit_split(batch, helper)
                .map(|split| split.buffers(seq_len.min(chunk_steps(batch, gate_rows)))),
        }
    }

    /// The cell split by units (`split_units/`) if steps of `batch` rows run that way: one
    /// row, a cell whose units do not interact and an input no deeper than one pass of the
    /// packed kernels, no projection, no masks, no dropout or zoneout, two threads and a
    /// helper thread for the loop (`helper`), and `f32` with the packed kernels; a dense
    /// recurrence (the split packs each half's rows of a dense `weight_hh`).
    fn unit_split(&self, batch: usize, helper: bool) -> Option<&UnitSplit<C>> {
        let applies = batch == 1
            && self.dims.heads == 1
            && UnitSplit::<C>::applies(self.dims.input_size, self.dims.hidden_size)
            && self.nothing_between_steps()
            && *self.validity == Validity::All
            && self.reg.input.is_none()
            && num_threads() >= 2
            && helper;
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
        let width = C::SPEC.state_width(hidden);
        let mut c_states = zeros_by_both(((seq_len + 1) * batch, width));
        c_states.slice_mut(s![..batch, ..]).assign(&c0);
        let cell_rows = if self.weight_hr.is_some() {
            seq_len * batch
        } else {
            0
        };
        DirectionTape {
            seq_len,
            cache: zeros_by_both((seq_len * batch, C::SPEC.cache.len(hidden))),
            h_prev: zeros_by_both((seq_len * batch, self.dims.recurrent_size)),
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
}

impl<F: Float> Run<F> {
    /// Makes this run keep the values `names` (letters of `record`, the cell's recorded
    /// gates, or `c`, `h`) at each of `seq_len` steps; the run then steps without splitting
    /// its units between threads.
    pub(crate) fn record(&mut self, names: &[&'static str], record: &[&str], seq_len: usize) {
        let (batch, hidden) = self.buffers.h_cell.dim();
        self.units = None;
        self.buffers.recording = Some(Recording {
            gates: Array2::zeros((batch, record.len() * hidden)),
            values: names
                .iter()
                .map(|&name| (name, Array3::zeros((seq_len, batch, hidden))))
                .collect(),
        });
    }

    /// The recorded values, if this run recorded.
    pub(crate) fn take_recording(&mut self) -> Vec<(&'static str, Array3<F>)> {
        self.buffers
            .recording
            .take()
            .map_or_else(Vec::new, |recording| recording.values)
    }

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

impl<F: Float> Recording<F> {
    /// The buffer the cell's recording step writes every gate of one step into.
    pub(super) fn gates(&mut self) -> &mut [F] {
        flat_mut(&mut self.gates)
    }

    /// Keeps step `t`'s wanted values: gates from the step's record (`record` is the cell's
    /// `SPEC.record`), the states from the packed `states` (blocks named by `state_names`,
    /// the cell's `SPEC.states`) and `h` as given; zeros for the rows not `valid` at this
    /// step.
    pub(super) fn store(
        &mut self,
        t: usize,
        (record, state_names): (&[&str], &[&str]),
        states: &Array2<F>,
        h: &Array2<F>,
        valid: &[bool],
    ) {
        let hidden = h.ncols();
        for (name, values) in &mut self.values {
            let mut at_t = values.index_axis_mut(Axis(0), t);
            let state = state_names.iter().position(|s| s == name);
            let source = match (*name, state) {
                (_, Some(k)) => states.slice(s![.., k * hidden..(k + 1) * hidden]),
                ("h", None) => h.view(),
                (gate, None) => {
                    // `Run::record` takes only the cell's recorded gates besides the states
                    // and `h`.
                    let k = record.iter().position(|g| *g == gate).unwrap_or_default();
                    self.gates.slice(s![.., k * hidden..(k + 1) * hidden])
                }
            };
            for ((mut out, row), &valid) in
                at_t.outer_iter_mut().zip(source.outer_iter()).zip(valid)
            {
                if valid {
                    out.assign(&row);
                } else {
                    out.fill(F::zero());
                }
            }
        }
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
        &[gate_rows, dims.head_size()],
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

/// An array of zeros of `shape`, written by both threads where a helper thread runs
/// (`helper_thread::filled`): for a call's output and its chunk's workspace, megabytes each.
pub(crate) fn zeros_by_both<F: Float, D: Dimension>(
    shape: impl IntoDimension<Dim = D>,
) -> Array<F, D> {
    let shape = shape.into_dimension();
    let len = shape
        .size_checked()
        .expect("a layer's buffer sizes are checked before its call runs (`alloc.rs`)");
    Array::from_shape_vec(shape, helper_thread::filled(len, F::zero()))
        .expect("as many values as the shape holds")
}

/// An owned copy of `view` in standard layout, whatever the layout of `view`.
pub(crate) fn standard<F: Float>(view: ArrayView2<'_, F>) -> Array2<F> {
    let mut owned = Array2::zeros(view.raw_dim());
    owned.assign(&view);
    owned
}

/// The elements of a buffer this crate allocated, in row-major order.
pub(crate) fn flat<F>(buffer: &Array2<F>) -> &[F] {
    // Every buffer passed here comes from `Array2::zeros` (or `standard`, `zeros_by_both`), in
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
