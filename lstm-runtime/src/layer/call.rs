//! What goes into a call of [`Lstm`](super::Lstm) and what comes out: the per-call inputs
//! besides the sequence ([`Call`]: lengths or mask, initial state, constants, training mode),
//! the outputs ([`LstmOutput`], with [`Output`] for the two output shapes), and for training
//! the gradients that flow back in ([`OutputGrad`]) and out ([`LstmGradients`]).

use std::collections::BTreeMap;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewD};

use crate::params::Gradients;
use crate::regularization::masks::RecurrentMasks;

/// Everything a call takes besides the input sequence. `Call::default()` is a plain
/// inference call: no lengths or mask, zero (or, when stateful, carried) initial state, no
/// constants, dropout off.
#[derive(Clone, Copy, Debug, Default)]
pub struct Call<'a, F> {
    /// Valid steps per sequence, one per batch row, each at most `seq_len` (PyTorch
    /// `pack_padded_sequence` semantics): outputs past a sequence's length are zero, `h_n` and
    /// `c_n` are the states at its last valid step, and the reverse direction runs over its
    /// valid part only. A length of 0 gives zero outputs and the initial state as final state.
    /// Exclusive with `mask`.
    pub lengths: Option<&'a [usize]>,
    /// Keras mask, `(batch, seq_len)` in either layout, `true` where a step is real: at a masked
    /// step the state is carried unchanged and the output repeats the previous output (zeros before
    /// the first valid step) or is zero with
    /// [`LstmConfig::zero_output_for_mask`](super::config::LstmConfig::zero_output_for_mask). Holes
    /// may be anywhere. Exclusive with `lengths`.
    pub mask: Option<ArrayView2<'a, bool>>,
    /// `(h0, c0)`: `h0` is `(num_layers · num_directions, batch, output_size)`, `c0`
    /// `(num_layers · num_directions, batch, hidden_size)`, in PyTorch's order (layer-major,
    /// forward before reverse). `None` starts from zeros, or from the carried state of a
    /// stateful layer. A cell without a cell state (a GRU) takes [`Call::initial_h`] instead.
    pub initial_state: Option<(ArrayView3<'a, F>, ArrayView3<'a, F>)>,
    /// `h0` alone, shaped as in [`Call::initial_state`], every other state starting at zero
    /// (the initial state of an `h`-only cell such as a GRU). Exclusive with `initial_state`.
    pub initial_h: Option<ArrayView3<'a, F>>,
    /// Initial values of the states a spec declares besides `h` and `c` (`n`, `m` of the
    /// sLSTM), by name, each `(num_layers · num_directions, batch, hidden_size)`; a state
    /// not listed starts at zero. `c` may be given here too (then not in `initial_state`).
    pub initial_states: &'a [(&'a str, ArrayView3<'a, F>)],
    /// The per-sequence constant input `(batch, constant_size)` (Keras `constants`), for cells
    /// whose spec declares one; every layer and direction reads it.
    pub constants: Option<ArrayView2<'a, F>>,
    /// Training mode (PyTorch `module.train()`, Keras `training=True`): dropout between
    /// layers, input and recurrent dropout, weight drop and zoneout draw their masks; off,
    /// the layer is the undropped one and zoneout takes its expectation.
    pub training: bool,
    /// Masks to apply instead of drawing them (a training call only), e.g. from
    /// [`Lstm::sample_masks`](super::Lstm::sample_masks) or built by hand: one entry per (layer,
    /// direction), each mask present exactly when its rate in the config is above 0.
    pub masks: Option<&'a RecurrentMasks<F>>,
    /// Values to record at every step of every layer and direction (an inference call,
    /// [`Lstm::forward`](super::Lstm::forward), only): gates by letter (`i`, `f`, `g`, `o`,
    /// after their activation, as the cell's [`CellSpec::record`](crate::CellSpec::record)
    /// lists them), `c` (the new cell state) and `h` (the cell's output, before any
    /// projection). They come back in [`LstmOutput::records`].
    pub record: Option<&'a [&'a str]>,
}

impl<'a, F> Call<'a, F> {
    /// A call with every option off (as [`Call::default`]).
    pub fn new() -> Self {
        Call {
            lengths: None,
            mask: None,
            initial_state: None,
            initial_h: None,
            initial_states: &[],
            constants: None,
            training: false,
            masks: None,
            record: None,
        }
    }

