//! Bidirectional layers as compositions of unidirectional ones: the forward half is a forward
//! run; the reverse half is a forward run over each sequence's reversed valid part (PyTorch
//! lengths), or a `go_backwards` run reversed back in time (Keras' `Bidirectional` under a
//! mask). Every merge mode is checked against the naive reference in
//! `wrappers_reference.rs`; here, how they combine the two halves.

#[path = "common/approx.rs"]
mod approx;

use ndarray::{Array2, Array3, Axis, concatenate, s};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use approx::close;
use lstm_runtime::zoo::ForgetBias;
use lstm_runtime::{Call, Direction, Lstm, LstmConfig, MergeMode};

const INPUT: usize = 2;
const HIDDEN: usize = 3;

type Cell = ForgetBias<f64>;

/// The forward and reverse directions of `bidirectional` (one layer) as two unidirectional
/// layers of `config`.
fn halves(bidirectional: &Lstm<Cell>, config: &LstmConfig) -> (Lstm<Cell>, Lstm<Cell>) {
    let half = |direction: Direction| {
        let cell = bidirectional.cell(0, direction).unwrap().clone();
        let weight_hr = bidirectional.weight_hr(0, direction).cloned();
        Lstm::from_cells(config.clone(), vec![cell], vec![weight_hr]).unwrap()
    };
    (half(Direction::Forward), half(Direction::Reverse))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Under lengths: forward half = forward run; reverse half = forward run over each
    /// sequence's reversed valid part, reversed back; h_n, c_n stacked in PyTorch's order.
    #[test]
    fn bidirectional_equals_forward_plus_reversed_valid_parts(
        seed in any::<u64>(),
        lengths in prop::collection::vec(0usize..=5, 1..4),
        proj in any::<bool>(),
    ) {
        let seq_len = 5;
        let batch = lengths.len();
        let proj_size = if proj { 2 } else { 0 };
        let config = LstmConfig::new(INPUT, HIDDEN).with_proj_size(proj_size);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut both = Lstm::<Cell>::new(config.clone().with_bidirectional(true), &mut rng).unwrap();
        let (mut forward, mut reverse) = halves(&both, &config);
        let x = Array3::from_shape_fn((seq_len, batch, INPUT), |_| rng.random_range(-1.0..1.0));
        let out = both.forward(x.view(), Call::new().with_lengths(&lengths)).unwrap();
        let fwd = forward.forward(x.view(), Call::new().with_lengths(&lengths)).unwrap();
        let mut reversed_x = x.clone();
        for (b, &length) in lengths.iter().enumerate() {
            for t in 0..length {
                reversed_x.slice_mut(s![t, b, ..]).assign(&x.slice(s![length - 1 - t, b, ..]));
            }
        }
        let rev = reverse.forward(reversed_x.view(), Call::new().with_lengths(&lengths)).unwrap();
        let mut rev_output = rev.output.sequence().unwrap().clone();
        for (b, &length) in lengths.iter().enumerate() {
            let part = rev_output.slice(s![..length, b, ..]).to_owned();
            for t in 0..length {
                rev_output.slice_mut(s![t, b, ..]).assign(&part.row(length - 1 - t));
            }
        }
        let expected = concatenate(Axis(2), &[fwd.output.sequence().unwrap().view(), rev_output.view()]).unwrap();
        prop_assert!(close(out.output.view(), expected.view().into_dyn()));
        let h_n = concatenate(Axis(0), &[fwd.h_n.as_ref().unwrap().view(), rev.h_n.as_ref().unwrap().view()]).unwrap();
        let c_n = concatenate(Axis(0), &[fwd.c_n.as_ref().unwrap().view(), rev.c_n.as_ref().unwrap().view()]).unwrap();
        prop_assert!(close(out.h_n.unwrap().view().into_dyn(), h_n.view().into_dyn()));
        prop_assert!(close(out.c_n.unwrap().view().into_dyn(), c_n.view().into_dyn()));
    }

    /// Under a Keras mask, Keras' `Bidirectional`: the reverse half is a `go_backwards` layer
    /// whose outputs are reversed back in time; each merge mode combines the halves.
    #[test]
    fn masked_bidirectional_equals_keras_composition(
        seed in any::<u64>(),
        batch in 1usize..4,
        mode_index in 0usize..4,
        zero_output_for_mask in any::<bool>(),
    ) {
        let seq_len = 5;
        let mode = MergeMode::ALL[mode_index];
        let config = LstmConfig::new(INPUT, HIDDEN).with_zero_output_for_mask(zero_output_for_mask);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut both = Lstm::<Cell>::new(
            config.clone().with_bidirectional(true).with_merge_mode(mode), &mut rng,
        ).unwrap();
        let (mut forward, _) = halves(&both, &config);
        let (_, mut backward) = halves(&both, &config.clone().with_go_backwards(true));
        let x = Array3::from_shape_fn((seq_len, batch, INPUT), |_| rng.random_range(-1.0..1.0));
        let mask = Array2::from_shape_fn((batch, seq_len), |_| rng.random_bool(0.6));
        let call = Call::new().with_mask(mask.view());
        let out = both.forward(x.view(), call).unwrap();
        let fwd = forward.forward(x.view(), call).unwrap().output.into_sequence().unwrap();
        let mut bwd = backward.forward(x.view(), call).unwrap().output.into_sequence().unwrap();
        bwd.invert_axis(Axis(0));
        let expected = match mode {
            MergeMode::Concat => concatenate(Axis(2), &[fwd.view(), bwd.view()]).unwrap(),
            MergeMode::Sum => &fwd + &bwd,
            MergeMode::Mul => &fwd * &bwd,
            _ => (&fwd + &bwd) / 2.0,
        };
        let found = out.output.sequence().unwrap();
        for (a, b) in found.iter().zip(&expected) {
            prop_assert!((a - b).abs() < 1e-14, "{} vs {}", a, b);
        }
    }
}

#[test]
fn merge_mode_none_returns_both_directions() {
    let config = LstmConfig::new(INPUT, HIDDEN).with_bidirectional(true);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut concat = Lstm::<Cell>::new(config.clone(), &mut rng).unwrap();
    let cells = vec![
        concat.cell(0, Direction::Forward).unwrap().clone(),
        concat.cell(0, Direction::Reverse).unwrap().clone(),
    ];
    let mut none = Lstm::from_cells(
        config.with_merge_mode(MergeMode::None),
        cells,
        vec![None, None],
    )
    .unwrap();
    let x = Array3::from_shape_fn((4, 2, INPUT), |_| rng.random_range(-1.0..1.0));
    let joined = concat
        .forward(x.view(), Call::new())
        .unwrap()
        .output
        .into_sequence()
        .unwrap();
    let apart = none.forward(x.view(), Call::new()).unwrap();
    assert_eq!(
        apart.output.sequence().unwrap(),
        &joined.slice(s![.., .., ..HIDDEN])
    );
    assert_eq!(
        apart.output_reverse.unwrap().sequence().unwrap(),
        &joined.slice(s![.., .., HIDDEN..])
    );
}
