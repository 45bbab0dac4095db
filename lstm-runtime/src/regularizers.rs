//! Keras' weight regularizers ([`Regularizer`], configured per weight by [`Regularizers`]),
//! its activity regularizer, and its weight constraints ([`Constraint`], per weight by
//! [`Constraints`]), over the PyTorch-named tensors of any [`Parameters`] model.
//!
//! Nothing here runs by itself: a layer's forward and backward passes know nothing of
//! penalties. A training loop adds them explicitly, as Keras' `fit` adds `model.losses` to the
//! loss: [`Lstm::regularization_loss`] and [`Lstm::activity_regularization`] to the loss, their
//! gradients ([`Lstm::add_regularization_gradients`], [`ActivityGrad`]) to the gradients before
//! clipping, and [`Lstm::apply_constraints`] after every optimizer step (Keras applies a
//! variable's constraint right after the optimizer updates it).
//!
//! Which Keras weight a tensor is ([`WeightRole`]) follows from its PyTorch name: `weight_ih`
//! and a constant's projection `weight_{constant}` are Keras' `kernel`, `weight_hh` its
//! `recurrent_kernel`, `bias_ih` and `bias_hh` its `bias`. Keras has one bias per cell, the
//! sum of our two: each of ours is regularized and constrained on its own (so a penalty on
//! the bias is `R(b_ih) + R(b_hh)`, not `R(b_ih + b_hh)`; for weights imported from Keras,
//! whose `bias_hh` is zero, the two agree until training moves `bias_hh`). The LSTMP
//! projection `weight_hr` and a spec's own parameters (peepholes, layer-norm gains, …) have
//! no Keras counterpart and are never regularized or constrained.

use ndarray::{Array3, ArrayD, ArrayView, ArrayViewD, ArrayViewMut, Axis, Dimension, Zip};

use crate::call::{LstmOutput, Output, OutputGrad};
use crate::error::{Error, Result, expect_shape};
use crate::{Cell, CellSpec, Float, Gradients, Lstm, LstmConfig, Parameters};

/// Keras' `backend.epsilon()` (its default, `1e-7`), which the norm constraints add to every
/// norm before dividing by it.
pub const KERAS_EPSILON: f64 = 1e-7;

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

/// A projection applied to a weight after every optimizer step, as Keras'
/// `keras.constraints`, with exactly Keras' formulas (its [`KERAS_EPSILON`] included).
///
/// `axis` keeps Keras' meaning for Keras' layout: a kernel there is `(input, 4·units)`, so
/// axis 0 (the default) takes one norm over the inputs of each gate unit ("the weights
/// incident to each hidden unit"), axis 1 one norm over the gate units of each input. Our
/// kernels are stored as PyTorch's, `(gates·hidden, input)`, the transpose, so axis 0 here is
/// a norm per row of `weight_ih`; [`Constraint::apply`] does the mapping. A bias is 1-D in
/// both: axis 0 is the whole vector, and axis 1 does not exist.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constraint {
    /// Rescales each norm above `max_value` down to it: `w · clip(‖w‖, 0, max_value) /
    /// (ε + ‖w‖)` (Keras `MaxNorm(max_value=2, axis=0)`, string `"max_norm"`).
    MaxNorm {
        /// The largest norm kept.
        max_value: f64,
        /// Keras' axis of the norm (see the type's documentation).
        axis: usize,
    },
    /// `max(w, 0)` (Keras `NonNeg()`, string `"non_neg"`).
    NonNeg,
    /// `w / (ε + ‖w‖)` (Keras `UnitNorm(axis=0)`, string `"unit_norm"`).
    UnitNorm {
        /// Keras' axis of the norm.
        axis: usize,
    },
    /// Moves each norm towards `[min_value, max_value]`: `w · (rate · clip(‖w‖, min_value,
    /// max_value) + (1 − rate) · ‖w‖) / (ε + ‖w‖)` (Keras `MinMaxNorm(min_value=0,
    /// max_value=1, rate=1, axis=0)`, string `"min_max_norm"`).
    MinMaxNorm {
        /// The smallest norm kept.
        min_value: f64,
        /// The largest norm kept.
        max_value: f64,
        /// How far each step moves a norm into the interval: 1 clips, below 1 moves part way.
        rate: f64,
        /// Keras' axis of the norm.
        axis: usize,
    },
}

