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

/// A cell with random parameters and random step inputs and output gradients.
fn setup<C: Cell<Elem = f64>>(seed: u64) -> (C, Inputs, Vec<f64>, Vec<f64>) {
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
    (cell, x, dh, dc)
}

/// What the generated backward step computes for one step.
struct Analytic<C> {
    /// The gradients of the perturbable step inputs, by [`Inputs`] field name.
    inputs: Vec<(&'static str, Vec<f64>)>,
    /// Empty when the cell does not read `h_prev`.
    dh_prev: Vec<f64>,
    params: C,
}

/// The training step (checked to repeat inference) and the generated backward step.
fn analytic<C: Cell<Elem = f64>>(cell: &C, x: &Inputs, dh: &[f64], dc: &[f64]) -> Analytic<C> {
    let spec = C::SPEC;
    let gates = spec.gates.len() * HIDDEN;
    let (h_ref, c_ref) = forward(cell, x);
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
    let mut params = C::zeros(cell.dims());
    cell.step_backward(
        BackwardIo {
            rows: ROWS,
            dh,
            dc,
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
        &mut params,
    );
    if spec.shared_preactivation_grad {
        dzh = dzx.clone();
    }
    Analytic {
        inputs: vec![
            ("constant", dconstant),
            ("zx", dzx),
            ("zh", dzh),
            ("bias_ih", dbias_ih),
            ("bias_hh", dbias_hh),
            ("c_prev", dc_prev),
        ],
        dh_prev,
        params,
    }
}

/// The perturbable step inputs, by the names [`Analytic::inputs`] gives their gradients.
fn field<'a>(x: &'a mut Inputs, name: &str) -> &'a mut Vec<f64> {
    match name {
        "constant" => &mut x.constant,
        "zx" => &mut x.zx,
        "zh" => &mut x.zh,
        "bias_ih" => &mut x.bias_ih,
        "bias_hh" => &mut x.bias_hh,
        "c_prev" => &mut x.c_prev,
        "h_prev" => &mut x.h_prev,
        _ => panic!("no step input {name}"),
    }
}

