//! Optimizers: what turns [`Gradients`] into updated weights. Each works on any model that
//! exposes its tensors through [`Parameters`] and keeps its per-parameter state (momentum,
//! moment estimates) keyed by the same names, so [`OptimizerState`] can be written to a
//! checkpoint and read back for a resumed run to continue exactly.
//!
//! - [`Sgd`] (`sgd.rs`): PyTorch `torch.optim.SGD` with momentum, dampening and L2 weight
//!   decay.
//! - [`Adam`] (`adam.rs`): PyTorch `torch.optim.Adam` (L2 weight decay added to the
//!   gradient) and `torch.optim.AdamW` (decoupled weight decay).
//! - [`clip_grad_norm`]: PyTorch `torch.nn.utils.clip_grad_norm_`, run between backward and
//!   the optimizer step.
//!
//! Hyperparameters are `f64` whatever the element type, as PyTorch keeps them as Python
//! floats; scalar factors (bias corrections, step sizes) are computed in `f64` and converted
//! once per step.

mod adam;
mod sgd;

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewMutD};

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::params::{Gradients, Parameters};

/// An algorithm that updates a model's parameters from their gradients.
pub trait Optimizer<F: Float> {
    /// Updates every parameter of `model` from its gradient in `grads`, found by the same
    /// name. Gradients without a matching parameter (`input`, `h0`) are ignored.
    ///
    /// Every gradient is checked before any parameter changes, so an error leaves the model
    /// and the optimizer's state as they were.
    ///
    /// # Errors
    ///
    /// - [`Error::MissingTensor`] naming a parameter that has no gradient.
    /// - [`Error::ShapeMismatch`] naming a gradient shaped unlike its parameter.
    fn step(&mut self, model: &mut dyn Parameters<F>, grads: &Gradients<F>) -> Result<()>;

    /// The learning rate the next step uses.
    fn learning_rate(&self) -> f64;

    /// Changes the learning rate (for schedules).
    fn set_learning_rate(&mut self, lr: f64);

    /// Everything the optimizer has accumulated, for a checkpoint.
    fn state(&self) -> OptimizerState<F>;

    /// Replaces the accumulated state with one saved by [`Optimizer::state`] of the same kind
    /// of optimizer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `optimizer` if `state` comes from another algorithm, or
    /// naming the buffer that this algorithm does not keep.
    fn load_state(&mut self, state: OptimizerState<F>) -> Result<()>;
}

/// What an optimizer has accumulated: the number of steps taken and one buffer per parameter
/// and kind of statistic.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<F> {
    /// The algorithm that wrote it: `sgd`, `adam` or `adamw`.
    pub kind: String,
    /// Steps taken so far.
    pub step: u64,
    /// Buffers named `{statistic}.{parameter}` (`exp_avg.head.weight`,
    /// `momentum_buffer.lstm.weight_ih_l0`), PyTorch's names for the statistics.
    pub buffers: BTreeMap<String, ArrayD<F>>,
}

impl<F> OptimizerState<F> {
    /// The state of an optimizer of `kind` that has taken no step.
    pub fn empty(kind: impl Into<String>) -> Self {
        OptimizerState {
            kind: kind.into(),
            step: 0,
            buffers: BTreeMap::new(),
        }
    }
}

/// Scales every gradient in `grads` so that their global Euclidean norm is at most
/// `max_norm`, as PyTorch's `clip_grad_norm_(…, max_norm, error_if_nonfinite=True)`: the
/// factor is `max_norm / (norm + 1e-6)`, applied when it is below one. Returns the norm
/// before clipping.
///
/// Pass only parameter gradients: an `input` gradient in the map would count towards the
/// norm.
///
/// # Errors
///
/// [`Error::InvalidValue`] naming `max_norm` if it is not a positive finite number, or naming
/// `gradients` if their norm is NaN or infinite (then nothing is scaled).
pub fn clip_grad_norm<F: Float>(grads: &mut Gradients<F>, max_norm: f64) -> Result<F> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid_value(
            "max_norm",
            format!("{max_norm}; expected a positive finite number"),
        ));
    }
    let norm = grads.global_norm();
    if !norm.is_finite() {
        return Err(Error::invalid_value(
            "gradients",
            format!("their global norm is {norm}; a step from them would ruin the weights"),
        ));
    }
    let factor = max_norm / (norm.to_f64_lossy() + 1e-6);
    if factor < 1.0 {
        let factor = F::of(factor);
        for (_, values) in grads.iter_mut() {
            values.mapv_inplace(|v| v * factor);
        }
    }
    Ok(norm)
}

