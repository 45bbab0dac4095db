//! [`LstmConfig`]: every option of a recurrent layer around a cell, with PyTorch's defaults,
//! the names PyTorch's `nn.LSTM` and Keras' `LSTM`/`RNN`/`Bidirectional` give each option,
//! and the checks that reject impossible combinations before any weight is made (in
//! `config/validate.rs`).
//!
//! A config fixes the shapes of every (layer, direction) cell ([`LstmConfig::cell_dims`]);
//! [`Lstm`](super::Lstm) builds its cells from it and reads the per-call semantics (layout,
//! masks, merging, states) from it.

use super::bidirectional::MergeMode;
use super::initializers::{Framework, Initializers};
use crate::cell::CellDims;
use crate::regularization::constraint::Constraints;
use crate::regularization::masks::{MaskShapes, Rates};
use crate::regularization::penalty::Regularizers;

mod validate;

/// Everything that shapes a recurrent layer: sizes, stacking, directions, projection and the
/// semantics of a call. Defaults follow PyTorch's `nn.LSTM`; each field names its PyTorch and
/// Keras counterpart.
///
/// ```
/// use lstm_runtime::{LstmConfig, MergeMode};
///
/// let config = LstmConfig::new(16, 32)
///     .with_num_layers(2)
///     .with_bidirectional(true)
///     .with_merge_mode(MergeMode::Sum)
///     .with_dropout(0.1);
/// assert!(config.validate().is_ok());
/// assert_eq!(config.output_size(), 32);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LstmConfig {
    /// Features of each input step (PyTorch `input_size`; Keras infers it from the input).
    pub input_size: usize,
    /// Hidden units of every cell (PyTorch `hidden_size`, Keras `units`). At least 1.
    pub hidden_size: usize,
    /// Stacked layers; layer `k + 1` reads layer `k`'s (merged) output (PyTorch `num_layers`,
    /// Keras: several `LSTM` layers in a row). Default 1; 0 is rejected.
    pub num_layers: usize,
    /// Whether cells have `bias_ih`/`bias_hh` (PyTorch `bias`, Keras `use_bias`). Default
    /// `true`.
    pub bias: bool,
    /// Inputs and outputs are `(batch, seq_len, features)` instead of time-major
    /// `(seq_len, batch, features)` (PyTorch `batch_first`; Keras is always batch-first).
    /// Masks are `(batch, seq_len)` either way. Default `false`.
    pub batch_first: bool,
    /// Probability of zeroing each input of layers `1..num_layers` (PyTorch `dropout`: on the
    /// outputs of every layer but the last, only when
    /// [`Call::training`](super::call::Call::training)). Inverted dropout: kept values are scaled
    /// by `1 / (1 − dropout)`. In `[0, 1]`; default 0.
    pub dropout: f64,
    /// Run every layer in both directions (PyTorch `bidirectional`, Keras `Bidirectional`).
    /// Default `false`.
    pub bidirectional: bool,
    /// How the two directions' outputs are combined (Keras `Bidirectional(merge_mode=…)`;
    /// PyTorch always concatenates). Default [`MergeMode::Concat`].
    pub merge_mode: MergeMode,
    /// Width of the projected hidden state, 0 for none (PyTorch `proj_size`, LSTMP):
    /// `h = W_hr · (cell's h)`; outputs and `h_n` have `proj_size` features, `c_n` keeps
    /// `hidden_size`. Must be below `hidden_size`; default 0. Keras has no equivalent.
    pub proj_size: usize,
    /// Heads `K` of a block-diagonal recurrence: the units fall into `K` heads of
    /// `hidden_size / K` units, and unit `j` reads only its head's slice of `h_prev`
    /// (`h_prev[k·H/K .. (k+1)·H/K]`, `k = j / (H/K)`), so `weight_hh` is
    /// `(gates · hidden_size, hidden_size / K)` and each step's recurrent product costs `1/K`
    /// of the dense one. Default 1 (dense); `K = hidden_size` is a diagonal recurrence
    /// (IndRNN-style). Must divide `hidden_size`; not with `proj_size`.
    pub heads: usize,
    /// Return the output of every step (`true`, PyTorch's only behaviour) or only each
    /// sequence's last valid output, `(batch, features)` (Keras `return_sequences=False`).
    /// Default `true`.
    pub return_sequences: bool,
    /// Return the final states `h_n`, `c_n` (Keras `return_state`; PyTorch always does).
    /// Default `true`.
    pub return_state: bool,
    /// Process each sequence reversed and return outputs in processing order (Keras
    /// `go_backwards`). With lengths, each sequence's valid part is reversed (padding stays at
    /// the end); otherwise the whole padded sequence is, masks included. Applies to the input
    /// of the whole layer. Default `false`.
    pub go_backwards: bool,
    /// Carry the final states of a call over as the initial states of the next, until
    /// [`Lstm::reset_states`](super::Lstm::reset_states) (Keras `stateful`). Default `false`.
    pub stateful: bool,
    /// Under a Keras mask, masked steps output zeros (`true`) instead of repeating the
    /// previous output (`false`, Keras' default for `LSTM`; Keras' `Bidirectional` sets it to
    /// its `return_sequences`). Lengths (PyTorch semantics) always give zeros past a
    /// sequence's end. Default `false`.
    pub zero_output_for_mask: bool,
    /// Width of the per-sequence constant input (Keras `constants`) for cells whose spec
    /// declares one; 0 for cells without. Default 0.
    pub constant_size: usize,
    /// Seed of the layer's random generator, from which every training call draws the seed of its
    /// masks (between-layer dropout, and the masks of
    /// [`RecurrentMasks`](crate::regularization::masks::RecurrentMasks)): the same seed gives the
    /// same masks, call after call. Default 0.
    pub seed: u64,
    /// Probability of dropping each input feature of every layer (Keras `LSTM(dropout=…)`,
    /// named `input_dropout` here because `dropout` is PyTorch's between-layer option).
    /// Variational (Gal & Ghahramani 2016), as Keras 3: one mask `(batch, input features)`
    /// per call and (layer, direction), drawn once and reused at every step and for every
    /// gate, kept values scaled by `1 / (1 − rate)`; training calls only. In `[0, 1]`;
    /// default 0.
    pub input_dropout: f64,
    /// Probability of dropping each feature of `h_prev` before the recurrent product (Keras
    /// `recurrent_dropout`): one mask `(batch, output_size)` per call and (layer,
    /// direction), reused at every step and for every gate, scaled by `1 / (1 − rate)`. The
    /// step sees the dropped `h_prev` (also where a spec reads `h_prev` directly); the state
    /// carried to the next step is not dropped. Training calls only. In `[0, 1]`; default 0.
    ///
    /// Keras 3 switches to one mask per gate when `recurrent_dropout` is set (its
    /// `implementation=1` path); this layer keeps one mask for all gates, as Keras does for
    /// `dropout` alone, so the dropped `h_prev` still feeds one fused GEMM.
    pub recurrent_dropout: f64,
    /// Probability of dropping each entry of `weight_hh` (DropConnect on the recurrent
    /// weights: AWD-LSTM's `WeightDrop`, Merity et al. 2018): one mask per call and (layer,
    /// direction), shared by every step and row, kept weights scaled by `1 / (1 − rate)`;
    /// gradients reach only the kept entries. Training calls only. In `[0, 1]`; default 0.
    pub weight_drop: f64,
    /// Zoneout rate of the cell state (Krueger et al. 2017): in training, each unit of each
    /// row keeps its previous `c` with this probability at each step (a fresh mask
    /// `(seq_len, batch, hidden_size)` per call); in inference `c` is the expectation
    /// `rate · c_prev + (1 − rate) · c_new`. In `[0, 1]`; default 0.
    pub zoneout_c: f64,
    /// Zoneout rate of the hidden state (Krueger et al. 2017; haste's `zoneout`), as
    /// [`LstmConfig::zoneout_c`] for `h` (the projected `h` of an LSTMP layer). The layer
    /// outputs the zoned-out `h`. In `[0, 1]`; default 0.
    pub zoneout_h: f64,
    /// Penalties on the weights and the outputs (Keras `kernel_regularizer`,
    /// `recurrent_regularizer`, `bias_regularizer`, `activity_regularizer`; PyTorch has none
    /// but `weight_decay`). Computed on request, for a training loop to add:
    /// [`Lstm::regularization_loss`](super::Lstm::regularization_loss),
    /// [`Lstm::activity_regularization`](super::Lstm::activity_regularization).
    /// Default none.
    pub regularizers: Regularizers,
    /// Projections of the weights after each optimizer step (Keras `kernel_constraint`,
    /// `recurrent_constraint`, `bias_constraint`), applied by
    /// [`Lstm::apply_constraints`](super::Lstm::apply_constraints). Default none.
    pub constraints: Constraints,
    /// Initialise the forget gate's bias to 1 and the rest of the biases to 0 (Keras
    /// `unit_forget_bias`, Jozefowicz et al. 2015). Default `false`, because defaults follow
    /// PyTorch, which has no such option (Keras' default is `true`). Needs `bias` and a cell
    /// with a forget gate.
    pub unit_forget_bias: bool,
    /// Chrono initialisation (Tallec & Ollivier 2018) for dependencies up to `T_max` steps:
    /// per unit, forget bias `log u` with `u ~ U(1, T_max − 1)`, input bias `−log u`; the
    /// other gates keep the cell's init. A cell without an input gate (CIFG, `i = 1 − f`) gets
    /// the forget bias only. Must exceed 2; needs `bias` and a forget gate; excludes
    /// `unit_forget_bias`. Default `None`.
    pub chrono_t_max: Option<f64>,
    /// How `weight_ih`, `weight_hh` and the biases start: PyTorch's uniform `±1/√hidden_size`
    /// (the default), or Keras' or Flax's initializers, chosen per weight
    /// ([`Initializers::keras`], [`Initializers::flax`]). `unit_forget_bias` and `chrono_t_max`
    /// are applied after it.
    pub init: Initializers,
}

