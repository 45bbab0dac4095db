//! Bad input to `Lstm` is an `Err` naming the offender, never a panic: one test per case.

use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use lstm_runtime::zoo::Lstm as LstmCell;
use lstm_runtime::{Call, Direction, Error, Lstm, LstmConfig, MergeMode, OutputGrad, lstm_cell};

/// A cell reading `h_prev` elementwise (cannot be projected) with a constant input.
#[lstm_cell(crate = "lstm_runtime", z = z + cond, c = f * c_prev + i * g + 0.1 * h_prev)]
pub struct ReadsHPrev {
    cond: Constant,
}

type Layer = Lstm<LstmCell<f64>>;

fn layer(config: LstmConfig) -> Layer {
    Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(1)).unwrap()
}

/// The layer under test: input 3, hidden 4, time-major; input (5, 2, 3).
fn standard() -> Layer {
    layer(LstmConfig::new(3, 4))
}

fn x() -> Array3<f64> {
    Array3::zeros((5, 2, 3))
}

fn config_option(err: Error) -> String {
    match err {
        Error::Config { option, .. } => option,
        other => panic!("expected a config error, found {other:?}"),
    }
}

fn mismatch(what: &str, expected: &[usize], found: &[usize]) -> Error {
    Error::shape_mismatch(what, expected, found)
}

#[test]
fn num_layers_zero_is_rejected() {
    let err = Layer::new(LstmConfig::new(3, 4).with_num_layers(0), &mut rand::rng()).unwrap_err();
    assert_eq!(config_option(err), "num_layers");
}

#[test]
fn proj_size_not_below_hidden_size_is_rejected() {
    for proj_size in [4, 9] {
        let config = LstmConfig::new(3, 4).with_proj_size(proj_size);
        let err = Layer::new(config, &mut rand::rng()).unwrap_err();
        assert!(err.to_string().contains("below hidden_size 4"), "{err}");
        assert_eq!(config_option(err), "proj_size");
    }
}

#[test]
fn impossible_configs_are_rejected() {
    let err = Layer::new(LstmConfig::new(3, 4).with_dropout(-0.1), &mut rand::rng()).unwrap_err();
    assert_eq!(config_option(err), "dropout");
    let stacked_none = LstmConfig::new(3, 4)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_merge_mode(MergeMode::None);
    let err = Layer::new(stacked_none, &mut rand::rng()).unwrap_err();
    assert_eq!(config_option(err), "merge_mode");
    let projected = LstmConfig::new(3, 4)
        .with_proj_size(2)
        .with_constant_size(2);
    let err = Lstm::<ReadsHPrev<f64>>::new(projected, &mut rand::rng()).unwrap_err();
    assert_eq!(config_option(err), "proj_size");
    let err = Lstm::<ReadsHPrev<f64>>::new(LstmConfig::new(3, 4), &mut rand::rng()).unwrap_err();
    assert_eq!(config_option(err), "constant_size");
    let err = Layer::new(
        LstmConfig::new(3, 4).with_constant_size(2),
        &mut rand::rng(),
    )
    .unwrap_err();
    assert_eq!(config_option(err), "constant_size");
}

#[test]
fn input_of_wrong_rank_is_an_error() {
    let err = standard()
        .forward(Array2::<f64>::zeros((5, 3)).view(), Call::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { what, .. } if what == "input"),
        "{err:?}"
    );
    assert!(err.to_string().contains("expected 3 dimensions"), "{err}");
    let four = ArrayD::<f64>::zeros(IxDyn(&[1, 5, 2, 3]));
    assert!(standard().forward(four.view(), Call::new()).is_err());
}

