//! The backward step the macro derives, checked against central finite differences of the
//! forward step, for every zoo cell, in f64. One step, several batch rows: every input of the
//! step (zx, zh, c_prev, h_prev, both biases) and every spec parameter is perturbed.

use lstm_runtime::zoo::{Cifg, ForgetBias, HardSigmoid, LayerNorm, Lstm, Peephole, ScaledForget};
use lstm_runtime::{BackwardIo, Cell, CellDims, StepIo, lstm_cell};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: usize = 3;
const HIDDEN: usize = 5;
const INPUT: usize = 2;

/// The step's inputs, all perturbable.
#[derive(Clone)]
struct Inputs {
    zx: Vec<f64>,
    zh: Vec<f64>,
    bias_ih: Vec<f64>,
    bias_hh: Vec<f64>,
    c_prev: Vec<f64>,
    h_prev: Vec<f64>,
    /// The constant input's projection (empty for a cell without one).
    constant: Vec<f64>,
}

fn random(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| scale * (2.0 * rng.random::<f64>() - 1.0))
        .collect()
}

fn forward<C: Cell<Elem = f64>>(cell: &C, x: &Inputs) -> (Vec<f64>, Vec<f64>) {
    let mut h = vec![0.0; ROWS * HIDDEN];
    let mut c = vec![0.0; ROWS * HIDDEN];
    let mut scratch = vec![0.0; ROWS * C::SPEC.scratch.len(HIDDEN)];
    cell.step(StepIo {
        rows: ROWS,
        zx: &x.zx,
        zh: &x.zh,
        bias_ih: &x.bias_ih,
        bias_hh: &x.bias_hh,
        constant: &x.constant,
        c_prev: &x.c_prev,
        h_prev: &x.h_prev,
        h: &mut h,
        c: &mut c,
        scratch: &mut scratch,
    });
    (h, c)
}

fn loss<C: Cell<Elem = f64>>(cell: &C, x: &Inputs, dh: &[f64], dc: &[f64]) -> f64 {
    let (h, c) = forward(cell, x);
    h.iter().zip(dh).map(|(a, b)| a * b).sum::<f64>()
        + c.iter().zip(dc).map(|(a, b)| a * b).sum::<f64>()
}

fn assert_close(what: &str, analytic: f64, numeric: f64) {
    let err = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1.0);
    assert!(
        err < 1e-7,
        "{what}: analytic {analytic} vs numeric {numeric} (error {err:e})"
    );
}

/// Central difference of the loss along one perturbable value.
fn numeric(eval: &mut dyn FnMut(f64) -> f64, value: f64) -> f64 {
    let eps = 1e-6;
    (eval(value + eps) - eval(value - eps)) / (2.0 * eps)
}

