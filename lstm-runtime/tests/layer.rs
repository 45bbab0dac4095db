//! `Rnn::forward` against independent references: the equations of each hand-written cell
//! evaluated one scalar at a time in `f64`, with explicit matrix-vector loops (no GEMM). Also
//! the edge cases (empty sequence, empty batch, no input features, any memory layout) and one
//! error test per bad input.

mod common;

use ndarray::{Array1, Array2, Array3, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::blend::Blend;
use common::hand_lstm::HandLstm;
use lstm_runtime::{Cell, CellDims, Error, Float, Rnn, RnnOutput};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A cell's four weights in `f64`, biases as zeros when the cell has none.
struct ReferenceWeights {
    weight_ih: Array2<f64>,
    weight_hh: Array2<f64>,
    bias_ih: Array1<f64>,
    bias_hh: Array1<f64>,
}

impl ReferenceWeights {
    fn of<C: Cell>(cell: &C) -> Self {
        let weights = cell.weights();
        let rows = weights.weight_ih.nrows();
        let bias = |bias: Option<&Array1<C::Elem>>| {
            bias.map_or_else(
                || Array1::zeros(rows),
                |bias| bias.mapv(Float::to_f64_lossy),
            )
        };
        ReferenceWeights {
            weight_ih: weights.weight_ih.mapv(Float::to_f64_lossy),
            weight_hh: weights.weight_hh.mapv(Float::to_f64_lossy),
            bias_ih: bias(weights.bias_ih),
            bias_hh: bias(weights.bias_hh),
        }
    }

    /// `z = W_ih·x + b_ih + W_hh·h_prev + b_hh` for one batch row, one dot product per row of
    /// the weights.
    fn preactivations(&self, x: &[f64], h_prev: &[f64]) -> Vec<f64> {
        let mut z = Vec::new();
        for k in 0..self.weight_ih.nrows() {
            let mut sum = self.bias_ih[k] + self.bias_hh[k];
            for (p, x) in x.iter().enumerate() {
                sum += self.weight_ih[[k, p]] * x;
            }
            for (q, h) in h_prev.iter().enumerate() {
                sum += self.weight_hh[[k, q]] * h;
            }
            z.push(sum);
        }
        z
    }
}

/// A unit's update in a reference: `(z, c_prev, h_prev, j)` to unit `j`'s new `(h, c)`, with
/// `z` the row's gate-stacked pre-activations.
type Update = dyn Fn(&[f64], &[f64], &[f64], usize) -> (f64, f64);

/// The reference recurrence: `update(z, c_prev, h_prev, j)` gives unit `j`'s new `(h, c)`.
fn reference(
    weights: &ReferenceWeights,
    x: &Array3<f64>,
    h0: &Array2<f64>,
    c0: &Array2<f64>,
    update: impl Fn(&[f64], &[f64], &[f64], usize) -> (f64, f64),
) -> RnnOutput<f64> {
    let (seq_len, batch, _) = x.dim();
    let hidden = c0.ncols();
    let mut h = h0.clone();
    let mut c = c0.clone();
    let mut output = Array3::zeros((seq_len, batch, hidden));
    for t in 0..seq_len {
        for b in 0..batch {
            let x_tb: Vec<f64> = x.slice(ndarray::s![t, b, ..]).to_vec();
            let h_prev = h.row(b).to_vec();
            let c_prev = c.row(b).to_vec();
            let z = weights.preactivations(&x_tb, &h_prev);
            for j in 0..hidden {
                let (h_new, c_new) = update(&z, &c_prev, &h_prev, j);
                h[[b, j]] = h_new;
                c[[b, j]] = c_new;
                output[[t, b, j]] = h_new;
            }
        }
    }
    RnnOutput {
        output,
        h_n: h,
        c_n: c,
    }
}

/// PyTorch's LSTM for unit `j`, gate rows `[i f g o]`.
fn lstm_update(hidden: usize) -> impl Fn(&[f64], &[f64], &[f64], usize) -> (f64, f64) {
    move |z, c_prev, _h_prev, j| {
        let i = sigmoid(z[j]);
        let f = sigmoid(z[hidden + j]);
        let g = z[2 * hidden + j].tanh();
        let o = sigmoid(z[3 * hidden + j]);
        let c = f * c_prev[j] + i * g;
        (o * c.tanh(), c)
    }
}

/// The blend cell for unit `j`: one gate row per unit.
fn blend_update(shift: Array1<f64>) -> impl Fn(&[f64], &[f64], &[f64], usize) -> (f64, f64) {
    move |z, c_prev, h_prev, j| {
        let a = sigmoid(z[j]);
        let c = a * c_prev[j] + (1.0 - a) * h_prev[j];
        ((c + shift[j]).tanh(), c)
    }
}

fn random3<F: Float>(rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) -> Array3<F> {
    Array3::from_shape_fn(shape, |_| F::of(rng.random_range(-2.0..2.0)))
}

fn random2<F: Float>(rng: &mut ChaCha8Rng, shape: (usize, usize)) -> Array2<F> {
    Array2::from_shape_fn(shape, |_| F::of(rng.random_range(-1.0..1.0)))
}

fn assert_close<F: Float, D: ndarray::Dimension>(
    what: &str,
    found: &ndarray::Array<F, D>,
    expected: &ndarray::Array<f64, D>,
    tolerance: f64,
) {
    assert_eq!(found.shape(), expected.shape(), "{what}: shape");
    for (index, (found, expected)) in found.iter().zip(expected).enumerate() {
        let found = found.to_f64_lossy();
        assert!(
            (found - expected).abs() <= tolerance,
            "{what}[{index}]: found {found}, expected {expected}"
        );
    }
}

fn assert_output_close<F: Float>(found: &RnnOutput<F>, expected: &RnnOutput<f64>, tolerance: f64) {
    assert_close("output", &found.output, &expected.output, tolerance);
    assert_close("h_n", &found.h_n, &expected.h_n, tolerance);
    assert_close("c_n", &found.c_n, &expected.c_n, tolerance);
}

/// Runs `cell` through `Rnn::forward` and through `reference` with `update`, on a random
/// input of the given shape, with and without a random initial state.
fn check_against_reference<C: Cell>(
    cell: C,
    seq_len: usize,
    batch: usize,
    tolerance: f64,
    rng: &mut ChaCha8Rng,
    update: &Update,
) {
    let dims = cell.dims();
    let weights = ReferenceWeights::of(&cell);
    let rnn = Rnn::new(cell);
    let x = random3::<C::Elem>(rng, (seq_len, batch, dims.input_size));
    let x64 = x.mapv(Float::to_f64_lossy);
    for with_initial in [false, true] {
        let (h0, c0) = if with_initial {
            (
                random2(rng, (batch, dims.hidden_size)),
                random2(rng, (batch, dims.hidden_size)),
            )
        } else {
            (
                Array2::zeros((batch, dims.hidden_size)),
                Array2::zeros((batch, dims.hidden_size)),
            )
        };
        let initial = with_initial.then(|| (h0.view(), c0.view()));
        let found = rnn.forward(x.view(), initial).unwrap();
        let expected = reference(
            &weights,
            &x64,
            &h0.mapv(Float::to_f64_lossy),
            &c0.mapv(Float::to_f64_lossy),
            update,
        );
        assert_output_close(&found, &expected, tolerance);
    }
}

fn check_lstm_shapes<F: Float>(tolerance: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for seq_len in [1, 5] {
        for batch in [1, 3] {
            for input_size in [1, 4] {
                for hidden in [1, 3, 8] {
                    let cell = HandLstm::<F>::init(CellDims::new(input_size, hidden), &mut rng);
                    check_against_reference(
                        cell,
                        seq_len,
                        batch,
                        tolerance,
                        &mut rng,
                        &lstm_update(hidden),
                    );
                }
            }
        }
    }
}

#[test]
fn lstm_matches_reference_f64() {
    check_lstm_shapes::<f64>(1e-12);
}

#[test]
fn lstm_matches_reference_f32() {
    check_lstm_shapes::<f32>(1e-5);
}

#[test]
fn lstm_without_bias_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let dims = CellDims {
        bias: false,
        ..CellDims::new(4, 3)
    };
    let cell = HandLstm::<f64>::init(dims, &mut rng);
    assert!(cell.bias_ih.is_none());
    check_against_reference(cell, 5, 3, 1e-12, &mut rng, &lstm_update(3));
}

