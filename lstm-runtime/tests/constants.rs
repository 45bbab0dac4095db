//! Keras `constants`: a per-sequence input every step of every layer and direction reads,
//! projected once per call by `weight_{constant}`. Forward against the naive reference, and
//! gradients (of the projection weight and of the constants themselves) by gradcheck.

#[path = "common/layer_reference.rs"]
mod layer_reference;
#[path = "common/zoo_steps.rs"]
mod zoo_steps;

use std::rc::Rc;

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use layer_reference::{RefValidity, RowStep, max_diff, ref_cells, reference};
use lstm_runtime::{
    Call, Cell, GradcheckOptions, Lstm, LstmConfig, MergeMode, Parameters, gradcheck, lstm_cell,
};
use zoo_steps::sigmoid;

/// Every gate conditioned on the constant input; the forget gate's peephole reads `c_prev`.
#[lstm_cell(crate = "lstm_runtime", z = z + cond, f = sigmoid(z_f + cond_f * c_prev))]
pub struct Conditioned {
    cond: Constant,
}

fn conditioned_step(_: &Conditioned<f64>) -> RowStep {
    Rc::new(|pre, c_prev, _| {
        (0..pre.hidden)
            .map(|j| {
                let z = |gate: char| pre.z(gate, j) + pre.constant[pre.at(gate, j)];
                let (i, g, o) = (sigmoid(z('i')), z('g').tanh(), sigmoid(z('o')));
                let f = sigmoid(z('f') + pre.constant[pre.at('f', j)] * c_prev[j]);
                let c = f * c_prev[j] + i * g;
                (o * c.tanh(), c)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .unzip()
    })
}

const CONSTANT: usize = 2;

fn configs() -> Vec<LstmConfig> {
    let base = LstmConfig::new(3, 4).with_constant_size(CONSTANT);
    vec![
        base.clone(),
        base.clone()
            .with_bidirectional(true)
            .with_merge_mode(MergeMode::Mul),
        base.clone()
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_proj_size(2),
        base.with_go_backwards(true).with_return_sequences(false),
    ]
}

fn layer(config: LstmConfig, seed: u64) -> Lstm<Conditioned<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = Lstm::new(config, &mut rng).unwrap();
    layer.visit_parameters_mut(&mut |_, mut v| v.mapv_inplace(|_| rng.random_range(-0.6..0.6)));
    layer
}

#[test]
fn constants_reach_every_layer_and_direction() {
    for (seed, config) in configs().into_iter().enumerate() {
        let mut lstm = layer(config.clone(), seed as u64);
        let mut names = Vec::new();
        lstm.visit_parameters(&mut |name, _| names.push(name.to_string()));
        assert!(names.contains(&"weight_cond_l0".to_string()), "{names:?}");
        let mut rng = ChaCha8Rng::seed_from_u64(50 + seed as u64);
        let x = Array3::from_shape_fn((5, 3, 3), |_| rng.random_range(-1.0..1.0));
        let constants = Array2::from_shape_fn((3, CONSTANT), |_| rng.random_range(-1.0..1.0));
        let lengths = [5, 2, 0];
        let call = Call::new()
            .with_lengths(&lengths)
            .with_constants(constants.view());
        let found = lstm.forward(x.view(), call).unwrap();
        let states = config.num_layers * config.num_directions();
        let h0 = Array3::zeros((states, 3, config.output_size()));
        let c0 = Array3::zeros((states, 3, 4));
        let cells = ref_cells(&lstm, &|cell| conditioned_step(cell));
        let expected = reference(
            &cells,
            &config,
            &x,
            &RefValidity::Lengths(lengths.to_vec()),
            &h0,
            &c0,
            Some(&constants),
        );
        assert!(max_diff(found.output.view(), expected.output.view()) < 1e-12);
        let h_n = found.h_n.unwrap();
        assert!(max_diff(h_n.view().into_dyn(), expected.h_n.view().into_dyn()) < 1e-12);
        // The constants matter: other constants, other outputs.
        let other = constants.mapv(|v| v + 0.5);
        let moved = lstm
            .forward(x.view(), call.with_constants(other.view()))
            .unwrap();
        assert_ne!(moved.output, found.output);
    }
}

#[test]
fn constants_have_gradients() {
    for (seed, config) in configs().into_iter().enumerate() {
        let lstm = layer(config, 10 + seed as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(60 + seed as u64);
        let x = Array3::from_shape_fn((4, 3, 3), |_| rng.random_range(-1.0..1.0));
        let constants = Array2::from_shape_fn((3, CONSTANT), |_| rng.random_range(-1.0..1.0));
        let mask = Array2::from_shape_fn((3, 4), |(b, t)| (b + 2 * t) % 3 != 0);
        let call = Call::new()
            .with_mask(mask.view())
            .with_constants(constants.view());
        let report = gradcheck(&lstm, x.view(), call, &GradcheckOptions::default()).unwrap();
        assert!(report.entry("constants").is_some());
        assert!(report.entry("weight_cond_l0").is_some());
        assert!(
            report.worst_relative_error() < 1e-6,
            "{}\n{report}",
            Conditioned::<f64>::SPEC.name
        );
    }
}