/// `Ok` if every parameter of `model` has a gradient of its own shape in `grads`.
fn check_gradients<F: Float>(model: &dyn Parameters<F>, grads: &Gradients<F>) -> Result<()> {
    let mut checked = Ok(());
    model.visit_parameters(&mut |name, values| {
        if checked.is_err() {
            return;
        }
        checked = match grads.get(name) {
            Some(grad) => expect_shape(name, values.shape(), grad.shape()),
            None => Err(Error::MissingTensor {
                name: name.into(),
                source_name: "the gradients".into(),
            }),
        };
    });
    checked
}

/// Calls `update(name, parameter, gradient)` for every parameter, after checking that every
/// gradient exists and fits ([`check_gradients`]).
fn for_each_parameter<F: Float>(
    model: &mut dyn Parameters<F>,
    grads: &Gradients<F>,
    mut update: impl FnMut(&str, ArrayViewMutD<'_, F>, &ArrayD<F>),
) -> Result<()> {
    check_gradients(model, grads)?;
    model.visit_parameters_mut(&mut |name, values| {
        if let Some(grad) = grads.get(name) {
            update(name, values, grad);
        }
    });
    Ok(())
}

/// `Ok` if a hyperparameter lies in `[low, high)` (`high` may be infinite).
fn check_range(what: &str, value: f64, low: f64, high: f64) -> Result<()> {
    if value >= low && value < high {
        Ok(())
    } else {
        Err(Error::invalid_value(
            what,
            format!("{value}; expected a value in [{low}, {high})"),
        ))
    }
}

/// `Ok` if `state` was written by an optimizer of `kind` and holds only buffers named
/// `{statistic}.{parameter}` with one of `statistics`.
fn check_state<F>(state: &OptimizerState<F>, kind: &str, statistics: &[&str]) -> Result<()> {
    if state.kind != kind {
        return Err(Error::invalid_value(
            "optimizer",
            format!("the state is {}'s; expected {kind}'s", state.kind),
        ));
    }
    let foreign = state.buffers.keys().find(|key| {
        !statistics.iter().any(|statistic| {
            key.strip_prefix(statistic)
                .is_some_and(|rest| rest.starts_with('.'))
        })
    });
    match foreign {
        Some(key) => Err(Error::invalid_value(
            key.as_str(),
            format!("{kind} keeps only {} buffers", statistics.join(", ")),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;

    use super::*;

    #[test]
    fn clipping_scales_to_max_norm_like_pytorch() {
        let mut grads = Gradients::<f64>::new();
        grads.insert(
            "a",
            ArrayD::from_shape_vec(vec![2], vec![3.0, 0.0]).unwrap(),
        );
        grads.insert("b", ArrayD::from_shape_vec(vec![1], vec![4.0]).unwrap());
        let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let factor = 1.0 / (5.0 + 1e-6);
        assert_eq!(
            grads.get("a").unwrap().as_slice().unwrap(),
            &[3.0 * factor, 0.0]
        );
        assert_eq!(grads.get("b").unwrap().as_slice().unwrap(), &[4.0 * factor]);
        assert!((grads.global_norm() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn clipping_leaves_small_gradients_alone() {
        let mut grads = Gradients::<f32>::new();
        grads.insert("a", ArrayD::from_elem(vec![4], 0.5));
        let before = grads.clone();
        assert_eq!(clip_grad_norm(&mut grads, 2.0).unwrap(), 1.0);
        assert_eq!(grads, before);
    }

    #[test]
    fn clipping_rejects_bad_norms() {
        let mut grads = Gradients::<f64>::new();
        grads.insert("a", ArrayD::from_elem(vec![1], f64::NAN));
        assert!(matches!(
            clip_grad_norm(&mut grads, 1.0),
            Err(Error::InvalidValue { what, .. }) if what == "gradients"
        ));
        for max_norm in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert!(matches!(
                clip_grad_norm(&mut grads, max_norm),
                Err(Error::InvalidValue { what, .. }) if what == "max_norm"
            ));
        }
    }
}