    /// Sets [`Call::lengths`].
    pub fn with_lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }

    /// Sets [`Call::mask`].
    pub fn with_mask(mut self, mask: ArrayView2<'a, bool>) -> Self {
        self.mask = Some(mask);
        self
    }

    /// Sets [`Call::initial_state`].
    pub fn with_initial_state(mut self, h0: ArrayView3<'a, F>, c0: ArrayView3<'a, F>) -> Self {
        self.initial_state = Some((h0, c0));
        self
    }

    /// Sets [`Call::initial_h`]: `h0` alone.
    pub fn with_h0(mut self, h0: ArrayView3<'a, F>) -> Self {
        self.initial_h = Some(h0);
        self
    }

    /// Sets [`Call::initial_states`]: `Call::new().with_initial_states(&[("n", n0.view())])`.
    pub fn with_initial_states(mut self, states: &'a [(&'a str, ArrayView3<'a, F>)]) -> Self {
        self.initial_states = states;
        self
    }

    /// Sets [`Call::constants`].
    pub fn with_constants(mut self, constants: ArrayView2<'a, F>) -> Self {
        self.constants = Some(constants);
        self
    }

    /// Sets [`Call::training`].
    pub fn with_training(mut self, training: bool) -> Self {
        self.training = training;
        self
    }

    /// Sets [`Call::masks`].
    pub fn with_masks(mut self, masks: &'a RecurrentMasks<F>) -> Self {
        self.masks = Some(masks);
        self
    }

    /// Sets [`Call::record`]: `Call::new().with_record(&["i", "f", "c"])`.
    pub fn with_record(mut self, names: &'a [&'a str]) -> Self {
        self.record = Some(names);
        self
    }
}

/// The mode of a call, as [`Call::training`] sets it: training (PyTorch `module.train()`,
/// Keras `training=True`) draws the masks of every dropout and zoneout; inference applies no
/// dropout and zoneout's expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No dropout; zoneout takes its expectation.
    Inference,
    /// Dropout and zoneout draw (or are given) their masks.
    Training,
}

impl Mode {
    /// The mode `call` asks for.
    pub(crate) fn of<F>(call: &Call<'_, F>) -> Self {
        if call.training {
            Mode::Training
        } else {
            Mode::Inference
        }
    }
}

/// A layer's output in one of its two shapes.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<F> {
    /// Every step (`return_sequences = true`): `(seq_len, batch, features)`, or
    /// `(batch, seq_len, features)` when `batch_first`.
    Sequence(Array3<F>),
    /// Each sequence's last valid output (`return_sequences = false`): `(batch, features)`;
    /// zeros for a sequence without valid steps.
    Last(Array2<F>),
}

impl<F> Output<F> {
    /// The sequence, if this is one.
    pub fn sequence(&self) -> Option<&Array3<F>> {
        match self {
            Output::Sequence(sequence) => Some(sequence),
            Output::Last(_) => None,
        }
    }

    /// The last outputs, if this is them.
    pub fn last(&self) -> Option<&Array2<F>> {
        match self {
            Output::Last(last) => Some(last),
            Output::Sequence(_) => None,
        }
    }

    /// The sequence, if this is one, by value.
    pub fn into_sequence(self) -> Option<Array3<F>> {
        match self {
            Output::Sequence(sequence) => Some(sequence),
            Output::Last(_) => None,
        }
    }

    /// The last outputs, if this is them, by value.
    pub fn into_last(self) -> Option<Array2<F>> {
        match self {
            Output::Last(last) => Some(last),
            Output::Sequence(_) => None,
        }
    }

    /// Either shape as a dynamic-dimensional view (what [`OutputGrad::output`] mirrors).
    pub fn view(&self) -> ArrayViewD<'_, F> {
        match self {
            Output::Sequence(sequence) => sequence.view().into_dyn(),
            Output::Last(last) => last.view().into_dyn(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Output::Sequence(sequence) => sequence.shape(),
            Output::Last(last) => last.shape(),
        }
    }
}

