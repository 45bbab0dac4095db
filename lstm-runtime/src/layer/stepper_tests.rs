//! Tests of [`Stepper`](super::Stepper): steps against the sequence forward, bit for bit,
//! selected rows, gradients through chained one-step calls, and misuse.

use ndarray::{Array, Array3, ArrayD, Dimension, ShapeBuilder, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::float::Float;
use crate::layer::call::{Call, OutputGrad};
use crate::layer::config::LstmConfig;
use crate::parallel::threads::with_threads;
use crate::zoo::{self, lookup::CellVisitor, lookup::visit_zoo_cell};

fn random<F: Float, Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<F, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    Array::from_shape_simple_fn(shape, || F::of(rng.random_range(-1.0..1.0)))
}

/// Panics naming the first element where `steps` and `sequence` differ in any bit.
fn assert_same_bits<F: Float, D: Dimension>(
    what: &str,
    steps: &Array<F, D>,
    sequence: &Array<F, D>,
) {
    assert_eq!(steps.shape(), sequence.shape(), "{what}: shapes");
    let differs = steps
        .indexed_iter()
        .zip(sequence)
        .find(|((_, a), b)| a.to_f64_lossy().to_bits() != b.to_f64_lossy().to_bits());
    if let Some(((at, a), b)) = differs {
        panic!("{what}: at {at:?} the stepper gives {a:?}, the sequence forward {b:?}");
    }
}

/// A random layer of the visited cell under `config`, run over a random sequence of
/// `(seq_len, batch)` from a random initial state, whole and step by step.
struct StepsEqualSequence {
    config: LstmConfig,
    seq_len: usize,
    batch: usize,
}

impl<F: Float> CellVisitor<F> for StepsEqualSequence {
    type Output = ();

    fn visit<C: Cell<Elem = F>>(self) {
        let Self {
            config,
            seq_len,
            batch,
        } = self;
        let what = format!("{} {} ({seq_len}, {batch})", C::SPEC.name, F::DTYPE);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
        let layers = config.num_layers;
        let input: Array3<F> = random(&mut rng, (seq_len, batch, config.input_size));
        let h0: Array3<F> = random(&mut rng, (layers, batch, config.output_size()));
        let c0: Array3<F> = random(&mut rng, (layers, batch, config.hidden_size));
        let call = if C::SPEC.carries_cell_state() {
            Call::new().with_initial_state(h0.view(), c0.view())
        } else {
            Call::new().with_h0(h0.view())
        };
        let whole = layer.forward(input.view(), call).unwrap();
        let sequence = whole.output.sequence().unwrap();
        let mut stepper = layer.stepper(batch).unwrap();
        let mut state = if C::SPEC.carries_cell_state() {
            stepper.state_from(h0.view(), c0.view()).unwrap()
        } else {
            stepper.state_from_h(h0.view()).unwrap()
        };
        for t in 0..seq_len {
            let output = stepper
                .step(input.index_axis(Axis(0), t), &mut state)
                .unwrap()
                .to_owned();
            let expected = sequence.index_axis(Axis(0), t).to_owned();
            assert_same_bits(&format!("{what}: output at step {t}"), &output, &expected);
        }
        assert_same_bits(
            &format!("{what}: h_n"),
            &state.h(),
            whole.h_n.as_ref().unwrap(),
        );
        // The packed states: `c` first, then the declared ones in order.
        let hidden = config.hidden_size;
        let finals = whole.c_n.iter().chain(
            C::SPEC
                .extra_states()
                .iter()
                .map(|name| &whole.states[*name]),
        );
        for (k, expected) in finals.enumerate() {
            assert_same_bits(
                &format!("{what}: state {k} at the end"),
                &state
                    .c()
                    .slice(s![.., .., k * hidden..(k + 1) * hidden])
                    .to_owned(),
                expected,
            );
        }
    }
}

fn every_zoo_cell(config: &LstmConfig, seq_len: usize, batch: usize) {
    for spec in zoo::all() {
        let visitor = |config: LstmConfig| StepsEqualSequence {
            config,
            seq_len,
            batch,
        };
        visit_zoo_cell::<f64, _>(spec.name, visitor(config.clone())).unwrap();
        visit_zoo_cell::<f32, _>(spec.name, visitor(config.clone())).unwrap();
    }
}

