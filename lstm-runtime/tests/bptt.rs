//! Backpropagation through time, checked by `gradcheck` (central finite differences of the
//! forward pass, f64) for every zoo cell in every wrapper the issue names (plain, lengths,
//! a mask with holes, bidirectional, stacked with projection), and for the remaining options
//! (every merge mode, go_backwards, last outputs, dropout, batch-first, both mask policies,
//! stateful carry). Acceptance: worst relative error below 1e-6 everywhere.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use lstm_runtime::zoo::{
    Cifg, ForgetBias, HardSigmoid, LayerNorm, Lstm as LstmCell, Peephole, ScaledForget,
};
use lstm_runtime::{
    Call, Cell, GradcheckOptions, Lstm, LstmConfig, MergeMode, OutputGrad, Parameters, gradcheck,
};

const SEQ_LEN: usize = 5;
const BATCH: usize = 3;
const INPUT: usize = 2;
const HIDDEN: usize = 3;
const TOLERANCE: f64 = 1e-6;

/// What a case passes besides the input.
#[derive(Clone, Copy, Debug)]
enum Extra {
    Plain,
    Lengths,
    Mask,
}

fn layer<C: Cell<Elem = f64>>(config: &LstmConfig, seed: u64) -> Lstm<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
    layer.visit_parameters_mut(&mut |_, mut values| {
        values.mapv_inplace(|_| rng.random_range(-0.7..0.7))
    });
    layer
}

