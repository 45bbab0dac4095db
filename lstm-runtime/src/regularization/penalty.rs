//! Keras' weight and activity regularizers: [`Regularizer`], one penalty `l1 · Σ|x| + l2 ·
//! Σx²`, and [`Regularizers`], the penalty of each weight role of a layer, over the
//! PyTorch-named tensors of any [`Parameters`] model.
//!
//! Nothing here runs by itself: a layer's forward and backward passes know nothing of
//! penalties. A training loop adds them explicitly, as Keras' `fit` adds `model.losses` to the
//! loss (the layer's side of this is `layer/penalties.rs`).

use ndarray::{ArrayD, ArrayView, ArrayViewD, ArrayViewMut, Axis, Dimension, Zip};

use super::role::WeightRole;
use crate::cell::CellSpec;
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::params::{Gradients, Parameters};

/// A weight or activity penalty, as Keras' `keras.regularizers`: `l1 · Σ|x| + l2 · Σx²`.
///
/// The gradient of `|x|` at an exact zero is taken as 0 (`sign(0) = 0`), as Keras computes it
/// on its TensorFlow and torch backends (JAX's `abs` would give 1 there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    /// `l1 · Σ|x|` (Keras `L1(l1)`, string `"l1"`).
    L1 {
        /// The factor, finite and non-negative.
        l1: f64,
    },
    /// `l2 · Σx²` (Keras `L2(l2)`, string `"l2"`).
    L2 {
        /// The factor, finite and non-negative.
        l2: f64,
    },
    /// `l1 · Σ|x| + l2 · Σx²` (Keras `L1L2(l1, l2)`, string `"l1l2"`).
    L1L2 {
        /// The L1 factor, finite and non-negative.
        l1: f64,
        /// The L2 factor, finite and non-negative.
        l2: f64,
    },
}

impl Regularizer {
    /// The factor of Keras' `L1()` and `L2()` and of their strings `"l1"`, `"l2"`.
    pub const DEFAULT_FACTOR: f64 = 0.01;

    /// Keras `"l1"` / `L1()`: `l1 = 0.01`.
    ///
    /// (Keras keeps an `L1` factor as a float32 tensor, so on float64 weights its factor is
    /// `0.01` rounded to float32, 2·10⁻¹⁰ away; this one is exactly `0.01`.)
    pub fn l1() -> Self {
        Regularizer::L1 {
            l1: Self::DEFAULT_FACTOR,
        }
    }

    /// Keras `"l2"` / `L2()`: `l2 = 0.01`.
    pub fn l2() -> Self {
        Regularizer::L2 {
            l2: Self::DEFAULT_FACTOR,
        }
    }

    /// Keras 3 `L1L2()` (also `keras.regularizers.l1_l2()` and the string `"l1l2"`): both
    /// factors 0, a zero penalty. Keras 3's docstring still promises `0.01` for a string
    /// `"l1_l2"`, which was Keras 2's `l1_l2()`; Keras 3.15 rejects that string and its
    /// `L1L2` defaults are 0. Give the factors with [`Regularizer::L1L2`].
    pub fn l1_l2() -> Self {
        Regularizer::L1L2 { l1: 0.0, l2: 0.0 }
    }

    /// The regularizer Keras 3 makes of a string identifier: `"l1"`/`"L1"`, `"l2"`/`"L2"`,
    /// `"l1l2"`/`"L1L2"` (`keras.regularizers.get`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `regularizer` for any other string (including
    /// `"l1_l2"`, which Keras 3 rejects too).
    pub fn from_keras_name(name: &str) -> Result<Self> {
        match name {
            "l1" | "L1" => Ok(Self::l1()),
            "l2" | "L2" => Ok(Self::l2()),
            "l1l2" | "L1L2" => Ok(Self::l1_l2()),
            other => Err(Error::invalid_value(
                "regularizer",
                format!("unknown Keras regularizer `{other}`; expected l1, l2 or l1l2"),
            )),
        }
    }

    /// The L1 factor (0 for [`Regularizer::L2`]).
    pub fn l1_factor(&self) -> f64 {
        match *self {
            Regularizer::L1 { l1 } | Regularizer::L1L2 { l1, .. } => l1,
            Regularizer::L2 { .. } => 0.0,
        }
    }

    /// The L2 factor (0 for [`Regularizer::L1`]).
    pub fn l2_factor(&self) -> f64 {
        match *self {
            Regularizer::L2 { l2 } | Regularizer::L1L2 { l2, .. } => l2,
            Regularizer::L1 { .. } => 0.0,
        }
    }

