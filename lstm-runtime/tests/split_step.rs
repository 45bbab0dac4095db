//! A step over many rows runs as two halves on two threads (`recurrence/split_rows.rs`); over few
//! rows, or on one thread, whole. The two must agree: forward outputs, and every gradient (bias and
//! spec-parameter gradients are summed over the halves). The whole path is the one the reference
//! and gradcheck tests cover at their small sizes.
//!
//! One test in its own binary: it sets the process-wide thread count.

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lstm_runtime::zoo::{LayerNorm, Lstm as LstmCell, Peephole};
use lstm_runtime::{
    Call, Cell, Lstm, LstmConfig, LstmGradients, LstmOutput, OutputGrad, Parameters, linalg,
};

/// Batch and hidden size large enough to split: 32 rows × 4 · 128 gate values.
const BATCH: usize = 32;
const HIDDEN: usize = 128;
const SEQ_LEN: usize = 4;
const INPUT: usize = 6;

fn run<C: Cell<Elem = f64>>(config: &LstmConfig) -> (LstmOutput<f64>, LstmGradients<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
    layer.visit_parameters_mut(&mut |_, mut v| v.mapv_inplace(|_| rng.random_range(-0.3..0.3)));
    let x = Array3::from_shape_simple_fn((SEQ_LEN, BATCH, INPUT), || rng.random_range(-1.0..1.0));
    let lengths: Vec<usize> = (0..BATCH).map(|b| 1 + b % SEQ_LEN).collect();
    let call = Call::new().with_lengths(&lengths).with_training(true);
    let (output, tape) = layer.forward_train(x.view(), call).unwrap();
    let d_output = output.output.view().mapv(|v| v.sin());
    let grads = layer
        .backward(
            tape,
            OutputGrad {
                output: Some(d_output.view()),
                ..Default::default()
            },
        )
        .unwrap();
    (output, grads)
}

fn agree<C: Cell<Elem = f64>>(config: LstmConfig) {
    linalg::set_num_threads(1);
    let (whole_out, whole_grads) = run::<C>(&config);
    linalg::set_num_threads(2);
    let (split_out, split_grads) = run::<C>(&config);
    linalg::set_num_threads(0);
    // Row halves compute each row exactly as the whole step does.
    assert_eq!(whole_out, split_out, "{}: outputs differ", C::SPEC.name);
    for (name, whole) in whole_grads.params.iter() {
        let split = split_grads.params.get(name).unwrap();
        let worst = whole
            .iter()
            .zip(split.iter())
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{}: {name} differs by {worst}", C::SPEC.name);
    }
    assert_eq!(whole_grads.input, split_grads.input);
}

#[test]
fn split_steps_agree_with_whole_steps() {
    let config = LstmConfig::new(INPUT, HIDDEN).with_bidirectional(true);
    agree::<LstmCell<f64>>(config.clone());
    agree::<Peephole<f64>>(config.clone());
    agree::<LayerNorm<f64>>(config.with_zoneout(0.1, 0.1).with_recurrent_dropout(0.2));
}
