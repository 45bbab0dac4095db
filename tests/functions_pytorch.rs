//! The spec language's functions against PyTorch: for each, a cell whose new state is that
//! function of its one gate's pre-activation (`c = gelu(z_g)`, `h = c`), stepped over a row
//! per point and differentiated by its generated backward step, against the values and
//! autograd gradients `scripts/fixtures.py` wrote in `tests/fixtures/functions/`. The points
//! include each function's kinks and thresholds, where finite differences cannot check the
//! convention the derivative follows (`lstm-runtime/tests/step_gradients.rs` gradchecks the
//! derivatives everywhere else).

use lstm::io::TensorMap;
use lstm::{BackwardIo, Cell, CellDims, StepIo, lstm_cell};

#[lstm_cell(c = log(z_g), h = c)]
pub struct Log;
#[lstm_cell(c = logsigmoid(z_g), h = c)]
pub struct LogSigmoid;
#[lstm_cell(c = softplus(z_g), h = c)]
pub struct Softplus;
#[lstm_cell(c = silu(z_g), h = c)]
pub struct Silu;
#[lstm_cell(c = gelu(z_g), h = c)]
pub struct Gelu;
#[lstm_cell(c = elu(z_g), h = c)]
pub struct Elu;
#[lstm_cell(c = elu(z_g, 0.7), h = c)]
pub struct EluAlpha;
#[lstm_cell(c = abs(z_g), h = c)]
pub struct Abs;
#[lstm_cell(c = sqrt(z_g), h = c)]
pub struct Sqrt;
#[lstm_cell(c = pow(z_g, 2), h = c)]
pub struct Pow2;
#[lstm_cell(c = pow(z_g, 3), h = c)]
pub struct Pow3;
#[lstm_cell(c = pow(z_g, -2), h = c)]
pub struct PowMinus2;
#[lstm_cell(c = pow(z_g, 0.5), h = c)]
pub struct PowHalf;
#[lstm_cell(c = pow(z_g, 1.5), h = c)]
pub struct Pow15;
#[lstm_cell(c = pow(z_g, 0), h = c)]
pub struct Pow0;
#[lstm_cell(c = stop_gradient(z_g) * z_g, h = c)]
pub struct StopGradient;

/// The cell's value and derivative at each point: one batch row per point, one unit.
fn value_and_derivative<C: Cell<Elem = f64>>(points: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let spec = C::SPEC;
    assert_eq!(spec.gates.len(), 1, "{}: one gate", spec.name);
    let cell = C::zeros(CellDims::new(1, 1));
    let rows = points.len();
    let zeros = vec![0.0; rows];
    let mut h = vec![0.0; rows];
    let mut c = vec![0.0; rows];
    let mut scratch = vec![0.0; rows * spec.scratch.len(1)];
    let mut cache = vec![0.0; rows * spec.cache.len(1)];
    cell.step_train(
        StepIo {
            rows,
            zx: points,
            zh: &zeros,
            bias_ih: &[0.0],
            bias_hh: &[0.0],
            constant: &[],
            c_prev: &zeros,
            h_prev: &zeros,
            h: &mut h,
            c: &mut c,
            scratch: &mut scratch,
        },
        &mut cache,
    );
    let ones = vec![1.0; rows];
    let mut dzx = vec![0.0; rows];
    let mut dzh = vec![
        0.0;
        if spec.shared_preactivation_grad {
            0
        } else {
            rows
        }
    ];
    let mut dc_prev = vec![0.0; rows];
    let mut dh_prev = vec![0.0; if spec.reads_h_prev { rows } else { 0 }];
    let mut back_scratch = vec![0.0; rows * spec.backward_scratch.len(1)];
    let mut grads = C::zeros(cell.dims());
    cell.step_backward(
        BackwardIo {
            rows,
            dh: &ones,
            dc: &zeros,
            c_prev: &zeros,
            c: &c,
            h_prev: &zeros,
            bias_ih: &[0.0],
            bias_hh: &[0.0],
            constant: &[],
            cache: &cache,
            dzx: &mut dzx,
            dzh: &mut dzh,
            dc_prev: &mut dc_prev,
            dh_prev: &mut dh_prev,
            dconstant: &mut [],
            dbias_ih: &mut [0.0],
            dbias_hh: &mut [0.0],
            scratch: &mut back_scratch,
        },
        &mut grads,
    );
    (h, dzx)
}

/// Equal to rounding, or the same infinity, or both NaN (PyTorch's `pow(-1, 1.5)`).
fn same(found: f64, expected: f64) -> bool {
    if expected.is_nan() || expected.is_infinite() {
        return found.is_nan() == expected.is_nan() && (expected.is_nan() || found == expected);
    }
    (found - expected).abs() <= 1e-13 * expected.abs().max(1.0)
}

fn check<C: Cell<Elem = f64>>(fixture: &str) {
    let values =
        TensorMap::read_safetensors("tests/fixtures/functions/values.safetensors").unwrap();
    let read = |what: &str| -> Vec<f64> {
        let name = format!("{fixture}.{what}");
        values
            .float::<f64>(&name)
            .unwrap()
            .iter()
            .copied()
            .collect()
    };
    let (points, y, grad) = (read("x"), read("y"), read("grad"));
    let (found_y, found_grad) = value_and_derivative::<C>(&points);
    for (k, &x) in points.iter().enumerate() {
        assert!(
            same(found_y[k], y[k]),
            "{fixture}({x}) = {} here, {} in PyTorch",
            found_y[k],
            y[k]
        );
        assert!(
            same(found_grad[k], grad[k]),
            "{fixture}'({x}) = {} here, {} in PyTorch",
            found_grad[k],
            grad[k]
        );
    }
}

#[test]
fn log_matches_pytorch() {
    check::<Log<f64>>("log");
}

#[test]
fn logsigmoid_matches_pytorch() {
    check::<LogSigmoid<f64>>("logsigmoid");
}

#[test]
fn softplus_matches_pytorch() {
    check::<Softplus<f64>>("softplus");
}

#[test]
fn silu_matches_pytorch() {
    check::<Silu<f64>>("silu");
}

#[test]
fn gelu_matches_pytorch() {
    check::<Gelu<f64>>("gelu");
}

#[test]
fn elu_matches_pytorch() {
    check::<Elu<f64>>("elu");
    check::<EluAlpha<f64>>("elu_alpha");
}

#[test]
fn abs_and_sqrt_match_pytorch() {
    check::<Abs<f64>>("abs");
    check::<Sqrt<f64>>("sqrt");
}

#[test]
fn pow_matches_pytorch() {
    check::<Pow2<f64>>("pow_2");
    check::<Pow3<f64>>("pow_3");
    check::<PowMinus2<f64>>("pow_minus_2");
    check::<PowHalf<f64>>("pow_half");
    check::<Pow15<f64>>("pow_1_5");
    check::<Pow0<f64>>("pow_0");
}

#[test]
fn stop_gradient_matches_detach() {
    check::<StopGradient<f64>>("stop_gradient");
}
