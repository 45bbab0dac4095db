//! A naive reference for LSTM-family cells: the recurrence evaluated one scalar at a time in
//! `f64`, with explicit matrix-vector loops (no GEMM, no runtime code). A test states a cell's
//! equations as scalar formulas in a closure; the reference supplies the gate pre-activations
//! `z = W_ih·x + b_ih + W_hh·h_prev + b_hh` and carries the state through time.
//!
//! The weights are in PyTorch's layout: gate blocks of `hidden_size` rows, in the order a
//! `gates` list gives (`['i', 'f', 'g', 'o']` for the standard LSTM, `['f', 'g', 'o']` for a
//! cell without an input gate).

// Each test crate that includes `mod common;` uses a part of this module.
#![allow(dead_code)]

use ndarray::{Array1, Array2, Array3, s};

use lstm::{Cell, Float};

/// Logistic sigmoid.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Keras 3's (and PyTorch's) hard sigmoid, `relu6(x + 3) / 6`.
pub fn hard_sigmoid(x: f64) -> f64 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// A cell's four weights in `f64`, gate-stacked in the order of `gates`.
#[derive(Clone, Debug)]
pub struct ReferenceWeights {
    /// Gate letters (`'i'`, `'f'`, `'g'`, `'o'`) in weight-row order.
    pub gates: Vec<char>,
    /// `(gates · hidden, input_size)`.
    pub weight_ih: Array2<f64>,
    /// `(gates · hidden, hidden)`.
    pub weight_hh: Array2<f64>,
    /// `(gates · hidden,)`; `None` reads as zeros.
    pub bias_ih: Option<Array1<f64>>,
    /// `(gates · hidden,)`; `None` reads as zeros.
    pub bias_hh: Option<Array1<f64>>,
}

impl ReferenceWeights {
    /// Copies `cell`'s weights, declaring its gate rows to be in the order of `gates`.
    pub fn from_cell<C: Cell>(cell: &C, gates: &[char]) -> Self {
        let weights = cell.weights();
        let to_f64 = |bias: Option<&Array1<C::Elem>>| bias.map(|b| b.mapv(Float::to_f64_lossy));
        ReferenceWeights {
            gates: gates.to_vec(),
            weight_ih: weights.weight_ih.mapv(Float::to_f64_lossy),
            weight_hh: weights.weight_hh.mapv(Float::to_f64_lossy),
            bias_ih: to_f64(weights.bias_ih),
            bias_hh: to_f64(weights.bias_hh),
        }
    }

    /// Hidden units: weight rows per gate.
    pub fn hidden_size(&self) -> usize {
        self.weight_ih.nrows() / self.gates.len()
    }

    /// `W · v + b` for every weight row, by explicit loops.
    fn affine(weight: &Array2<f64>, bias: Option<&Array1<f64>>, v: &[f64]) -> Vec<f64> {
        (0..weight.nrows())
            .map(|row| {
                let mut sum = bias.map_or(0.0, |b| b[row]);
                for (col, v) in v.iter().enumerate() {
                    sum += weight[[row, col]] * v;
                }
                sum
            })
            .collect()
    }
}

/// The gate pre-activations of one batch row at one step.
pub struct GatePre<'a> {
    gates: &'a [char],
    hidden: usize,
    zx: Vec<f64>,
    zh: Vec<f64>,
}

impl GatePre<'_> {
    /// Position of `gate`'s block in the weight rows.
    fn block(&self, gate: char) -> usize {
        self.gates
            .iter()
            .position(|&g| g == gate)
            .unwrap_or_else(|| panic!("gate {gate} is not one of {:?}", self.gates))
    }

    /// `W_ih·x + b_ih` of `gate` at unit `j`.
    pub fn zx(&self, gate: char, j: usize) -> f64 {
        self.zx[self.block(gate) * self.hidden + j]
    }

    /// `W_hh·h_prev + b_hh` of `gate` at unit `j`.
    pub fn zh(&self, gate: char, j: usize) -> f64 {
        self.zh[self.block(gate) * self.hidden + j]
    }

    /// The full pre-activation `zx + zh` of `gate` at unit `j`.
    pub fn z(&self, gate: char, j: usize) -> f64 {
        self.zx(gate, j) + self.zh(gate, j)
    }
}

/// What the reference returns, as PyTorch does: every step's `h`, and the final `h`, `c`.
#[derive(Clone, Debug)]
pub struct ReferenceOutput {
    /// `(seq_len, batch, hidden)`.
    pub output: Array3<f64>,
    /// `(batch, hidden)`.
    pub h_n: Array2<f64>,
    /// `(batch, hidden)`.
    pub c_n: Array2<f64>,
}

/// Runs the recurrence over `x: (seq_len, batch, input_size)` from `h0`, `c0` (zeros when
/// `None`). `step(pre, c_prev, h_prev, j)` returns unit `j`'s new `(h, c)`, where `c_prev`,
/// `h_prev` are the batch row's whole previous state.
pub fn run_reference(
    weights: &ReferenceWeights,
    x: &Array3<f64>,
    h0: Option<&Array2<f64>>,
    c0: Option<&Array2<f64>>,
    step: impl Fn(&GatePre<'_>, &[f64], &[f64], usize) -> (f64, f64),
) -> ReferenceOutput {
    let (seq_len, batch, _) = x.dim();
    let hidden = weights.hidden_size();
    let mut h = h0
        .cloned()
        .unwrap_or_else(|| Array2::zeros((batch, hidden)));
    let mut c = c0
        .cloned()
        .unwrap_or_else(|| Array2::zeros((batch, hidden)));
    let mut output = Array3::zeros((seq_len, batch, hidden));
    for t in 0..seq_len {
        for b in 0..batch {
            let x_tb = x.slice(s![t, b, ..]).to_vec();
            let h_prev = h.row(b).to_vec();
            let c_prev = c.row(b).to_vec();
            let pre = GatePre {
                gates: &weights.gates,
                hidden,
                zx: ReferenceWeights::affine(&weights.weight_ih, weights.bias_ih.as_ref(), &x_tb),
                zh: ReferenceWeights::affine(&weights.weight_hh, weights.bias_hh.as_ref(), &h_prev),
            };
            for j in 0..hidden {
                let (h_new, c_new) = step(&pre, &c_prev, &h_prev, j);
                h[[b, j]] = h_new;
                c[[b, j]] = c_new;
                output[[t, b, j]] = h_new;
            }
        }
    }
    ReferenceOutput {
        output,
        h_n: h,
        c_n: c,
    }
}
