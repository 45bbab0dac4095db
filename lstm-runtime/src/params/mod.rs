//! Named tensors: what optimizers, checkpoints, weight import/export and `gradcheck` see of a
//! model. A model (a layer, a linear head, a whole network) exposes its tensors by name
//! through [`Parameters`]; gradients come back as [`Gradients`], keyed by the same names.
//!
//! Names follow PyTorch's `state_dict` (`weight_ih_l0`, `bias_hh_l1_reverse`,
//! `weight_hr_l0`), plus a cell's spec parameters as `{param}_l{k}[_reverse]`, all built and
//! parsed by [`ParamName`](name::ParamName) (`name.rs`); a composite model prefixes its parts
//! (`lstm.weight_ih_l0`, `head.weight`).

pub(crate) mod name;

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};

use crate::float::Float;

/// Anything with learned tensors, visited by name in a fixed order.
pub trait Parameters<F: Float> {
    /// Visits every tensor with its name.
    fn visit_parameters(&self, visitor: &mut dyn FnMut(&str, ArrayViewD<'_, F>));

    /// Visits every tensor mutably with its name.
    fn visit_parameters_mut(&mut self, visitor: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>));

    /// Names and shapes of every tensor, in visiting order.
    fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut shapes = Vec::new();
        self.visit_parameters(&mut |name, values| {
            shapes.push((name.to_string(), values.shape().to_vec()))
        });
        shapes
    }

    /// Total number of learned values.
    fn num_parameters(&self) -> usize {
        let mut total = 0;
        self.visit_parameters(&mut |_, values| total += values.len());
        total
    }
}

/// Gradients keyed by parameter name (and `input`, `h0`, `c0` where a call returns them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients<F> {
    tensors: BTreeMap<String, ArrayD<F>>,
}

impl<F: Float> Gradients<F> {
    /// No gradients.
    pub fn new() -> Self {
        Gradients {
            tensors: BTreeMap::new(),
        }
    }

    /// Zero gradients shaped like every tensor of `model`.
    pub fn zeros_like(model: &impl Parameters<F>) -> Self {
        let mut grads = Gradients::new();
        model.visit_parameters(&mut |name, values| {
            grads.insert(name, ArrayD::zeros(values.raw_dim()));
        });
        grads
    }

    /// Sets the gradient of `name`.
    pub fn insert(&mut self, name: impl Into<String>, values: ArrayD<F>) {
        self.tensors.insert(name.into(), values);
    }

    /// The gradient of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ArrayD<F>> {
        self.tensors.get(name)
    }

    /// The gradient of `name`, mutably, if present.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut ArrayD<F>> {
        self.tensors.get_mut(name)
    }

    /// Removes and returns the gradient of `name`.
    pub fn remove(&mut self, name: &str) -> Option<ArrayD<F>> {
        self.tensors.remove(name)
    }

    /// Every gradient, by name in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<F>)> {
        self.tensors
            .iter()
            .map(|(name, values)| (name.as_str(), values))
    }

    /// Every gradient, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut ArrayD<F>)> {
        self.tensors
            .iter_mut()
            .map(|(name, values)| (name.as_str(), values))
    }

    /// Number of named gradients.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Adds every gradient of `other` under `prefix` (`"lstm."`), for composite models.
    pub fn extend_prefixed(&mut self, prefix: &str, other: Gradients<F>) {
        for (name, values) in other.tensors {
            self.tensors.insert(format!("{prefix}{name}"), values);
        }
    }

    /// Euclidean norm of all gradients together (for clipping by global norm).
    pub fn global_norm(&self) -> F {
        self.tensors
            .values()
            .flat_map(|values| values.iter())
            .map(|&v| v * v)
            .sum::<F>()
            .sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_norm_covers_every_tensor() {
        let mut grads = Gradients::<f64>::new();
        grads.insert("a", ArrayD::from_elem(vec![2], 3.0));
        grads.insert("b", ArrayD::from_elem(vec![1, 1], 4.0));
        assert!((grads.global_norm() - 34.0f64.sqrt()).abs() < 1e-12);
        let mut prefixed = Gradients::new();
        prefixed.extend_prefixed("lstm.", grads);
        assert!(prefixed.get("lstm.a").is_some());
        assert_eq!(prefixed.len(), 2);
    }
}
