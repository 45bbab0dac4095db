//! At batch 1, in `f32` on two threads, a cell whose units do not read each other steps with its
//! units split between the threads (`recurrence/split_units/`): each thread projects, multiplies
//! and steps its half of the units, and only `h` crosses. Outputs against the naive `f64` reference
//! of `common/layer_reference.rs`, and the training tape through the gradients of the same layer in
//! `f64` (which never splits: the packed kernels are `f32`); against the same `f32` layer on one
//! thread (which does not split), bit for bit. A layer-norm cell (its units read each other)
//! must not split, and still agree.
//!
//! Its own test binary: it sets the process-wide thread count to two, so the split runs
//! whatever the machine's core count (on one core the caller runs the helper's steps).

#[path = "common/layer_reference.rs"]
mod layer_reference;
#[path = "common/zoo_steps.rs"]
mod zoo_steps;

use std::rc::Rc;

use ndarray::{Array, Array2, Array3, ArrayView2, ArrayViewD, Dimension};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use layer_reference::{RefValidity, RowStep, max_diff, ref_cells, reference};
use lstm_runtime::zoo::{
    Cifg, ForgetBias, HardSigmoid, LayerNorm, Lstm as LstmCell, Peephole, ScaledForget,
};
use lstm_runtime::{
    __private::unit_split_chunks, Call, Cell, Float, Lstm, LstmConfig, LstmGradients, OutputGrad,
    Parameters, Tape, linalg, lstm_cell,
};
use zoo_steps::sigmoid;

/// Reads a constant input in every gate and `h_prev` in its cell state: the split must hand
/// each half its columns of the constant's projection and its units of `h_prev`.
#[lstm_cell(crate = "lstm_runtime", z = z + cond, c = f * c_prev + i * g + 0.1 * h_prev)]
pub struct Conditioned {
    cond: Constant,
}

fn conditioned_step(_: &Conditioned<f32>) -> RowStep {
    Rc::new(|pre, c_prev, h_prev| {
        (0..pre.hidden)
            .map(|j| {
                let z = |gate: char| pre.z(gate, j) + pre.constant[pre.at(gate, j)];
                let (i, f, g, o) = (
                    sigmoid(z('i')),
                    sigmoid(z('f')),
                    z('g').tanh(),
                    sigmoid(z('o')),
                );
                let c = f * c_prev[j] + i * g + 0.1 * h_prev[j];
                (o * c.tanh(), c)
            })
            .unzip()
    })
}

const CONSTANT: usize = 3;
const INPUT: usize = 5;

/// Lengths long enough for the time loop to run with a helper thread at these hidden sizes (its
/// work, `T · gates · hidden²`, from 2²² multiply-adds, three gates included), and a chunk of odd
/// length at the end.
fn cases() -> Vec<(usize, LstmConfig)> {
    vec![
        (351, LstmConfig::new(INPUT, 64)),
        // 37 units: halves of 18 and 19, panels of 16 columns cut inside a gate.
        (1031, LstmConfig::new(INPUT, 37).with_bidirectional(true)),
        (350, LstmConfig::new(INPUT, 64).with_num_layers(2)),
        (345, LstmConfig::new(INPUT, 64).with_go_backwards(true)),
        // 128 units: each half's projection comes in several pieces of panels per row block.
        (100, LstmConfig::new(INPUT, 128)),
    ]
}

/// An `f32` layer with weights in `±0.4` and its `f64` twin.
fn layers<C32, C64>(config: &LstmConfig, seed: u64) -> (Lstm<C32>, Lstm<C64>)
where
    C32: Cell<Elem = f32>,
    C64: Cell<Elem = f64>,
{
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut single = Lstm::<C32>::new(config.clone(), &mut rng).unwrap();
    single.visit_parameters_mut(&mut |_, mut v| v.mapv_inplace(|_| rng.random_range(-0.4..0.4)));
    let mut double = Lstm::<C64>::new(config.clone(), &mut rng).unwrap();
    let mut values = Vec::new();
    single.visit_parameters(&mut |name, v| values.push((name.to_string(), v.mapv(f64::from))));
    double.visit_parameters_mut(&mut |name, mut v| {
        let (_, from) = values.iter().find(|(n, _)| n == name).unwrap();
        v.assign(from);
    });
    (single, double)
}

/// Every gradient of `layer`'s training pass recorded in `tape`, given the output's.
fn backward<C: Cell>(
    layer: &Lstm<C>,
    tape: Tape<'_, C::Elem>,
    d_output: ArrayViewD<'_, C::Elem>,
) -> LstmGradients<C::Elem> {
    let grad = OutputGrad {
        output: Some(d_output),
        ..Default::default()
    };
    layer.backward(tape, grad).unwrap()
}

/// `call` with the constant input, if the cell reads one.
fn with<'a, F: Float>(call: Call<'a, F>, constants: Option<ArrayView2<'a, F>>) -> Call<'a, F> {
    match constants {
        Some(constants) => call.with_constants(constants),
        None => call,
    }
}