impl LstmConfig {
    /// A single-layer, unidirectional config with PyTorch's defaults for every other option.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        LstmConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            merge_mode: MergeMode::Concat,
            proj_size: 0,
            heads: 1,
            return_sequences: true,
            return_state: true,
            go_backwards: false,
            stateful: false,
            zero_output_for_mask: false,
            constant_size: 0,
            seed: 0,
            input_dropout: 0.0,
            recurrent_dropout: 0.0,
            weight_drop: 0.0,
            zoneout_c: 0.0,
            zoneout_h: 0.0,
            regularizers: Regularizers::new(),
            constraints: Constraints::new(),
            unit_forget_bias: false,
            chrono_t_max: None,
            init: Initializers::pytorch(),
        }
    }

    /// Sets [`LstmConfig::num_layers`].
    pub fn with_num_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Sets [`LstmConfig::bias`].
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets [`LstmConfig::batch_first`].
    pub fn with_batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets [`LstmConfig::dropout`].
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets [`LstmConfig::bidirectional`].
    pub fn with_bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// Sets [`LstmConfig::merge_mode`].
    pub fn with_merge_mode(mut self, merge_mode: MergeMode) -> Self {
        self.merge_mode = merge_mode;
        self
    }

    /// Sets [`LstmConfig::proj_size`].
    pub fn with_proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }

    /// Sets [`LstmConfig::heads`]: a block-diagonal recurrence of `heads` heads.
    pub fn with_heads(mut self, heads: usize) -> Self {
        self.heads = heads;
        self
    }

    /// Sets [`LstmConfig::return_sequences`].
    pub fn with_return_sequences(mut self, return_sequences: bool) -> Self {
        self.return_sequences = return_sequences;
        self
    }

    /// Sets [`LstmConfig::return_state`].
    pub fn with_return_state(mut self, return_state: bool) -> Self {
        self.return_state = return_state;
        self
    }

    /// Sets [`LstmConfig::go_backwards`].
    pub fn with_go_backwards(mut self, go_backwards: bool) -> Self {
        self.go_backwards = go_backwards;
        self
    }

    /// Sets [`LstmConfig::stateful`].
    pub fn with_stateful(mut self, stateful: bool) -> Self {
        self.stateful = stateful;
        self
    }

    /// Sets [`LstmConfig::zero_output_for_mask`].
    pub fn with_zero_output_for_mask(mut self, zero_output_for_mask: bool) -> Self {
        self.zero_output_for_mask = zero_output_for_mask;
        self
    }

    /// Sets [`LstmConfig::constant_size`].
    pub fn with_constant_size(mut self, constant_size: usize) -> Self {
        self.constant_size = constant_size;
        self
    }

    /// Sets [`LstmConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`LstmConfig::input_dropout`] (Keras `dropout`).
    pub fn with_input_dropout(mut self, rate: f64) -> Self {
        self.input_dropout = rate;
        self
    }

    /// Sets [`LstmConfig::recurrent_dropout`].
    pub fn with_recurrent_dropout(mut self, rate: f64) -> Self {
        self.recurrent_dropout = rate;
        self
    }

    /// Sets [`LstmConfig::weight_drop`].
    pub fn with_weight_drop(mut self, rate: f64) -> Self {
        self.weight_drop = rate;
        self
    }

    /// Sets [`LstmConfig::zoneout_c`] and [`LstmConfig::zoneout_h`].
    pub fn with_zoneout(mut self, zoneout_c: f64, zoneout_h: f64) -> Self {
        self.zoneout_c = zoneout_c;
        self.zoneout_h = zoneout_h;
        self
    }

    /// Whether any regulariser inside the recurrence is on: input or recurrent dropout,
    /// weight drop or zoneout.
    pub fn regularizes_recurrence(&self) -> bool {
        [
            self.input_dropout,
            self.recurrent_dropout,
            self.weight_drop,
            self.zoneout_c,
            self.zoneout_h,
        ]
        .iter()
        .any(|&rate| rate > 0.0)
    }

    /// Sets [`LstmConfig::regularizers`].
    pub fn with_regularizers(mut self, regularizers: Regularizers) -> Self {
        self.regularizers = regularizers;
        self
    }

    /// Sets [`LstmConfig::constraints`].
    pub fn with_constraints(mut self, constraints: Constraints) -> Self {
        self.constraints = constraints;
        self
    }

    /// Sets [`LstmConfig::unit_forget_bias`].
    pub fn with_unit_forget_bias(mut self, unit_forget_bias: bool) -> Self {
        self.unit_forget_bias = unit_forget_bias;
        self
    }

    /// Sets [`LstmConfig::chrono_t_max`] (`100.0`, or `None` to turn it off).
    pub fn with_chrono_t_max(mut self, chrono_t_max: impl Into<Option<f64>>) -> Self {
        self.chrono_t_max = chrono_t_max.into();
        self
    }

    /// Sets [`LstmConfig::init`].
    pub fn with_init(mut self, init: Initializers) -> Self {
        self.init = init;
        self
    }

    /// Initialises as `framework` does by default: sets [`LstmConfig::init`] to its
    /// initializers and [`LstmConfig::unit_forget_bias`] to whether it starts the forget bias at
    /// 1 (Keras does).
    pub fn with_framework_init(mut self, framework: Framework) -> Self {
        self.init = framework.initializers();
        self.unit_forget_bias = framework.unit_forget_bias();
        self
    }

    /// 2 for a bidirectional layer, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Features of each direction's output and of `h_n`: `proj_size`, or `hidden_size`
    /// without projection. Also the width of the recurrent input `h_prev`.
    pub fn output_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Features of the layer's merged output: twice [`LstmConfig::output_size`] for a
    /// concatenating bidirectional layer, else [`LstmConfig::output_size`].
    pub fn merged_size(&self) -> usize {
        if self.bidirectional && self.merge_mode == MergeMode::Concat {
            2 * self.output_size()
        } else {
            self.output_size()
        }
    }

    /// Features layer `layer` reads: `input_size` for the first, the merged output of the
    /// one below for the others.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.merged_size()
        }
    }

    /// The dims of the cells of layer `layer` (both directions have the same).
    pub fn cell_dims(&self, layer: usize) -> CellDims {
        CellDims {
            input_size: self.layer_input_size(layer),
            hidden_size: self.hidden_size,
            recurrent_size: self.output_size(),
            bias: self.bias,
            constant_size: self.constant_size,
            heads: self.heads,
        }
    }

    /// The rates of the regularisers inside the recurrence.
    pub(crate) fn recurrent_rates(&self) -> Rates {
        Rates {
            input_dropout: self.input_dropout,
            recurrent_dropout: self.recurrent_dropout,
            weight_drop: self.weight_drop,
            zoneout_c: self.zoneout_c,
            zoneout_h: self.zoneout_h,
        }
    }

    /// The sizes of the masks of every (layer, direction), in PyTorch's order, for a
    /// `(seq_len, batch)` call of cells with `gates` gate blocks.
    pub(crate) fn mask_shapes(
        &self,
        gates: usize,
        seq_len: usize,
        batch: usize,
    ) -> Vec<MaskShapes> {
        (0..self.num_layers * self.num_directions())
            .map(|index| MaskShapes {
                seq_len,
                batch,
                input_size: self.layer_input_size(index / self.num_directions()),
                output_size: self.output_size(),
                hidden_size: self.hidden_size,
                gate_rows: gates * self.hidden_size,
                weight_hh_width: self.output_size() / self.heads.max(1),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_pytorch() {
        let config = LstmConfig::new(3, 5);
        assert_eq!(config.num_layers, 1);
        assert!(config.bias && config.return_sequences && config.return_state);
        assert!(!config.batch_first && !config.bidirectional && !config.stateful);
        assert_eq!((config.dropout, config.proj_size), (0.0, 0));
        assert_eq!(config.merge_mode, MergeMode::Concat);
        assert_eq!(config.regularizers, Regularizers::new());
        assert_eq!(config.constraints, Constraints::new());
        assert!(!config.unit_forget_bias && config.chrono_t_max.is_none());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn sizes_follow_projection_and_merging() {
        let config = LstmConfig::new(3, 5)
            .with_proj_size(2)
            .with_bidirectional(true);
        assert_eq!(config.output_size(), 2);
        assert_eq!(config.merged_size(), 4);
        assert_eq!(config.cell_dims(1).input_size, 4);
        assert_eq!(config.cell_dims(0).recurrent_size, 2);
        let summed = config.with_merge_mode(MergeMode::Sum);
        assert_eq!(summed.merged_size(), 2);
    }
}