/// What a call returns: PyTorch's `output, (h_n, c_n)`, shaped by the config.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmOutput<F> {
    /// The last layer's (merged) output. Features: `output_size` (`proj_size` or
    /// `hidden_size`) per direction, twice that for a concatenating bidirectional layer; with
    /// [`MergeMode::None`](super::bidirectional::MergeMode::None) the forward direction's.
    pub output: Output<F>,
    /// The reverse direction's output under
    /// [`MergeMode::None`](super::bidirectional::MergeMode::None), else `None`.
    pub output_reverse: Option<Output<F>>,
    /// Final hidden states `(num_layers · num_directions, batch, output_size)` in PyTorch's
    /// order; `None` when `return_state` is off.
    pub h_n: Option<Array3<F>>,
    /// Final cell states `(num_layers · num_directions, batch, hidden_size)`; `None` when
    /// `return_state` is off or the cell carries no cell state (a GRU).
    pub c_n: Option<Array3<F>>,
    /// Final values of the states the spec declares besides `h` and `c` (`n`, `m` of the
    /// sLSTM), by name, each `(num_layers · num_directions, batch, hidden_size)`; empty when
    /// `return_state` is off or the cell declares none.
    pub states: BTreeMap<String, Array3<F>>,
    /// What [`Call::record`] asked for, named `{name}_l{layer}` and `{name}_l{layer}_reverse`
    /// (`f_l0`, `c_l1_reverse`): each `(seq_len, batch, hidden_size)`, or `(batch, seq_len,
    /// hidden_size)` with `batch_first`, in the order the layer processed the steps (reversed
    /// under `go_backwards`, as the outputs); zero at steps past a sequence's length or
    /// masked out. Empty when nothing was asked.
    pub records: BTreeMap<String, Array3<F>>,
}

/// The gradient of a loss with respect to what a call returned, for
/// [`Lstm::backward`](super::Lstm::backward). Each part is optional (absent means zero) and shaped
/// like what it is the gradient of.
#[derive(Clone, Debug, Default)]
pub struct OutputGrad<'a, F> {
    /// `dL/d output`, shaped like [`LstmOutput::output`] (a sequence in the call's layout, or
    /// the last outputs).
    pub output: Option<ArrayViewD<'a, F>>,
    /// `dL/d output_reverse` under [`MergeMode::None`](super::bidirectional::MergeMode::None).
    pub output_reverse: Option<ArrayViewD<'a, F>>,
    /// `dL/dh_n`: `(num_layers · num_directions, batch, output_size)`.
    pub h_n: Option<ArrayView3<'a, F>>,
    /// `dL/dc_n`: `(num_layers · num_directions, batch, hidden_size)`.
    pub c_n: Option<ArrayView3<'a, F>>,
    /// `dL/d(final state)` of states the spec declares besides `h` (`n`, `m` of the sLSTM), by
    /// the names [`LstmOutput::states`] gives them, each `(num_layers · num_directions, batch,
    /// hidden_size)`; as with [`Call::with_initial_states`], `c` may be named here instead of
    /// in [`OutputGrad::c_n`].
    pub states: &'a [(&'a str, ArrayView3<'a, F>)],
}

/// Everything [`Lstm::backward`](super::Lstm::backward) returns.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmGradients<F> {
    /// Gradients of every parameter, keyed like [`Parameters`](crate::params::Parameters) names
    /// them (`weight_ih_l0`, `bias_hh_l1_reverse`, `weight_hr_l0`, `{param}_l0`,
    /// `weight_{constant}_l0`).
    pub params: Gradients<F>,
    /// `dL/d input`, shaped like the input (in the call's layout); zero at padding.
    pub input: Array3<F>,
    /// `dL/dh0`: `(num_layers · num_directions, batch, output_size)`.
    pub h0: Array3<F>,
    /// `dL/dc0`: `(num_layers · num_directions, batch, hidden_size)`; `(…, batch, 0)` for a
    /// cell without a cell state.
    pub c0: Array3<F>,
    /// `dL/d(initial state)` of each state the spec declares besides `h` and `c`, by name,
    /// each `(num_layers · num_directions, batch, hidden_size)`.
    pub states: BTreeMap<String, Array3<F>>,
    /// `dL/d constants`, `(batch, constant_size)`, when the call had constants.
    pub constants: Option<Array2<F>>,
}