/// Runs gradcheck on `config` with `extra`, from a random initial state, and returns the
/// worst error (after asserting it is below the tolerance).
fn check<C: Cell<Elem = f64>>(
    what: &str,
    config: LstmConfig,
    extra: Extra,
    training: bool,
    seed: u64,
) -> f64 {
    let layer = layer::<C>(&config, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let shape = if config.batch_first {
        (BATCH, SEQ_LEN, INPUT)
    } else {
        (SEQ_LEN, BATCH, INPUT)
    };
    let x = Array3::from_shape_fn(shape, |_| rng.random_range(-1.5..1.5));
    let states = config.num_layers * config.num_directions();
    let h0 = Array3::from_shape_fn((states, BATCH, config.output_size()), |_| {
        rng.random_range(-1.0..1.0)
    });
    let c0 = Array3::from_shape_fn((states, BATCH, HIDDEN), |_| rng.random_range(-1.0..1.0));
    let lengths = [SEQ_LEN, 2, 0];
    let mut mask = Array2::from_shape_fn((BATCH, SEQ_LEN), |(b, t)| (b + t) % 3 != 1);
    mask[[2, 0]] = false;
    let mut call = Call::new()
        .with_initial_state(h0.view(), c0.view())
        .with_training(training);
    match extra {
        Extra::Plain => {}
        Extra::Lengths => call = call.with_lengths(&lengths),
        Extra::Mask => call = call.with_mask(mask.view()),
    }
    let report = gradcheck(&layer, x.view(), call, &GradcheckOptions::default()).unwrap();
    let worst = report.worst_relative_error();
    assert!(
        worst < TOLERANCE,
        "{} in {what}: worst relative error {worst:e}\n{report}",
        C::SPEC.name
    );
    assert!(report.entry("input").is_some() && report.entry("h0").is_some());
    worst
}

/// The matrix for one cell: plain, lengths, mask with holes, bidirectional, stacked
/// with projection.
fn matrix<C: Cell<Elem = f64>>(seed: u64) {
    let base = LstmConfig::new(INPUT, HIDDEN);
    let cases = [
        ("plain", base.clone(), Extra::Plain),
        ("lengths", base.clone(), Extra::Lengths),
        ("mask with holes", base.clone(), Extra::Mask),
        (
            "bidirectional",
            base.clone().with_bidirectional(true),
            Extra::Lengths,
        ),
        (
            "stacked + proj",
            base.clone()
                .with_num_layers(2)
                .with_proj_size(2)
                .with_bidirectional(true),
            Extra::Mask,
        ),
    ];
    let mut worst: f64 = 0.0;
    for (what, config, extra) in cases {
        worst = worst.max(check::<C>(what, config, extra, false, seed));
    }
    println!("{}: worst relative error {worst:e}", C::SPEC.name);
}

#[test]
fn lstm_gradients() {
    matrix::<LstmCell<f64>>(1);
}

#[test]
fn forget_bias_gradients() {
    matrix::<ForgetBias<f64>>(2);
}

#[test]
fn scaled_forget_gradients() {
    matrix::<ScaledForget<f64>>(3);
}

#[test]
fn peephole_gradients() {
    matrix::<Peephole<f64>>(4);
}

#[test]
fn cifg_gradients() {
    matrix::<Cifg<f64>>(5);
}

#[test]
fn hard_sigmoid_gradients() {
    matrix::<HardSigmoid<f64>>(6);
}

#[test]
fn layer_norm_gradients() {
    matrix::<LayerNorm<f64>>(7);
}

#[test]
fn every_merge_mode_has_gradients() {
    for mode in MergeMode::ALL {
        let config = LstmConfig::new(INPUT, HIDDEN)
            .with_bidirectional(true)
            .with_merge_mode(mode);
        check::<LstmCell<f64>>(mode.keras_name(), config.clone(), Extra::Mask, false, 10);
        check::<Peephole<f64>>(
            mode.keras_name(),
            config.with_return_sequences(false),
            Extra::Lengths,
            false,
            11,
        );
    }
}

#[test]
fn remaining_options_have_gradients() {
    let base = LstmConfig::new(INPUT, HIDDEN);
    let cases = [
        (
            "go_backwards, lengths",
            base.clone().with_go_backwards(true),
            Extra::Lengths,
        ),
        (
            "go_backwards, mask",
            base.clone()
                .with_go_backwards(true)
                .with_bidirectional(true),
            Extra::Mask,
        ),
        (
            "last output, mask",
            base.clone().with_return_sequences(false),
            Extra::Mask,
        ),
        (
            "last output, stacked",
            base.clone()
                .with_return_sequences(false)
                .with_num_layers(2)
                .with_proj_size(1),
            Extra::Lengths,
        ),
        (
            "zero outputs, mask",
            base.clone()
                .with_zero_output_for_mask(true)
                .with_bidirectional(true),
            Extra::Mask,
        ),
        (
            "batch_first",
            base.clone().with_batch_first(true).with_bidirectional(true),
            Extra::Lengths,
        ),
        (
            "no bias",
            base.clone().with_bias(false).with_num_layers(2),
            Extra::Plain,
        ),
        (
            "no state returned",
            base.clone().with_return_state(false),
            Extra::Mask,
        ),
    ];
    for (what, config, extra) in cases {
        check::<LstmCell<f64>>(what, config, extra, false, 12);
    }
}

#[test]
fn dropout_between_layers_has_gradients() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_num_layers(3)
        .with_dropout(0.4)
        .with_seed(5);
    check::<LstmCell<f64>>("dropout", config.clone(), Extra::Lengths, true, 13);
    check::<LayerNorm<f64>>(
        "dropout, bidirectional",
        config.with_bidirectional(true),
        Extra::Mask,
        true,
        14,
    );
}

