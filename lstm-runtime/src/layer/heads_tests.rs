//! Tests of block-diagonal recurrences ([`LstmConfig::heads`]): a headed layer against the
//! dense layer whose `weight_hh` is the blocks' expansion (zeros off the blocks), forward and
//! backward, in a bidirectional stack with lengths, at batch 1 and more, on one and two
//! threads; the stepper against the sequence; finite differences; loading from PyTorch
//! names, which reads the heads off `weight_hh`'s shape.

use ndarray::{Array, Array3, ArrayD, Axis, Dimension, ShapeBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::error::Error;
use crate::io::{Tensor, TensorMap, lstm_from_pytorch};
use crate::layer::call::{Call, OutputGrad};
use crate::layer::gradcheck::{GradcheckOptions, gradcheck};
use crate::linalg::heads::{expand, restrict};
use crate::parallel::threads::with_threads;
use crate::zoo;

fn random<Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<f64, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    Array::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
}

/// The dense layer of `headed`: its config without heads, its cells with `weight_hh`
/// expanded to `(gates · H, H)`.
fn dense_of<C: Cell<Elem = f64>>(headed: &Lstm<C>) -> Lstm<C> {
    let config = headed.config().clone().with_heads(1);
    let hidden = config.hidden_size;
    let cells = headed
        .cells
        .iter()
        .map(|cell| {
            let mut cell = cell.clone();
            let weights = cell.weights_mut();
            *weights.weight_hh = expand(weights.weight_hh.view(), hidden);
            cell
        })
        .collect();
    let weight_hr = vec![None; headed.cells.len()];
    Lstm::from_cells(config, cells, weight_hr).unwrap()
}

fn assert_close(what: &str, a: &ArrayD<f64>, b: &ArrayD<f64>, tolerance: f64) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(worst <= tolerance, "{what}: off by {worst:e}");
}

/// A headed layer of `C` and its dense expansion give the same outputs, states and
/// gradients (the dense `dW_hh` restricted to the blocks).
fn headed_equals_dense<C: Cell<Elem = f64>>(heads: usize, batch: usize, lengths: &[usize]) {
    let (seq_len, input_size, hidden) = (5, 3, 4);
    let what = format!("{} heads {heads} batch {batch}", C::SPEC.name);
    let config = LstmConfig::new(input_size, hidden)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_heads(heads);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut headed = Lstm::<C>::new(config, &mut rng).unwrap();
    let cell = headed.cell(0, Direction::Forward).unwrap();
    assert_eq!(
        cell.weights().weight_hh.dim(),
        (C::SPEC.num_gates() * hidden, hidden / heads)
    );
    let mut dense = dense_of(&headed);
    let input: Array3<f64> = random(&mut rng, (seq_len, batch, input_size));
    let h0: Array3<f64> = random(&mut rng, (4, batch, hidden));
    let c0: Array3<f64> = random(&mut rng, (4, batch, hidden));
    let d_output: ArrayD<f64> = random(&mut rng, (seq_len, batch, 2 * hidden)).into_dyn();
    let d_h_n: Array3<f64> = random(&mut rng, (4, batch, hidden));
    let run = |layer: &mut Lstm<C>| {
        let call = Call::new()
            .with_training(true)
            .with_lengths(lengths)
            .with_initial_state(h0.view(), c0.view());
        let (out, tape) = layer.forward_train(input.view(), call).unwrap();
        let grads = layer
            .backward(
                tape,
                OutputGrad {
                    output: Some(d_output.view()),
                    h_n: Some(d_h_n.view()),
                    ..OutputGrad::default()
                },
            )
            .unwrap();
        (out, grads)
    };
    let (out, grads) = run(&mut headed);
    let (dense_out, dense_grads) = run(&mut dense);
    let tolerance = 1e-12;
    let pairs = [
        ("output", out.output.sequence(), dense_out.output.sequence()),
        ("h_n", out.h_n.as_ref(), dense_out.h_n.as_ref()),
        ("c_n", out.c_n.as_ref(), dense_out.c_n.as_ref()),
    ];
    for (name, a, b) in pairs {
        let (a, b) = (a.unwrap().clone(), b.unwrap().clone());
        assert_close(
            &format!("{what}: {name}"),
            &a.into_dyn(),
            &b.into_dyn(),
            tolerance,
        );
    }
    for (name, grad) in grads.params.iter() {
        let dense_grad = dense_grads.params.get(name).unwrap();
        let dense_grad = if name.starts_with("weight_hh") {
            let matrix = dense_grad.view().into_dimensionality().unwrap();
            restrict(matrix, heads).into_dyn()
        } else {
            dense_grad.clone()
        };
        assert_close(&format!("{what}: d{name}"), grad, &dense_grad, tolerance);
    }
    let inputs = [
        ("input", &grads.input, &dense_grads.input),
        ("h0", &grads.h0, &dense_grads.h0),
        ("c0", &grads.c0, &dense_grads.c0),
    ];
    for (name, a, b) in inputs {
        let (a, b) = (a.clone().into_dyn(), b.clone().into_dyn());
        assert_close(&format!("{what}: d{name}"), &a, &b, tolerance);
    }
}

