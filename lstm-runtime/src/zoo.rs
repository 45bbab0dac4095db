//! The zoo: ready-made cells, each defined with `#[lstm_cell]` exactly as a user would.
//!
//! Every cell has a snake_case name (its `SPEC.name`) by which the command line selects it;
//! [`all`] lists them, and [`visit_zoo_cell`](lookup::visit_zoo_cell) (`zoo/lookup.rs`) runs
//! code generic over the cell type with the cell of a given name.

pub(crate) mod lookup;

use lstm_macros::lstm_cell;

use crate::cell::{Cell, CellSpec};

/// The standard LSTM of PyTorch's `nn.LSTM` (and Keras' `LSTM` with its default
/// activations): nothing overridden.
#[lstm_cell]
pub struct Lstm;

/// An extra learned forget bias added inside the forget sigmoid, initialised to ones (the
/// Keras `LSTMCell` subclass of the seed material).
#[lstm_cell(f = sigmoid(z_f + forget_bias))]
pub struct ForgetBias {
    /// Added to the forget gate's pre-activation.
    #[init(ones)]
    forget_bias: PerUnit,
}

/// A forget sigmoid with its pre-activation scaled by 1.5 (the PyTorch custom cell of the
/// seed material).
#[lstm_cell(f = sigmoid(1.5 * z_f))]
pub struct ScaledForget;

/// Peephole connections (Gers & Schmidhuber 2000): the input and forget gates see the
/// previous cell state, the output gate sees the new one.
#[lstm_cell(
    i = sigmoid(z_i + peephole_i * c_prev),
    f = sigmoid(z_f + peephole_f * c_prev),
    o = sigmoid(z_o + peephole_o * c)
)]
pub struct Peephole {
    /// Input-gate peephole weights.
    peephole_i: PerUnit,
    /// Forget-gate peephole weights.
    peephole_f: PerUnit,
    /// Output-gate peephole weights.
    peephole_o: PerUnit,
}

/// Coupled input and forget gates (CIFG, Greff et al. 2017): `i = 1 - f`, so the cell has
/// no input-gate weights at all (three gate blocks: f, g, o).
#[lstm_cell(i = 1.0 - f)]
pub struct Cifg;

/// Keras' `LSTM(recurrent_activation="hard_sigmoid")`: Keras 3's hard sigmoid
/// `relu6(x + 3) / 6` on the input, forget and output gates.
#[lstm_cell(i = hard_sigmoid(z_i), f = hard_sigmoid(z_f), o = hard_sigmoid(z_o))]
pub struct HardSigmoid;

/// The layer-normalised LSTM of Ba et al. (2016) as haste's `LayerNormLSTM` defines it: the
/// input and recurrent projections are each normalised across all gates and units (with a
/// learned gain, the biases acting as shift), and the cell state is normalised inside `h`
/// (`c` itself is carried unnormalised).
#[lstm_cell(
    zx = layer_norm(zx, gamma_x),
    zh = layer_norm(zh, gamma_h),
    h = o * tanh(layer_norm(c, gamma_c, beta_c))
)]
pub struct LayerNorm {
    /// Gain of the normalised input projection.
    #[init(ones)]
    gamma_x: Gates,
    /// Gain of the normalised recurrent projection.
    #[init(ones)]
    gamma_h: Gates,
    /// Gain of the normalised cell state.
    #[init(ones)]
    gamma_c: PerUnit,
    /// Shift of the normalised cell state.
    #[init(zeros)]
    beta_c: PerUnit,
}

/// PyTorch's `nn.GRU` (Cho et al. 2014), whose `state_dict` loads as it is: the weight rows
/// r, z, n fill the blocks an LSTM calls i, f, g (`SPEC.gates` is `[Input, Forget, Cell]`),
/// so `i` is the reset gate, `f` the update gate and `g` the candidate
/// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`; `h = (1 − z) ⊙ n + z ⊙ h_prev`.
///
/// A GRU has no cell state (`CellSpec::states` is empty): nothing reads `c`, so the cell
/// carries `h` alone, and the command line takes `--h0` alone for this cell.
#[lstm_cell(
    zx = zx + b_ih,
    zh = zh + b_hh,
    z = zx + zh,
    g = tanh(zx_g + i * zh_g),
    h = (1.0 - f) * g + f * h_prev
)]
pub struct Gru;

/// JANET (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the forget
/// gate"): the forget gate alone, its pre-activation shifted by `beta = 1` (the paper's value),
/// `c = f·c_prev + (1 − f)·tanh(z_g)` and `h = c`. Two gate blocks, f and g: nothing reads
/// `i` or `o`, so they have no weight rows.
#[lstm_cell(f = sigmoid(z_f - 1.0), c = f * c_prev + (1.0 - f) * g, h = c)]
pub struct Janet;

/// xLSTM's sLSTM (Beck et al. 2024), with its stabiliser: the weight rows i, f, z, o of
/// the paper fill the blocks an LSTM calls i, f, g, o (`z` is the cell input, here `g`), so
/// a PyTorch-layout `state_dict` loads as it is. Besides `h` and `c` it carries the
/// normaliser `n` and the stabiliser `m`, all starting at zero; `h = o · c / n` does not
/// depend on `m` (it cancels between `c` and `n`), which only keeps the exponentials in range.
/// Heads (block-diagonal recurrent weights) come from `weight_hh`'s shape.
#[lstm_cell(
    m = max(logsigmoid(z_f) + m_prev, z_i),
    i = exp(z_i - m),
    f = exp(logsigmoid(z_f) + m_prev - m),
    c = f * c_prev + i * g,
    n = f * n_prev + i,
    h = o * c / n
)]
pub struct Slstm {
    /// The normaliser state `n`: the sum of the input gates, decayed by the forget gates.
    n: State,
    /// The stabiliser state `m`: a running maximum of the gates' log pre-activations.
    m: State,
}

/// Every zoo cell's spec, in the order `lstm cells` lists them.
pub fn all() -> &'static [&'static CellSpec] {
    const ALL: &[&CellSpec] = &[
        <Lstm as Cell>::SPEC,
        <ForgetBias as Cell>::SPEC,
        <ScaledForget as Cell>::SPEC,
        <Peephole as Cell>::SPEC,
        <Cifg as Cell>::SPEC,
        <HardSigmoid as Cell>::SPEC,
        <LayerNorm as Cell>::SPEC,
        <Gru as Cell>::SPEC,
        <Janet as Cell>::SPEC,
        <Slstm as Cell>::SPEC,
    ];
    ALL
}