#[test]
fn input_feature_size_mismatch_is_an_error() {
    let err = standard()
        .forward(Array3::<f64>::zeros((5, 2, 4)).view(), Call::new())
        .unwrap_err();
    assert_eq!(err, mismatch("input", &[5, 2, 3], &[5, 2, 4]));
    let mut batch_first = layer(LstmConfig::new(3, 4).with_batch_first(true));
    let err = batch_first
        .forward(Array3::<f64>::zeros((2, 5, 1)).view(), Call::new())
        .unwrap_err();
    assert_eq!(err, mismatch("input", &[2, 5, 3], &[2, 5, 1]));
}

#[test]
fn lengths_of_the_wrong_count_are_an_error() {
    let err = standard()
        .forward(x().view(), Call::new().with_lengths(&[5, 5, 5]))
        .unwrap_err();
    assert_eq!(err, mismatch("lengths", &[2], &[3]));
}

#[test]
fn lengths_longer_than_the_sequence_are_an_error() {
    let err = standard()
        .forward(x().view(), Call::new().with_lengths(&[5, 6]))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidValue { what, .. } if what == "lengths"),
        "{err:?}"
    );
    assert!(err.to_string().contains("row 1 has length 6"), "{err}");
}

#[test]
fn mask_shape_mismatch_is_an_error() {
    let mask = Array2::from_elem((5, 2), true);
    let err = standard()
        .forward(x().view(), Call::new().with_mask(mask.view()))
        .unwrap_err();
    assert_eq!(err, mismatch("mask", &[2, 5], &[5, 2]));
    let both = Array2::from_elem((2, 5), true);
    let err = standard()
        .forward(
            x().view(),
            Call::new().with_mask(both.view()).with_lengths(&[1, 1]),
        )
        .unwrap_err();
    assert_eq!(config_option(err), "mask");
}

#[test]
fn initial_state_shape_mismatch_is_an_error() {
    let good_h = Array3::<f64>::zeros((1, 2, 4));
    let good_c = Array3::<f64>::zeros((1, 2, 4));
    let bad = Array3::<f64>::zeros((2, 2, 4));
    let err = standard()
        .forward(
            x().view(),
            Call::new().with_initial_state(bad.view(), good_c.view()),
        )
        .unwrap_err();
    assert_eq!(err, mismatch("h0", &[1, 2, 4], &[2, 2, 4]));
    let err = standard()
        .forward(
            x().view(),
            Call::new().with_initial_state(good_h.view(), bad.view()),
        )
        .unwrap_err();
    assert_eq!(err, mismatch("c0", &[1, 2, 4], &[2, 2, 4]));
    // With a projection h0 is proj_size wide, c0 hidden_size.
    let mut projected = layer(LstmConfig::new(3, 4).with_proj_size(2));
    let err = projected
        .forward(
            x().view(),
            Call::new().with_initial_state(good_h.view(), good_c.view()),
        )
        .unwrap_err();
    assert_eq!(err, mismatch("h0", &[1, 2, 2], &[1, 2, 4]));
}

#[test]
fn stateful_state_of_another_batch_is_an_error() {
    let mut stateful = layer(LstmConfig::new(3, 4).with_stateful(true));
    stateful.forward(x().view(), Call::new()).unwrap();
    let err = stateful
        .forward(Array3::<f64>::zeros((5, 3, 3)).view(), Call::new())
        .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { what, .. } if what.starts_with("h0")),
        "{err:?}"
    );
    stateful.reset_states();
    assert!(
        stateful
            .forward(Array3::<f64>::zeros((5, 3, 3)).view(), Call::new())
            .is_ok()
    );
}

#[test]
fn constants_missing_unexpected_or_misshaped_are_errors() {
    let config = LstmConfig::new(3, 4).with_constant_size(2);
    let mut conditioned = Lstm::<ReadsHPrev<f64>>::new(config, &mut rand::rng()).unwrap();
    let err = conditioned.forward(x().view(), Call::new()).unwrap_err();
    assert_eq!(config_option(err), "constants");
    let wrong = Array2::<f64>::zeros((2, 3));
    let err = conditioned
        .forward(x().view(), Call::new().with_constants(wrong.view()))
        .unwrap_err();
    assert_eq!(err, mismatch("constants", &[2, 2], &[2, 3]));
    let err = standard()
        .forward(x().view(), Call::new().with_constants(wrong.view()))
        .unwrap_err();
    assert_eq!(config_option(err), "constants");
}

