//! The hand-written test cells are themselves checked: their backward steps against central
//! finite differences of their forward steps, so the layer tests (and later the training
//! tests) build on cells known to be right.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::blend::Blend;
use common::hand_lstm::HandLstm;
use lstm_runtime::{BackwardIo, Cell, CellDims, StepIo};

/// Everything one step reads, as flat row-major vectors.
#[derive(Clone)]
struct StepInputs {
    zx: Vec<f64>,
    zh: Vec<f64>,
    bias_ih: Vec<f64>,
    bias_hh: Vec<f64>,
    c_prev: Vec<f64>,
    h_prev: Vec<f64>,
}

const INPUT_NAMES: [&str; 6] = ["zx", "zh", "bias_ih", "bias_hh", "c_prev", "h_prev"];

impl StepInputs {
    fn random<C: Cell>(rows: usize, hidden: usize, rng: &mut ChaCha8Rng) -> Self {
        let width = C::SPEC.num_gates() * hidden;
        let mut values = |len: usize| (0..len).map(|_| rng.random_range(-1.5..1.5)).collect();
        StepInputs {
            zx: values(rows * width),
            zh: values(rows * width),
            bias_ih: values(width),
            bias_hh: values(width),
            c_prev: values(rows * hidden),
            h_prev: if C::SPEC.reads_h_prev {
                values(rows * hidden)
            } else {
                Vec::new()
            },
        }
    }

    fn field(&mut self, name: &str) -> &mut Vec<f64> {
        match name {
            "zx" => &mut self.zx,
            "zh" => &mut self.zh,
            "bias_ih" => &mut self.bias_ih,
            "bias_hh" => &mut self.bias_hh,
            "c_prev" => &mut self.c_prev,
            "h_prev" => &mut self.h_prev,
            other => panic!("no step input {other}"),
        }
    }

    /// Runs the step; `cache` is `Some` for the training step.
    fn run<C: Cell<Elem = f64>>(
        &self,
        cell: &C,
        rows: usize,
        cache: Option<&mut [f64]>,
    ) -> (Vec<f64>, Vec<f64>) {
        let hidden = cell.dims().hidden_size;
        let mut h = vec![0.0; rows * hidden];
        let mut c = vec![0.0; rows * hidden];
        let mut scratch = vec![0.0; rows * C::SPEC.scratch.len(hidden)];
        let io = StepIo {
            rows,
            zx: &self.zx,
            zh: &self.zh,
            bias_ih: &self.bias_ih,
            bias_hh: &self.bias_hh,
            constant: &[],
            c_prev: &self.c_prev,
            h_prev: &self.h_prev,
            h: &mut h,
            c: &mut c,
            scratch: &mut scratch,
        };
        match cache {
            Some(cache) => cell.step_train(io, cache),
            None => cell.step(io),
        }
        (h, c)
    }
}

/// `L = Σ weight_h ⊙ h + Σ weight_c ⊙ c`, so `dL/dh = weight_h`, `dL/dc = weight_c`.
fn loss(h: &[f64], c: &[f64], weight_h: &[f64], weight_c: &[f64]) -> f64 {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
    dot(h, weight_h) + dot(c, weight_c)
}

fn assert_grad(what: &str, analytic: f64, numeric: f64) {
    assert!(
        (analytic - numeric).abs() <= 1e-7 * (1.0 + numeric.abs()),
        "{what}: backward gives {analytic}, finite differences {numeric}"
    );
}

