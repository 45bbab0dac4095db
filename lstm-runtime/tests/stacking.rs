//! Stacks, layouts, state carrying and dropout as compositions: a stack of n layers equals n
//! single layers composed; batch-first equals time-major transposed; a stateful layer over two
//! halves equals one call over the whole; dropout between layers in training mode only, with
//! the same masks in the chunked inference path and the training path.

#[path = "common/approx.rs"]
mod approx;

use ndarray::{Array2, Array3, Axis, s};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use approx::{close, gradients_close, outputs_close};
use lstm_runtime::zoo::{Cifg, Lstm as LstmCell};
use lstm_runtime::{
    Call, Cell, Direction, Lstm, LstmConfig, LstmGradients, LstmOutput, MergeMode, Output,
    OutputGrad,
};

const INPUT: usize = 3;
const HIDDEN: usize = 4;

fn random3(rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) -> Array3<f64> {
    Array3::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0))
}

/// Layer `layer` of `stack` as a single-layer `Lstm`.
fn single<C: Cell<Elem = f64>>(stack: &Lstm<C>, layer: usize) -> Lstm<C> {
    let config = stack.config();
    let single_config = LstmConfig {
        input_size: config.layer_input_size(layer),
        num_layers: 1,
        return_sequences: true,
        ..config.clone()
    };
    let directions = &Direction::BOTH[..config.num_directions()];
    let cells = directions
        .iter()
        .map(|&d| stack.cell(layer, d).unwrap().clone())
        .collect();
    let weight_hr = directions
        .iter()
        .map(|&d| stack.weight_hr(layer, d).cloned())
        .collect();
    Lstm::from_cells(single_config, cells, weight_hr).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A stack of n layers equals n single layers, each reading the previous one's output,
    /// with each layer's slice of the initial states; h_n and c_n stack up in order.
    #[test]
    fn stack_equals_composed_single_layers(
        seed in any::<u64>(),
        num_layers in 1usize..=3,
        bidirectional in any::<bool>(),
        mode_index in 0usize..4,
        proj in any::<bool>(),
        lengths in prop::collection::vec(0usize..=4, 1..3),
    ) {
        let config = LstmConfig::new(INPUT, HIDDEN)
            .with_num_layers(num_layers)
            .with_bidirectional(bidirectional)
            .with_merge_mode(MergeMode::ALL[mode_index])
            .with_proj_size(if proj { 3 } else { 0 });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut stack = Lstm::<Cifg<f64>>::new(config.clone(), &mut rng).unwrap();
        let batch = lengths.len();
        let x = random3(&mut rng, (4, batch, INPUT));
        let dirs = config.num_directions();
        let h0 = random3(&mut rng, (num_layers * dirs, batch, config.output_size()));
        let c0 = random3(&mut rng, (num_layers * dirs, batch, HIDDEN));
        let out = stack
            .forward(x.view(), Call::new().with_lengths(&lengths).with_initial_state(h0.view(), c0.view()))
            .unwrap();
        let mut input = x.clone();
        let mut h_n = Vec::new();
        let mut c_n = Vec::new();
        for layer in 0..num_layers {
            let states = s![layer * dirs..(layer + 1) * dirs, .., ..];
            let (h, c) = (h0.slice(states).to_owned(), c0.slice(states).to_owned());
            let step = single(&stack, layer)
                .forward(input.view(), Call::new().with_lengths(&lengths).with_initial_state(h.view(), c.view()))
                .unwrap();
            input = step.output.into_sequence().unwrap();
            h_n.push(step.h_n.unwrap());
            c_n.push(step.c_n.unwrap());
        }
        prop_assert!(close(out.output.view(), input.view().into_dyn()));
        let views: Vec<_> = h_n.iter().map(|h| h.view()).collect();
        prop_assert!(close(out.h_n.unwrap().view().into_dyn(), ndarray::concatenate(Axis(0), &views).unwrap().view().into_dyn()));
        let views: Vec<_> = c_n.iter().map(|c| c.view()).collect();
        prop_assert!(close(out.c_n.unwrap().view().into_dyn(), ndarray::concatenate(Axis(0), &views).unwrap().view().into_dyn()));
    }

    /// `batch_first` takes and returns `(batch, seq_len, ·)`: the time-major result
    /// transposed, and the same gradients transposed.
    #[test]
    fn batch_first_equals_time_major_transposed(
        seed in any::<u64>(),
        seq_len in 0usize..5,
        batch in 1usize..4,
        bidirectional in any::<bool>(),
    ) {
        let config = LstmConfig::new(INPUT, HIDDEN).with_bidirectional(bidirectional).with_num_layers(2);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut time_major = Lstm::<LstmCell<f64>>::new(config.clone(), &mut rng).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut batch_first = Lstm::<LstmCell<f64>>::new(config.with_batch_first(true), &mut rng).unwrap();
        let x = random3(&mut rng, (seq_len, batch, INPUT));
        let mask = Array2::from_shape_fn((batch, seq_len), |_| rng.random_bool(0.7));
        let call = Call::new().with_mask(mask.view());
        let (expected, tape) = time_major.forward_train(x.view(), call).unwrap();
        let transposed_x = x.view().permuted_axes([1, 0, 2]);
        let (found, batch_first_tape) = batch_first.forward_train(transposed_x, call).unwrap();
        let expected_sequence = expected.output.sequence().unwrap().clone();
        let batch_major = Output::Sequence(expected_sequence.clone().permuted_axes([1, 0, 2]));
        let expected = LstmOutput { output: batch_major, ..expected };
        prop_assert!(outputs_close(&found, &expected));
        let d_out = expected_sequence.mapv(|v| v * 0.5 + 0.25);
        let grad = |d: ndarray::ArrayViewD<'_, f64>| {
            time_major.backward(tape, OutputGrad { output: Some(d), ..Default::default() })
        };
        let expected_grads = grad(d_out.view().into_dyn()).unwrap();
        let found_grads = batch_first
            .backward(
                batch_first_tape,
                OutputGrad {
                    output: Some(d_out.view().permuted_axes([1, 0, 2]).into_dyn()),
                    ..Default::default()
                },
            )
            .unwrap();
        let transposed_input = expected_grads.input.clone().permuted_axes([1, 0, 2]);
        prop_assert!(close(found_grads.input.view().into_dyn(), transposed_input.view().into_dyn()));
        let expected_grads = LstmGradients { input: found_grads.input.clone(), ..expected_grads };
        prop_assert!(gradients_close(&found_grads, &expected_grads));
    }

    /// A stateful layer called on two halves of a sequence equals one call on the whole
    /// (masks with zero outputs: Keras' repeated "previous output" restarts each call).
    #[test]
    fn stateful_halves_equal_one_call(
        seed in any::<u64>(),
        first in 0usize..4,
        second in 0usize..4,
        bidirectional_stack in any::<bool>(),
    ) {
        let config = LstmConfig::new(INPUT, HIDDEN)
            .with_num_layers(if bidirectional_stack { 2 } else { 1 })
            .with_proj_size(2)
            .with_zero_output_for_mask(true)
            .with_stateful(true);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut stateful = Lstm::<LstmCell<f64>>::new(config, &mut rng).unwrap();
        let mut whole_layer = stateful.clone();
        let x = random3(&mut rng, (first + second, 2, INPUT));
        let mask = Array2::from_shape_fn((2, first + second), |_| rng.random_bool(0.7));
        let whole = whole_layer.forward(x.view(), Call::new().with_mask(mask.view())).unwrap();
        let a = stateful
            .forward(x.slice(s![..first, .., ..]), Call::new().with_mask(mask.slice(s![.., ..first])))
            .unwrap();
        let b = stateful
            .forward(x.slice(s![first.., .., ..]), Call::new().with_mask(mask.slice(s![.., first..])))
            .unwrap();
        let joined = ndarray::concatenate(
            Axis(0),
            &[a.output.sequence().unwrap().view(), b.output.sequence().unwrap().view()],
        ).unwrap();
        prop_assert!(close(joined.view().into_dyn(), whole.output.view()));
        let second = LstmOutput { output: whole.output.clone(), ..b };
        prop_assert!(outputs_close(&second, &whole));
        stateful.reset_states();
        prop_assert!(stateful.states().is_none());
        let again = stateful.forward(x.view(), Call::new().with_mask(mask.view())).unwrap();
        prop_assert!(outputs_close(&again, &whole));
    }
}

