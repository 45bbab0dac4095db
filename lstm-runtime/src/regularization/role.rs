//! [`WeightRole`]: which of a Keras LSTM cell's three weights a tensor is, read off its
//! PyTorch name. Regularizers and constraints are configured per role, as Keras configures
//! them per weight.
//!
//! `weight_ih` and a constant's projection `weight_{constant}` are Keras' `kernel`,
//! `weight_hh` its `recurrent_kernel`, `bias_ih` and `bias_hh` its `bias`. Keras has one bias
//! per cell, the sum of our two: each of ours is regularized and constrained on its own (so a
//! penalty on the bias is `R(b_ih) + R(b_hh)`, not `R(b_ih + b_hh)`; for weights imported
//! from Keras, whose `bias_hh` is zero, the two agree until training moves `bias_hh`). The
//! LSTMP projection `weight_hr` and a spec's own parameters (peepholes, layer-norm gains, …)
//! have no Keras counterpart and no role.

use crate::cell::CellSpec;
use crate::params::name::ParamName;

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
        let name = ParamName::parse(local)?;
        let stem = name.param.as_str();
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

#[cfg(test)]
mod tests {
    use lstm_macros::lstm_cell;

    use super::*;
    use crate::cell::Cell;
    use crate::zoo;

    /// Every gate reads a per-sequence constant, projected by `weight_ctx`.
    #[lstm_cell(z = z + ctx)]
    pub struct WithConstant {
        ctx: Constant,
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
}
