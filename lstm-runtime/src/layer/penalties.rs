//! The layer's side of Keras' regularizers and constraints (`regularization/`): the weight
//! penalty of every layer and direction and its gradients, the activity penalty of what a
//! call returned ([`ActivityGrad`]), and the constraints applied to the weights.
//!
//! A training loop adds them explicitly, as Keras' `fit` adds `model.losses` to the loss:
//! [`Lstm::regularization_loss`] and [`Lstm::activity_regularization`] to the loss, their
//! gradients ([`Lstm::add_regularization_gradients`], [`ActivityGrad`]) to the gradients before
//! clipping, and [`Lstm::apply_constraints`] after every optimizer step (Keras applies a
//! variable's constraint right after the optimizer updates it).

use ndarray::{Array3, ArrayD};

use super::Lstm;
use super::call::{LstmOutput, Output, OutputGrad};
use super::config::LstmConfig;
use crate::cell::Cell;
use crate::error::Result;
use crate::float::Float;
use crate::params::Gradients;
use crate::regularization::penalty::activity_part;

/// The gradient of an activity penalty with respect to what a call returned
/// ([`Lstm::activity_regularization`]): each part shaped like the part of the
/// [`LstmOutput`] it is the gradient of, `None` where the call returned nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityGrad<F> {
    /// Of [`LstmOutput::output`], in its shape (a sequence in the call's layout, or the last
    /// outputs).
    pub output: ArrayD<F>,
    /// Of [`LstmOutput::output_reverse`].
    pub output_reverse: Option<ArrayD<F>>,
    /// Of [`LstmOutput::h_n`].
    pub h_n: Option<Array3<F>>,
    /// Of [`LstmOutput::c_n`].
    pub c_n: Option<Array3<F>>,
}

impl<F: Float> ActivityGrad<F> {
    /// Views of every part, as the gradient [`Lstm::backward`] takes, for a loss that is the
    /// penalty alone. A training loop with a loss of its own adds these parts to that loss's
    /// gradients instead.
    pub fn as_output_grad(&self) -> OutputGrad<'_, F> {
        OutputGrad {
            output: Some(self.output.view()),
            output_reverse: self.output_reverse.as_ref().map(|g| g.view()),
            h_n: self.h_n.as_ref().map(|g| g.view()),
            c_n: self.c_n.as_ref().map(|g| g.view()),
            states: &[],
        }
    }
}

impl<C: Cell> Lstm<C> {
    /// The weight penalty of the config's [`Regularizers`] (kernel, recurrent and bias) over
    /// every layer and direction, in `f64`; 0 without regularizers. Keras' `fit` adds this
    /// (its `model.losses`) to the loss; add it to yours.
    ///
    /// [`Regularizers`]: crate::regularization::penalty::Regularizers
    pub fn regularization_loss(&self) -> f64 {
        self.config().regularizers.weight_penalty(self, C::SPEC)
    }

    /// Adds the gradients of [`Lstm::regularization_loss`] into `grads` (what
    /// [`Lstm::backward`] returned as `params`, unprefixed names), before clipping and the
    /// optimizer step.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming a gradient in `grads` shaped unlike its parameter.
    ///
    /// [`Error::ShapeMismatch`]: crate::error::Error::ShapeMismatch
    pub fn add_regularization_gradients(&self, grads: &mut Gradients<C::Elem>) -> Result<()> {
        self.config()
            .regularizers
            .add_weight_gradients(self, C::SPEC, grads)
    }

    /// Applies the config's [`Constraints`] to the weights, as Keras does after every
    /// optimizer step: call it right after yours. Does nothing without constraints.
    ///
    /// [`Constraints`]: crate::regularization::constraint::Constraints
    pub fn apply_constraints(&mut self) {
        let constraints = self.config().constraints;
        if constraints.is_empty() {
            return;
        }
        constraints
            .apply(self, C::SPEC)
            // The config was validated when the layer was made: kernels' axes are 0 or 1 and
            // biases' 0, and a cell's kernels are 2-D and its biases 1-D by type.
            .expect("validated constraints fit every weight");
    }

