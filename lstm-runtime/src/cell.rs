//! The [`Cell`] trait: the contract between code that `#[lstm_cell]` generates and the
//! runtime that unrolls it.
//!
//! A cell owns its weights (PyTorch layout and names) and knows how to turn one time step's
//! gate pre-activations into the new state. It does **not** multiply matrices: the runtime
//! computes the input projection `zx = x · W_ihᵀ` for all time steps in one GEMM and the
//! recurrent projection `zh = h_prev · W_hhᵀ` once per step, then hands both to the cell's
//! fused elementwise step. Backward mirrors this: the cell's generated backward step turns
//! `dL/dh`, `dL/dc` into `dL/dzx`, `dL/dzh`, `dL/dc_prev` (and its own parameter gradients);
//! the runtime does the weight-gradient GEMMs.
//!
//! All slices are row-major blocks of `rows` batch rows. Within a row, gate-stacked buffers
//! (`zx`, `zh`, biases, `dzx`, …) hold the cell's gates one after another, `hidden` values
//! each, in the order of [`CellSpec::gates`] (a subset of PyTorch's i, f, g, o).

use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use crate::float::Float;

/// One of the four LSTM gates, in PyTorch's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gate {
    /// Input gate `i`.
    Input,
    /// Forget gate `f`.
    Forget,
    /// Cell candidate `g` (Keras calls it `c`).
    Cell,
    /// Output gate `o`.
    Output,
}

impl Gate {
    /// All gates in PyTorch order (i, f, g, o).
    pub const ALL: [Gate; 4] = [Gate::Input, Gate::Forget, Gate::Cell, Gate::Output];

    /// The gate's letter in PyTorch notation: `i`, `f`, `g`, `o`.
    pub fn letter(self) -> &'static str {
        match self {
            Gate::Input => "i",
            Gate::Forget => "f",
            Gate::Cell => "g",
            Gate::Output => "o",
        }
    }

    /// The gate's letter in Keras notation: `i`, `f`, `c`, `o`.
    pub fn keras_letter(self) -> &'static str {
        match self {
            Gate::Cell => "c",
            other => other.letter(),
        }
    }
}

/// Shape of an extra parameter a spec declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamShape {
    /// One value per hidden unit: shape `(hidden,)`.
    PerUnit,
    /// A single value: shape `(1,)`.
    Scalar,
    /// One value per gate and hidden unit, gate-stacked like the pre-activations:
    /// shape `(gates · hidden,)`.
    Gates,
}

impl ParamShape {
    /// Number of elements for a cell with `gates` gates and `hidden` units.
    pub fn len(self, gates: usize, hidden: usize) -> usize {
        match self {
            ParamShape::PerUnit => hidden,
            ParamShape::Scalar => 1,
            ParamShape::Gates => gates * hidden,
        }
    }
}

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's default for every LSTM parameter: uniform in `±1/√hidden`.
    Default,
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every element the given value.
    Constant(f64),
    /// Uniform in `[lo, hi)`.
    Uniform(f64, f64),
}

impl Init {
    /// Fills `values` according to this init for a cell with `hidden` units.
    pub fn fill<F: Float, R: Rng + ?Sized>(self, values: &mut [F], hidden: usize, rng: &mut R) {
        match self {
            Init::Default => {
                let bound = 1.0 / (hidden.max(1) as f64).sqrt();
                Init::Uniform(-bound, bound).fill(values, hidden, rng);
            }
            Init::Zeros => values.fill(F::zero()),
            Init::Ones => values.fill(F::one()),
            Init::Constant(c) => values.fill(F::of(c)),
            Init::Uniform(lo, hi) => {
                for v in values {
                    *v = F::of(lo + (hi - lo) * rng.random::<f64>());
                }
            }
        }
    }
}

/// An extra learned parameter declared by a spec (beyond PyTorch's four weights).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    /// Field name in the spec; also the weight key stem (`{name}_l{k}`).
    pub name: &'static str,
    /// Shape class.
    pub shape: ParamShape,
    /// Initialisation.
    pub init: Init,
}

/// One line of a cell's equations, for documentation and `lstm cells`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Equation {
    /// What is defined: `i`, `f`, `g`, `o`, `c`, `h`, `z`, `zx`, `zh`.
    pub name: &'static str,
    /// The right-hand side, in the spec language.
    pub rhs: &'static str,
    /// Whether the spec wrote it (`true`) or it is the standard LSTM's default (`false`).
    pub written: bool,
}

