//! Adam (Kingma & Ba, 2015) with bias correction, in PyTorch's two flavours of weight decay:
//! `torch.optim.Adam` adds an L2 penalty to the gradient, `torch.optim.AdamW` (Loshchilov &
//! Hutter, 2019) decays the weights directly.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Zip};

use super::{Optimizer, OptimizerState, check_range, check_state, for_each_parameter};
use crate::error::Result;
use crate::float::Float;
use crate::params::{Gradients, Parameters};

/// PyTorch's names for the two moment estimates Adam keeps per parameter.
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

/// Hyperparameters of [`Adam`], with PyTorch's argument names; the defaults are
/// `torch.optim.Adam`'s ([`AdamConfig::adam`]) or `torch.optim.AdamW`'s
/// ([`AdamConfig::adamw`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (PyTorch `lr`). Default `1e-3`.
    pub lr: f64,
    /// Decay of the first-moment estimate (PyTorch `betas[0]`). Default `0.9`.
    pub beta1: f64,
    /// Decay of the second-moment estimate (PyTorch `betas[1]`). Default `0.999`.
    pub beta2: f64,
    /// Added to the denominator for stability (PyTorch `eps`). Default `1e-8`.
    pub eps: f64,
    /// Weight decay (PyTorch `weight_decay`). Default `0` for Adam, `0.01` for AdamW.
    pub weight_decay: f64,
    /// Whether weight decay is decoupled from the gradient (AdamW; PyTorch's
    /// `Adam(decoupled_weight_decay=True)`) instead of an L2 term added to it (Adam).
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    /// [`AdamConfig::adam`].
    fn default() -> Self {
        AdamConfig::adam()
    }
}

impl AdamConfig {
    /// `torch.optim.Adam`'s defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`, no
    /// weight decay (an L2 term when set).
    pub fn adam() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }

    /// `torch.optim.AdamW`'s defaults: as [`AdamConfig::adam`], with decoupled weight decay
    /// `0.01`.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..AdamConfig::adam()
        }
    }

    /// Sets the learning rate.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the decays of the moment estimates.
    pub fn with_betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets the denominator's stabiliser.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the weight decay (L2 or decoupled, as the config already says).
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// The name of the algorithm in an [`OptimizerState`]: `adam` or `adamw`.
    pub fn kind(&self) -> &'static str {
        if self.decoupled_weight_decay {
            "adamw"
        } else {
            "adam"
        }
    }
}

/// Adam as PyTorch runs it (`foreach=False`, no AMSGrad), per parameter `p` with gradient `g`
/// at step `t` (counted from 1):
///
/// ```text
/// p = p · (1 - lr · weight_decay)                 (AdamW)
/// g = g + weight_decay · p                        (Adam)
/// m = m + (1 - beta1) · (g - m)
/// v = beta2 · v + (1 - beta2) · g²
/// p = p - (lr / (1 - beta1ᵗ)) · m / (√v / √(1 - beta2ᵗ) + eps)
/// ```
#[derive(Clone, Debug)]
pub struct Adam<F> {
    config: AdamConfig,
    step: u64,
    /// First-moment estimates `m`, by parameter name.
    exp_avg: BTreeMap<String, ArrayD<F>>,
    /// Second-moment estimates `v`, by parameter name.
    exp_avg_sq: BTreeMap<String, ArrayD<F>>,
}