/// Checks every output of `step_backward` against central differences of `step`.
fn check_backward<C: Cell<Elem = f64>>(dims: CellDims, rows: usize, seed: u64) {
    const EPS: f64 = 1e-6;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cell = C::init(dims, &mut rng);
    let hidden = dims.hidden_size;
    let width = C::SPEC.num_gates() * hidden;
    let inputs = StepInputs::random::<C>(rows, hidden, &mut rng);
    let weight_h: Vec<f64> = (0..rows * hidden)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let weight_c: Vec<f64> = (0..rows * hidden)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();

    // Analytic gradients.
    let mut cache = vec![0.0; rows * C::SPEC.cache.len(hidden)];
    let (h, c) = inputs.run(&cell, rows, Some(&mut cache));
    assert_eq!(
        (h.clone(), c.clone()),
        inputs.run(&cell, rows, None),
        "step_train differs from step"
    );
    let state_len = |needed: bool| if needed { rows * hidden } else { 0 };
    let mut dzx = vec![0.0; rows * width];
    let mut dzh = vec![
        0.0;
        if C::SPEC.shared_preactivation_grad {
            0
        } else {
            rows * width
        }
    ];
    let mut dc_prev = vec![0.0; rows * hidden];
    let mut dh_prev = vec![0.0; state_len(C::SPEC.reads_h_prev)];
    let mut dbias_ih = vec![0.0; width];
    let mut dbias_hh = vec![0.0; width];
    let mut scratch = vec![0.0; rows * C::SPEC.backward_scratch.len(hidden)];
    let mut grads = C::zeros(dims);
    cell.step_backward(
        BackwardIo {
            rows,
            dh: &weight_h,
            dc: &weight_c,
            c_prev: &inputs.c_prev,
            c: &c,
            h_prev: &inputs.h_prev,
            bias_ih: &inputs.bias_ih,
            bias_hh: &inputs.bias_hh,
            constant: &[],
            cache: &cache,
            dzx: &mut dzx,
            dzh: &mut dzh,
            dc_prev: &mut dc_prev,
            dh_prev: &mut dh_prev,
            dconstant: &mut [],
            dbias_ih: &mut dbias_ih,
            dbias_hh: &mut dbias_hh,
            scratch: &mut scratch,
        },
        &mut grads,
    );
    if C::SPEC.shared_preactivation_grad {
        dzh = dzx.clone();
    }

    // Numeric gradients of the step's inputs.
    for name in INPUT_NAMES {
        let analytic = match name {
            "zx" => &dzx,
            "zh" => &dzh,
            "bias_ih" => &dbias_ih,
            "bias_hh" => &dbias_hh,
            "c_prev" => &dc_prev,
            _ => &dh_prev,
        };
        let len = inputs.clone().field(name).len();
        assert_eq!(analytic.len(), len, "{name}: gradient length");
        for (k, &analytic) in analytic.iter().enumerate() {
            let loss_at = |delta: f64| {
                let mut shifted = inputs.clone();
                shifted.field(name)[k] += delta;
                let (h, c) = shifted.run(&cell, rows, None);
                loss(&h, &c, &weight_h, &weight_c)
            };
            let numeric = (loss_at(EPS) - loss_at(-EPS)) / (2.0 * EPS);
            assert_grad(&format!("{} d{name}[{k}]", C::SPEC.name), analytic, numeric);
        }
    }

    // Numeric gradients of the spec's parameters.
    for param in C::SPEC.params {
        let mut analytic = Vec::new();
        grads.visit(&mut |name, tensor| {
            if name == param.name {
                analytic = tensor.iter().copied().collect();
            }
        });
        for (k, &analytic) in analytic.iter().enumerate() {
            let loss_at = |delta: f64| {
                let mut shifted = cell.clone();
                shifted.visit_mut(&mut |name, mut tensor| {
                    if name == param.name {
                        tensor
                            .iter_mut()
                            .nth(k)
                            .into_iter()
                            .for_each(|value| *value += delta);
                    }
                });
                let (h, c) = inputs.run(&shifted, rows, None);
                loss(&h, &c, &weight_h, &weight_c)
            };
            let numeric = (loss_at(EPS) - loss_at(-EPS)) / (2.0 * EPS);
            assert_grad(
                &format!("{} d{}[{k}]", C::SPEC.name, param.name),
                analytic,
                numeric,
            );
        }
    }
}

#[test]
fn hand_lstm_backward_matches_finite_differences() {
    check_backward::<HandLstm<f64>>(CellDims::new(3, 4), 3, 1);
    check_backward::<HandLstm<f64>>(CellDims::new(1, 1), 1, 2);
}

#[test]
fn blend_backward_matches_finite_differences() {
    check_backward::<Blend<f64>>(CellDims::new(3, 4), 3, 3);
    check_backward::<Blend<f64>>(CellDims::new(2, 1), 2, 4);
}