/// Everything static about a cell type: what the macro knew at compile time.
#[derive(Clone, Copy, Debug)]
pub struct CellSpec {
    /// snake_case name by which the command line selects the cell (`forget_bias`).
    pub name: &'static str,
    /// The Rust type name (`ForgetBias`).
    pub type_name: &'static str,
    /// The gates the cell computes from the weights, in weight-row order.
    pub gates: &'static [Gate],
    /// Extra parameters, in declaration order.
    pub params: &'static [ParamSpec],
    /// Name of the per-sequence constant input the spec declares (Keras `constants`), if
    /// any; its projection weight is `weight_{name}`.
    pub constant: Option<&'static str>,
    /// The equations of one step, as written and as defaulted.
    pub equations: &'static [Equation],
    /// Whether the step reads `h_prev` elementwise (then `proj_size` cannot be used).
    pub reads_h_prev: bool,
    /// Scratch the inference step needs per batch row: `per_unit · hidden + per_row` values.
    pub scratch: Workspace,
    /// What the training step caches per batch row and step for backward.
    pub cache: Workspace,
    /// Scratch the backward step needs per batch row.
    pub backward_scratch: Workspace,
    /// Whether `dL/dzx` and `dL/dzh` are always equal (the pre-activations enter only as the
    /// sum `zx + zh`): then backward writes only `dzx` and the runtime uses it for both.
    pub shared_preactivation_grad: bool,
    /// Whether every value of a hidden unit depends on that unit's values alone (no layer
    /// norm or other sum over the units, nor their count): a step over units `a..b` of a row
    /// is then the step of a cell of `b − a` units whose per-unit parameters are `a..b` of
    /// this cell's. The runtime splits batch-1 steps between two cores by units when it holds.
    pub unit_local: bool,
    /// The gates [`Cell::step_record`] writes (letters `i`, `f`, `g`, `o`), in the order of
    /// its `record` blocks: every gate the step evaluates, written or defaulted, including
    /// gates computed from others (a coupled `i = 1 - f`). Empty for a cell that records none.
    pub record: &'static [&'static str],
    /// The recurrent states the cell carries besides `h`, in the order the runtime packs
    /// them into its state buffers (`c_prev`, `c`, `dc`, … hold `states.len() · hidden`
    /// values per batch row, one block of `hidden` per state): `c` first when anything reads
    /// it, then the states the spec declares (`n: State`). `["c"]` for an LSTM, `[]` for an
    /// `h`-only cell such as a GRU, `["c", "n", "m"]` for the sLSTM.
    pub states: &'static [&'static str],
}

impl CellSpec {
    /// Whether the cell carries a cell state `c` (false for an `h`-only cell such as a GRU).
    pub fn carries_cell_state(&self) -> bool {
        self.states.contains(&"c")
    }

    /// The states the spec declares besides `h` and `c` (`n`, `m` for the sLSTM).
    pub fn extra_states(&self) -> &'static [&'static str] {
        match self.states.first() {
            Some(&"c") => &self.states[1..],
            _ => self.states,
        }
    }

    /// Values per batch row of the packed state buffers: `states.len() · hidden`.
    pub fn state_width(&self, hidden: usize) -> usize {
        self.states.len() * hidden
    }

    /// The block of state `name` in a packed state row: `block · hidden ..`.
    pub fn state_block(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| *s == name)
    }

    /// Number of gates computed from the weights.
    pub fn num_gates(&self) -> usize {
        self.gates.len()
    }
}

/// A per-row buffer size: `per_unit · hidden + per_row` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workspace {
    /// Values per hidden unit.
    pub per_unit: usize,
    /// Values per row independent of the hidden size (reduction results).
    pub per_row: usize,
}

impl Workspace {
    /// Values per batch row for a cell with `hidden` units.
    pub fn len(&self, hidden: usize) -> usize {
        self.per_unit * hidden + self.per_row
    }
}

/// Sizes that fix a cell's weight shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellDims {
    /// Features of the input `x` (PyTorch `input_size`).
    pub input_size: usize,
    /// Hidden units (PyTorch `hidden_size`, Keras `units`).
    pub hidden_size: usize,
    /// Width of the recurrent input `h_prev`: `hidden_size`, or `proj_size` for LSTMP.
    pub recurrent_size: usize,
    /// Whether `bias_ih`/`bias_hh` exist (PyTorch `bias`, Keras `use_bias`).
    pub bias: bool,
    /// Width `C` of the per-sequence constant input (Keras `constants`) the cell declares;
    /// 0 for a cell without one.
    pub constant_size: usize,
    /// Heads `K` of a block-diagonal recurrence: unit `j` reads only the `recurrent_size / K`
    /// values of `h_prev` of its head `j / (hidden_size / K)`, so `weight_hh` is
    /// `(gates · hidden_size, recurrent_size / K)`. 1 (dense) for every cell of today's
    /// layers; `K = hidden_size` is a diagonal recurrence (IndRNN-style).
    pub heads: usize,
}