#[test]
fn every_zoo_cell_steps_as_the_sequence_forward_in_a_stack() {
    every_zoo_cell(&LstmConfig::new(5, 6).with_num_layers(3), 9, 3);
}

#[test]
fn every_zoo_cell_steps_as_the_sequence_forward_at_batch_1() {
    // Long enough for the sequence forward's input projection to run in chunks (64 steps
    // at batch 1, then a few or one), and on two threads for its steps to split by units
    // (`recurrence/split_units/`), which must sum as the steps that are not split: inputs
    // deeper than one pass of the packed kernels (not split), hidden sizes deeper than one
    // (the recurrent product in two passes), a last chunk of one step.
    let shapes = [
        (16, 128, 70),
        (16, 128, 65),
        (300, 128, 70),
        (64, 300, 70),
        (5, 40, 129),
    ];
    with_threads(1, || every_zoo_cell(&LstmConfig::new(16, 128), 70, 1));
    let split = crate::__private::unit_split_chunks;
    let before = split();
    for (input, hidden, seq_len) in shapes {
        with_threads(2, || {
            every_zoo_cell(&LstmConfig::new(input, hidden), seq_len, 1)
        });
    }
    // Where the packed kernels run (the split packs each half's weights).
    let ones = ndarray::Array2::<f32>::ones((1, 1));
    if crate::linalg::step::PackedRows::new(ones.view(), &[0]).is_some() {
        assert!(split() > before, "no chunk was split by units");
    }
}

#[test]
fn every_zoo_cell_steps_as_the_sequence_forward_with_a_helper_thread() {
    // Steps large enough for the stepper to keep a helper thread: at batch 1 split by units,
    // at batch 4 the products by panels, at batch 32 the steps by rows with each thread's
    // rows of the product (`recurrence/split_rows.rs`), which the sequence forward runs a
    // chunk at a time.
    let chunks = crate::__private::row_split_chunks;
    let before = chunks();
    with_threads(2, || {
        every_zoo_cell(&LstmConfig::new(16, 256), 5, 1);
        every_zoo_cell(&LstmConfig::new(16, 128).with_num_layers(2), 5, 4);
        every_zoo_cell(&LstmConfig::new(16, 128), 3, 32);
    });
    // Where the packed kernels run (the rows' products are packed ones).
    let ones = ndarray::Array2::<f32>::ones((1, 1));
    if crate::linalg::step::PackedRows::new(ones.view(), &[0]).is_some() {
        assert!(chunks() > before, "no chunk ran by rows");
    }
}

#[test]
fn a_stepper_splits_its_steps_only_where_a_step_pays_for_it() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let small = Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(8, 64), &mut rng).unwrap();
    let large = Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(8, 512), &mut rng).unwrap();
    with_threads(2, || {
        assert!(!small.stepper(1).unwrap().helper);
        let mut stepper = large.stepper(1).unwrap();
        assert!(stepper.helper);
        let mut state = stepper.zero_state();
        stepper
            .step(ndarray::Array2::zeros((1, 8)).view(), &mut state)
            .unwrap();
        assert!(stepper.helper);
    });
    with_threads(1, || assert!(!large.stepper(1).unwrap().helper));
}

#[test]
fn projection_and_zoneout_step_as_the_sequence_forward() {
    let config = LstmConfig::new(4, 7).with_num_layers(2).with_proj_size(3);
    visit_zoo_cell::<f32, _>(
        "lstm",
        StepsEqualSequence {
            config,
            seq_len: 6,
            batch: 5,
        },
    )
    .unwrap();
    let config = LstmConfig::new(4, 7).with_zoneout(0.3, 0.1);
    visit_zoo_cell::<f64, _>(
        "peephole",
        StepsEqualSequence {
            config,
            seq_len: 6,
            batch: 2,
        },
    )
    .unwrap();
}

