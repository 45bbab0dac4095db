//! [`gradcheck`]: the gradients [`Lstm::backward`] computes, checked against central finite
//! differences of [`Lstm::forward`], for any cell and any layer configuration, in `f64`.
//!
//! The loss is a fixed random linear function of everything the call returns,
//! `L = Σ output ⊙ R₀ + Σ output_reverse ⊙ R₁ + Σ h_n ⊙ R₂ + Σ c_n ⊙ R₃` (plus a term for each
//! further final state, `n_n` and `m_n` of the sLSTM), so every output
//! element gets its own weight and no gradient cancels by symmetry. Each checked value is
//! moved by `±eps` and the loss re-evaluated on a clone of the layer (a clone draws the same
//! dropout masks, so training-mode calls check too). The report gives, per parameter name and
//! for `input`, `h0`, `c0` and `constants`, the worst relative error
//! `|analytic − numeric| / max(1, |analytic|, |numeric|)`: relative for gradients above one,
//! absolute below, so a gradient that should be zero and is `1e-12` does not count as wrong.

use std::fmt;

use ndarray::{Array2, Array3, ArrayD, ArrayView3, ArrayViewD, ArrayViewMut3, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::call::{Call, LstmOutput, OutputGrad};
use super::{Lstm, states};
use crate::cell::Cell;
use crate::error::{Error, Result};
use crate::params::Parameters;

/// How [`gradcheck`] probes.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckOptions {
    /// Step of the central differences. Default `1e-6`.
    pub eps: f64,
    /// Values checked per tensor at most, evenly spread over it; default all.
    pub max_values_per_tensor: usize,
    /// Seed of the loss weights. Default 0.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            max_values_per_tensor: usize::MAX,
            seed: 0,
        }
    }
}

/// The check of one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckEntry {
    /// Parameter name (`weight_ih_l0_reverse`), or `input`, `h0`, `c0`, `constants`.
    pub name: String,
    /// Values checked.
    pub checked: usize,
    /// The worst relative error among them (0 for an empty tensor).
    pub worst_relative_error: f64,
    /// Flat (row-major) index of the worst value.
    pub worst_index: usize,
    /// Backward's gradient there.
    pub analytic: f64,
    /// The finite-difference gradient there.
    pub numeric: f64,
}

/// What [`gradcheck`] found, one entry per tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradcheckReport {
    /// Parameters in [`Parameters`] order, then `input`, `h0`, `c0`, `constants`.
    pub entries: Vec<GradcheckEntry>,
}

impl GradcheckReport {
    /// The entry with the largest error.
    pub fn worst(&self) -> Option<&GradcheckEntry> {
        self.entries
            .iter()
            .max_by(|a, b| a.worst_relative_error.total_cmp(&b.worst_relative_error))
    }

    /// The largest error of all (0 when nothing was checked).
    pub fn worst_relative_error(&self) -> f64 {
        self.worst().map_or(0.0, |entry| entry.worst_relative_error)
    }

    /// The entry of tensor `name`.
    pub fn entry(&self, name: &str) -> Option<&GradcheckEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(
                f,
                "{:<28} {:>6} values  worst {:.2e} at {} (analytic {:.9}, numeric {:.9})",
                entry.name,
                entry.checked,
                entry.worst_relative_error,
                entry.worst_index,
                entry.analytic,
                entry.numeric
            )?;
        }
        Ok(())
    }
}