    /// The activity penalty of a call's `output` and its gradient: the config's
    /// [`Regularizers::activity`](crate::regularization::penalty::Regularizers::activity)
    /// applied to every tensor the call returned (`output`,
    /// `output_reverse`, and `h_n`, `c_n` when `return_state`), each penalty divided by the
    /// batch size. This is Keras 3's `Layer.__call__`: it regularizes every tensor of
    /// `tree.flatten(outputs)` (an `LSTM` with `return_state` returns `[output, h, c]`) and
    /// divides each penalty by `shape[0]`, the batch (0 for an empty batch, as
    /// `divide_no_nan`). Keras applies it to the outputs of the layer it is set on: for a
    /// stack, set on the last layer, it sees only that layer's output and states, whereas
    /// `h_n`/`c_n` here hold every layer's.
    ///
    /// Without an activity regularizer the penalty is 0 and the gradients zero. Add the
    /// penalty to the loss and the gradients to the loss's gradient with respect to the
    /// output before [`Lstm::backward`].
    pub fn activity_regularization(
        &self,
        output: &LstmOutput<C::Elem>,
    ) -> (f64, ActivityGrad<C::Elem>) {
        let config = self.config();
        let regularizer = config.regularizers.activity;
        let regularizer = regularizer.as_ref();
        let part = |values: &Output<C::Elem>| {
            activity_part(
                regularizer,
                values.view(),
                output_batch_axis(config, values),
            )
        };
        // States are `(layers · directions, batch, ·)`.
        let state = |values: &Array3<C::Elem>| {
            let (penalty, grad) = activity_part(regularizer, values.view().into_dyn(), 1);
            let grad = grad
                .into_dimensionality()
                // Made in the shape of a 3-D array.
                .expect("a state's gradient is 3-D");
            (penalty, grad)
        };
        let (output_penalty, output_grad) = part(&output.output);
        let output_reverse = output.output_reverse.as_ref().map(part);
        let h_n = output.h_n.as_ref().map(state);
        let c_n = output.c_n.as_ref().map(state);
        let penalty = output_penalty
            + output_reverse.as_ref().map_or(0.0, |(p, _)| *p)
            + h_n.as_ref().map_or(0.0, |(p, _)| *p)
            + c_n.as_ref().map_or(0.0, |(p, _)| *p);
        let grad = ActivityGrad {
            output: output_grad,
            output_reverse: output_reverse.map(|(_, g)| g),
            h_n: h_n.map(|(_, g)| g),
            c_n: c_n.map(|(_, g)| g),
        };
        (penalty, grad)
    }
}