#[test]
fn lstm_matches_reference_where_gemms_run_threaded() {
    // 192 × 32 × 256 and 64 × 64 × 256 multiply-adds: above the single-thread threshold.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let cell = HandLstm::<f64>::init(CellDims::new(32, 64), &mut rng);
    check_against_reference(cell, 3, 64, 1e-12, &mut rng, &lstm_update(64));
}

#[test]
fn one_gate_cell_reading_h_prev_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (seq_len, batch, input_size, hidden) in [(1, 1, 1, 1), (5, 3, 4, 3), (4, 2, 2, 8)] {
        let cell = Blend::<f64>::init(CellDims::new(input_size, hidden), &mut rng);
        let update = blend_update(cell.shift.clone());
        check_against_reference(cell, seq_len, batch, 1e-12, &mut rng, &update);
    }
}

#[test]
fn input_without_features_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let cell = HandLstm::<f64>::init(CellDims::new(0, 3), &mut rng);
    check_against_reference(cell, 4, 2, 1e-12, &mut rng, &lstm_update(3));
}

#[test]
fn single_unit_by_hand() {
    // H = I = T = B = 1, every weight and bias 0.5, x = 1, h0 = c0 = 0. Every gate has
    //   z = W_ih·x + b_ih + W_hh·h0 + b_hh = 0.5·1 + 0.5 + 0.5·0 + 0.5 = 1.5,
    // so i = f = o = σ(1.5) = 1 / (1 + e^-1.5) = 0.8175744761936437
    // and      g = tanh(1.5)                   = 0.9051482536448664.
    //   c = f·c0 + i·g = 0 + 0.8175744761936437 · 0.9051482536448664 = 0.740026109351293
    //   h = o·tanh(c)  = 0.8175744761936437 · tanh(0.740026109351293)
    //                  = 0.8175744761936437 · 0.629160935807892      = 0.51438592253464
    let dims = CellDims::new(1, 1);
    let mut cell = HandLstm::<f64>::zeros(dims);
    cell.weight_ih.fill(0.5);
    cell.weight_hh.fill(0.5);
    cell.bias_ih
        .iter_mut()
        .chain(cell.bias_hh.iter_mut())
        .for_each(|bias| bias.fill(0.5));
    let x = Array3::from_elem((1, 1, 1), 1.0);
    let out = Rnn::new(cell).forward(x.view(), None).unwrap();
    let (h, c) = (0.51438592253464, 0.740026109351293);
    assert!((out.output[[0, 0, 0]] - h).abs() < 1e-15);
    assert!((out.h_n[[0, 0]] - h).abs() < 1e-15);
    assert!((out.c_n[[0, 0]] - c).abs() < 1e-15);
}