impl CellDims {
    /// Dims of a plain cell: recurrent size equal to the hidden size, with biases.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        CellDims {
            input_size,
            hidden_size,
            recurrent_size: hidden_size,
            bias: true,
            constant_size: 0,
            heads: 1,
        }
    }

    /// Columns of `weight_hh`: `recurrent_size / heads`, the width of one head's slice of
    /// `h_prev` (all of it when dense).
    pub fn head_size(&self) -> usize {
        self.recurrent_size / self.heads.max(1)
    }
}

/// Borrowed view of the four PyTorch weights every cell has.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a, F> {
    /// `(gates · hidden, input_size)`.
    pub weight_ih: &'a Array2<F>,
    /// `(gates · hidden, recurrent_size / heads)` (see [`CellDims::heads`]).
    pub weight_hh: &'a Array2<F>,
    /// `(gates · hidden,)`, absent when the cell has no bias.
    pub bias_ih: Option<&'a Array1<F>>,
    /// `(gates · hidden,)`, absent when the cell has no bias.
    pub bias_hh: Option<&'a Array1<F>>,
    /// Projection of the cell's constant input, `(gates · hidden, constant_size)`, named
    /// `weight_{constant}`; absent when the spec declares no constant.
    pub weight_constant: Option<&'a Array2<F>>,
}

/// Mutable view of the four PyTorch weights every cell has.
#[derive(Debug)]
pub struct WeightsMut<'a, F> {
    /// `(gates · hidden, input_size)`.
    pub weight_ih: &'a mut Array2<F>,
    /// `(gates · hidden, recurrent_size / heads)` (see [`CellDims::heads`]).
    pub weight_hh: &'a mut Array2<F>,
    /// `(gates · hidden,)`, absent when the cell has no bias.
    pub bias_ih: Option<&'a mut Array1<F>>,
    /// `(gates · hidden,)`, absent when the cell has no bias.
    pub bias_hh: Option<&'a mut Array1<F>>,
    /// Projection of the cell's constant input, `(gates · hidden, constant_size)`.
    pub weight_constant: Option<&'a mut Array2<F>>,
}

/// Inputs and outputs of one forward step over a block of `rows` batch rows.
#[derive(Debug)]
pub struct StepIo<'a, F> {
    /// Batch rows in this block.
    pub rows: usize,
    /// `W_ih · x` for this step, no bias: `rows × gates·hidden`.
    pub zx: &'a [F],
    /// `W_hh · h_prev`, no bias: `rows × gates·hidden`.
    pub zh: &'a [F],
    /// `b_ih`, gate-stacked (`gates·hidden`); zeros when the cell has no bias.
    pub bias_ih: &'a [F],
    /// `b_hh`, gate-stacked (`gates·hidden`); zeros when the cell has no bias.
    pub bias_hh: &'a [F],
    /// The constant input's projection `W_c · constant` (computed once per call, the same
    /// at every step): `rows × gates·hidden`; empty when the spec declares no constant.
    pub constant: &'a [F],
    /// Previous carried states: `rows × states·hidden` ([`CellSpec::states`], `c` first).
    pub c_prev: &'a [F],
    /// Previous hidden state: `rows × hidden` if the cell reads it, else may be empty.
    pub h_prev: &'a [F],
    /// New hidden state (before any projection): `rows × hidden`.
    pub h: &'a mut [F],
    /// New carried states: `rows × states·hidden`.
    pub c: &'a mut [F],
    /// Working memory: `rows × spec.scratch.len(hidden)` (the generated steps reuse the first
    /// row's share for every row).
    pub scratch: &'a mut [F],
}