fn check<C: Cell<Elem = f64>>(seed: u64) {
    let spec = C::SPEC;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cell = C::init(CellDims::new(INPUT, HIDDEN), &mut rng);
    // Parameters away from their inits so that no gradient is trivially symmetric.
    cell.visit_mut(&mut |_, mut values| values.mapv_inplace(|_| 0.0));
    let mut fill = ChaCha8Rng::seed_from_u64(seed + 1);
    cell.visit_mut(&mut |_, mut values| {
        values.mapv_inplace(|_| 0.8 * (2.0 * fill.random::<f64>() - 1.0))
    });
    let gates = spec.gates.len() * HIDDEN;
    let x = Inputs {
        zx: random(&mut rng, ROWS * gates, 1.5),
        zh: random(&mut rng, ROWS * gates, 1.5),
        bias_ih: random(&mut rng, gates, 0.5),
        bias_hh: random(&mut rng, gates, 0.5),
        c_prev: random(&mut rng, ROWS * HIDDEN, 1.0),
        h_prev: random(&mut rng, ROWS * HIDDEN, 1.0),
        constant: match spec.constant {
            Some(_) => random(&mut rng, ROWS * gates, 1.0),
            None => Vec::new(),
        },
    };
    let dh = random(&mut rng, ROWS * HIDDEN, 1.0);
    let dc = random(&mut rng, ROWS * HIDDEN, 1.0);

    // Training step: same outputs as inference, and the cache for backward.
    let (h_ref, c_ref) = forward(&cell, &x);
    let mut h = vec![0.0; ROWS * HIDDEN];
    let mut c = vec![0.0; ROWS * HIDDEN];
    let mut scratch = vec![0.0; ROWS * spec.scratch.len(HIDDEN)];
    let mut cache = vec![0.0; ROWS * spec.cache.len(HIDDEN)];
    cell.step_train(
        StepIo {
            rows: ROWS,
            zx: &x.zx,
            zh: &x.zh,
            bias_ih: &x.bias_ih,
            bias_hh: &x.bias_hh,
            constant: &x.constant,
            c_prev: &x.c_prev,
            h_prev: &x.h_prev,
            h: &mut h,
            c: &mut c,
            scratch: &mut scratch,
        },
        &mut cache,
    );
    assert_eq!(h, h_ref, "{}: training and inference h differ", spec.name);
    assert_eq!(c, c_ref, "{}: training and inference c differ", spec.name);

    let mut dzx = vec![0.0; ROWS * gates];
    let mut dzh = vec![
        0.0;
        if spec.shared_preactivation_grad {
            0
        } else {
            ROWS * gates
        }
    ];
    let mut dc_prev = vec![0.0; ROWS * HIDDEN];
    let mut dh_prev = vec![0.0; if spec.reads_h_prev { ROWS * HIDDEN } else { 0 }];
    let mut dconstant = vec![0.0; x.constant.len()];
    let mut dbias_ih = vec![0.0; gates];
    let mut dbias_hh = vec![0.0; gates];
    let mut back_scratch = vec![0.0; ROWS * spec.backward_scratch.len(HIDDEN)];
    let mut grads = C::zeros(cell.dims());
    cell.step_backward(
        BackwardIo {
            rows: ROWS,
            dh: &dh,
            dc: &dc,
            c_prev: &x.c_prev,
            c: &c,
            h_prev: &x.h_prev,
            bias_ih: &x.bias_ih,
            bias_hh: &x.bias_hh,
            constant: &x.constant,
            cache: &cache,
            dzx: &mut dzx,
            dzh: &mut dzh,
            dc_prev: &mut dc_prev,
            dh_prev: &mut dh_prev,
            dconstant: &mut dconstant,
            dbias_ih: &mut dbias_ih,
            dbias_hh: &mut dbias_hh,
            scratch: &mut back_scratch,
        },
        &mut grads,
    );
    if spec.shared_preactivation_grad {
        dzh = dzx.clone();
    }

    type Field = fn(&mut Inputs) -> &mut Vec<f64>;
    let fields: [(&str, Field, &[f64]); 6] = [
        ("constant", |x| &mut x.constant, &dconstant),
        ("zx", |x| &mut x.zx, &dzx),
        ("zh", |x| &mut x.zh, &dzh),
        ("bias_ih", |x| &mut x.bias_ih, &dbias_ih),
        ("bias_hh", |x| &mut x.bias_hh, &dbias_hh),
        ("c_prev", |x| &mut x.c_prev, &dc_prev),
    ];
    for (name, field, analytic) in fields {
        let values = field(&mut x.clone()).clone();
        for (k, (&base, &expected)) in values.iter().zip(analytic).enumerate() {
            let mut eval = |v: f64| {
                let mut moved = x.clone();
                field(&mut moved)[k] = v;
                loss(&cell, &moved, &dh, &dc)
            };
            assert_close(
                &format!("{} d{name}[{k}]", spec.name),
                expected,
                numeric(&mut eval, base),
            );
        }
    }
    if spec.reads_h_prev {
        for (k, (&base, &expected)) in x.h_prev.iter().zip(&dh_prev).enumerate() {
            let mut eval = |v: f64| {
                let mut moved = x.clone();
                moved.h_prev[k] = v;
                loss(&cell, &moved, &dh, &dc)
            };
            assert_close(
                &format!("{} dh_prev[{k}]", spec.name),
                expected,
                numeric(&mut eval, base),
            );
        }
    }
    for param in spec.params {
        let mut analytic = Vec::new();
        grads.visit(&mut |name, values| {
            if name == param.name {
                analytic = values.iter().copied().collect();
            }
        });
        for (k, &expected) in analytic.iter().enumerate() {
            let mut base = 0.0;
            cell.visit(&mut |name, values| {
                if name == param.name {
                    base = values.iter().copied().nth(k).unwrap_or_default();
                }
            });
            let mut eval = |v: f64| {
                let mut moved = cell.clone();
                moved.visit_mut(&mut |name, mut values| {
                    if name == param.name
                        && let Some(slot) = values.iter_mut().nth(k)
                    {
                        *slot = v;
                    }
                });
                loss(&moved, &x, &dh, &dc)
            };
            assert_close(
                &format!("{} d{}[{k}]", spec.name, param.name),
                expected,
                numeric(&mut eval, base),
            );
        }
    }
}

/// Every gate conditioned on the constant input, the forget gate twice over.
#[lstm_cell(crate = "lstm_runtime", z = z + cond, f = sigmoid(z_f + cond_f * c_prev))]
pub struct Conditioned {
    cond: Constant,
}

#[test]
fn constant_step_gradients() {
    assert_eq!(Conditioned::<f64>::SPEC.constant, Some("cond"));
    check::<Conditioned<f64>>(7);
}

#[test]
fn layer_norm_step_gradients() {
    check::<LayerNorm<f64>>(8);
}

#[test]
fn lstm_step_gradients() {
    check::<Lstm<f64>>(1);
}

#[test]
fn forget_bias_step_gradients() {
    check::<ForgetBias<f64>>(2);
}

#[test]
fn scaled_forget_step_gradients() {
    check::<ScaledForget<f64>>(3);
}

#[test]
fn peephole_step_gradients() {
    check::<Peephole<f64>>(4);
}

#[test]
fn cifg_step_gradients() {
    check::<Cifg<f64>>(5);
}

#[test]
fn hard_sigmoid_step_gradients() {
    check::<HardSigmoid<f64>>(6);
}