#[test]
fn any_memory_layout_gives_the_same_result() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (seq_len, batch, input_size, hidden) = (5, 3, 4, 6);
    let rnn = Rnn::new(HandLstm::<f64>::init(
        CellDims::new(input_size, hidden),
        &mut rng,
    ));
    let x = random3::<f64>(&mut rng, (seq_len, batch, input_size));
    let h0 = random2::<f64>(&mut rng, (batch, hidden));
    let c0 = random2::<f64>(&mut rng, (batch, hidden));
    let expected = rnn.forward(x.view(), Some((h0.view(), c0.view()))).unwrap();

    // Batch-major storage viewed time-major, and column-major initial states.
    let mut x_batch_major = Array3::zeros((batch, seq_len, input_size));
    x_batch_major.assign(&x.view().permuted_axes([1, 0, 2]));
    let mut h0_f = Array2::zeros((batch, hidden).f());
    h0_f.assign(&h0);
    let mut c0_f = Array2::zeros((batch, hidden).f());
    c0_f.assign(&c0);
    let found = rnn
        .forward(
            x_batch_major.view().permuted_axes([1, 0, 2]),
            Some((h0_f.view(), c0_f.view())),
        )
        .unwrap();
    assert_eq!(found, expected);

    // Every other time step, read through a strided view.
    let doubled = random3::<f64>(&mut rng, (2 * seq_len, batch, input_size));
    let strided = doubled.slice(ndarray::s![..;2, .., ..]);
    let found = rnn.forward(strided, None).unwrap();
    assert_eq!(found, rnn.forward(strided.to_owned().view(), None).unwrap());
}