/// Inputs and outputs of one backward step over a block of `rows` batch rows.
#[derive(Debug)]
pub struct BackwardIo<'a, F> {
    /// Batch rows in this block.
    pub rows: usize,
    /// `dL/dh` of this step's cell output (before projection): `rows × hidden`.
    pub dh: &'a [F],
    /// `dL/d(state)` of this step's new carried states, from later steps:
    /// `rows × states·hidden`.
    pub dc: &'a [F],
    /// The step's previous carried states: `rows × states·hidden`.
    pub c_prev: &'a [F],
    /// The step's new carried states: `rows × states·hidden`.
    pub c: &'a [F],
    /// The step's previous hidden state: `rows × hidden` if the cell reads it, else empty.
    pub h_prev: &'a [F],
    /// `b_ih`, gate-stacked (`gates·hidden`); zeros when the cell has no bias.
    pub bias_ih: &'a [F],
    /// `b_hh`, gate-stacked (`gates·hidden`); zeros when the cell has no bias.
    pub bias_hh: &'a [F],
    /// The constant input's projection, as the forward step read it: `rows × gates·hidden`,
    /// empty when the spec declares no constant.
    pub constant: &'a [F],
    /// What the training step cached: `rows × spec.cache.len(hidden)`.
    pub cache: &'a [F],
    /// Output `dL/dzx`: `rows × gates·hidden`.
    pub dzx: &'a mut [F],
    /// Output `dL/dzh`: `rows × gates·hidden`; empty when
    /// [`CellSpec::shared_preactivation_grad`] (then it equals `dzx`).
    pub dzh: &'a mut [F],
    /// Output `dL/d(previous carried states)`: `rows × states·hidden`.
    pub dc_prev: &'a mut [F],
    /// Output: the part of `dL/dh_prev` that flows through the cell's own elementwise use of
    /// `h_prev` (not through `W_hh`): `rows × hidden` if the cell reads it, else empty.
    pub dh_prev: &'a mut [F],
    /// Accumulated (`+=`, summed over this row's steps) `dL/d(constant projection)`:
    /// `rows × gates·hidden`, empty when the spec declares no constant.
    pub dconstant: &'a mut [F],
    /// Accumulated (`+=`, summed over rows) `dL/db_ih`, gate-stacked (`gates·hidden`); the
    /// runtime passes a throw-away buffer when the cell has no bias.
    pub dbias_ih: &'a mut [F],
    /// Accumulated `dL/db_hh`, gate-stacked (`gates·hidden`).
    pub dbias_hh: &'a mut [F],
    /// Working memory: `rows × spec.backward_scratch.len(hidden)` (the generated steps reuse
    /// the first row's share for every row).
    pub scratch: &'a mut [F],
}

/// A recurrent cell: weights plus fused step functions, as `#[lstm_cell]` generates them.
///
/// The runtime's layers are generic over this trait; nothing in them knows which cell runs.
pub trait Cell: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Element type of weights and activations.
    type Elem: Float;

    /// Static facts about the cell type.
    const SPEC: &'static CellSpec;

    /// A cell with freshly initialised weights (PyTorch's uniform `±1/√hidden` for the four
    /// weights, the spec's inits for its parameters).
    fn init<R: Rng + ?Sized>(dims: CellDims, rng: &mut R) -> Self;

    /// A cell of the given dims with every weight zero (gradient accumulators).
    fn zeros(dims: CellDims) -> Self;

    /// The sizes this cell's weights have. A cell alone cannot tell a block-diagonal
    /// `weight_hh` from a projected layer's narrower one, so its `recurrent_size` is
    /// `weight_hh`'s width and `heads` is 1: [`Cell::zeros`] of these dims has this cell's
    /// shapes; a layer's config ([`LstmConfig::cell_dims`](crate::LstmConfig::cell_dims))
    /// says which of the two a narrow `weight_hh` is.
    fn dims(&self) -> CellDims;

    /// The four PyTorch weights.
    fn weights(&self) -> Weights<'_, Self::Elem>;

    /// The four PyTorch weights, mutably.
    fn weights_mut(&mut self) -> WeightsMut<'_, Self::Elem>;

    /// Visits every tensor (weights, then the spec's parameters) with its name.
    fn visit(&self, visitor: &mut dyn FnMut(&'static str, ArrayViewD<'_, Self::Elem>));

    /// Visits every tensor mutably (weights, then the spec's parameters) with its name.
    fn visit_mut(&mut self, visitor: &mut dyn FnMut(&'static str, ArrayViewMutD<'_, Self::Elem>));

    /// Inference step: new `h` and `c` from the pre-activations and the previous state.
    fn step(&self, io: StepIo<'_, Self::Elem>);

    /// Training step: as [`Cell::step`], and stores in `cache`
    /// (`rows × SPEC.cache.len(hidden)`) what [`Cell::step_backward`] will need.
    fn step_train(&self, io: StepIo<'_, Self::Elem>, cache: &mut [Self::Elem]);

    /// Inference step that also writes the value of every gate in [`CellSpec::record`]:
    /// `record` is `rows × record.len() · hidden`, per row one block of `hidden` values per
    /// gate. The default, for a cell that records nothing, is [`Cell::step`].
    fn step_record(&self, io: StepIo<'_, Self::Elem>, record: &mut [Self::Elem]) {
        let _ = record;
        self.step(io);
    }

    /// Backward step: pre-activation and previous-state gradients from the state gradients;
    /// accumulates bias gradients into `io.dbias_*` and the spec's parameter gradients into
    /// the matching fields of `grads` (the four weights of `grads` are left to the runtime).
    fn step_backward(&self, io: BackwardIo<'_, Self::Elem>, grads: &mut Self);
}
