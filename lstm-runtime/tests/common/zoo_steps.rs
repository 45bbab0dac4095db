//! The zoo cells' equations as scalar `f64` formulas for the layer reference, written out by
//! hand from each cell's documented spec (not from generated code).

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::rc::Rc;

use lstm_runtime::Float;
use lstm_runtime::zoo::{Cifg, ForgetBias, HardSigmoid, LayerNorm, Lstm, Peephole, ScaledForget};

use super::layer_reference::{Pre, RowStep};

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Keras 3's hard sigmoid, `relu6(x + 3) / 6`.
pub fn hard_sigmoid(x: f64) -> f64 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// PyTorch's layer norm over all of `x` (eps 1e-5, biased variance), then gain and shift.
pub fn layer_norm(x: &[f64], gain: &[f64], shift: Option<&[f64]>) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    x.iter()
        .enumerate()
        .map(|(k, v)| (v - mean) / (var + 1e-5).sqrt() * gain[k] + shift.map_or(0.0, |s| s[k]))
        .collect()
}

fn vec64<F: Float>(values: &ndarray::Array1<F>) -> Vec<f64> {
    values.iter().map(|v| v.to_f64_lossy()).collect()
}

/// The standard update from gate values, for every unit.
fn standard(
    pre: &Pre,
    c_prev: &[f64],
    gate: impl Fn(&Pre, char, usize) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    (0..pre.hidden)
        .map(|j| {
            let (i, f, g, o) = (
                gate(pre, 'i', j),
                gate(pre, 'f', j),
                gate(pre, 'g', j),
                gate(pre, 'o', j),
            );
            let c = f * c_prev[j] + i * g;
            (o * c.tanh(), c)
        })
        .unzip()
}

fn lstm_gate(pre: &Pre, gate: char, j: usize) -> f64 {
    match gate {
        'g' => pre.z('g', j).tanh(),
        _ => sigmoid(pre.z(gate, j)),
    }
}

pub fn lstm<F: Float>(_: &Lstm<F>) -> RowStep {
    Rc::new(|pre, c_prev, _| standard(pre, c_prev, lstm_gate))
}

pub fn forget_bias<F: Float>(cell: &ForgetBias<F>) -> RowStep {
    let bias = vec64(&cell.forget_bias);
    Rc::new(move |pre, c_prev, _| {
        standard(pre, c_prev, |pre, gate, j| match gate {
            'f' => sigmoid(pre.z('f', j) + bias[j]),
            _ => lstm_gate(pre, gate, j),
        })
    })
}

pub fn scaled_forget<F: Float>(_: &ScaledForget<F>) -> RowStep {
    Rc::new(|pre, c_prev, _| {
        standard(pre, c_prev, |pre, gate, j| match gate {
            'f' => sigmoid(1.5 * pre.z('f', j)),
            _ => lstm_gate(pre, gate, j),
        })
    })
}

pub fn peephole<F: Float>(cell: &Peephole<F>) -> RowStep {
    let (pi, pf, po) = (
        vec64(&cell.peephole_i),
        vec64(&cell.peephole_f),
        vec64(&cell.peephole_o),
    );
    Rc::new(move |pre, c_prev, _| {
        (0..pre.hidden)
            .map(|j| {
                let i = sigmoid(pre.z('i', j) + pi[j] * c_prev[j]);
                let f = sigmoid(pre.z('f', j) + pf[j] * c_prev[j]);
                let g = pre.z('g', j).tanh();
                let c = f * c_prev[j] + i * g;
                let o = sigmoid(pre.z('o', j) + po[j] * c);
                (o * c.tanh(), c)
            })
            .unzip()
    })
}

pub fn cifg<F: Float>(_: &Cifg<F>) -> RowStep {
    Rc::new(|pre, c_prev, _| {
        standard(pre, c_prev, |pre, gate, j| match gate {
            'i' => 1.0 - sigmoid(pre.z('f', j)),
            _ => lstm_gate(pre, gate, j),
        })
    })
}

pub fn hard_sigmoid_cell<F: Float>(_: &HardSigmoid<F>) -> RowStep {
    Rc::new(|pre, c_prev, _| {
        standard(pre, c_prev, |pre, gate, j| match gate {
            'g' => pre.z('g', j).tanh(),
            _ => hard_sigmoid(pre.z(gate, j)),
        })
    })
}

pub fn layer_norm_cell<F: Float>(cell: &LayerNorm<F>) -> RowStep {
    let (gx, gh) = (vec64(&cell.gamma_x), vec64(&cell.gamma_h));
    let (gc, bc) = (vec64(&cell.gamma_c), vec64(&cell.beta_c));
    Rc::new(move |pre, c_prev, _| {
        let zx = layer_norm(&pre.zx, &gx, None);
        let zh = layer_norm(&pre.zh, &gh, None);
        let z = |gate: char, j: usize| {
            let k = pre.at(gate, j);
            zx[k] + pre.b_ih[k] + zh[k] + pre.b_hh[k]
        };
        let c: Vec<f64> = (0..pre.hidden)
            .map(|j| sigmoid(z('f', j)) * c_prev[j] + sigmoid(z('i', j)) * z('g', j).tanh())
            .collect();
        let normed = layer_norm(&c, &gc, Some(&bc));
        let h = (0..pre.hidden)
            .map(|j| sigmoid(z('o', j)) * normed[j].tanh())
            .collect();
        (h, c)
    })
}