    /// Checks the factors as Keras does (`validate_float_arg`): finite and non-negative.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `option` (the config field holding the regularizer).
    pub fn validate(&self, option: &str) -> Result<()> {
        for (name, factor) in [("l1", self.l1_factor()), ("l2", self.l2_factor())] {
            if !factor.is_finite() || factor < 0.0 {
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!("expected a finite non-negative {name} factor, found {factor}"),
                });
            }
        }
        Ok(())
    }

    /// The penalty of `values` (any shape), in `f64`.
    pub fn penalty<F: Float, D: Dimension>(&self, values: ArrayView<'_, F, D>) -> f64 {
        let (l1, l2) = (self.l1_factor(), self.l2_factor());
        let (abs_sum, square_sum) = values.iter().fold((0.0, 0.0), |(abs, square), &v| {
            let v = v.to_f64_lossy();
            (abs + v.abs(), square + v * v)
        });
        l1 * abs_sum + l2 * square_sum
    }

    /// Adds the penalty's gradient with respect to `values` into `grad` (shaped alike):
    /// `l1 · sign(x) + 2 · l2 · x`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `grad` if it is shaped unlike `values`.
    pub fn add_gradient<F: Float, D: Dimension>(
        &self,
        values: ArrayView<'_, F, D>,
        grad: ArrayViewMut<'_, F, D>,
    ) -> Result<()> {
        self.add_scaled_gradient(values, 1.0, grad)
    }

    /// Adds `scale` times the penalty's gradient into `grad`.
    fn add_scaled_gradient<F: Float, D: Dimension>(
        &self,
        values: ArrayView<'_, F, D>,
        scale: f64,
        mut grad: ArrayViewMut<'_, F, D>,
    ) -> Result<()> {
        expect_shape("grad", values.shape(), grad.shape())?;
        let l1 = F::of(scale * self.l1_factor());
        let l2_twice = F::of(scale * 2.0 * self.l2_factor());
        Zip::from(&mut grad).and(&values).for_each(|g, &v| {
            *g += l1 * sign(v) + l2_twice * v;
        });
        Ok(())
    }
}

/// `sign(x)` with `sign(0) = 0` (Rust's `signum` gives ±1 for ±0).
fn sign<F: Float>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        F::zero()
    }
}

/// The penalties of a recurrent layer, by Keras' argument names. Default: none.
///
/// ```
/// use lstm_runtime::{LstmConfig, Regularizer, Regularizers};
///
/// let regularizers = Regularizers::new()
///     .with_kernel(Regularizer::l2())
///     .with_activity(Regularizer::L1L2 { l1: 1e-4, l2: 1e-3 });
/// let config = LstmConfig::new(3, 8).with_regularizers(regularizers);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regularizers {
    /// On `weight_ih` and a constant's projection (Keras `kernel_regularizer`).
    pub kernel: Option<Regularizer>,
    /// On `weight_hh` (Keras `recurrent_regularizer`).
    pub recurrent: Option<Regularizer>,
    /// On `bias_ih` and `bias_hh`, each on its own (Keras `bias_regularizer`).
    pub bias: Option<Regularizer>,
    /// On every tensor a call returns, divided by the batch size (Keras
    /// `activity_regularizer`); see
    /// [`Lstm::activity_regularization`](crate::layer::Lstm::activity_regularization).
    pub activity: Option<Regularizer>,
}

impl Regularizers {
    /// No penalties.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Regularizers::kernel`].
    pub fn with_kernel(mut self, regularizer: Regularizer) -> Self {
        self.kernel = Some(regularizer);
        self
    }

    /// Sets [`Regularizers::recurrent`].
    pub fn with_recurrent(mut self, regularizer: Regularizer) -> Self {
        self.recurrent = Some(regularizer);
        self
    }

    /// Sets [`Regularizers::bias`].
    pub fn with_bias(mut self, regularizer: Regularizer) -> Self {
        self.bias = Some(regularizer);
        self
    }

    /// Sets [`Regularizers::activity`].
    pub fn with_activity(mut self, regularizer: Regularizer) -> Self {
        self.activity = Some(regularizer);
        self
    }

    /// The weight regularizer of tensors of `role`.
    pub fn for_role(&self, role: WeightRole) -> Option<&Regularizer> {
        match role {
            WeightRole::Kernel => self.kernel.as_ref(),
            WeightRole::RecurrentKernel => self.recurrent.as_ref(),
            WeightRole::Bias => self.bias.as_ref(),
        }
    }