#[test]
fn dropout_applies_in_training_only_and_equally_in_both_paths() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_num_layers(3)
        .with_dropout(0.5)
        .with_seed(9);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut lstm = Lstm::<LstmCell<f64>>::new(config, &mut rng).unwrap();
    // 150 steps: the inference path runs three chunks in lockstep through the stack.
    let x = random3(&mut rng, (150, 2, INPUT));
    let eval = lstm.forward(x.view(), Call::new()).unwrap();
    let eval_again = lstm.forward(x.view(), Call::new()).unwrap();
    assert!(
        outputs_close(&eval, &eval_again),
        "no dropout outside training"
    );
    let training = Call::new().with_training(true);
    let inference_path = lstm.clone().forward(x.view(), training).unwrap();
    let (training_path, _) = lstm.clone().forward_train(x.view(), training).unwrap();
    assert!(
        outputs_close(&inference_path, &training_path),
        "same masks in both paths"
    );
    assert!(
        !outputs_close(&inference_path, &eval),
        "dropout changes the result"
    );
    let next_call = lstm.forward(x.view(), training).unwrap();
    let after = lstm.forward(x.view(), training).unwrap();
    assert!(
        !outputs_close(&next_call, &after),
        "each call draws fresh masks"
    );
}

#[test]
fn dropout_of_one_cuts_the_layers_above_off_their_input() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_num_layers(2)
        .with_dropout(1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut stack = Lstm::<LstmCell<f64>>::new(config, &mut rng).unwrap();
    let x = random3(&mut rng, (5, 2, INPUT));
    let out = stack
        .forward(x.view(), Call::new().with_training(true))
        .unwrap();
    let zeros = Array3::zeros((5, 2, HIDDEN));
    let top = single(&stack, 1)
        .forward(zeros.view(), Call::new())
        .unwrap();
    assert!(close(out.output.view(), top.output.view()));
}

#[test]
fn return_options_shape_the_output() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_bidirectional(true)
        .with_return_sequences(false)
        .with_return_state(false);
    let mut lstm = Lstm::<LstmCell<f64>>::new(config, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    let x = random3(&mut ChaCha8Rng::seed_from_u64(4), (5, 2, INPUT));
    let out = lstm
        .forward(x.view(), Call::new().with_lengths(&[5, 2]))
        .unwrap();
    assert_eq!(out.output.last().unwrap().dim(), (2, 2 * HIDDEN));
    assert!(out.h_n.is_none() && out.c_n.is_none());
}