#[test]
fn rows_past_their_length_keep_their_state_as_in_the_sequence_forward() {
    let (seq_len, batch) = (7, 4);
    let lengths = [7, 3, 0, 5];
    let config = LstmConfig::new(3, 5).with_num_layers(2);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rng).unwrap();
    let input: Array3<f32> = random(&mut rng, (seq_len, batch, 3));
    let whole = layer
        .forward(input.view(), Call::new().with_lengths(&lengths))
        .unwrap();
    let sequence = whole.output.sequence().unwrap();
    let mut stepper = layer.stepper(batch).unwrap();
    let mut state = stepper.zero_state();
    for t in 0..seq_len {
        let valid: Vec<bool> = lengths.iter().map(|&length| t < length).collect();
        let output = stepper
            .step_rows(input.index_axis(Axis(0), t), &mut state, &valid)
            .unwrap()
            .to_owned();
        for (row, valid) in valid.iter().enumerate() {
            if *valid {
                assert_same_bits(
                    &format!("output of row {row} at step {t}"),
                    &output.row(row).to_owned(),
                    &sequence.slice(s![t, row, ..]).to_owned(),
                );
            }
        }
    }
    assert_same_bits("h_n", &state.h(), whole.h_n.as_ref().unwrap());
    assert_same_bits("c_n", &state.c(), whole.c_n.as_ref().unwrap());
    let x = Array2::<f32>::zeros((batch, 3));
    assert!(matches!(
        stepper.step_rows(x.view(), &mut state, &[true]),
        Err(Error::ShapeMismatch { what, .. }) if what == "valid"
    ));
}

