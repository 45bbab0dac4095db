//! Keras' regularizers, constraints and `unit_forget_bias` against what Keras 3 itself computes
//! (`tests/fixtures/regularizers/`, written by `scripts/regularizer_fixtures.py` in Keras'
//! layout and transposed here to ours), and the trainer's use of them: penalties in the loss,
//! constraints after every step, checkpoints that remember both.

mod common;

use std::collections::BTreeSet;

use lstm::io::TensorMap;
use lstm::ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};
use lstm::train::{SequenceModel, Task, TrainConfig, Trainer};
use lstm::{
    Call, Cell, Constraint, Constraints, Direction, Gradients, Lstm, LstmConfig, Parameters,
    Regularizer, Regularizers, WeightRole, zoo,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use common::fixtures::{assert_close, root};

/// Keras keeps `L1`'s factor in float32, 2·10⁻⁸ relative away from ours in f64.
const TOLERANCE: f64 = 1e-6;

type Plain = zoo::Lstm<f64>;

fn archive(name: &str) -> TensorMap {
    TensorMap::read_npz(root().join("regularizers").join(name)).unwrap()
}

/// An array of an archive, remembering that it was checked.
struct Fixture {
    map: TensorMap,
    read: BTreeSet<String>,
}

impl Fixture {
    fn load(name: &str) -> Fixture {
        Fixture {
            map: archive(name),
            read: BTreeSet::new(),
        }
    }

    fn get(&mut self, name: &str) -> ArrayD<f64> {
        self.read.insert(name.to_string());
        self.map.float(name).unwrap()
    }

    fn matrix(&mut self, name: &str) -> Array2<f64> {
        self.get(name).into_dimensionality::<Ix2>().unwrap()
    }

    fn vector(&mut self, name: &str) -> Array1<f64> {
        self.get(name).into_dimensionality::<Ix1>().unwrap()
    }

    fn scalar(&mut self, name: &str) -> f64 {
        let values = self.get(name);
        assert_eq!(values.len(), 1, "{name}");
        values.iter().copied().next().unwrap()
    }

    /// Fails if the archive holds an array no test read: a case the script gained.
    fn assert_all_read(&self) {
        let unread: Vec<&str> = self
            .map
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !self.read.contains(*name))
            .collect();
        assert!(
            unread.is_empty(),
            "fixture arrays never checked: {unread:?}"
        );
    }
}