impl Constraint {
    /// Keras `"max_norm"` / `MaxNorm()`: `max_value = 2`, `axis = 0`.
    pub fn max_norm() -> Self {
        Constraint::MaxNorm {
            max_value: 2.0,
            axis: 0,
        }
    }

    /// Keras `"non_neg"` / `NonNeg()`.
    pub fn non_neg() -> Self {
        Constraint::NonNeg
    }

    /// Keras `"unit_norm"` / `UnitNorm()`: `axis = 0`.
    pub fn unit_norm() -> Self {
        Constraint::UnitNorm { axis: 0 }
    }

    /// Keras `"min_max_norm"` / `MinMaxNorm()`: `min_value = 0`, `max_value = 1`, `rate = 1`,
    /// `axis = 0`.
    pub fn min_max_norm() -> Self {
        Constraint::MinMaxNorm {
            min_value: 0.0,
            max_value: 1.0,
            rate: 1.0,
            axis: 0,
        }
    }

    /// The constraint Keras 3 makes of a string identifier (`keras.constraints.get`):
    /// `"max_norm"`, `"non_neg"`, `"unit_norm"`, `"min_max_norm"` or their class names
    /// (`"MaxNorm"`, …).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `constraint` for any other string.
    pub fn from_keras_name(name: &str) -> Result<Self> {
        match name {
            "max_norm" | "MaxNorm" => Ok(Self::max_norm()),
            "non_neg" | "NonNeg" => Ok(Self::non_neg()),
            "unit_norm" | "UnitNorm" => Ok(Self::unit_norm()),
            "min_max_norm" | "MinMaxNorm" => Ok(Self::min_max_norm()),
            other => Err(Error::invalid_value(
                "constraint",
                format!(
                    "unknown Keras constraint `{other}`; expected max_norm, non_neg, unit_norm \
                     or min_max_norm"
                ),
            )),
        }
    }

    /// Keras' axis of the norm, for the norm constraints.
    pub fn axis(&self) -> Option<usize> {
        match *self {
            Constraint::MaxNorm { axis, .. }
            | Constraint::UnitNorm { axis }
            | Constraint::MinMaxNorm { axis, .. } => Some(axis),
            Constraint::NonNeg => None,
        }
    }

