//! Keras' weight constraints: [`Constraint`], a projection applied to a weight after every
//! optimizer step with exactly Keras' formulas, and [`Constraints`], the constraint of each
//! weight role of a layer. A training loop applies them right after its optimizer step, as
//! Keras does (the layer's side of this is `layer/penalties.rs`).

use ndarray::{ArrayViewMut, Axis, Dimension};

use super::role::WeightRole;
use crate::cell::CellSpec;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::params::Parameters;

/// Keras' `backend.epsilon()` (its default, `1e-7`), which the norm constraints add to every
/// norm before dividing by it.
pub const KERAS_EPSILON: f64 = 1e-7;

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

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    #[test]
    fn constructors_have_keras_3_defaults_and_names() {
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
        assert!(Constraints::default().is_empty());
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
}
