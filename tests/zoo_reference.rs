//! Every zoo cell, unrolled by `Rnn::forward`, against the naive reference with the cell's
//! equations written out by hand as scalar formulas (`tests/common/reference.rs`): outputs,
//! `h_n` and `c_n`, for several shapes, with and without an initial state.

mod common;

use ndarray::{Array1, Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use common::reference::{GatePre, ReferenceWeights, hard_sigmoid, run_reference, sigmoid};
use lstm::zoo::{Cifg, ForgetBias, HardSigmoid, Lstm, Peephole, ScaledForget};
use lstm::{Cell, CellDims, Float, Rnn};

/// `(seq_len, batch, input_size, hidden_size)`.
const SHAPES: [(usize, usize, usize, usize); 4] =
    [(1, 1, 1, 1), (5, 3, 4, 3), (7, 2, 3, 8), (3, 4, 1, 5)];

const STANDARD_GATES: [char; 4] = ['i', 'f', 'g', 'o'];

/// One unit's new `(h, c)` from the pre-activations and the previous state.
type Step = dyn Fn(&GatePre<'_>, &[f64], &[f64], usize) -> (f64, f64);

fn assert_close<D: ndarray::Dimension, F: Float>(
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

/// Runs `cell` and the reference with `step` on random inputs of the given shape, with and
/// without a random initial state, and compares everything they return.
fn compare<C: Cell>(
    cell: C,
    gates: &[char],
    seq_len: usize,
    batch: usize,
    tolerance: f64,
    rng: &mut ChaCha8Rng,
    step: &Step,
) {
    let spec_gates: Vec<char> = C::SPEC
        .gates
        .iter()
        .map(|gate| gate.letter().chars().next().unwrap())
        .collect();
    assert_eq!(spec_gates, gates, "{}: gate rows", C::SPEC.name);
    let dims = cell.dims();
    let weights = ReferenceWeights::from_cell(&cell, gates);
    let rnn = Rnn::new(cell);
    let x = Array3::from_shape_fn((seq_len, batch, dims.input_size), |_| {
        C::Elem::of(rng.random_range(-2.0..2.0))
    });
    let x64 = x.mapv(Float::to_f64_lossy);
    let mut state = || {
        Array2::from_shape_fn((batch, dims.hidden_size), |_| {
            C::Elem::of(rng.random_range(-1.0..1.0))
        })
    };
    let (h0, c0) = (state(), state());
    for initial in [None, Some((h0.view(), c0.view()))] {
        let found = rnn.forward(x.view(), initial).unwrap();
        let (h0, c0) = (h0.mapv(Float::to_f64_lossy), c0.mapv(Float::to_f64_lossy));
        let expected = match initial {
            Some(_) => run_reference(&weights, &x64, Some(&h0), Some(&c0), step),
            None => run_reference(&weights, &x64, None, None, step),
        };
        let what = |name: &str| {
            format!(
                "{} {name} (T={seq_len}, B={batch}, initial: {})",
                C::SPEC.name,
                initial.is_some()
            )
        };
        assert_close(&what("output"), &found.output, &expected.output, tolerance);
        assert_close(&what("h_n"), &found.h_n, &expected.h_n, tolerance);
        assert_close(&what("c_n"), &found.c_n, &expected.c_n, tolerance);
    }
}

/// Runs `check(dims, seq_len, batch, rng)` for every shape.
fn for_each_shape(seed: u64, mut check: impl FnMut(CellDims, usize, usize, &mut ChaCha8Rng)) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (seq_len, batch, input_size, hidden_size) in SHAPES {
        check(
            CellDims::new(input_size, hidden_size),
            seq_len,
            batch,
            &mut rng,
        );
    }
}

/// PyTorch's LSTM for unit `j`, given the gate values.
fn lstm_state(i: f64, f: f64, g: f64, o: f64, c_prev: f64) -> (f64, f64) {
    let c = f * c_prev + i * g;
    (o * c.tanh(), c)
}

fn standard_step(pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize) -> (f64, f64) {
    let i = sigmoid(pre.z('i', j));
    let f = sigmoid(pre.z('f', j));
    let g = pre.z('g', j).tanh();
    let o = sigmoid(pre.z('o', j));
    lstm_state(i, f, g, o, c_prev[j])
}

#[test]
fn lstm_matches_reference() {
    for_each_shape(1, |dims, seq_len, batch, rng| {
        let cell = Lstm::<f64>::init(dims, rng);
        compare(
            cell,
            &STANDARD_GATES,
            seq_len,
            batch,
            1e-12,
            rng,
            &standard_step,
        );
    });
}

#[test]
fn lstm_f32_matches_reference() {
    for_each_shape(2, |dims, seq_len, batch, rng| {
        let cell = Lstm::<f32>::init(dims, rng);
        compare(
            cell,
            &STANDARD_GATES,
            seq_len,
            batch,
            1e-5,
            rng,
            &standard_step,
        );
    });
}

/// A shape past the thresholds of the fast paths: the time loop runs in a duet (two threads),
/// the recurrent products on packed weights split in two (in f32 with AVX2), and 7 rows and
/// 200 gate rows leave partial row blocks and a partial panel.
#[test]
fn lstm_f32_matches_reference_at_a_size_that_splits_steps() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let cell = Lstm::<f32>::init(CellDims::new(5, 50), &mut rng);
    compare(cell, &STANDARD_GATES, 64, 7, 1e-4, &mut rng, &standard_step);
}

#[test]
fn forget_bias_matches_reference() {
    for_each_shape(3, |dims, seq_len, batch, rng| {
        let mut cell = ForgetBias::<f64>::init(dims, rng);
        assert_eq!(
            cell.forget_bias,
            Array1::<f64>::ones(dims.hidden_size),
            "forget_bias init"
        );
        // Random values, so a forget bias that is ignored (or applied to another gate) shows.
        cell.forget_bias = Array1::from_shape_fn(dims.hidden_size, |_| rng.random_range(-2.0..2.0));
        let forget_bias = cell.forget_bias.clone();
        let step = move |pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize| {
            let i = sigmoid(pre.z('i', j));
            let f = sigmoid(pre.z('f', j) + forget_bias[j]);
            let g = pre.z('g', j).tanh();
            let o = sigmoid(pre.z('o', j));
            lstm_state(i, f, g, o, c_prev[j])
        };
        compare(cell, &STANDARD_GATES, seq_len, batch, 1e-12, rng, &step);
    });
}

#[test]
fn scaled_forget_matches_reference() {
    for_each_shape(4, |dims, seq_len, batch, rng| {
        let cell = ScaledForget::<f64>::init(dims, rng);
        let step = |pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize| {
            let i = sigmoid(pre.z('i', j));
            let f = sigmoid(1.5 * pre.z('f', j));
            let g = pre.z('g', j).tanh();
            let o = sigmoid(pre.z('o', j));
            lstm_state(i, f, g, o, c_prev[j])
        };
        compare(cell, &STANDARD_GATES, seq_len, batch, 1e-12, rng, &step);
    });
}

#[test]
fn peephole_matches_reference() {
    for_each_shape(5, |dims, seq_len, batch, rng| {
        let cell = Peephole::<f64>::init(dims, rng);
        let (peephole_i, peephole_f, peephole_o) = (
            cell.peephole_i.clone(),
            cell.peephole_f.clone(),
            cell.peephole_o.clone(),
        );
        assert!(
            peephole_o.iter().any(|&p| p != 0.0),
            "peepholes initialised to something"
        );
        let step = move |pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize| {
            let i = sigmoid(pre.z('i', j) + peephole_i[j] * c_prev[j]);
            let f = sigmoid(pre.z('f', j) + peephole_f[j] * c_prev[j]);
            let g = pre.z('g', j).tanh();
            let c = f * c_prev[j] + i * g;
            // The output gate sees the new cell state.
            let o = sigmoid(pre.z('o', j) + peephole_o[j] * c);
            (o * c.tanh(), c)
        };
        compare(cell, &STANDARD_GATES, seq_len, batch, 1e-12, rng, &step);
    });
}

#[test]
fn cifg_matches_reference() {
    for_each_shape(6, |dims, seq_len, batch, rng| {
        let cell = Cifg::<f64>::init(dims, rng);
        assert_eq!(
            cell.weight_ih.nrows(),
            3 * dims.hidden_size,
            "no input-gate rows"
        );
        let step = |pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize| {
            let f = sigmoid(pre.z('f', j));
            let i = 1.0 - f;
            let g = pre.z('g', j).tanh();
            let o = sigmoid(pre.z('o', j));
            lstm_state(i, f, g, o, c_prev[j])
        };
        compare(cell, &['f', 'g', 'o'], seq_len, batch, 1e-12, rng, &step);
    });
}

#[test]
fn hard_sigmoid_matches_reference() {
    for_each_shape(7, |dims, seq_len, batch, rng| {
        let mut cell = HardSigmoid::<f64>::init(dims, rng);
        // Weights large enough that pre-activations reach both flat parts (|z| > 3).
        cell.weight_ih.mapv_inplace(|w| 8.0 * w);
        let step = |pre: &GatePre<'_>, c_prev: &[f64], _h_prev: &[f64], j: usize| {
            let i = hard_sigmoid(pre.z('i', j));
            let f = hard_sigmoid(pre.z('f', j));
            let g = pre.z('g', j).tanh();
            let o = hard_sigmoid(pre.z('o', j));
            lstm_state(i, f, g, o, c_prev[j])
        };
        compare(cell, &STANDARD_GATES, seq_len, batch, 1e-12, rng, &step);
    });
}