    /// Checks the values for a weight of `rank` dimensions (2 for a kernel, 1 for a bias):
    /// the axis exists, bounds are finite and non-negative with `min_value ≤ max_value`, and
    /// `rate` is in `[0, 1]`. (Keras checks none of this and computes nonsense or fails at the
    /// first step.)
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `option` (the config field holding the constraint).
    pub fn validate(&self, option: &str, rank: usize) -> Result<()> {
        let reject = |reason: String| {
            Err(Error::Config {
                option: option.into(),
                reason,
            })
        };
        if let Some(axis) = self.axis()
            && axis >= rank
        {
            return reject(format!(
                "axis {axis} does not exist on a {rank}-D weight; expected an axis below {rank}"
            ));
        }
        let bound = |name: &str, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                reject(format!(
                    "expected a finite non-negative {name}, found {value}"
                ))
            }
        };
        match *self {
            Constraint::MaxNorm { max_value, .. } => bound("max_value", max_value),
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                ..
            } => {
                bound("min_value", min_value)?;
                bound("max_value", max_value)?;
                if min_value > max_value {
                    return reject(format!(
                        "min_value {min_value} is above max_value {max_value}"
                    ));
                }
                if !(0.0..=1.0).contains(&rate) {
                    return reject(format!("expected a rate in [0, 1], found {rate}"));
                }
                Ok(())
            }
            Constraint::NonNeg | Constraint::UnitNorm { .. } => Ok(()),
        }
    }

    /// Applies the constraint in place to a tensor in PyTorch's layout, the transpose of
    /// Keras' (all axes reversed): for a 2-D kernel `(gates·hidden, input)` the norms of
    /// Keras' axis 0 are taken over each row; a 1-D bias is as in Keras.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `axis` if the tensor has no such axis.
    pub fn apply<F: Float, D: Dimension>(&self, values: ArrayViewMut<'_, F, D>) -> Result<()> {
        self.apply_keras_layout(values.reversed_axes())
    }

    /// Applies the constraint in place to a tensor in Keras' layout, exactly as Keras'
    /// `__call__` computes it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `axis` if the tensor has no such axis.
    pub fn apply_keras_layout<F: Float, D: Dimension>(
        &self,
        mut values: ArrayViewMut<'_, F, D>,
    ) -> Result<()> {
        let Some(axis) = self.axis() else {
            values.mapv_inplace(|v| v.max(F::zero()));
            return Ok(());
        };
        if axis >= values.ndim() {
            return Err(Error::Config {
                option: "axis".into(),
                reason: format!(
                    "axis {axis} does not exist on a tensor of shape {:?}",
                    values.shape()
                ),
            });
        }
        let epsilon = F::of(KERAS_EPSILON);
        for mut lane in values.lanes_mut(Axis(axis)) {
            let norm = lane.iter().map(|&v| v * v).sum::<F>().sqrt();
            let desired = self.desired_norm(norm);
            let scale = desired / (epsilon + norm);
            lane.mapv_inplace(|v| v * scale);
        }
        Ok(())
    }

    /// The norm a lane of norm `norm` is rescaled to (before Keras' epsilon).
    fn desired_norm<F: Float>(&self, norm: F) -> F {
        match *self {
            Constraint::MaxNorm { max_value, .. } => norm.max(F::zero()).min(F::of(max_value)),
            Constraint::UnitNorm { .. } => F::one(),
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                ..
            } => {
                let clipped = norm.max(F::of(min_value)).min(F::of(max_value));
                F::of(rate) * clipped + F::of(1.0 - rate) * norm
            }
            Constraint::NonNeg => norm,
        }
    }
}

/// Which of a Keras LSTM cell's three weights a tensor plays, read off its PyTorch name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightRole {
    /// Keras' `kernel`: `weight_ih`, and the constant's projection `weight_{constant}`.
    Kernel,
    /// Keras' `recurrent_kernel`: `weight_hh`.
    RecurrentKernel,
    /// Keras' `bias`: `bias_ih` and `bias_hh`, each on its own.
    Bias,
}

impl WeightRole {
    /// The role of the tensor `name` of a model whose cells are `spec`, or `None` for
    /// tensors Keras has no regularizer for (`weight_hr`, a spec's parameters, a head's
    /// weights). `name` may carry a model's prefix (`lstm.weight_ih_l0`) and the layer and
    /// direction suffix (`_l1_reverse`).
    pub fn of(name: &str, spec: &CellSpec) -> Option<WeightRole> {
        let local = name.rsplit('.').next().unwrap_or(name);
        let local = local.strip_suffix("_reverse").unwrap_or(local);
        let (stem, layer) = local.rsplit_once("_l")?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match stem {
            "weight_ih" => Some(WeightRole::Kernel),
            "weight_hh" => Some(WeightRole::RecurrentKernel),
            "bias_ih" | "bias_hh" => Some(WeightRole::Bias),
            _ => spec
                .constant
                .filter(|constant| stem.strip_prefix("weight_") == Some(*constant))
                .map(|_| WeightRole::Kernel),
        }
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
    /// `activity_regularizer`); see [`Lstm::activity_regularization`].
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

/// The constraints of a recurrent layer, by Keras' argument names. Default: none.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Constraints {
    /// On `weight_ih` and a constant's projection (Keras `kernel_constraint`).
    pub kernel: Option<Constraint>,
    /// On `weight_hh` (Keras `recurrent_constraint`).
    pub recurrent: Option<Constraint>,
    /// On `bias_ih` and `bias_hh`, each on its own (Keras `bias_constraint`).
    pub bias: Option<Constraint>,
}

impl Constraints {
    /// No constraints.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Constraints::kernel`].
    pub fn with_kernel(mut self, constraint: Constraint) -> Self {
        self.kernel = Some(constraint);
        self
    }