/// Max |a − b| / max(1, |b|) over two arrays of one shape.
fn relative<D: Dimension>(a: &Array<f32, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (f64::from(a) - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Runs `C` on every case: inference against the reference, training gradients against the
/// `f64` layer's; `splits` says whether the steps must have run split.
fn agree<C32, C64>(step_of: &dyn Fn(&C32) -> RowStep, splits: bool)
where
    C32: Cell<Elem = f32>,
    C64: Cell<Elem = f64>,
{
    linalg::set_num_threads(2);
    let name = C32::SPEC.name;
    let has_constant = C32::SPEC.constant.is_some();
    for (seed, (seq_len, config)) in cases().into_iter().enumerate() {
        let config = match has_constant {
            true => config.with_constant_size(CONSTANT),
            false => config,
        };
        let (mut single, mut double) = layers::<C32, C64>(&config, seed as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed as u64);
        let x = Array3::from_shape_fn((seq_len, 1, INPUT), |_| rng.random_range(-1.0..1.0));
        let constants = Array2::from_shape_fn((1, CONSTANT), |_| rng.random_range(-1.0..1.0));
        let x32 = x.mapv(|v| v as f32);
        let c32 = constants.mapv(|v| v as f32);
        let c32 = has_constant.then(|| c32.view());
        let c64 = has_constant.then(|| constants.view());

        let before = unit_split_chunks();
        let found = single.forward(x32.view(), with(Call::new(), c32)).unwrap();
        let ran = unit_split_chunks() - before;
        assert_eq!(
            ran > 0,
            splits,
            "{name} case {seed}: {ran} chunks ran split"
        );

        let states = config.num_layers * config.num_directions();
        let h0 = Array3::zeros((states, 1, config.output_size()));
        let c0 = Array3::zeros((states, 1, config.hidden_size));
        let cells = ref_cells(&single, step_of);
        let expected = reference(
            &cells,
            &config,
            &x,
            &RefValidity::All,
            &h0,
            &c0,
            has_constant.then_some(&constants),
        );
        let worst = max_diff(found.output.view(), expected.output.view());
        assert!(
            worst < 2e-4,
            "{name} case {seed}: output differs by {worst}"
        );
        let h_n = found.h_n.unwrap().mapv(f64::from);
        let c_n = found.c_n.unwrap().mapv(f64::from);
        assert!(
            (&h_n - &expected.h_n)
                .mapv(f64::abs)
                .iter()
                .all(|&d| d < 2e-4)
        );
        assert!(
            (&c_n - &expected.c_n)
                .mapv(f64::abs)
                .iter()
                .all(|&d| d < 2e-4)
        );

        // Training: the tape the split steps record must give the gradients the f64 layer's
        // unsplit steps give.
        let before = unit_split_chunks();
        let (output, tape) = single
            .forward_train(x32.view(), with(Call::new().with_training(true), c32))
            .unwrap();
        assert_eq!(
            unit_split_chunks() > before,
            splits,
            "{name} case {seed}: training"
        );
        let d_output = output.output.view().mapv(|v| (3.0 * v).sin());
        let grads = backward(&single, tape, d_output.view());
        let (output64, tape64) = double
            .forward_train(x.view(), with(Call::new().with_training(true), c64))
            .unwrap();
        let d_output64 = d_output.mapv(f64::from);
        assert!(max_diff(output.output.view(), output64.output.view()) < 2e-4);
        let grads64 = backward(&double, tape64, d_output64.view());
        // The split sums as the steps that are not split: on one thread (no split), the same
        // outputs and gradients, bit for bit.
        linalg::set_num_threads(1);
        let (output1, tape1) = single
            .forward_train(x32.view(), with(Call::new().with_training(true), c32))
            .unwrap();
        let grads1 = backward(&single, tape1, d_output.view());
        linalg::set_num_threads(2);
        assert!(
            output1.output == output.output,
            "{name} case {seed}: output on one thread"
        );
        for (param, expected) in grads64.params.iter() {
            let found = grads.params.get(param).unwrap();
            assert!(
                found == grads1.params.get(param).unwrap(),
                "{name} case {seed}: d{param} on one thread"
            );
            // `f32` against `f64` over up to a thousand steps; the conditioned cell feeds
            // `h_prev` into `c`, and its 100-step case differs by 2.2e-3 on one thread too.
            let worst = relative(found, expected);
            assert!(
                worst < 4e-3,
                "{name} case {seed}: d{param} differs by {worst}"
            );
        }
        assert!(
            grads.input == grads1.input,
            "{name} case {seed}: dx on one thread"
        );
        let worst = relative(&grads.input, &grads64.input);
        assert!(worst < 4e-3, "{name} case {seed}: dx differs by {worst}");
    }
}

#[test]
fn unit_split_steps_match_the_reference() {
    agree::<LstmCell<f32>, LstmCell<f64>>(&|c| zoo_steps::lstm(c), true);
    agree::<Peephole<f32>, Peephole<f64>>(&|c| zoo_steps::peephole(c), true);
    agree::<ForgetBias<f32>, ForgetBias<f64>>(&|c| zoo_steps::forget_bias(c), true);
    agree::<ScaledForget<f32>, ScaledForget<f64>>(&|c| zoo_steps::scaled_forget(c), true);
    agree::<Cifg<f32>, Cifg<f64>>(&|c| zoo_steps::cifg(c), true);
    agree::<HardSigmoid<f32>, HardSigmoid<f64>>(&|c| zoo_steps::hard_sigmoid_cell(c), true);
    agree::<Conditioned<f32>, Conditioned<f64>>(&conditioned_step, true);
    // Layer norm sums over the units: whole steps only.
    agree::<LayerNorm<f32>, LayerNorm<f64>>(&|c| zoo_steps::layer_norm_cell(c), false);
}
