//! Lengths (PyTorch packed semantics) and Keras masks: properties (a padded batch equals its
//! sequences run alone; an all-true mask equals no mask; go_backwards equals reversing the
//! input by hand) and edge cases (zero-length sequences, fully masked rows, padding values
//! that never reach an output or a gradient).

#[path = "common/approx.rs"]
mod approx;

use ndarray::{Array2, Array3, Axis, s};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use approx::{gradients_close, outputs_close};
use lstm_runtime::zoo::{Lstm as LstmCell, Peephole};
use lstm_runtime::{Call, Cell, Lstm, LstmConfig, OutputGrad};

const INPUT: usize = 3;
const HIDDEN: usize = 4;

fn layer<C: Cell<Elem = f64>>(config: LstmConfig, seed: u64) -> Lstm<C> {
    Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

fn random3(rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) -> Array3<f64> {
    Array3::from_shape_fn(shape, |_| rng.random_range(-1.5..1.5))
}

fn assert_close(what: &str, found: &Array3<f64>, expected: &Array3<f64>) {
    assert_eq!(found.shape(), expected.shape(), "{what}: shape");
    for (a, b) in found.iter().zip(expected) {
        assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Every sequence of a padded batch, run alone without padding, gives the batch's outputs
    /// up to its length, zeros after, and the batch's final states.
    #[test]
    fn padded_batch_equals_each_sequence_alone(
        seed in any::<u64>(),
        lengths in prop::collection::vec(0usize..=6, 1..4),
        bidirectional in any::<bool>(),
        num_layers in 1usize..=2,
        proj in any::<bool>(),
    ) {
        let config = LstmConfig::new(INPUT, HIDDEN)
            .with_bidirectional(bidirectional)
            .with_num_layers(num_layers)
            .with_proj_size(if proj { 2 } else { 0 });
        let mut padded = layer::<Peephole<f64>>(config.clone(), seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
        let seq_len = 6;
        let batch = lengths.len();
        let x = random3(&mut rng, (seq_len, batch, INPUT));
        let states = num_layers * config.num_directions();
        let h0 = random3(&mut rng, (states, batch, config.output_size()));
        let c0 = random3(&mut rng, (states, batch, HIDDEN));
        let out = padded
            .forward(x.view(), Call::new().with_lengths(&lengths).with_initial_state(h0.view(), c0.view()))
            .unwrap();
        let output = out.output.sequence().unwrap();
        let (h_n, c_n) = (out.h_n.unwrap(), out.c_n.unwrap());
        for (b, &length) in lengths.iter().enumerate() {
            let alone_x = x.slice(s![..length, b..=b, ..]).to_owned();
            let alone_h0 = h0.slice(s![.., b..=b, ..]).to_owned();
            let alone_c0 = c0.slice(s![.., b..=b, ..]).to_owned();
            let alone = padded
                .forward(alone_x.view(), Call::new().with_initial_state(alone_h0.view(), alone_c0.view()))
                .unwrap();
            let alone_output = alone.output.sequence().unwrap();
            assert_close("valid outputs", &output.slice(s![..length, b..=b, ..]).to_owned(), alone_output);
            prop_assert!(output.slice(s![length.., b, ..]).iter().all(|&v| v == 0.0));
            assert_close("h_n", &h_n.slice(s![.., b..=b, ..]).to_owned(), alone.h_n.as_ref().unwrap());
            assert_close("c_n", &c_n.slice(s![.., b..=b, ..]).to_owned(), alone.c_n.as_ref().unwrap());
        }
    }

    /// A Keras mask of all `true` is no mask at all, in every configuration.
    #[test]
    fn all_true_mask_equals_no_mask(
        seed in any::<u64>(),
        seq_len in 0usize..6,
        batch in 1usize..4,
        bidirectional in any::<bool>(),
        go_backwards in any::<bool>(),
        return_sequences in any::<bool>(),
        zero_output_for_mask in any::<bool>(),
    ) {
        let config = LstmConfig::new(INPUT, HIDDEN)
            .with_bidirectional(bidirectional)
            .with_go_backwards(go_backwards)
            .with_return_sequences(return_sequences)
            .with_zero_output_for_mask(zero_output_for_mask);
        let mut lstm = layer::<LstmCell<f64>>(config, seed);
        let x = random3(&mut ChaCha8Rng::seed_from_u64(seed ^ 2), (seq_len, batch, INPUT));
        let mask = Array2::from_elem((batch, seq_len), true);
        let masked = lstm.forward(x.view(), Call::new().with_mask(mask.view())).unwrap();
        let plain = lstm.forward(x.view(), Call::new()).unwrap();
        prop_assert!(outputs_close(&masked, &plain));
    }

    /// `go_backwards` equals running forward over the input reversed by hand: each valid part
    /// under lengths, the whole sequence (and mask) under a mask.
    #[test]
    fn go_backwards_equals_reversed_input(
        seed in any::<u64>(),
        lengths in prop::collection::vec(0usize..=5, 1..4),
        use_mask in any::<bool>(),
    ) {
        let seq_len = 5;
        let batch = lengths.len();
        let x = random3(&mut ChaCha8Rng::seed_from_u64(seed ^ 3), (seq_len, batch, INPUT));
        let mask = Array2::from_shape_fn((batch, seq_len), |(b, t)| !(seed as usize + b * 7 + t * 3).is_multiple_of(4));
        let mut reversed_x = x.clone();
        let mut reversed_mask = mask.clone();
        for b in 0..batch {
            if use_mask {
                for t in 0..seq_len {
                    reversed_x.slice_mut(s![t, b, ..]).assign(&x.slice(s![seq_len - 1 - t, b, ..]));
                    reversed_mask[[b, t]] = mask[[b, seq_len - 1 - t]];
                }
            } else {
                for t in 0..lengths[b] {
                    reversed_x.slice_mut(s![t, b, ..]).assign(&x.slice(s![lengths[b] - 1 - t, b, ..]));
                }
            }
        }
        let config = LstmConfig::new(INPUT, HIDDEN);
        let mut backwards = layer::<LstmCell<f64>>(config.clone().with_go_backwards(true), seed);
        let mut forwards = layer::<LstmCell<f64>>(config, seed);
        let (found, expected) = if use_mask {
            (
                backwards.forward(x.view(), Call::new().with_mask(mask.view())).unwrap(),
                forwards.forward(reversed_x.view(), Call::new().with_mask(reversed_mask.view())).unwrap(),
            )
        } else {
            (
                backwards.forward(x.view(), Call::new().with_lengths(&lengths)).unwrap(),
                forwards.forward(reversed_x.view(), Call::new().with_lengths(&lengths)).unwrap(),
            )
        };
        prop_assert!(outputs_close(&found, &expected));
    }
}

#[test]
fn zero_length_sequences_output_zeros_and_keep_the_initial_state() {
    for bidirectional in [false, true] {
        let config = LstmConfig::new(INPUT, HIDDEN).with_bidirectional(bidirectional);
        let states = config.num_layers * config.num_directions();
        let mut lstm = layer::<LstmCell<f64>>(config.clone(), 1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x = random3(&mut rng, (4, 2, INPUT));
        let h0 = random3(&mut rng, (states, 2, HIDDEN));
        let c0 = random3(&mut rng, (states, 2, HIDDEN));
        let call = Call::new().with_initial_state(h0.view(), c0.view());
        let out = lstm.forward(x.view(), call.with_lengths(&[0, 4])).unwrap();
        let output = out.output.sequence().unwrap();
        assert!(output.index_axis(Axis(1), 0).iter().all(|&v| v == 0.0));
        assert_eq!(
            out.h_n.unwrap().index_axis(Axis(1), 0),
            h0.index_axis(Axis(1), 0)
        );
        assert_eq!(
            out.c_n.unwrap().index_axis(Axis(1), 0),
            c0.index_axis(Axis(1), 0)
        );
        // A fully masked row under Keras' repeat policy: nothing to repeat, so zeros.
        let mask = ndarray::array![[false, false, false, false], [true, false, true, true]];
        let out = lstm.forward(x.view(), call.with_mask(mask.view())).unwrap();
        let output = out.output.sequence().unwrap();
        assert!(output.index_axis(Axis(1), 0).iter().all(|&v| v == 0.0));
        assert_eq!(
            out.h_n.unwrap().index_axis(Axis(1), 0),
            h0.index_axis(Axis(1), 0)
        );
        // Its last output is zero too, not the initial state.
        let mut last = layer::<LstmCell<f64>>(config.with_return_sequences(false), 1);
        let out = last.forward(x.view(), call.with_mask(mask.view())).unwrap();
        assert!(out.output.last().unwrap().row(0).iter().all(|&v| v == 0.0));
    }
    // An empty sequence: empty output, the initial state as final state.
    let mut lstm = layer::<LstmCell<f64>>(LstmConfig::new(INPUT, HIDDEN), 3);
    let out = lstm
        .forward(Array3::<f64>::zeros((0, 2, INPUT)).view(), Call::new())
        .unwrap();
    assert_eq!(out.output.shape(), &[0, 2, HIDDEN]);
    assert!(out.h_n.unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn padding_never_reaches_outputs_or_gradients() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_bidirectional(true)
        .with_num_layers(2);
    let mut lstm = layer::<LstmCell<f64>>(config, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let lengths = [5, 2, 0];
    let clean = random3(&mut rng, (5, 3, INPUT));
    let mut dirty = clean.clone();
    dirty.slice_mut(s![2.., 1, ..]).fill(f64::NAN);
    dirty.slice_mut(s![.., 2, ..]).fill(f64::INFINITY);
    let d_out = random3(&mut rng, (5, 3, 2 * HIDDEN));
    let run = |lstm: &mut Lstm<LstmCell<f64>>, x: &Array3<f64>| {
        let (out, tape) = lstm
            .forward_train(x.view(), Call::new().with_lengths(&lengths))
            .unwrap();
        let grads = lstm
            .backward(
                tape,
                OutputGrad {
                    output: Some(d_out.view().into_dyn()),
                    ..Default::default()
                },
            )
            .unwrap();
        (out, grads)
    };
    let (clean_out, clean_grads) = run(&mut lstm, &clean);
    let (dirty_out, dirty_grads) = run(&mut lstm, &dirty);
    assert!(outputs_close(&clean_out, &dirty_out));
    assert!(gradients_close(&clean_grads, &dirty_grads));
    assert!(
        dirty_grads
            .input
            .slice(s![2.., 1, ..])
            .iter()
            .all(|&v| v == 0.0)
    );
    let inference = lstm
        .forward(dirty.view(), Call::new().with_lengths(&lengths))
        .unwrap();
    assert!(outputs_close(&inference, &clean_out));
}