    /// Sets [`Constraints::recurrent`].
    pub fn with_recurrent(mut self, constraint: Constraint) -> Self {
        self.recurrent = Some(constraint);
        self
    }

    /// Sets [`Constraints::bias`].
    pub fn with_bias(mut self, constraint: Constraint) -> Self {
        self.bias = Some(constraint);
        self
    }

    /// The constraint of tensors of `role`.
    pub fn for_role(&self, role: WeightRole) -> Option<&Constraint> {
        match role {
            WeightRole::Kernel => self.kernel.as_ref(),
            WeightRole::RecurrentKernel => self.recurrent.as_ref(),
            WeightRole::Bias => self.bias.as_ref(),
        }
    }

    /// Whether no constraint is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every constraint: kernels are 2-D (axis 0 or 1), biases 1-D (axis 0 only).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `constraints.kernel`, `constraints.recurrent` or
    /// `constraints.bias`.
    pub fn validate(&self) -> Result<()> {
        let all = [
            ("constraints.kernel", &self.kernel, 2),
            ("constraints.recurrent", &self.recurrent, 2),
            ("constraints.bias", &self.bias, 1),
        ];
        for (option, constraint, rank) in all {
            if let Some(constraint) = constraint {
                constraint.validate(option, rank)?;
            }
        }
        Ok(())
    }

    /// Applies the constraints in place to every tensor of `model` that has a role (see
    /// [`WeightRole::of`]), in PyTorch's layout (see [`Constraint::apply`]).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `axis` if a constraint's axis does not exist on a tensor (the
    /// tensors visited before it are constrained already).
    pub fn apply<F: Float>(
        &self,
        model: &mut (impl Parameters<F> + ?Sized),
        spec: &CellSpec,
    ) -> Result<()> {
        let mut outcome = Ok(());
        model.visit_parameters_mut(&mut |name, values| {
            if outcome.is_err() {
                return;
            }
            if let Some(constraint) = WeightRole::of(name, spec).and_then(|r| self.for_role(r)) {
                outcome = constraint.apply(values);
            }
        });
        outcome
    }
}

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
        }
    }
}

impl<C: Cell> Lstm<C> {
    /// The weight penalty of the config's [`Regularizers`] (kernel, recurrent and bias) over
    /// every layer and direction, in `f64`; 0 without regularizers. Keras' `fit` adds this
    /// (its `model.losses`) to the loss; add it to yours.
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
    pub fn add_regularization_gradients(&self, grads: &mut Gradients<C::Elem>) -> Result<()> {
        self.config()
            .regularizers
            .add_weight_gradients(self, C::SPEC, grads)
    }