/// The batch axis of an output part: Keras is batch-first, so its `shape[0]` is always the
/// batch; ours is axis 1 of a time-major sequence.
fn output_batch_axis<F>(config: &LstmConfig, output: &Output<F>) -> usize {
    match output {
        Output::Sequence(_) if !config.batch_first => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use lstm_macros::lstm_cell;
    use ndarray::{Array3, ArrayD};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::error::Error;
    use crate::layer::bidirectional::MergeMode;
    use crate::params::Parameters;
    use crate::regularization::constraint::{Constraint, Constraints};
    use crate::regularization::penalty::{Regularizer, Regularizers};
    use crate::regularization::role::WeightRole;
    use crate::zoo;

    /// Every gate reads a per-sequence constant, projected by `weight_ctx`.
    #[lstm_cell(z = z + ctx)]
    pub struct WithConstant {
        ctx: Constant,
    }

    fn layer<C: Cell<Elem = f64>>(config: LstmConfig) -> Lstm<C> {
        Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(9)).unwrap()
    }

    fn every_regularizer() -> Regularizers {
        Regularizers::new()
            .with_kernel(Regularizer::L1L2 { l1: 0.03, l2: 0.2 })
            .with_recurrent(Regularizer::L1 { l1: 0.05 })
            .with_bias(Regularizer::L2 { l2: 0.3 })
    }

    fn config_error(result: Result<()>) -> String {
        match result {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a config error, found {other:?}"),
        }
    }

    /// Sets element `index` (row-major) of the tensor `name`.
    fn nudge(model: &mut impl Parameters<f64>, name: &str, index: usize, delta: f64) {
        model.visit_parameters_mut(&mut |found, mut values| {
            if found == name {
                *values.iter_mut().nth(index).unwrap() += delta;
            }
        });
    }

    #[test]
    fn weight_penalty_gradients_match_finite_differences() {
        let configs = [
            LstmConfig::new(3, 4)
                .with_num_layers(2)
                .with_bidirectional(true)
                .with_proj_size(2),
            LstmConfig::new(3, 4).with_constant_size(2),
        ];
        for config in configs {
            let config = config.with_regularizers(every_regularizer());
            if config.constant_size > 0 {
                check_weight_gradients(layer::<WithConstant<f64>>(config));
            } else {
                check_weight_gradients(layer::<zoo::Lstm<f64>>(config));
            }
        }
        // Spec parameters are not regularized.
        let config = LstmConfig::new(3, 4).with_regularizers(every_regularizer());
        check_weight_gradients(layer::<zoo::Peephole<f64>>(config));
    }

    fn check_weight_gradients<C: Cell<Elem = f64>>(mut layer: Lstm<C>) {
        let mut grads = Gradients::new();
        layer.add_regularization_gradients(&mut grads).unwrap();
        let shapes = layer.parameter_shapes();
        let mut checked = 0;
        for (name, shape) in shapes {
            let role = WeightRole::of(&name, C::SPEC);
            let Some(grad) = grads.get(&name).cloned() else {
                assert_eq!(role, None, "{name} has a role but no gradient");
                continue;
            };
            assert!(role.is_some(), "{name} has no role but a gradient");
            assert_eq!(grad.shape(), shape.as_slice());
            let step = 1e-6;
            for (index, &analytic) in grad.iter().enumerate() {
                nudge(&mut layer, &name, index, step);
                let above = layer.regularization_loss();
                nudge(&mut layer, &name, index, -2.0 * step);
                let below = layer.regularization_loss();
                nudge(&mut layer, &name, index, step);
                let numeric = (above - below) / (2.0 * step);
                assert!(
                    (numeric - analytic).abs() < 1e-7,
                    "{name}[{index}]: numeric {numeric}, analytic {analytic}"
                );
                checked += 1;
            }
        }
        assert!(checked > 0);
        assert!(layer.regularization_loss() > 0.0);
    }

    #[test]
    fn gradients_add_to_existing_ones_and_reject_wrong_shapes() {
        let config = LstmConfig::new(2, 3).with_regularizers(every_regularizer());
        let regularized = layer::<zoo::Lstm<f64>>(config);
        let mut alone = Gradients::new();
        regularized
            .add_regularization_gradients(&mut alone)
            .unwrap();
        let mut grads = Gradients::zeros_like(&regularized);
        for (_, values) in grads.iter_mut() {
            values.fill(1.0);
        }
        regularized
            .add_regularization_gradients(&mut grads)
            .unwrap();
        let sum = grads.get("weight_hh_l0").unwrap();
        assert_eq!(*sum, alone.get("weight_hh_l0").unwrap() + 1.0);
        grads.insert("bias_ih_l0", ArrayD::zeros(vec![2]));
        assert!(matches!(
            regularized.add_regularization_gradients(&mut grads),
            Err(Error::ShapeMismatch { what, .. }) if what == "bias_ih_l0"
        ));
        let plain = layer::<zoo::Lstm<f64>>(LstmConfig::new(2, 3));
        assert_eq!(plain.regularization_loss(), 0.0);
    }

    #[test]
    fn activity_penalty_divides_by_the_batch_in_either_layout() {
        let regularizer = Regularizer::L1L2 { l1: 0.1, l2: 0.3 };
        let config =
            LstmConfig::new(2, 3).with_regularizers(Regularizers::new().with_activity(regularizer));
        let time_major = layer::<zoo::Lstm<f64>>(config.clone());
        let batch_first = layer::<zoo::Lstm<f64>>(config.with_batch_first(true));
        // (seq_len 4, batch 5, 3), and the same values batch-first.
        let sequence = Array3::from_shape_fn((4, 5, 3), |(t, b, k)| {
            (t * 15 + b * 3 + k) as f64 / 10.0 - 2.0
        });
        let states = Array3::from_shape_fn((1, 5, 3), |(_, b, k)| b as f64 - k as f64);
        let output = |sequence: Array3<f64>| LstmOutput {
            output: Output::Sequence(sequence),
            output_reverse: None,
            h_n: Some(states.clone()),
            c_n: Some(states.clone() * 2.0),
            states: Default::default(),
            records: Default::default(),
        };
        let expected = (regularizer.penalty(sequence.view())
            + regularizer.penalty(states.view())
            + regularizer.penalty((states.clone() * 2.0).view()))
            / 5.0;
        let (penalty, _) = time_major.activity_regularization(&output(sequence.clone()));
        assert!((penalty - expected).abs() < 1e-12);
        let permuted = sequence
            .clone()
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let (penalty, _) = batch_first.activity_regularization(&output(permuted));
        assert!((penalty - expected).abs() < 1e-12);
        let plain = layer::<zoo::Lstm<f64>>(LstmConfig::new(2, 3));
        let (penalty, grad) = plain.activity_regularization(&output(sequence));
        assert_eq!(penalty, 0.0);
        assert!(grad.output.iter().all(|&g| g == 0.0));
    }

    /// One part of a call's output, mutably.
    type PartOf = fn(&mut LstmOutput<f64>) -> ndarray::ArrayViewMutD<'_, f64>;

    fn values_mut(output: &mut Output<f64>) -> ndarray::ArrayViewMutD<'_, f64> {
        match output {
            Output::Last(last) => last.view_mut().into_dyn(),
            Output::Sequence(sequence) => sequence.view_mut().into_dyn(),
        }
    }

    #[test]
    fn activity_gradients_match_finite_differences() {
        let regularizer = Regularizer::L1L2 { l1: 0.07, l2: 0.4 };
        let config = LstmConfig::new(2, 3)
            .with_bidirectional(true)
            .with_merge_mode(MergeMode::None)
            .with_return_sequences(false)
            .with_regularizers(Regularizers::new().with_activity(regularizer));
        let mut layer = layer::<zoo::Lstm<f64>>(config);
        let input =
            Array3::from_shape_fn((5, 4, 2), |(t, b, k)| ((t * 7 + b * 3 + k) as f64).sin());
        let output = layer.forward(input.view(), Default::default()).unwrap();
        let (_, grad) = layer.activity_regularization(&output);
        let penalty_of = |output: &LstmOutput<f64>| layer.activity_regularization(output).0;
        let step = 1e-6;
        let mut checked = 0;
        // Each part in turn: perturb one value, compare with that part's gradient.
        let parts: [(&str, PartOf, ArrayD<f64>); 4] = [
            ("output", |o| values_mut(&mut o.output), grad.output.clone()),
            (
                "output_reverse",
                |o| values_mut(o.output_reverse.as_mut().unwrap()),
                grad.output_reverse.clone().unwrap(),
            ),
            (
                "h_n",
                |o| o.h_n.as_mut().unwrap().view_mut().into_dyn(),
                grad.h_n.clone().unwrap().into_dyn(),
            ),
            (
                "c_n",
                |o| o.c_n.as_mut().unwrap().view_mut().into_dyn(),
                grad.c_n.clone().unwrap().into_dyn(),
            ),
        ];
        for (what, part, analytic) in parts {
            for (index, &analytic) in analytic.iter().enumerate() {
                let mut moved = output.clone();
                *part(&mut moved).iter_mut().nth(index).unwrap() += step;
                let above = penalty_of(&moved);
                *part(&mut moved).iter_mut().nth(index).unwrap() -= 2.0 * step;
                let below = penalty_of(&moved);
                let numeric = (above - below) / (2.0 * step);
                assert!(
                    (numeric - analytic).abs() < 1e-7,
                    "{what}[{index}]: numeric {numeric}, analytic {analytic}"
                );
                checked += 1;
            }
        }
        // Last outputs (batch 4, 3 features) of each direction, and both directions' states.
        assert_eq!(checked, 2 * 4 * 3 + 2 * 2 * 4 * 3);
        let as_grad = grad.as_output_grad();
        assert!(as_grad.h_n.is_some() && as_grad.output_reverse.is_some());
    }

    #[test]
    fn apply_constraints_touches_kernels_and_biases_only() {
        let constraints = Constraints::new()
            .with_kernel(Constraint::non_neg())
            .with_recurrent(Constraint::non_neg())
            .with_bias(Constraint::non_neg());
        let config = LstmConfig::new(3, 4)
            .with_bidirectional(true)
            .with_constraints(constraints);
        let mut constrained = layer::<zoo::Peephole<f64>>(config);
        let before = constrained.clone();
        constrained.apply_constraints();
        let mut negatives = Vec::new();
        constrained.visit_parameters(&mut |name, values| {
            let role = WeightRole::of(name, <zoo::Peephole<f64> as Cell>::SPEC);
            let negative = values.iter().any(|&v| v < 0.0);
            if role.is_some() && negative {
                negatives.push(name.to_string());
            }
            if role.is_none() {
                let mut same = false;
                before.visit_parameters(&mut |other, old| same |= other == name && old == values);
                assert!(same, "{name} changed");
                assert!(negative, "{name} had negative values to keep");
            }
        });
        assert!(negatives.is_empty(), "{negatives:?}");
    }

    #[test]
    fn impossible_values_are_named() {
        let option = |config: LstmConfig| config_error(config.validate());
        let regularized = |regularizers| LstmConfig::new(3, 4).with_regularizers(regularizers);
        assert_eq!(
            option(regularized(
                Regularizers::new().with_kernel(Regularizer::L1 { l1: -0.1 })
            )),
            "regularizers.kernel"
        );
        assert_eq!(
            option(regularized(Regularizers::new().with_activity(
                Regularizer::L1L2 {
                    l1: 0.0,
                    l2: f64::NAN
                }
            ))),
            "regularizers.activity"
        );
        let constrained = |constraints| LstmConfig::new(3, 4).with_constraints(constraints);
        assert_eq!(
            option(constrained(
                Constraints::new().with_bias(Constraint::UnitNorm { axis: 1 })
            )),
            "constraints.bias"
        );
        assert_eq!(
            option(constrained(Constraints::new().with_kernel(
                Constraint::MaxNorm {
                    max_value: 1.0,
                    axis: 2
                }
            ))),
            "constraints.kernel"
        );
        let min_max = |min_value, max_value, rate| Constraint::MinMaxNorm {
            min_value,
            max_value,
            rate,
            axis: 0,
        };
        for bad in [
            min_max(2.0, 1.0, 1.0),
            min_max(0.0, 1.0, 1.5),
            min_max(-1.0, 1.0, 1.0),
        ] {
            assert_eq!(
                option(constrained(Constraints::new().with_recurrent(bad))),
                "constraints.recurrent"
            );
        }
        let fine = Constraints::new()
            .with_kernel(Constraint::UnitNorm { axis: 1 })
            .with_bias(min_max(0.5, 0.5, 0.0));
        assert_eq!(constrained(fine).validate(), Ok(()));
    }
}