/// Every gradient of the step's inputs in `expected` against central differences of `loss`
/// along that input.
fn compare_inputs(
    what: &str,
    x: &Inputs,
    expected: &[(&'static str, Vec<f64>)],
    loss: &dyn Fn(&Inputs) -> f64,
) {
    for (name, analytic) in expected {
        let values = field(&mut x.clone(), name).clone();
        for (k, (&base, &expected)) in values.iter().zip(analytic).enumerate() {
            let mut eval = |v: f64| {
                let mut moved = x.clone();
                field(&mut moved, name)[k] = v;
                loss(&moved)
            };
            assert_close(
                &format!("{what} d{name}[{k}]"),
                expected,
                numeric(&mut eval, base),
            );
        }
    }
}

fn check<C: Cell<Elem = f64>>(seed: u64) {
    let spec = C::SPEC;
    let (cell, x, dh, dc) = setup::<C>(seed);
    let found = analytic(&cell, &x, &dh, &dc);
    let mut inputs = found.inputs;
    if spec.reads_h_prev {
        inputs.push(("h_prev", found.dh_prev));
    }
    compare_inputs(spec.name, &x, &inputs, &|moved| {
        loss(&cell, moved, &dh, &dc)
    });
    let grads = found.params;
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

// One cell per function added to the spec language with the research cells, each gradchecked
// alone so a wrong derivative names its function. Arguments are shaped to cover every branch
// of a piecewise definition (softplus past its threshold of 20, elu on both sides of 0,
// whole, fractional and negative powers) and to stay inside each domain (log and sqrt of
// positive values).

/// `log` of a value in [0.5, 2.5].
#[lstm_cell(crate = "lstm_runtime", g = log(1.5 + tanh(z_g)))]
pub struct LogCell;

#[test]
fn log_gradients() {
    check::<LogCell<f64>>(20);
}

/// `logsigmoid` of arguments up to ±12.
#[lstm_cell(crate = "lstm_runtime", g = logsigmoid(4.0 * z_g) + 1.0)]
pub struct LogSigmoidCell;

#[test]
fn logsigmoid_gradients() {
    check::<LogSigmoidCell<f64>>(21);
}

/// `softplus` of arguments up to ±36, on both sides of its threshold.
#[lstm_cell(crate = "lstm_runtime", g = softplus(12.0 * z_g) / 12.0)]
pub struct SoftplusCell;

#[test]
fn softplus_gradients() {
    check::<SoftplusCell<f64>>(22);
}

/// `silu` on the candidate and the output gate's argument.
#[lstm_cell(crate = "lstm_runtime", g = silu(z_g), o = sigmoid(silu(z_o)))]
pub struct SiluCell;

#[test]
fn silu_gradients() {
    check::<SiluCell<f64>>(23);
}

/// Exact `gelu`.
#[lstm_cell(crate = "lstm_runtime", g = gelu(2.0 * z_g))]
pub struct GeluCell;

#[test]
fn gelu_gradients() {
    check::<GeluCell<f64>>(24);
}

/// `elu` with its default alpha and with a learned one.
#[lstm_cell(crate = "lstm_runtime", g = elu(z_g), i = sigmoid(elu(z_i, alpha)))]
pub struct EluCell {
    #[init(constant(0.7))]
    alpha: Scalar,
}

#[test]
fn elu_gradients() {
    check::<EluCell<f64>>(25);
}

/// Whole, fractional, negative and trivial powers.
#[lstm_cell(
    crate = "lstm_runtime",
    g = pow(tanh(z_g), 3) + pow(sigmoid(z_g), 1.5) - pow(2.0 + c_prev, -2) + pow(z_g, 1),
    o = sigmoid(pow(z_o, 2) - pow(z_o, 0))
)]
pub struct PowCell;

#[test]
fn pow_gradients() {
    check::<PowCell<f64>>(26);
}

/// `abs` and `sqrt`, once internal, now in the spec language.
#[lstm_cell(crate = "lstm_runtime", g = tanh(abs(z_g) - 0.5), o = sigmoid(sqrt(1.0 + z_o * z_o) - 1.0))]
pub struct AbsSqrtCell;

#[test]
fn abs_and_sqrt_gradients() {
    check::<AbsSqrtCell<f64>>(27);
}

/// `stop_gradient` on the forget gate's value where the candidate reads it.
#[lstm_cell(crate = "lstm_runtime", g = tanh(z_g) * stop_gradient(sigmoid(z_f)))]
pub struct StopCell;

/// [`StopCell`] with the stopped value as an input of the step: a constant, which finite
/// differences hold fixed while they move everything else.
#[lstm_cell(crate = "lstm_runtime", g = tanh(z_g) * frozen_g)]
pub struct FrozenCell {
    frozen: Constant,
}

/// A stopped value is a constant to the gradient: `StopCell`'s derived gradients are the
/// finite differences of `FrozenCell`, whose `frozen_g` holds `sigmoid(z_f)` at the point and
/// does not move with `z_f` (and the gradient through `f` into `c` is still there).
#[test]
fn stop_gradient_gradients() {
    let (stop, x, dh, dc) = setup::<StopCell<f64>>(28);
    let frozen = FrozenCell::<f64>::init(
        CellDims::new(INPUT, HIDDEN),
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    let gates = 4 * HIDDEN;
    let mut held = x.clone();
    held.constant = vec![0.0; ROWS * gates];
    for row in 0..ROWS {
        for j in 0..HIDDEN {
            let f = row * gates + HIDDEN + j;
            let z_f = x.zx[f] + x.zh[f] + x.bias_ih[HIDDEN + j] + x.bias_hh[HIDDEN + j];
            held.constant[row * gates + 2 * HIDDEN + j] = 1.0 / (1.0 + (-z_f).exp());
        }
    }
    let (h_stop, c_stop) = forward(&stop, &x);
    let (h_frozen, c_frozen) = forward(&frozen, &held);
    for (a, b) in h_stop
        .iter()
        .zip(&h_frozen)
        .chain(c_stop.iter().zip(&c_frozen))
    {
        assert!((a - b).abs() < 1e-14, "forward differs: {a} against {b}");
    }
    let found = analytic(&stop, &x, &dh, &dc);
    let inputs: Vec<_> = found
        .inputs
        .into_iter()
        .filter(|(name, _)| *name != "constant")
        .collect();
    compare_inputs("stop_gradient", &held, &inputs, &|moved| {
        loss(&frozen, moved, &dh, &dc)
    });
}