/// Checks [`Lstm::backward`] against central finite differences of [`Lstm::forward`] for
/// `layer` on `input` (in the layer's layout) with `call` (lengths, mask, initial state,
/// constants, training mode: any), for every parameter, the input, the initial states (zeros
/// or carried when the call gives none) and the constants.
///
/// # Errors
///
/// Whatever the layer's `forward` returns for this input and call.
pub fn gradcheck<C: Cell<Elem = f64>>(
    layer: &Lstm<C>,
    input: ArrayView3<'_, f64>,
    call: Call<'_, f64>,
    options: &GradcheckOptions,
) -> Result<GradcheckReport> {
    let batch = if layer.config().batch_first {
        input.dim().0
    } else {
        input.dim().1
    };
    let (h0, packed) = layer.initial_state(&call, batch)?;
    let hidden = layer.config().hidden_size;
    let states = C::SPEC
        .states
        .iter()
        .filter_map(|&name| Some((name, states::block(C::SPEC, &packed, name, hidden)?)))
        .collect();
    let constants = call.constants.map(|c| c.to_owned());
    let probe = Probe {
        layer,
        call,
        weights: LossWeights::of(&layer.clone().forward(input, call)?, options.seed),
    };
    let point = Point {
        input: input.to_owned(),
        h0,
        states,
        constants,
    };
    let views = point.state_views();
    let (_, tape) = layer
        .clone()
        .forward_train(input, point.call(&call, &views))?;
    let state_weights = probe.weights.state_views();
    let grads = layer.backward(tape, probe.weights.as_grad(&state_weights))?;

    let mut report = GradcheckReport::default();
    let mut names = Vec::new();
    layer.visit_parameters(&mut |name, _| names.push(name.to_string()));
    for name in names {
        let analytic = grads.params.get(&name).ok_or_else(|| Error::Config {
            option: "gradcheck".into(),
            reason: format!("backward returned no gradient for `{name}`"),
        })?;
        let entry = probe.check(
            &name,
            analytic,
            options,
            |moved, k, value| {
                let mut layer = layer.clone();
                set_parameter(&mut layer, &name, k, value);
                moved.loss_of(&layer, &probe)
            },
            &point,
        )?;
        report.entries.push(entry);
    }
    let mut inputs: Vec<(String, ArrayD<f64>)> = vec![
        ("input".into(), grads.input.into_dyn()),
        ("h0".into(), grads.h0.into_dyn()),
    ];
    if C::SPEC.carries_cell_state() {
        inputs.push(("c0".into(), grads.c0.into_dyn()));
    }
    for (name, grad) in grads.states {
        inputs.push((format!("{name}0"), grad.into_dyn()));
    }
    for (name, analytic) in inputs {
        let entry = probe.check(
            &name,
            &analytic,
            options,
            |moved, k, value| {
                if let Some(values) = moved.tensor_mut(&name) {
                    set_flat(values.into_dyn(), k, value);
                }
                moved.loss_of(layer, &probe)
            },
            &point,
        )?;
        report.entries.push(entry);
    }
    if let Some(analytic) = grads.constants {
        let analytic = analytic.into_dyn();
        let entry = probe.check(
            "constants",
            &analytic,
            options,
            |moved, k, value| {
                if let Some(constants) = moved.constants.as_mut() {
                    set_flat(constants.view_mut().into_dyn(), k, value);
                }
                moved.loss_of(layer, &probe)
            },
            &point,
        )?;
        report.entries.push(entry);
    }
    Ok(report)
}

/// What the loss is evaluated at besides the parameters.
#[derive(Clone)]
struct Point {
    input: Array3<f64>,
    h0: Array3<f64>,
    /// The initial value of every carried state besides `h` (`c`, then the declared ones).
    states: Vec<(&'static str, Array3<f64>)>,
    constants: Option<Array2<f64>>,
}

impl Point {
    /// Views of the initial states, as [`Call::initial_states`] takes them.
    fn state_views(&self) -> Vec<(&'static str, ArrayView3<'_, f64>)> {
        self.states
            .iter()
            .map(|(name, value)| (*name, value.view()))
            .collect()
    }

