//! Stochastic gradient descent with momentum, PyTorch's `torch.optim.SGD` (without
//! Nesterov momentum).

use std::collections::BTreeMap;

use ndarray::{ArrayD, Zip};

use super::{Optimizer, OptimizerState, check_range, check_state, for_each_parameter};
use crate::error::Result;
use crate::float::Float;
use crate::params::{Gradients, Parameters};

/// The name of this algorithm in an [`OptimizerState`].
const KIND: &str = "sgd";

/// The statistic SGD keeps per parameter, PyTorch's name for it.
const MOMENTUM_BUFFER: &str = "momentum_buffer";

/// Hyperparameters of [`Sgd`], with PyTorch's argument names and defaults (except `lr`, which
/// PyTorch requires).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (PyTorch `lr`). Default `0.01`.
    pub lr: f64,
    /// Momentum factor (PyTorch `momentum`). Default `0`: plain SGD.
    pub momentum: f64,
    /// Dampening of the momentum (PyTorch `dampening`). Default `0`.
    pub dampening: f64,
    /// L2 penalty added to the gradient (PyTorch `weight_decay`). Default `0`.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
        }
    }
}

impl SgdConfig {
    /// Sets the learning rate.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }

    /// Sets the momentum factor.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening of the momentum.
    pub fn with_dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Sets the L2 weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// SGD as PyTorch runs it, per parameter `p` with gradient `g`:
///
/// ```text
/// d = g + weight_decay · p
/// b = d                                        (first step)
/// b = momentum · b + (1 - dampening) · d       (later steps)
/// p = p - lr · b                               (p - lr · d when momentum is 0)
/// ```
#[derive(Clone, Debug)]
pub struct Sgd<F> {
    config: SgdConfig,
    step: u64,
    momentum_buffers: BTreeMap<String, ArrayD<F>>,
}

impl<F: Float> Sgd<F> {
    /// An optimizer with no state yet.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`](crate::error::Error::InvalidValue) naming `lr`, `momentum`,
    /// `dampening` or `weight_decay` if it is negative or not finite.
    pub fn new(config: SgdConfig) -> Result<Self> {
        check_range("lr", config.lr, 0.0, f64::INFINITY)?;
        check_range("momentum", config.momentum, 0.0, f64::INFINITY)?;
        check_range("dampening", config.dampening, 0.0, f64::INFINITY)?;
        check_range("weight_decay", config.weight_decay, 0.0, f64::INFINITY)?;
        Ok(Sgd {
            config,
            step: 0,
            momentum_buffers: BTreeMap::new(),
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn step(&mut self, model: &mut dyn Parameters<F>, grads: &Gradients<F>) -> Result<()> {
        let lr = F::of(self.config.lr);
        let momentum = F::of(self.config.momentum);
        let dampening = F::of(1.0 - self.config.dampening);
        let weight_decay = F::of(self.config.weight_decay);
        let buffers = &mut self.momentum_buffers;
        let uses_momentum = self.config.momentum != 0.0;
        for_each_parameter(model, grads, |name, mut values, grad| {
            let mut direction = grad.clone();
            if self.config.weight_decay != 0.0 {
                Zip::from(&mut direction)
                    .and(&values)
                    .for_each(|d, &p| *d += weight_decay * p);
            }
            if uses_momentum {
                match buffers.get_mut(name) {
                    Some(buffer) => {
                        Zip::from(&mut *buffer)
                            .and(&direction)
                            .for_each(|b, &d| *b = momentum * *b + dampening * d);
                        direction.assign(buffer);
                    }
                    None => {
                        buffers.insert(name.to_string(), direction.clone());
                    }
                }
            }
            Zip::from(&mut values)
                .and(&direction)
                .for_each(|p, &d| *p -= lr * d);
        })?;
        self.step += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn state(&self) -> OptimizerState<F> {
        let mut state = OptimizerState::empty(KIND);
        state.step = self.step;
        for (name, buffer) in &self.momentum_buffers {
            state
                .buffers
                .insert(format!("{MOMENTUM_BUFFER}.{name}"), buffer.clone());
        }
        state
    }

    fn load_state(&mut self, state: OptimizerState<F>) -> Result<()> {
        check_state(&state, KIND, &[MOMENTUM_BUFFER])?;
        self.step = state.step;
        self.momentum_buffers = state
            .buffers
            .into_iter()
            .filter_map(|(key, buffer)| {
                let name = key.strip_prefix(MOMENTUM_BUFFER)?.strip_prefix('.')?;
                Some((name.to_string(), buffer))
            })
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, ArrayD, array};

    use super::*;
    use crate::error::Error;
    use crate::train::linear::Linear;

    /// A model with parameters `weight = [[w0, w1]]` and `bias = [b]`.
    fn model(w0: f64, w1: f64, b: f64) -> Linear<f64> {
        Linear {
            weight: array![[w0, w1]],
            bias: Array1::from_elem(1, b),
        }
    }

    fn grads(w0: f64, w1: f64, b: f64) -> Gradients<f64> {
        let mut grads = Gradients::new();
        grads.insert("weight", array![[w0, w1]].into_dyn());
        grads.insert("bias", array![b].into_dyn());
        grads
    }

    #[test]
    fn plain_sgd_subtracts_lr_times_gradient() {
        let mut layer = model(1.0, -2.0, 0.5);
        let mut sgd = Sgd::new(SgdConfig::default().with_lr(0.1)).unwrap();
        sgd.step(&mut layer, &grads(1.0, 2.0, -4.0)).unwrap();
        assert_eq!(
            layer,
            model(1.0 - 0.1 * 1.0, -2.0 - 0.1 * 2.0, 0.5 + 0.1 * 4.0)
        );
    }

    #[test]
    fn momentum_dampening_and_weight_decay_follow_pytorch() {
        let (lr, mu, tau, wd) = (0.1, 0.9, 0.25, 0.01);
        let config = SgdConfig::default()
            .with_lr(lr)
            .with_momentum(mu)
            .with_dampening(tau)
            .with_weight_decay(wd);
        let mut sgd = Sgd::new(config).unwrap();
        let mut layer = model(1.0, 0.0, 0.0);
        let gradients = [0.5, -1.0, 2.0];
        // Only weight[0,0] is followed by hand; the other entries get zero gradients.
        let mut p = 1.0;
        let mut b = 0.0;
        for (t, &g) in gradients.iter().enumerate() {
            sgd.step(&mut layer, &grads(g, 0.0, 0.0)).unwrap();
            let d = g + wd * p;
            b = if t == 0 { d } else { mu * b + (1.0 - tau) * d };
            p -= lr * b;
            assert!((layer.weight[[0, 0]] - p).abs() < 1e-15, "step {t}");
        }
        // Step 1: d = 0.5 + 0.01 = 0.51, b = 0.51, p = 1 - 0.051 = 0.949.
        // Step 2: d = -1 + 0.00949 = -0.99051, b = 0.459 - 0.7428825 = -0.2838825,
        //         p = 0.949 + 0.02838825 = 0.97738825.
        // Step 3: d = 2 + 0.0097738825 = 2.0097738825,
        //         b = -0.25549425 + 1.507330411875 = 1.251836161875,
        //         p = 0.97738825 - 0.1251836161875 = 0.8522046338125.
        assert!((layer.weight[[0, 0]] - 0.8522046338125).abs() < 1e-14);
    }

    #[test]
    fn state_round_trips_and_continues_identically() {
        let config = SgdConfig::default().with_lr(0.05).with_momentum(0.8);
        let mut sgd = Sgd::new(config).unwrap();
        let mut layer = model(0.3, -0.7, 0.2);
        sgd.step(&mut layer, &grads(1.0, -1.0, 0.5)).unwrap();
        let state = sgd.state();
        assert_eq!(state.step, 1);
        assert_eq!(
            state.buffers.keys().collect::<Vec<_>>(),
            ["momentum_buffer.bias", "momentum_buffer.weight"]
        );
        let mut resumed = Sgd::new(config).unwrap();
        resumed.load_state(state).unwrap();
        let mut copy = layer.clone();
        sgd.step(&mut layer, &grads(0.2, 0.4, -0.6)).unwrap();
        resumed.step(&mut copy, &grads(0.2, 0.4, -0.6)).unwrap();
        assert_eq!(layer, copy);
    }

    #[test]
    fn bad_gradients_and_configs_are_errors_that_change_nothing() {
        let mut sgd = Sgd::new(SgdConfig::default().with_momentum(0.9)).unwrap();
        let mut layer = model(1.0, 2.0, 3.0);
        let mut missing = grads(1.0, 1.0, 1.0);
        missing.remove("bias");
        assert_eq!(
            sgd.step(&mut layer, &missing),
            Err(Error::MissingTensor {
                name: "bias".into(),
                source_name: "the gradients".into()
            })
        );
        let mut misshapen = grads(1.0, 1.0, 1.0);
        misshapen.insert("bias", ArrayD::zeros(vec![2]));
        assert_eq!(
            sgd.step(&mut layer, &misshapen),
            Err(Error::shape_mismatch("bias", &[1], &[2]))
        );
        assert_eq!(layer, model(1.0, 2.0, 3.0));
        assert_eq!(sgd.state(), OptimizerState::empty("sgd"));
        for config in [
            SgdConfig::default().with_lr(-1.0),
            SgdConfig::default().with_momentum(f64::NAN),
            SgdConfig::default().with_weight_decay(-0.1),
        ] {
            assert!(matches!(
                Sgd::<f64>::new(config),
                Err(Error::InvalidValue { .. })
            ));
        }
        let mut adam_state = OptimizerState::<f64>::empty("adam");
        adam_state.step = 3;
        assert!(matches!(
            sgd.load_state(adam_state),
            Err(Error::InvalidValue { what, .. }) if what == "optimizer"
        ));
        let mut foreign = OptimizerState::<f64>::empty("sgd");
        foreign
            .buffers
            .insert("exp_avg.bias".into(), ArrayD::zeros(vec![1]));
        assert!(matches!(
            sgd.load_state(foreign),
            Err(Error::InvalidValue { what, .. }) if what == "exp_avg.bias"
        ));
    }

    #[test]
    fn extra_gradients_are_ignored() {
        let mut sgd = Sgd::new(SgdConfig::default()).unwrap();
        let mut layer = model(1.0, 1.0, 1.0);
        let mut with_input = grads(0.0, 0.0, 0.0);
        with_input.insert("input", ArrayD::zeros(vec![3, 2]));
        sgd.step(&mut layer, &with_input).unwrap();
        assert_eq!(layer, model(1.0, 1.0, 1.0));
    }
}