/// Runs `config` in f64 (weights from seed 20) and in f32 with the same weights, training
/// forward then backward with a random output gradient, and compares every gradient.
fn check_f32_against_f64(config: LstmConfig, seq_len: usize, batch: usize, lengths: &[usize]) {
    let mut layer64 = layer::<LstmCell<f64>>(&config, 20);
    let mut layer32 =
        Lstm::<LstmCell<f32>>::new(config.clone(), &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let mut values = Vec::new();
    layer64.visit_parameters(&mut |name, v| values.push((name.to_string(), v.to_owned())));
    layer32.visit_parameters_mut(&mut |name, mut v| {
        let (_, source) = values.iter().find(|(n, _)| n == name).unwrap();
        v.zip_mut_with(source, |a, b| *a = *b as f32);
    });
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let width = config.output_size() * config.num_directions();
    let x = Array3::from_shape_fn((seq_len, batch, config.input_size), |_| {
        rng.random_range(-1.0..1.0)
    });
    let d_out = Array3::from_shape_fn((seq_len, batch, width), |_| rng.random_range(-1.0..1.0));
    let (_, tape64) = layer64
        .forward_train(x.view(), Call::new().with_lengths(lengths))
        .unwrap();
    let grads64 = layer64
        .backward(
            tape64,
            OutputGrad {
                output: Some(d_out.view().into_dyn()),
                ..Default::default()
            },
        )
        .unwrap();
    let x32 = x.mapv(|v| v as f32);
    let d_out32 = d_out.mapv(|v| v as f32);
    let (_, tape32) = layer32
        .forward_train(x32.view(), Call::new().with_lengths(lengths))
        .unwrap();
    let grads32 = layer32
        .backward(
            tape32,
            OutputGrad {
                output: Some(d_out32.view().into_dyn()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(grads32.params.len(), grads64.params.len());
    for (name, g64) in grads64.params.iter() {
        let g32 = grads32.params.get(name).unwrap();
        for (a, b) in g32.iter().zip(g64) {
            assert!(
                (f64::from(*a) - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{name}: {a} vs {b}"
            );
        }
    }
    for (a, b) in grads32.input.iter().zip(&grads64.input) {
        assert!((f64::from(*a) - b).abs() < 1e-4, "input: {a} vs {b}");
    }
}

#[test]
fn f32_backward_matches_f64() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_proj_size(2);
    check_f32_against_f64(config, SEQ_LEN, BATCH, &[SEQ_LEN, 3, 1]);
}

/// Past the fast paths' thresholds: the time loops run with a helper thread (two threads), and the
/// f32 recurrent products run on packed weights split in two (the f64 ones on the `gemm` crate,
/// whose f64 gradients `gradcheck` checks above at small sizes).
#[test]
fn f32_backward_matches_f64_at_a_size_that_splits_steps() {
    let config = LstmConfig::new(5, 50).with_bidirectional(true);
    check_f32_against_f64(config, 64, 7, &[64, 60, 64, 1, 64, 33, 64]);
}

/// A cell whose backward step needs fewer cached values than it has gates (the constant input
/// gate leaves `g` linear with a constant derivative): its `dL/dz` cannot be written over
/// its spent cache, so the reverse loop keeps it in chunk buffers.
#[lstm_runtime::lstm_cell(crate = "lstm_runtime", i = 0.5, g = z_g)]
pub struct HalfInput;

/// Long enough that the reverse loop runs its weight- and input-gradient products in several
/// chunks (512 rows or more each: 171 steps at batch 3, so 4 × 171 + 16), in both directions,
/// with a projection, input dropout and rows that end mid-chunk or never start; for a cell
/// whose `dL/dz` goes into its spent cache and one whose `dL/dz` does not fit there.
#[test]
fn gradients_of_a_sequence_longer_than_one_chunk() {
    assert!(HalfInput::<f64>::SPEC.cache.per_unit < HalfInput::<f64>::SPEC.num_gates());
    assert!(LstmCell::<f64>::SPEC.cache.per_unit >= LstmCell::<f64>::SPEC.num_gates());
    long_sequence::<LstmCell<f64>>();
    long_sequence::<HalfInput<f64>>();
}

fn long_sequence<C: Cell<Elem = f64>>() {
    const LONG: usize = 700;
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_bidirectional(true)
        .with_proj_size(2)
        .with_input_dropout(0.3)
        .with_seed(8);
    let layer = layer::<C>(&config, 15);
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let x = Array3::from_shape_fn((LONG, BATCH, INPUT), |_| rng.random_range(-1.5..1.5));
    let lengths = [LONG, 400, 0];
    let call = Call::new().with_lengths(&lengths).with_training(true);
    let options = GradcheckOptions {
        max_values_per_tensor: 60,
        ..GradcheckOptions::default()
    };
    let report = gradcheck(&layer, x.view(), call, &options).unwrap();
    let worst = report.worst_relative_error();
    assert!(
        worst < TOLERANCE,
        "{}: worst relative error {worst:e}\n{report}",
        C::SPEC.name
    );
    assert_eq!(report.entry("input").unwrap().checked, 60);
}