#[test]
fn empty_sequence_returns_the_initial_state() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let rnn = Rnn::new(HandLstm::<f64>::init(CellDims::new(4, 3), &mut rng));
    let x = Array3::zeros((0, 2, 4));
    let h0 = random2::<f64>(&mut rng, (2, 3));
    let c0 = random2::<f64>(&mut rng, (2, 3));
    let out = rnn.forward(x.view(), Some((h0.view(), c0.view()))).unwrap();
    assert_eq!(out.output.shape(), &[0, 2, 3]);
    assert_eq!(out.h_n, h0);
    assert_eq!(out.c_n, c0);
    let out = rnn.forward(x.view(), None).unwrap();
    assert_eq!(out.h_n, Array2::<f64>::zeros((2, 3)));
    assert_eq!(out.c_n, Array2::<f64>::zeros((2, 3)));
}

#[test]
fn empty_batch_and_empty_state_give_empty_arrays() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let rnn = Rnn::new(HandLstm::<f64>::init(CellDims::new(4, 3), &mut rng));
    let out = rnn.forward(Array3::zeros((5, 0, 4)).view(), None).unwrap();
    assert_eq!(out.output.shape(), &[5, 0, 3]);
    assert_eq!(out.h_n.shape(), &[0, 3]);
    assert_eq!(out.c_n.shape(), &[0, 3]);

    let rnn = Rnn::new(HandLstm::<f64>::init(CellDims::new(4, 0), &mut rng));
    let out = rnn.forward(Array3::zeros((5, 2, 4)).view(), None).unwrap();
    assert_eq!(out.output.shape(), &[5, 2, 0]);
    assert_eq!(out.h_n.shape(), &[2, 0]);
}

#[test]
fn cell_accessors_give_the_cell_back() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let cell = HandLstm::<f32>::init(CellDims::new(2, 3), &mut rng);
    let mut rnn = Rnn::new(cell.clone());
    assert_eq!(rnn.cell(), &cell);
    rnn.cell_mut().weight_hh.fill(0.0);
    assert_eq!(rnn.cell().weight_hh, Array2::<f32>::zeros((12, 3)));
    assert_eq!(rnn.into_cell().weight_ih, cell.weight_ih);
}

// Errors: one test per bad input. The layer under test has input_size 4, hidden_size 3
// (12 gate rows), and the input is (seq_len 5, batch 2, 4).

fn lstm_4_3() -> HandLstm<f64> {
    HandLstm::init(CellDims::new(4, 3), &mut ChaCha8Rng::seed_from_u64(11))
}

fn forward_error<C: Cell<Elem = f64>>(
    cell: C,
    x_shape: (usize, usize, usize),
    h0: (usize, usize),
    c0: (usize, usize),
) -> Error {
    let (h0, c0) = (Array2::zeros(h0), Array2::zeros(c0));
    Rnn::new(cell)
        .forward(Array3::zeros(x_shape).view(), Some((h0.view(), c0.view())))
        .expect_err("bad input must be an error")
}