/// A one-layer `Lstm` holding Keras-layout weights: `weight_ih = kernelᵀ`, `weight_hh =
/// recurrent_kernelᵀ`, `bias_ih = bias`, `bias_hh = 0` (Keras' gate order i, f, c, o is
/// PyTorch's i, f, g, o).
fn with_keras_weights(
    config: LstmConfig,
    kernel: &Array2<f64>,
    recurrent: &Array2<f64>,
    bias: &Array1<f64>,
) -> Lstm<Plain> {
    let mut layer = Lstm::<Plain>::new(config, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let weights = layer.cell_mut(0, Direction::Forward).unwrap().weights_mut();
    weights.weight_ih.assign(&kernel.t());
    weights.weight_hh.assign(&recurrent.t());
    weights.bias_ih.unwrap().assign(bias);
    weights.bias_hh.unwrap().fill(0.0);
    layer
}

fn regularizer_case(case: &str) -> Regularizer {
    match case {
        "l1" | "l2" | "l1l2" => Regularizer::from_keras_name(case).unwrap(),
        "l1_explicit" => Regularizer::L1 { l1: 0.3 },
        "l2_explicit" => Regularizer::L2 { l2: 0.2 },
        "l1_l2_explicit" => Regularizer::L1L2 { l1: 0.05, l2: 0.1 },
        "l1_l2_only_l2" => Regularizer::L1L2 { l1: 0.0, l2: 0.1 },
        other => panic!("unknown regularizer case {other}"),
    }
}

const REGULARIZER_CASES: [&str; 7] = [
    "l1",
    "l2",
    "l1l2",
    "l1_explicit",
    "l2_explicit",
    "l1_l2_explicit",
    "l1_l2_only_l2",
];

#[test]
fn weight_penalties_and_gradients_match_keras() {
    let mut fixture = Fixture::load("penalties.npz");
    let kernel = fixture.matrix("kernel");
    let recurrent = fixture.matrix("recurrent");
    let bias = fixture.vector("bias");
    let (input, gates) = kernel.dim();
    for case in REGULARIZER_CASES {
        let regularizer = regularizer_case(case);
        let roles = [
            (
                "kernel",
                Regularizers::new().with_kernel(regularizer),
                "weight_ih_l0",
            ),
            (
                "recurrent",
                Regularizers::new().with_recurrent(regularizer),
                "weight_hh_l0",
            ),
            (
                "bias",
                Regularizers::new().with_bias(regularizer),
                "bias_ih_l0",
            ),
        ];
        for (array, regularizers, name) in roles {
            let config = LstmConfig::new(input, gates / 4).with_regularizers(regularizers);
            let layer = with_keras_weights(config, &kernel, &recurrent, &bias);
            let what = format!("{array}/{case}");
            let expected = fixture.scalar(&format!("{what}/penalty"));
            let found = layer.regularization_loss();
            assert!(
                (found - expected).abs() <= TOLERANCE * expected.abs(),
                "{what}: penalty {found}, Keras {expected}"
            );
            let mut grads = Gradients::new();
            layer.add_regularization_gradients(&mut grads).unwrap();
            let ours = grads.remove(name).unwrap();
            // Keras' layout is the transpose of ours (a bias is its own transpose).
            let ours = ours.t().into_dyn();
            let keras = fixture.get(&format!("{what}/grad"));
            assert_close(&what, ours.view(), keras.view(), TOLERANCE);
            // The zero `bias_hh` adds nothing (the L1 gradient at 0 is 0), and no other
            // tensor is regularized.
            for (other, grad) in grads.iter() {
                assert_eq!(other, "bias_hh_l0", "{what}: {other} regularized");
                assert!(grad.iter().all(|&g| g == 0.0), "{what}: {grad}");
            }
        }
    }
    fixture.assert_all_read();
}

fn constraint_case(case: &str) -> Constraint {
    match case {
        "max_norm" | "non_neg" | "unit_norm" | "min_max_norm" => {
            Constraint::from_keras_name(case).unwrap()
        }
        "max_norm_small" => Constraint::MaxNorm {
            max_value: 0.5,
            axis: 0,
        },
        "min_max_norm_rate" => Constraint::MinMaxNorm {
            min_value: 0.8,
            max_value: 1.2,
            rate: 0.6,
            axis: 0,
        },
        "max_norm_axis1" => Constraint::MaxNorm {
            max_value: 1.5,
            axis: 1,
        },
        "unit_norm_axis1" => Constraint::UnitNorm { axis: 1 },
        "min_max_norm_axis1" => Constraint::MinMaxNorm {
            min_value: 0.5,
            max_value: 1.0,
            rate: 1.0,
            axis: 1,
        },
        other => panic!("unknown constraint case {other}"),
    }
}

#[test]
fn constraints_match_keras() {
    let mut fixture = Fixture::load("constraints.npz");
    let kernel = fixture.matrix("kernel");
    let recurrent = fixture.matrix("recurrent");
    let (input, gates) = kernel.dim();
    let every_axis = [
        "max_norm",
        "non_neg",
        "unit_norm",
        "min_max_norm",
        "max_norm_small",
        "min_max_norm_rate",
    ];
    let kernel_only = ["max_norm_axis1", "unit_norm_axis1", "min_max_norm_axis1"];
    for bias_name in ["bias", "bias_small"] {
        let bias = fixture.vector(bias_name);
        for case in every_axis.iter().chain(&kernel_only) {
            let constraint = constraint_case(case);
            let kernels_only = kernel_only.contains(case);
            let constraints = Constraints {
                kernel: Some(constraint),
                recurrent: Some(constraint),
                bias: (!kernels_only).then_some(constraint),
            };
            let config = LstmConfig::new(input, gates / 4).with_constraints(constraints);
            let mut layer = with_keras_weights(config, &kernel, &recurrent, &bias);
            layer.apply_constraints();
            let weights = layer.cell(0, Direction::Forward).unwrap().weights();
            let mut check = |array: &str, ours: ArrayD<f64>| {
                let what = format!("{array}/{case}");
                assert_close(&what, ours.view(), fixture.get(&what).view(), TOLERANCE);
            };
            check("kernel", weights.weight_ih.t().to_owned().into_dyn());
            check("recurrent", weights.weight_hh.t().to_owned().into_dyn());
            if !kernels_only {
                check(bias_name, weights.bias_ih.unwrap().clone().into_dyn());
            }
        }
    }
    fixture.assert_all_read();
}

#[test]
fn activity_penalty_matches_keras_with_and_without_states() {
    let mut fixture = Fixture::load("activity.npz");
    let x = fixture.get("x");
    let (batch, steps, input) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let regularizer = Regularizer::L1L2 { l1: 0.01, l2: 0.02 };
    for (case, return_sequences, return_state) in [
        ("sequences_state", true, true),
        ("sequences", true, false),
        ("last_state", false, true),
    ] {
        let kernel = fixture.matrix(&format!("{case}/kernel"));
        let recurrent = fixture.matrix(&format!("{case}/recurrent_kernel"));
        let bias = fixture.vector(&format!("{case}/bias"));
        let config = LstmConfig::new(input, recurrent.nrows())
            .with_batch_first(true)
            .with_return_sequences(return_sequences)
            .with_return_state(return_state)
            .with_regularizers(Regularizers::new().with_activity(regularizer));
        let mut layer = with_keras_weights(config, &kernel, &recurrent, &bias);
        let output = layer.forward(x.view(), Call::new()).unwrap();
        let keras_output = fixture.get(&format!("{case}/output"));
        assert_close(case, output.output.view(), keras_output.view(), 1e-14);
        if return_state {
            let h_n = output
                .h_n
                .as_ref()
                .unwrap()
                .index_axis(lstm::ndarray::Axis(0), 0);
            let c_n = output
                .c_n
                .as_ref()
                .unwrap()
                .index_axis(lstm::ndarray::Axis(0), 0);
            let (h, c) = (
                fixture.get(&format!("{case}/h")),
                fixture.get(&format!("{case}/c")),
            );
            assert_close(case, h_n.into_dyn(), h.view(), 1e-9);
            assert_close(case, c_n.into_dyn(), c.view(), 1e-9);
        }
        let losses = fixture.get(&format!("{case}/losses"));
        // Keras regularizes every returned tensor: the output, and h and c with return_state.
        assert_eq!(losses.len(), if return_state { 3 } else { 1 }, "{case}");
        let (penalty, grad) = layer.activity_regularization(&output);
        let expected: f64 = losses.sum();
        // Keras 3.15's `divide_no_nan(loss, batch)` returns float32 even for float64 tensors
        // (`result_type(float64, float64, float)` is float32), so each of its losses is
        // rounded to float32 after the division.
        assert!(
            (penalty - expected).abs() <= 2.0 * f64::from(f32::EPSILON) * expected,
            "{case}: penalty {penalty}, Keras {expected} (per tensor {losses})"
        );
        assert_eq!(grad.h_n.is_some(), return_state);
        let expected_shape: &[usize] = if return_sequences {
            &[batch, steps, recurrent.nrows()]
        } else {
            &[batch, recurrent.nrows()]
        };
        assert_eq!(grad.output.shape(), expected_shape);
    }
    fixture.assert_all_read();
}

#[test]
fn unit_forget_bias_sums_to_keras_bias() {
    let mut fixture = Fixture::load("unit_forget_bias.npz");
    let keras = fixture.vector("bias");
    let hidden = keras.len() / 4;
    let config = LstmConfig::new(2, hidden).with_unit_forget_bias(true);
    let layer = Lstm::<Plain>::new(config, &mut rand::rng()).unwrap();
    let weights = layer.cell(0, Direction::Forward).unwrap().weights();
    let sum = weights.bias_ih.unwrap() + weights.bias_hh.unwrap();
    assert_eq!(sum, keras);
    fixture.assert_all_read();
}

/// The adding problem at 6 steps, a few optimizer steps.
fn small_run(regularizers: Regularizers, constraints: Constraints) -> TrainConfig {
    TrainConfig {
        task: Task::adding(6),
        hidden_size: 8,
        batch_size: 8,
        steps: 3,
        regularizers,
        constraints,
        ..TrainConfig::default()
    }
}

/// Names of the recurrent layer's kernel, recurrent and bias tensors holding a negative value.
fn negative_weights(trainer: &Trainer<Plain>) -> Vec<String> {
    let mut negative = Vec::new();
    trainer
        .model()
        .lstm()
        .visit_parameters(&mut |name, values| {
            if WeightRole::of(name, <Plain as Cell>::SPEC).is_some()
                && values.iter().any(|&v| v < 0.0)
            {
                negative.push(name.to_string());
            }
        });
    negative
}

#[test]
fn the_trainer_applies_constraints_after_every_step() {
    let non_neg = Constraints::new()
        .with_kernel(Constraint::non_neg())
        .with_recurrent(Constraint::non_neg())
        .with_bias(Constraint::non_neg());
    let mut constrained = Trainer::<Plain>::new(small_run(Regularizers::new(), non_neg)).unwrap();
    let mut free =
        Trainer::<Plain>::new(small_run(Regularizers::new(), Constraints::new())).unwrap();
    while !constrained.is_done() {
        constrained.step().unwrap();
        free.step().unwrap();
        assert_eq!(negative_weights(&constrained), Vec::<String>::new());
        assert_eq!(
            negative_weights(&free).len(),
            4,
            "the unconstrained run has negatives"
        );
    }
    // A checkpoint remembers the constraints: it does not resume without them.
    let checkpoint = constrained.checkpoint();
    let config = small_run(Regularizers::new(), non_neg);
    assert!(Trainer::<Plain>::resume(config.clone(), &checkpoint).is_ok());
    let err = Trainer::<Plain>::resume(
        TrainConfig {
            constraints: Constraints::new(),
            ..config
        },
        &checkpoint,
    )
    .unwrap_err();
    assert!(err.to_string().contains("train.constraints"), "{err}");
}

#[test]
fn the_model_adds_the_penalties_to_its_loss_and_gradients() {
    let task = Task::adding(6);
    let batch = task
        .batch::<f64, _>(8, &mut ChaCha8Rng::seed_from_u64(5))
        .unwrap();
    let model = |regularizers: Regularizers| {
        SequenceModel::<Plain>::with_layer_config(&task, 8, 0, |config| {
            config.with_regularizers(regularizers)
        })
        .unwrap()
    };
    let mut reference = model(Regularizers::new());
    let (base, base_grads) = reference.loss_and_gradients(&batch).unwrap();

    let weights = Regularizers::new()
        .with_kernel(Regularizer::L2 { l2: 0.5 })
        .with_recurrent(Regularizer::l1())
        .with_bias(Regularizer::L1L2 { l1: 0.1, l2: 0.2 });
    let mut regularized = model(weights);
    let penalty = regularized.lstm().regularization_loss();
    let mut penalty_grads = Gradients::new();
    regularized
        .lstm()
        .add_regularization_gradients(&mut penalty_grads)
        .unwrap();
    let (found, grads) = regularized.loss_and_gradients(&batch).unwrap();
    assert!(penalty > 0.0);
    assert!((found.loss - (base.loss + penalty)).abs() < 1e-12);
    for (name, grad) in grads.iter() {
        let base = base_grads.get(name).unwrap();
        let expected = match name
            .strip_prefix("lstm.")
            .and_then(|n| penalty_grads.get(n))
        {
            Some(penalty) => base + penalty,
            None => base.clone(),
        };
        assert_close(name, grad.view(), expected.view(), 1e-12);
    }

    let activity = Regularizer::L1L2 { l1: 0.1, l2: 0.2 };
    let mut regularized = model(Regularizers::new().with_activity(activity));
    let mut layer = regularized.lstm().clone();
    let output = layer
        .forward(batch.input.view(), Call::new().with_training(true))
        .unwrap();
    let (penalty, _) = layer.activity_regularization(&output);
    let (found, grads) = regularized.loss_and_gradients(&batch).unwrap();
    assert!(penalty > 0.0);
    assert!((found.loss - (base.loss + penalty)).abs() < 1e-12);
    // The penalty's gradient flows back through the layer, not into the head.
    assert_eq!(grads.get("head.weight"), base_grads.get("head.weight"));
    assert_ne!(
        grads.get("lstm.weight_ih_l0"),
        base_grads.get("lstm.weight_ih_l0")
    );
}

#[test]
fn the_trainer_reports_the_penalised_loss() {
    let weights = Regularizers::new().with_kernel(Regularizer::L2 { l2: 0.5 });
    let mut reference =
        Trainer::<Plain>::new(small_run(Regularizers::new(), Constraints::new())).unwrap();
    let mut regularized = Trainer::<Plain>::new(small_run(weights, Constraints::new())).unwrap();
    let penalty = regularized.model().lstm().regularization_loss();
    let (base, with_penalty) = (reference.step().unwrap(), regularized.step().unwrap());
    assert!(penalty > 0.0);
    assert!((with_penalty.loss - (base.loss + penalty)).abs() < 1e-12);
}