    /// Checks every factor.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `regularizers.kernel`, `regularizers.recurrent`,
    /// `regularizers.bias` or `regularizers.activity`.
    pub fn validate(&self) -> Result<()> {
        let all = [
            ("regularizers.kernel", &self.kernel),
            ("regularizers.recurrent", &self.recurrent),
            ("regularizers.bias", &self.bias),
            ("regularizers.activity", &self.activity),
        ];
        for (option, regularizer) in all {
            if let Some(regularizer) = regularizer {
                regularizer.validate(option)?;
            }
        }
        Ok(())
    }

    /// The summed weight penalty of every tensor of `model` that has a role (see
    /// [`WeightRole::of`]; `spec` names the constant's projection), in `f64`.
    pub fn weight_penalty<F: Float>(
        &self,
        model: &(impl Parameters<F> + ?Sized),
        spec: &CellSpec,
    ) -> f64 {
        let mut total = 0.0;
        model.visit_parameters(&mut |name, values| {
            if let Some(regularizer) = WeightRole::of(name, spec).and_then(|r| self.for_role(r)) {
                total += regularizer.penalty(values);
            }
        });
        total
    }

    /// Adds the weight penalty's gradients into `grads`, keyed as `model` names its tensors;
    /// a tensor without a gradient in `grads` gets one (the penalty's alone).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming the gradient of a tensor that is shaped unlike it (the
    /// gradients then hold the penalties of the tensors visited before it).
    pub fn add_weight_gradients<F: Float>(
        &self,
        model: &(impl Parameters<F> + ?Sized),
        spec: &CellSpec,
        grads: &mut Gradients<F>,
    ) -> Result<()> {
        let mut outcome = Ok(());
        model.visit_parameters(&mut |name, values| {
            let Some(regularizer) = WeightRole::of(name, spec).and_then(|r| self.for_role(r))
            else {
                return;
            };
            if outcome.is_err() {
                return;
            }
            if grads.get(name).is_none() {
                grads.insert(name, ArrayD::zeros(values.raw_dim()));
            }
            if let Some(grad) = grads.get_mut(name) {
                outcome = regularizer
                    .add_gradient(values.view(), grad.view_mut())
                    .map_err(|_| Error::shape_mismatch(name, values.shape(), grad.shape()));
            }
        });
        outcome
    }
}

/// One returned tensor's activity penalty, divided by its batch size (Keras'
/// `divide_no_nan`: 0 for an empty batch), and its gradient.
pub(crate) fn activity_part<F: Float>(
    regularizer: Option<&Regularizer>,
    values: ArrayViewD<'_, F>,
    batch_axis: usize,
) -> (f64, ArrayD<F>) {
    let mut grad = ArrayD::zeros(values.raw_dim());
    let batch = values.len_of(Axis(batch_axis));
    let Some(regularizer) = regularizer.filter(|_| batch > 0) else {
        return (0.0, grad);
    };
    let scale = 1.0 / batch as f64;
    let penalty = regularizer.penalty(values.view()) * scale;
    regularizer
        .add_scaled_gradient(values, scale, grad.view_mut())
        // `grad` was made in the shape of `values`.
        .expect("the gradient is shaped like the values");
    (penalty, grad)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};

    use super::*;

    #[test]
    fn constructors_have_keras_3_defaults_and_names() {
        assert_eq!(Regularizer::l1(), Regularizer::L1 { l1: 0.01 });
        assert_eq!(Regularizer::l2(), Regularizer::L2 { l2: 0.01 });
        assert_eq!(Regularizer::l1_l2(), Regularizer::L1L2 { l1: 0.0, l2: 0.0 });
        assert_eq!(
            Regularizer::from_keras_name("L1L2"),
            Ok(Regularizer::l1_l2())
        );
        assert!(Regularizer::from_keras_name("l1_l2").is_err());
        assert_eq!(Regularizers::default(), Regularizers::new());
    }

    #[test]
    fn l1_gradient_is_zero_at_zero() {
        let values = array![-2.0, 0.0, 3.0];
        let mut grad = Array1::zeros(3);
        let regularizer = Regularizer::L1L2 { l1: 0.5, l2: 0.25 };
        regularizer
            .add_gradient(values.view(), grad.view_mut())
            .unwrap();
        assert_eq!(grad, array![-0.5 - 1.0, 0.0, 0.5 + 1.5]);
        assert_eq!(regularizer.penalty(values.view()), 0.5 * 5.0 + 0.25 * 13.0);
        let mut wrong = Array1::zeros(2);
        assert!(matches!(
            regularizer.add_gradient(values.view(), wrong.view_mut()),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