    /// Applies the config's [`Constraints`] to the weights, as Keras does after every
    /// optimizer step: call it right after yours. Does nothing without constraints.
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
    /// [`Regularizers::activity`] applied to every tensor the call returned (`output`,
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

/// One returned tensor's activity penalty, divided by its batch size (Keras'
/// `divide_no_nan`: 0 for an empty batch), and its gradient.
fn activity_part<F: Float>(
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
    use ndarray::{Array1, Array2, Array3, array};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::{MergeMode, lstm_cell, zoo};

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
    fn constructors_have_keras_3_defaults_and_names() {
        assert_eq!(Regularizer::l1(), Regularizer::L1 { l1: 0.01 });
        assert_eq!(Regularizer::l2(), Regularizer::L2 { l2: 0.01 });
        assert_eq!(Regularizer::l1_l2(), Regularizer::L1L2 { l1: 0.0, l2: 0.0 });
        assert_eq!(
            Regularizer::from_keras_name("L1L2"),
            Ok(Regularizer::l1_l2())
        );
        assert!(Regularizer::from_keras_name("l1_l2").is_err());
        assert_eq!(
            Constraint::max_norm(),
            Constraint::MaxNorm {
                max_value: 2.0,
                axis: 0
            }
        );
        assert_eq!(
            Constraint::from_keras_name("min_max_norm"),
            Ok(Constraint::MinMaxNorm {
                min_value: 0.0,
                max_value: 1.0,
                rate: 1.0,
                axis: 0
            })
        );
        assert_eq!(
            Constraint::from_keras_name("UnitNorm"),
            Ok(Constraint::unit_norm())
        );
        assert!(Constraint::from_keras_name("radial").is_err());
        assert_eq!(Regularizers::default(), Regularizers::new());
        assert!(Constraints::default().is_empty());
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

    #[test]
    fn roles_follow_pytorch_names() {
        let spec = <WithConstant<f64> as Cell>::SPEC;
        let role = |name| WeightRole::of(name, spec);
        assert_eq!(role("weight_ih_l0"), Some(WeightRole::Kernel));
        assert_eq!(role("lstm.weight_ih_l12_reverse"), Some(WeightRole::Kernel));
        assert_eq!(role("weight_ctx_l0"), Some(WeightRole::Kernel));
        assert_eq!(role("weight_hh_l1"), Some(WeightRole::RecurrentKernel));
        assert_eq!(role("bias_ih_l0_reverse"), Some(WeightRole::Bias));
        assert_eq!(role("bias_hh_l0"), Some(WeightRole::Bias));
        for none in [
            "weight_hr_l0",
            "peephole_i_l0",
            "head.weight",
            "weight_ih",
            "weight_ih_lx",
        ] {
            assert_eq!(role(none), None, "{none}");
        }
        let plain = <zoo::Lstm<f64> as Cell>::SPEC;
        assert_eq!(WeightRole::of("weight_ctx_l0", plain), None);
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
    fn constraints_map_keras_axes_to_pytorch_rows() {
        // Our (gates·hidden, input) kernel: rows are Keras' columns.
        let kernel = array![[3.0, 4.0], [0.3, 0.4]];
        let per_unit = |constraint: Constraint| {
            let mut values = kernel.clone();
            constraint.apply(values.view_mut()).unwrap();
            values
        };
        let epsilon = KERAS_EPSILON;
        let clipped = per_unit(Constraint::max_norm());
        assert!((clipped[[0, 0]] - 3.0 * 2.0 / (5.0 + epsilon)).abs() < 1e-15);
        assert!((clipped[[1, 1]] - 0.4 * 0.5 / (0.5 + epsilon)).abs() < 1e-15);
        let per_input = per_unit(Constraint::UnitNorm { axis: 1 });
        let norm = (3.0f64 * 3.0 + 0.3 * 0.3).sqrt();
        assert!((per_input[[1, 0]] - 0.3 / (norm + epsilon)).abs() < 1e-15);
        let keras_layout = {
            let mut values = kernel.t().to_owned();
            Constraint::max_norm()
                .apply_keras_layout(values.view_mut())
                .unwrap();
            values
        };
        assert_eq!(keras_layout.t(), clipped);
        let mut bias = array![-1.0, 0.0, 2.0];
        Constraint::non_neg().apply(bias.view_mut()).unwrap();
        assert_eq!(bias, array![0.0, 0.0, 2.0]);
        let mut bias = array![3.0, 4.0];
        assert!(matches!(
            Constraint::UnitNorm { axis: 1 }.apply(bias.view_mut()),
            Err(Error::Config { option, .. }) if option == "axis"
        ));
        let mut zeros = Array2::<f64>::zeros((2, 2));
        Constraint::unit_norm().apply(zeros.view_mut()).unwrap();
        assert!(zeros.iter().all(|&v| v == 0.0));
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
