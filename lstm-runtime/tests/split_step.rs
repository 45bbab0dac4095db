//! A step over many rows runs as two halves on two threads (`recurrence/split_rows.rs`); over few
//! rows, or on one thread, whole. The two must agree: forward outputs, and every gradient (bias and
//! spec-parameter gradients are summed over the halves). The whole path is the one the reference
//! and gradcheck tests cover at their small sizes. In f32 (packed products) the halves also take
//! their rows of the recurrent product and write their rows of the output: the outputs, the
//! recorded gates and the input gradient must still be those of the whole step bit for bit.
//!
//! One test in its own binary: it sets the process-wide thread count.

use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lstm_runtime::zoo::{LayerNorm, Lstm as LstmCell, Peephole};
use lstm_runtime::{
    Call, Cell, Float, Lstm, LstmConfig, LstmGradients, LstmOutput, OutputGrad, Parameters, linalg,
};

/// Batch and hidden size large enough to split: 32 rows × 4 · 128 gate values.
const BATCH: usize = 32;
const HIDDEN: usize = 128;
const SEQ_LEN: usize = 4;
const INPUT: usize = 6;

/// What one configuration computes: a training call's output and gradients, and an inference
/// call's recorded gates.
struct Run<F> {
    output: LstmOutput<F>,
    grads: LstmGradients<F>,
    recorded: LstmOutput<F>,
}

fn run<C: Cell>(config: &LstmConfig, masked: bool) -> Run<C::Elem> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
    layer.visit_parameters_mut(&mut |_, mut v| {
        v.mapv_inplace(|_| C::Elem::of(rng.random_range(-0.3..0.3)))
    });
    let x = Array3::from_shape_simple_fn((SEQ_LEN, BATCH, INPUT), || {
        C::Elem::of(rng.random_range(-1.0..1.0))
    });
    let lengths: Vec<usize> = (0..BATCH).map(|b| 1 + b % SEQ_LEN).collect();
    let call = Call::new().with_training(true);
    let call = if masked {
        call.with_lengths(&lengths)
    } else {
        call
    };
    let (output, tape) = layer.forward_train(x.view(), call).unwrap();
    let d_output = output
        .output
        .view()
        .mapv(|v| C::Elem::of(v.to_f64_lossy().sin()));
    let grads = layer
        .backward(
            tape,
            OutputGrad {
                output: Some(d_output.view()),
                ..Default::default()
            },
        )
        .unwrap();
    let recorded = layer
        .forward(x.view(), Call::new().with_record(C::SPEC.record))
        .unwrap();
    Run {
        output,
        grads,
        recorded,
    }
}

/// Runs `config` (with sequences of different lengths if `masked`) on one thread and on two;
/// `tolerance` bounds the relative difference of the parameter gradients, which the split
/// backward step sums in another order.
fn agree<C: Cell>(config: LstmConfig, tolerance: f64, masked: bool) {
    linalg::set_num_threads(1);
    let whole = run::<C>(&config, masked);
    linalg::set_num_threads(2);
    let split = run::<C>(&config, masked);
    linalg::set_num_threads(0);
    let name = C::SPEC.name;
    // Row halves compute each row exactly as the whole step does.
    assert_eq!(whole.output, split.output, "{name}: outputs differ");
    assert_eq!(
        whole.recorded, split.recorded,
        "{name}: recorded values differ"
    );
    assert!(
        !whole.recorded.records.is_empty(),
        "{name}: nothing recorded"
    );
    for (param, values) in whole.grads.params.iter() {
        let other = split.grads.params.get(param).unwrap();
        let worst = values
            .iter()
            .zip(other.iter())
            .map(|(a, b)| {
                let (a, b) = (a.to_f64_lossy(), b.to_f64_lossy());
                (a - b).abs() / a.abs().max(1.0)
            })
            .fold(0.0, f64::max);
        assert!(worst < tolerance, "{name}: {param} differs by {worst}");
    }
    assert_eq!(
        whole.grads.input, split.grads.input,
        "{name}: input gradients differ"
    );
}

#[test]
fn split_steps_agree_with_whole_steps() {
    let config = LstmConfig::new(INPUT, HIDDEN).with_bidirectional(true);
    agree::<LstmCell<f64>>(config.clone(), 1e-12, true);
    agree::<Peephole<f64>>(config.clone(), 1e-12, true);
    let regularized = config
        .clone()
        .with_zoneout(0.1, 0.1)
        .with_recurrent_dropout(0.2);
    agree::<LayerNorm<f64>>(regularized.clone(), 1e-12, true);
    agree::<LstmCell<f32>>(config.clone(), 1e-5, true);
    agree::<Peephole<f32>>(config, 1e-5, true);
    agree::<LayerNorm<f32>>(regularized, 1e-5, true);
    // Every row valid at every step: the threads that step the rows also record their rows
    // of the new `c`, and backward reads `dh` and `dc` without copying them into seeds. At
    // hidden 256 the backward product `dZ · W_hh` splits too, and each of its threads copies
    // half of the step's `dL/dz` into the spent cache.
    let wide = LstmConfig::new(INPUT, 2 * HIDDEN);
    agree::<LstmCell<f64>>(wide.clone(), 1e-12, false);
    agree::<LstmCell<f32>>(wide.clone(), 1e-5, false);
    agree::<Peephole<f32>>(wide, 1e-5, false);
}