impl<F: Float> Adam<F> {
    /// An optimizer with no state yet.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`](crate::error::Error::InvalidValue) naming `lr`, `eps` or
    /// `weight_decay` if it is negative or not finite, or `beta1`/`beta2` if it is outside
    /// `[0, 1)`.
    pub fn new(config: AdamConfig) -> Result<Self> {
        check_range("lr", config.lr, 0.0, f64::INFINITY)?;
        check_range("beta1", config.beta1, 0.0, 1.0)?;
        check_range("beta2", config.beta2, 0.0, 1.0)?;
        check_range("eps", config.eps, 0.0, f64::INFINITY)?;
        check_range("weight_decay", config.weight_decay, 0.0, f64::INFINITY)?;
        Ok(Adam {
            config,
            step: 0,
            exp_avg: BTreeMap::new(),
            exp_avg_sq: BTreeMap::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
}

impl<F: Float> Optimizer<F> for Adam<F> {
    fn step(&mut self, model: &mut dyn Parameters<F>, grads: &Gradients<F>) -> Result<()> {
        let config = self.config;
        let t = self.step + 1;
        // PyTorch computes these scalars as Python floats: in f64, whatever the tensors' type.
        let exponent = i32::try_from(t).unwrap_or(i32::MAX);
        let bias_correction1 = 1.0 - config.beta1.powi(exponent);
        let bias_correction2_sqrt = (1.0 - config.beta2.powi(exponent)).sqrt();
        let step_size = F::of(config.lr / bias_correction1);
        let bias_correction2_sqrt = F::of(bias_correction2_sqrt);
        let decay_factor = F::of(1.0 - config.lr * config.weight_decay);
        let weight_decay = F::of(config.weight_decay);
        let one_minus_beta1 = F::of(1.0 - config.beta1);
        let beta2 = F::of(config.beta2);
        let one_minus_beta2 = F::of(1.0 - config.beta2);
        let eps = F::of(config.eps);
        let (exp_avgs, exp_avg_sqs) = (&mut self.exp_avg, &mut self.exp_avg_sq);
        for_each_parameter(model, grads, |name, mut values, grad| {
            let mut grad = grad.clone();
            if config.weight_decay != 0.0 {
                if config.decoupled_weight_decay {
                    values.mapv_inplace(|p| p * decay_factor);
                } else {
                    Zip::from(&mut grad)
                        .and(&values)
                        .for_each(|g, &p| *g += weight_decay * p);
                }
            }
            let exp_avg = exp_avgs
                .entry(name.to_string())
                .or_insert_with(|| ArrayD::zeros(values.raw_dim()));
            let exp_avg_sq = exp_avg_sqs
                .entry(name.to_string())
                .or_insert_with(|| ArrayD::zeros(values.raw_dim()));
            Zip::from(&mut values)
                .and(&mut *exp_avg)
                .and(&mut *exp_avg_sq)
                .and(&grad)
                .for_each(|p, m, v, &g| {
                    *m += one_minus_beta1 * (g - *m);
                    *v = beta2 * *v + one_minus_beta2 * g * g;
                    let denom = v.sqrt() / bias_correction2_sqrt + eps;
                    *p -= step_size * *m / denom;
                });
        })?;
        self.step = t;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState<F> {
        let mut state = OptimizerState::empty(self.config.kind());
        state.step = self.step;
        for (statistic, buffers) in [(EXP_AVG, &self.exp_avg), (EXP_AVG_SQ, &self.exp_avg_sq)] {
            for (name, buffer) in buffers {
                state
                    .buffers
                    .insert(format!("{statistic}.{name}"), buffer.clone());
            }
        }
        state
    }

    fn load_state(&mut self, state: OptimizerState<F>) -> Result<()> {
        check_state(&state, self.config.kind(), &[EXP_AVG_SQ, EXP_AVG])?;
        self.step = state.step;
        self.exp_avg.clear();
        self.exp_avg_sq.clear();
        for (key, buffer) in state.buffers {
            // `exp_avg_sq.` is tested first: `exp_avg` is a prefix of it.
            if let Some(name) = key.strip_prefix("exp_avg_sq.") {
                self.exp_avg_sq.insert(name.to_string(), buffer);
            } else if let Some(name) = key.strip_prefix("exp_avg.") {
                self.exp_avg.insert(name.to_string(), buffer);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};

    use super::*;
    use crate::error::Error;
    use crate::train::linear::Linear;

    fn model(w: f64) -> Linear<f64> {
        Linear {
            weight: array![[w]],
            bias: Array1::zeros(1),
        }
    }

    fn grads(g: f64) -> Gradients<f64> {
        let mut grads = Gradients::new();
        grads.insert("weight", array![[g]].into_dyn());
        grads.insert("bias", array![0.0].into_dyn());
        grads
    }

    /// Three steps of `config` on a one-weight model from `p = 1` with gradients 0.5, -1, 2,
    /// against the same algorithm written out in scalars (PyTorch's documented update).
    fn check_three_steps(config: AdamConfig) -> f64 {
        let mut adam = Adam::new(config).unwrap();
        let mut layer = model(1.0);
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled_weight_decay,
        } = config;
        let (mut p, mut m, mut v) = (1.0f64, 0.0, 0.0);
        for (t, g) in [(1, 0.5), (2, -1.0), (3, 2.0)] {
            adam.step(&mut layer, &grads(g)).unwrap();
            let g = if decoupled_weight_decay {
                p *= 1.0 - lr * weight_decay;
                g
            } else {
                g + weight_decay * p
            };
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            let m_hat = m / (1.0 - beta1.powi(t));
            let v_hat = v / (1.0 - beta2.powi(t));
            p -= lr * m_hat / (v_hat.sqrt() + eps);
            assert!((layer.weight[[0, 0]] - p).abs() < 1e-14, "step {t}");
        }
        // The bias had zero gradients throughout: Adam leaves it at zero.
        assert_eq!(layer.bias[0], 0.0);
        layer.weight[[0, 0]]
    }

    #[test]
    fn adam_matches_the_scalar_algorithm() {
        let plain = check_three_steps(AdamConfig::adam().with_lr(0.1));
        // Step 1 of Adam moves by lr · sign(g) (up to eps): 1 - 0.1 = 0.9.
        // Step 2: m = 0.045 - 0.1 = -0.055, v = 0.00025·0.999 + 0.001 = 0.00124975;
        //   m̂ = -0.055 / 0.19 = -0.2894737, v̂ = 0.00124975 / 0.001999 = 0.6251876,
        //   p = 0.9 + 0.1 · 0.2894737 / 0.7906881 = 0.9366103.
        // Step 3: m = -0.0495 + 0.2 = 0.1505, v = 0.001248500 + 0.004 = 0.0052485,
        //   m̂ = 0.1505 / 0.271 = 0.5553506, v̂ = 0.0052485 / 0.002997001 = 1.7512507,
        //   p = 0.9366103 - 0.1 · 0.5553506 / 1.3233483 = 0.8946448.
        assert!((plain - 0.8946448).abs() < 1e-6);
        check_three_steps(AdamConfig::adam().with_lr(0.1).with_weight_decay(0.5));
        check_three_steps(
            AdamConfig::adam()
                .with_lr(0.01)
                .with_betas(0.5, 0.75)
                .with_eps(0.1),
        );
    }

    #[test]
    fn adamw_decays_weights_before_the_update() {
        let decoupled = check_three_steps(AdamConfig::adamw().with_lr(0.1).with_weight_decay(0.5));
        let coupled = check_three_steps(AdamConfig::adam().with_lr(0.1).with_weight_decay(0.5));
        assert_ne!(decoupled, coupled);
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let config = AdamConfig::adamw().with_lr(0.05);
        let mut adam = Adam::new(config).unwrap();
        let mut layer = model(0.3);
        adam.step(&mut layer, &grads(0.7)).unwrap();
        adam.step(&mut layer, &grads(-0.2)).unwrap();
        let state = adam.state();
        assert_eq!(state.kind, "adamw");
        assert_eq!(state.step, 2);
        assert_eq!(
            state.buffers.keys().collect::<Vec<_>>(),
            [
                "exp_avg.bias",
                "exp_avg.weight",
                "exp_avg_sq.bias",
                "exp_avg_sq.weight"
            ]
        );
        let mut resumed = Adam::new(config).unwrap();
        resumed.load_state(state.clone()).unwrap();
        assert_eq!(resumed.state(), state);
        let mut copy = layer.clone();
        adam.step(&mut layer, &grads(1.5)).unwrap();
        resumed.step(&mut copy, &grads(1.5)).unwrap();
        assert_eq!(layer, copy);
        assert!(matches!(
            Adam::<f64>::new(AdamConfig::adam()).unwrap().load_state(state),
            Err(Error::InvalidValue { what, .. }) if what == "optimizer"
        ));
    }

    #[test]
    fn bad_configs_are_errors() {
        for config in [
            AdamConfig::adam().with_lr(f64::NAN),
            AdamConfig::adam().with_betas(1.0, 0.999),
            AdamConfig::adam().with_betas(0.9, -0.1),
            AdamConfig::adam().with_eps(-1e-8),
            AdamConfig::adamw().with_weight_decay(-0.01),
        ] {
            assert!(matches!(
                Adam::<f32>::new(config),
                Err(Error::InvalidValue { .. })
            ));
        }
    }
}