#[test]
fn weights_that_no_longer_fit_are_errors() {
    let mut lstm = layer(
        LstmConfig::new(3, 4)
            .with_num_layers(2)
            .with_bidirectional(true),
    );
    lstm.cell_mut(1, Direction::Reverse).unwrap().weight_ih = Array2::zeros((16, 3));
    let err = lstm.forward(x().view(), Call::new()).unwrap_err();
    assert_eq!(err, mismatch("weight_ih_l1_reverse", &[16, 8], &[16, 3]));
    let mut lstm = layer(LstmConfig::new(3, 4));
    lstm.cell_mut(0, Direction::Forward).unwrap().bias_hh = Some(Array1::zeros(3));
    let err = lstm.forward(x().view(), Call::new()).unwrap_err();
    assert_eq!(err, mismatch("bias_hh_l0", &[16], &[3]));
    assert!(
        lstm.cell(0, Direction::Reverse).is_none() && lstm.cell(1, Direction::Forward).is_none()
    );
}

#[test]
fn from_cells_checks_counts_and_shapes() {
    let config = LstmConfig::new(3, 4).with_proj_size(2);
    let source = layer(config.clone());
    let cell = source.cell(0, Direction::Forward).unwrap().clone();
    let err = Lstm::from_cells(
        config.clone(),
        vec![cell.clone(), cell.clone()],
        vec![None, None],
    )
    .unwrap_err();
    assert_eq!(config_option(err), "cells");
    let err = Lstm::from_cells(config.clone(), vec![cell.clone()], vec![None]).unwrap_err();
    assert_eq!(err, mismatch("weight_hr_l0", &[2, 4], &[]));
    let err = Lstm::from_cells(
        config,
        vec![cell.clone()],
        vec![Some(Array2::zeros((4, 2)))],
    )
    .unwrap_err();
    assert_eq!(err, mismatch("weight_hr_l0", &[2, 4], &[4, 2]));
    let err = Lstm::from_cells(
        LstmConfig::new(3, 4),
        vec![cell],
        vec![Some(Array2::zeros((2, 4)))],
    )
    .unwrap_err();
    assert_eq!(config_option(err), "weight_hr");
}

#[test]
fn output_gradients_of_the_wrong_shape_are_errors() {
    let mut lstm = standard();
    // The tape borrows the input.
    let input = x();
    let (_, tape) = lstm.forward_train(input.view(), Call::new()).unwrap();
    let wrong = ArrayD::<f64>::zeros(IxDyn(&[5, 2, 5]));
    let err = lstm
        .backward(
            tape.clone(),
            OutputGrad {
                output: Some(wrong.view()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err, mismatch("grad output", &[5, 2, 4], &[5, 2, 5]));
    let wrong_h = Array3::<f64>::zeros((2, 2, 4));
    let err = lstm
        .backward(
            tape.clone(),
            OutputGrad {
                h_n: Some(wrong_h.view()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(err, mismatch("grad h_n", &[1, 2, 4], &[2, 2, 4]));
    let right = ArrayD::<f64>::zeros(IxDyn(&[5, 2, 4]));
    let err = lstm
        .backward(
            tape.clone(),
            OutputGrad {
                output_reverse: Some(right.view()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(config_option(err), "output_reverse");
    for other in [
        LstmConfig::new(3, 4).with_num_layers(2),
        LstmConfig::new(3, 5),
        LstmConfig::new(2, 4),
        LstmConfig::new(3, 4).with_proj_size(2),
        LstmConfig::new(3, 4).with_bidirectional(true),
    ] {
        let err = layer(other)
            .backward(tape.clone(), OutputGrad::default())
            .unwrap_err();
        assert_eq!(config_option(err), "tape");
    }
}