    /// `call` with this point's initial states (`states`: [`Self::state_views`]) and
    /// constants.
    fn call<'a>(
        &'a self,
        call: &'a Call<'_, f64>,
        states: &'a [(&'a str, ArrayView3<'a, f64>)],
    ) -> Call<'a, f64> {
        Call {
            lengths: call.lengths,
            mask: call.mask.as_ref().map(|mask| mask.view()),
            initial_state: None,
            initial_h: Some(self.h0.view()),
            initial_states: states,
            constants: self.constants.as_ref().map(|c| c.view()),
            training: call.training,
            masks: call.masks,
            record: call.record,
        }
    }

    /// The point's tensor `name` (`input`, `h0`, `c0`, `n0`, …, `constants`), mutably.
    fn tensor_mut(&mut self, name: &str) -> Option<ArrayViewMut3<'_, f64>> {
        match name {
            "input" => Some(self.input.view_mut()),
            "h0" => Some(self.h0.view_mut()),
            _ => {
                let state = name.strip_suffix('0')?;
                let (_, value) = self.states.iter_mut().find(|(s, _)| *s == state)?;
                Some(value.view_mut())
            }
        }
    }

    /// The point's tensor `name`, as [`Self::tensor_mut`] names them.
    fn tensor(&self, name: &str) -> Option<ArrayView3<'_, f64>> {
        match name {
            "input" => Some(self.input.view()),
            "h0" => Some(self.h0.view()),
            _ => {
                let state = name.strip_suffix('0')?;
                let (_, value) = self.states.iter().find(|(s, _)| *s == state)?;
                Some(value.view())
            }
        }
    }

    /// The loss of `layer` (cloned, so its state and dropout generator are untouched) here.
    fn loss_of<C: Cell<Elem = f64>>(
        &self,
        layer: &Lstm<C>,
        probe: &Probe<'_, '_, C>,
    ) -> Result<f64> {
        let views = self.state_views();
        let output = layer
            .clone()
            .forward(self.input.view(), self.call(&probe.call, &views))?;
        Ok(probe.weights.loss(&output))
    }
}

/// The layer and call under check, and the loss.
struct Probe<'l, 'c, C: Cell<Elem = f64>> {
    layer: &'l Lstm<C>,
    call: Call<'c, f64>,
    weights: LossWeights,
}

impl<C: Cell<Elem = f64>> Probe<'_, '_, C> {
    /// Compares `analytic` with central differences of `loss(point moved, k, value)` over the
    /// selected values of one tensor.
    fn check(
        &self,
        name: &str,
        analytic: &ArrayD<f64>,
        options: &GradcheckOptions,
        loss: impl Fn(&mut Point, usize, f64) -> Result<f64>,
        point: &Point,
    ) -> Result<GradcheckEntry> {
        let base = self.values_of(name, point);
        let mut entry = GradcheckEntry {
            name: name.to_string(),
            checked: 0,
            worst_relative_error: 0.0,
            worst_index: 0,
            analytic: 0.0,
            numeric: 0.0,
        };
        let len = base.len();
        let count = len.min(options.max_values_per_tensor);
        for pick in 0..count {
            let k = pick * len / count;
            let mut moved = point.clone();
            let plus = loss(&mut moved, k, base[k] + options.eps)?;
            let mut moved = point.clone();
            let minus = loss(&mut moved, k, base[k] - options.eps)?;
            let numeric = (plus - minus) / (2.0 * options.eps);
            let value = analytic.iter().nth(k).copied().unwrap_or(f64::NAN);
            let error = (value - numeric).abs() / value.abs().max(numeric.abs()).max(1.0);
            entry.checked += 1;
            if error.is_nan() || error > entry.worst_relative_error {
                entry.worst_relative_error = error;
                entry.worst_index = k;
                entry.analytic = value;
                entry.numeric = numeric;
            }
        }
        Ok(entry)
    }

    /// The current values of tensor `name` (a parameter, or one of the point's), row-major.
    fn values_of(&self, name: &str, point: &Point) -> Vec<f64> {
        if let Some(values) = point.tensor(name) {
            return values.iter().copied().collect();
        }
        match name {
            "constants" => point
                .constants
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect(),
            _ => {
                let mut values = Vec::new();
                self.layer.visit_parameters(&mut |tensor, view| {
                    if tensor == name {
                        values = view.iter().copied().collect();
                    }
                });
                values
            }
        }
    }
}