fn every_case(threads: usize) {
    with_threads(threads, || {
        for heads in [2, 4] {
            headed_equals_dense::<zoo::Lstm<f64>>(heads, 3, &[5, 3, 1]);
            headed_equals_dense::<zoo::Lstm<f64>>(heads, 1, &[5]);
            headed_equals_dense::<zoo::Peephole<f64>>(heads, 3, &[4, 5, 2]);
            headed_equals_dense::<zoo::Peephole<f64>>(heads, 1, &[3]);
        }
    });
}

#[test]
fn headed_layers_equal_dense_layers_of_the_expanded_weights_on_one_thread() {
    every_case(1);
}

#[test]
fn headed_layers_equal_dense_layers_of_the_expanded_weights_on_two_threads() {
    every_case(2);
}

/// Wide heads (the `gemm` crate's blocks) at a batch large enough to split between threads.
#[test]
fn wide_heads_equal_the_dense_layer() {
    let config = LstmConfig::new(8, 64).with_heads(2);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut headed = Lstm::<zoo::Lstm<f64>>::new(config, &mut rng).unwrap();
    let mut dense = dense_of(&headed);
    let input: Array3<f64> = random(&mut rng, (6, 40, 8));
    for threads in [1, 2] {
        with_threads(threads, || {
            let a = headed.forward(input.view(), Call::new()).unwrap();
            let b = dense.forward(input.view(), Call::new()).unwrap();
            let (a, b) = (a.output.sequence().unwrap(), b.output.sequence().unwrap());
            assert_close(
                "wide heads",
                &a.clone().into_dyn(),
                &b.clone().into_dyn(),
                1e-12,
            );
        });
    }
}

#[test]
fn a_headed_stack_steps_as_its_sequence_forward() {
    for (heads, batch) in [(2, 3), (4, 1), (2, 1)] {
        let config = LstmConfig::new(3, 4).with_num_layers(2).with_heads(heads);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut layer = Lstm::<zoo::Peephole<f64>>::new(config, &mut rng).unwrap();
        let input: Array3<f64> = random(&mut rng, (5, batch, 3));
        let whole = layer.forward(input.view(), Call::new()).unwrap();
        let sequence = whole.output.sequence().unwrap();
        let mut stepper = layer.stepper(batch).unwrap();
        let mut state = stepper.zero_state();
        for t in 0..5 {
            let output = stepper
                .step(input.index_axis(Axis(0), t), &mut state)
                .unwrap()
                .to_owned();
            assert_eq!(
                output,
                sequence.index_axis(Axis(0), t),
                "heads {heads} step {t}"
            );
        }
    }
}

#[test]
fn a_headed_layer_passes_gradcheck() {
    let config = LstmConfig::new(3, 4)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_heads(2);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let layer = Lstm::<zoo::Lstm<f64>>::new(config, &mut rng).unwrap();
    let input: Array3<f64> = random(&mut rng, (4, 2, 3));
    let lengths = [4, 2];
    let call = Call::new().with_training(true).with_lengths(&lengths);
    let report = gradcheck(&layer, input.view(), call, &GradcheckOptions::default()).unwrap();
    assert!(report.worst_relative_error() < 1e-6, "{report}");
}

#[test]
fn loading_pytorch_names_reads_the_heads_off_weight_hh() {
    let config = LstmConfig::new(3, 6).with_num_layers(2).with_heads(3);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut layer = Lstm::<zoo::Lstm<f64>>::new(config, &mut rng).unwrap();
    let map = TensorMap::from_parameters(&layer);
    assert_eq!(map.get("weight_hh_l0").unwrap().shape(), &[24, 2]);
    let mut loaded = lstm_from_pytorch::<zoo::Lstm<f64>>(&map).unwrap();
    assert_eq!(loaded.config().heads, 3);
    let input: Array3<f64> = random(&mut rng, (4, 2, 3));
    let a = layer.forward(input.view(), Call::new()).unwrap();
    let b = loaded.forward(input.view(), Call::new()).unwrap();
    assert_eq!(a.output.sequence(), b.output.sequence());

    // Columns that are no head width of 6 units.
    let mut bad = map.clone();
    bad.insert(
        "weight_hh_l0",
        Tensor::from_float(ArrayD::<f64>::zeros(vec![24, 4])),
    );
    let error = lstm_from_pytorch::<zoo::Lstm<f64>>(&bad).unwrap_err();
    assert!(
        matches!(&error, Error::ShapeMismatch { what, .. } if what == "weight_hh_l0"),
        "{error}"
    );
    // A second layer of other heads than the first.
    let mut mixed = map.clone();
    let other = map
        .get("weight_hh_l0")
        .unwrap()
        .to_float::<f64>("x")
        .unwrap();
    let wider = ArrayD::<f64>::zeros(vec![24, 3]);
    assert_eq!(other.shape(), &[24, 2]);
    mixed.insert("weight_hh_l1", Tensor::from_float(wider));
    let error = lstm_from_pytorch::<zoo::Lstm<f64>>(&mixed).unwrap_err();
    assert!(
        matches!(&error, Error::ShapeMismatch { what, .. } if what == "weight_hh_l1"),
        "{error}"
    );
    // A dense config given weights of three heads names the option.
    let dense = LstmConfig::new(3, 6).with_num_layers(2);
    let error = crate::io::lstm_from_pytorch_with::<zoo::Lstm<f64>>(&map, dense).unwrap_err();
    assert!(
        matches!(&error, Error::Config { option, .. } if option == "heads"),
        "{error}"
    );
}