fn mismatch(what: &str, expected: &[usize], found: &[usize]) -> Error {
    Error::ShapeMismatch {
        what: what.into(),
        expected: expected.to_vec(),
        found: found.to_vec(),
    }
}

#[test]
fn wrong_input_features_is_an_error() {
    let err = forward_error(lstm_4_3(), (5, 2, 3), (2, 3), (2, 3));
    assert_eq!(err, mismatch("input", &[5, 2, 4], &[5, 2, 3]));
    assert_eq!(
        err.to_string(),
        "`input` has shape [5, 2, 3]; expected [5, 2, 4]"
    );
}

#[test]
fn wrong_h0_batch_is_an_error() {
    let err = forward_error(lstm_4_3(), (5, 2, 4), (3, 3), (2, 3));
    assert_eq!(err, mismatch("h0", &[2, 3], &[3, 3]));
}

#[test]
fn wrong_h0_width_is_an_error() {
    let err = forward_error(lstm_4_3(), (5, 2, 4), (2, 4), (2, 3));
    assert_eq!(err, mismatch("h0", &[2, 3], &[2, 4]));
}

#[test]
fn wrong_c0_is_an_error() {
    let err = forward_error(lstm_4_3(), (5, 2, 4), (2, 3), (2, 2));
    assert_eq!(err, mismatch("c0", &[2, 3], &[2, 2]));
    let err = forward_error(lstm_4_3(), (5, 2, 4), (2, 3), (1, 3));
    assert_eq!(err, mismatch("c0", &[2, 3], &[1, 3]));
}

#[test]
fn wrong_weight_ih_is_an_error() {
    let mut cell = lstm_4_3();
    cell.weight_ih = Array2::zeros((12, 5));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(err, mismatch("weight_ih", &[12, 4], &[12, 5]));
}

#[test]
fn wrong_weight_hh_is_an_error() {
    let mut cell = lstm_4_3();
    cell.weight_hh = Array2::zeros((9, 3));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(err, mismatch("weight_hh", &[12, 3], &[9, 3]));
}

#[test]
fn wrong_biases_are_errors() {
    let mut cell = lstm_4_3();
    cell.bias_ih = Some(Array1::zeros(11));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(err, mismatch("bias_ih", &[12], &[11]));
    let mut cell = lstm_4_3();
    cell.bias_hh = Some(Array1::zeros(3));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(err, mismatch("bias_hh", &[12], &[3]));
}

#[test]
fn wrong_spec_parameter_is_an_error() {
    let mut cell = Blend::<f64>::init(CellDims::new(4, 3), &mut ChaCha8Rng::seed_from_u64(12));
    cell.shift = Array1::zeros(2);
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(err, mismatch("shift", &[3], &[2]));
}

#[test]
fn non_contiguous_weight_is_an_error() {
    let mut cell = lstm_4_3();
    cell.weight_hh.invert_axis(ndarray::Axis(0));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(
        err,
        Error::NotContiguous {
            what: "weight_hh".into()
        }
    );
    let mut cell = Blend::<f64>::init(CellDims::new(4, 3), &mut ChaCha8Rng::seed_from_u64(12));
    cell.shift.invert_axis(ndarray::Axis(0));
    let err = forward_error(cell, (5, 2, 4), (2, 3), (2, 3));
    assert_eq!(
        err,
        Error::NotContiguous {
            what: "shift".into()
        }
    );
}

#[test]
fn recurrent_size_other_than_hidden_size_is_an_error() {
    let dims = CellDims {
        recurrent_size: 2,
        ..CellDims::new(4, 3)
    };
    let cell = HandLstm::<f64>::init(dims, &mut ChaCha8Rng::seed_from_u64(13));
    let err = forward_error(cell, (5, 2, 4), (2, 2), (2, 3));
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "recurrent_size"),
        "unexpected error {err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid `recurrent_size`: expected 3, the hidden size (a layer without projection \
         feeds `h` back as the recurrent input); found 2"
    );
}