#[test]
fn selected_rows_continue_as_those_rows_would() {
    let config = LstmConfig::new(3, 5).with_num_layers(2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let layer = Lstm::<zoo::Peephole<f64>>::new(config, &mut rng).unwrap();
    let mut stepper = layer.stepper(3).unwrap();
    let mut state = stepper.zero_state();
    for _ in 0..4 {
        let x: Array2<f64> = random(&mut rng, (3, 3));
        stepper.step(x.view(), &mut state).unwrap();
    }
    let rows = [2, 0, 2, 2];
    let mut selected = state.select(&rows).unwrap();
    assert_eq!(selected.batch(), 4);
    for (new, &old) in rows.iter().enumerate() {
        assert_eq!(
            selected.h().slice(s![.., new, ..]),
            state.h().slice(s![.., old, ..])
        );
        assert_eq!(
            selected.c().slice(s![.., new, ..]),
            state.c().slice(s![.., old, ..])
        );
    }
    // The next step of the selected rows (the workspaces grow to 4 rows) is the step of
    // each row alone from its own state.
    let x: Array2<f64> = random(&mut rng, (4, 3));
    let together = stepper.step(x.view(), &mut selected).unwrap().to_owned();
    for (new, &old) in rows.iter().enumerate() {
        let mut alone = state.select(&[old]).unwrap();
        let mut single = layer.stepper(1).unwrap();
        let output = single
            .step(x.slice(s![new..new + 1, ..]), &mut alone)
            .unwrap();
        assert_same_bits(
            "selected row",
            &output.to_owned(),
            &together.slice(s![new..new + 1, ..]).to_owned(),
        );
    }
    assert!(matches!(
        state.select(&[0, 3]),
        Err(Error::InvalidValue { what, .. }) if what == "rows"
    ));
}

#[test]
fn chained_one_step_training_calls_give_the_sequence_gradients() {
    let (seq_len, batch) = (5, 3);
    let config = LstmConfig::new(3, 4).with_num_layers(2);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut layer = Lstm::<zoo::Lstm<f64>>::new(config.clone(), &mut rng).unwrap();
    let input: Array3<f64> = random(&mut rng, (seq_len, batch, 3));
    let d_output: Array3<f64> = random(&mut rng, (seq_len, batch, 4));
    let (h0, c0) = (Array3::zeros((2, batch, 4)), Array3::zeros((2, batch, 4)));
    let call = Call::new().with_training(true);
    let (_, tape) = layer.forward_train(input.view(), call).unwrap();
    let whole = layer
        .backward(
            tape,
            OutputGrad {
                output: Some(d_output.view().into_dyn()),
                ..OutputGrad::default()
            },
        )
        .unwrap();

    let (mut h, mut c) = (h0, c0);
    let mut tapes = Vec::new();
    for t in 0..seq_len {
        let call = Call::new()
            .with_initial_state(h.view(), c.view())
            .with_training(true);
        let (out, tape) = layer
            .forward_train(input.slice(s![t..t + 1, .., ..]), call)
            .unwrap();
        (h, c) = (out.h_n.unwrap(), out.c_n.unwrap());
        tapes.push(tape);
    }
    let (mut dh, mut dc) = (Array3::zeros(h.raw_dim()), Array3::zeros(c.raw_dim()));
    let mut params = crate::params::Gradients::<f64>::new();
    let mut d_input = Array3::zeros(input.raw_dim());
    for (t, tape) in tapes.into_iter().enumerate().rev() {
        let d_step: ArrayD<f64> = d_output.slice(s![t..t + 1, .., ..]).to_owned().into_dyn();
        let grads = layer
            .backward(
                tape,
                OutputGrad {
                    output: Some(d_step.view()),
                    h_n: Some(dh.view()),
                    c_n: Some(dc.view()),
                    ..OutputGrad::default()
                },
            )
            .unwrap();
        for (name, grad) in grads.params.iter() {
            match params.get_mut(name) {
                Some(sum) => *sum += grad,
                None => params.insert(name, grad.clone()),
            }
        }
        d_input.slice_mut(s![t..t + 1, .., ..]).assign(&grads.input);
        (dh, dc) = (grads.h0, grads.c0);
    }
    let close = |what: &str, a: ArrayD<f64>, b: ArrayD<f64>| {
        assert_eq!(a.shape(), b.shape(), "{what}");
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{what}: off by {worst:e}");
    };
    assert_eq!(params.len(), whole.params.len());
    for (name, grad) in whole.params.iter() {
        close(name, params.get(name).unwrap().clone(), grad.clone());
    }
    close("input", d_input.into_dyn(), whole.input.into_dyn());
    close("h0", dh.into_dyn(), whole.h0.into_dyn());
    close("c0", dc.into_dyn(), whole.c0.into_dyn());
}

#[test]
fn misuse_is_an_error_naming_what() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let config = LstmConfig::new(3, 4).with_bidirectional(true);
    let layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rng).unwrap();
    assert!(matches!(
        layer.stepper(2),
        Err(Error::Config { option, .. }) if option == "bidirectional"
    ));
    let layer =
        Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(3, 4).with_num_layers(2), &mut rng).unwrap();
    let mut stepper = layer.stepper(2).unwrap();
    let mut state = stepper.zero_state();
    let wrong_x = Array2::<f32>::zeros((2, 4));
    assert!(matches!(
        stepper.step(wrong_x.view(), &mut state),
        Err(Error::ShapeMismatch { what, .. }) if what == "x"
    ));
    let x = Array2::<f32>::zeros((3, 3));
    assert!(matches!(
        stepper.step(x.view(), &mut state),
        Err(Error::ShapeMismatch { what, .. }) if what == "h_l0"
    ));
    let other = Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(3, 4), &mut rng).unwrap();
    let mut other_state = other.stepper(2).unwrap().zero_state();
    let x = Array2::<f32>::zeros((2, 3));
    assert!(matches!(
        stepper.step(x.view(), &mut other_state),
        Err(Error::ShapeMismatch { what, .. }) if what == "state"
    ));
    let h0 = Array3::<f32>::zeros((1, 2, 4));
    assert!(matches!(
        stepper.state_from(h0.view(), h0.view()),
        Err(Error::ShapeMismatch { what, .. }) if what == "h0"
    ));
    assert!(matches!(
        layer.stepper(usize::MAX),
        Err(Error::Allocation { .. })
    ));
    assert!(matches!(
        layer.stepper_with_constants(x.view()),
        Err(Error::Config { option, .. }) if option == "constants"
    ));
}
