//! A cell that is not in the zoo, defined here as a user's crate would define it, through the
//! `lstm` facade alone: scalar and per-unit parameters, a gate-wise `z` override that reads
//! `h_prev`, coupled gates, and functions the zoo does not use. Its layer output is compared
//! with the naive scalar reference, the equations written out again by hand below.

mod common;

use common::reference::{GatePre, ReferenceWeights, hard_sigmoid, run_reference, sigmoid};
use lstm::{
    Call, Cell, CellDims, Gate, GradcheckOptions, Lstm, LstmConfig, Rnn, gradcheck, lstm_cell,
};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every gate sees a scaled copy of the previous hidden state; the candidate is a softsign
/// with a learned temperature; the output gate is a hard sigmoid with a peephole on `c`.
#[lstm_cell(
    z = z + alpha * h_prev,
    i = 1.0 - f,
    g = softsign(z_g / temperature),
    o = hard_sigmoid(z_o + peep * c)
)]
pub struct UserCell {
    #[init(constant(0.3))]
    alpha: Scalar,
    #[init(constant(1.5))]
    temperature: Scalar,
    peep: PerUnit,
}

fn softsign(x: f64) -> f64 {
    x / (1.0 + x.abs())
}

#[test]
fn user_cell_has_the_shape_its_spec_implies() {
    let spec = UserCell::<f64>::SPEC;
    assert_eq!(spec.name, "user_cell");
    assert_eq!(spec.gates, &[Gate::Forget, Gate::Cell, Gate::Output]);
    assert!(spec.reads_h_prev);
    let cell = UserCell::<f64>::new(3, 4, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(cell.weight_ih.dim(), (12, 3));
    assert_eq!(cell.alpha.to_vec(), vec![0.3]);
    assert_eq!(cell.temperature.to_vec(), vec![1.5]);
}

#[test]
fn user_cell_matches_hand_written_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (seq_len, batch, input_size, hidden) in [(1, 1, 1, 1), (4, 3, 2, 5), (6, 2, 4, 3)] {
        let mut cell = UserCell::<f64>::init(CellDims::new(input_size, hidden), &mut rng);
        cell.peep.mapv_inplace(|_| rng.random_range(-1.0..1.0));
        let (alpha, temperature) = (cell.alpha[0], cell.temperature[0]);
        let peep = cell.peep.to_vec();
        let weights = ReferenceWeights::from_cell(&cell, &['f', 'g', 'o']);
        let x = Array3::from_shape_fn((seq_len, batch, input_size), |_| {
            rng.random_range(-2.0..2.0)
        });
        let h0 = Array2::from_shape_fn((batch, hidden), |_| rng.random_range(-1.0..1.0));
        let c0 = Array2::from_shape_fn((batch, hidden), |_| rng.random_range(-1.0..1.0));

        let step = |pre: &GatePre<'_>, c_prev: &[f64], h_prev: &[f64], j: usize| {
            let z = |gate| pre.z(gate, j) + alpha * h_prev[j];
            let f = sigmoid(z('f'));
            let i = 1.0 - f;
            let g = softsign(z('g') / temperature);
            let c = f * c_prev[j] + i * g;
            let o = hard_sigmoid(z('o') + peep[j] * c);
            (o * c.tanh(), c)
        };
        let expected = run_reference(&weights, &x, Some(&h0), Some(&c0), step);
        let found = Rnn::new(cell)
            .forward(x.view(), Some((h0.view(), c0.view())))
            .unwrap();
        for (name, found, expected) in [
            (
                "output",
                found.output.into_dyn(),
                expected.output.into_dyn(),
            ),
            ("h_n", found.h_n.into_dyn(), expected.h_n.into_dyn()),
            ("c_n", found.c_n.into_dyn(), expected.c_n.into_dyn()),
        ] {
            for (a, b) in found.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-12,
                    "{name}: {a} vs {b} (T={seq_len}, B={batch})"
                );
            }
        }
    }
}

/// One gate's bias read again in a per-unit equation, by the name the spec language's
/// messages suggest (`b_hh_f`): the forget gate sees its recurrent bias twice.
#[lstm_cell(f = sigmoid(z_f + b_hh_f))]
pub struct DoubleForgetBias;

#[test]
fn one_gates_bias_is_readable_in_a_per_unit_equation() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (seq_len, batch, input_size, hidden) = (5, 3, 2, 4);
    let cell = DoubleForgetBias::<f64>::init(CellDims::new(input_size, hidden), &mut rng);
    let weights = ReferenceWeights::from_cell(&cell, &['i', 'f', 'g', 'o']);
    let bias_hh = cell.bias_hh.clone().expect("init makes biases");
    let x = Array3::from_shape_fn((seq_len, batch, input_size), |_| {
        rng.random_range(-2.0..2.0)
    });
    let step = |pre: &GatePre<'_>, c_prev: &[f64], _: &[f64], j: usize| {
        let i = sigmoid(pre.z('i', j));
        let f = sigmoid(pre.z('f', j) + bias_hh[hidden + j]);
        let g = pre.z('g', j).tanh();
        let o = sigmoid(pre.z('o', j));
        let c = f * c_prev[j] + i * g;
        (o * c.tanh(), c)
    };
    let expected = run_reference(&weights, &x, None, None, step);
    let found = Rnn::new(cell).forward(x.view(), None).unwrap();
    for (a, b) in found.output.iter().zip(&expected.output) {
        assert!((a - b).abs() < 1e-12, "output: {a} vs {b}");
    }

    // The bias's second path reaches its gradient.
    let config = LstmConfig::new(input_size, hidden);
    let layer = Lstm::<DoubleForgetBias<f64>>::new(config, &mut rng).unwrap();
    let report = gradcheck(&layer, x.view(), Call::new(), &GradcheckOptions::default()).unwrap();
    assert!(
        report.worst_relative_error() < 1e-6,
        "worst relative error {:.2e}\n{report}",
        report.worst_relative_error()
    );
}