/// Sets value `k` (row-major) of parameter `name`.
fn set_parameter<C: Cell<Elem = f64>>(layer: &mut Lstm<C>, name: &str, k: usize, value: f64) {
    layer.visit_parameters_mut(&mut |tensor, view| {
        if tensor == name {
            set_flat(view, k, value);
        }
    });
}

/// Sets value `k` (row-major) of `view`.
fn set_flat(mut view: ndarray::ArrayViewMutD<'_, f64>, k: usize, value: f64) {
    if let Some(slot) = view.iter_mut().nth(k) {
        *slot = value;
    }
}

/// The fixed random weights of the loss, one per returned value.
struct LossWeights {
    output: ArrayD<f64>,
    output_reverse: Option<ArrayD<f64>>,
    h_n: Option<ArrayD<f64>>,
    c_n: Option<ArrayD<f64>>,
    /// One per final state the spec declares besides `h` and `c`, by name.
    states: Vec<(String, Array3<f64>)>,
}

impl LossWeights {
    fn of(output: &LstmOutput<f64>, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut like = |values: ArrayViewD<'_, f64>| {
            ArrayD::from_shape_fn(IxDyn(values.shape()), |_| rng.random_range(-1.0..1.0))
        };
        LossWeights {
            output: like(output.output.view()),
            output_reverse: output.output_reverse.as_ref().map(|o| like(o.view())),
            h_n: output.h_n.as_ref().map(|h| like(h.view().into_dyn())),
            c_n: output.c_n.as_ref().map(|c| like(c.view().into_dyn())),
            states: output
                .states
                .iter()
                .map(|(name, values)| {
                    let weights = like(values.view().into_dyn()).into_dimensionality();
                    (
                        name.clone(),
                        weights.expect("a final state is 3-dimensional"),
                    )
                })
                .collect(),
        }
    }

    fn loss(&self, output: &LstmOutput<f64>) -> f64 {
        let dot = |weights: ArrayViewD<'_, f64>, values: ArrayViewD<'_, f64>| {
            weights
                .iter()
                .zip(values.iter())
                .map(|(w, v)| w * v)
                .sum::<f64>()
        };
        let mut loss = dot(self.output.view(), output.output.view());
        if let (Some(weights), Some(values)) = (&self.output_reverse, &output.output_reverse) {
            loss += dot(weights.view(), values.view());
        }
        if let (Some(weights), Some(values)) = (&self.h_n, &output.h_n) {
            loss += dot(weights.view(), values.view().into_dyn());
        }
        if let (Some(weights), Some(values)) = (&self.c_n, &output.c_n) {
            loss += dot(weights.view(), values.view().into_dyn());
        }
        for (name, weights) in &self.states {
            if let Some(values) = output.states.get(name) {
                loss += dot(weights.view().into_dyn(), values.view().into_dyn());
            }
        }
        loss
    }

    /// Views of the final states' weights, as [`OutputGrad::states`] takes them.
    fn state_views(&self) -> Vec<(&str, ArrayView3<'_, f64>)> {
        self.states
            .iter()
            .map(|(name, weights)| (name.as_str(), weights.view()))
            .collect()
    }

    fn as_grad<'a>(&'a self, states: &'a [(&'a str, ArrayView3<'a, f64>)]) -> OutputGrad<'a, f64> {
        OutputGrad {
            output: Some(self.output.view()),
            output_reverse: self.output_reverse.as_ref().map(|o| o.view()),
            h_n: self.h_n.as_ref().map(|h| dim3(h.view())),
            c_n: self.c_n.as_ref().map(|c| dim3(c.view())),
            states,
        }
    }
}

/// A view of a state weight, which mirrors a 3-dimensional `h_n`/`c_n`.
fn dim3(view: ArrayViewD<'_, f64>) -> ArrayView3<'_, f64> {
    view.into_dimensionality()
        .expect("state weights mirror the 3-dimensional h_n and c_n")
}
