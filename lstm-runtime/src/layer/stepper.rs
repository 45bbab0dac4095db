//! [`Stepper`]: a unidirectional stack driven one time step at a time (autoregressive
//! generation, beam search, online inference), and [`StepState`], the state it advances.
//!
//! A stepper sets every layer up once, as a call of the sequence forward does (biases as
//! flat slices, the constant input projected, `W_hh` packed for the step kernels on first
//! use), and then each [`Stepper::step`] runs exactly what one step of that call runs:
//! the input projection of one step, the recurrent product, the cell's fused step and the
//! projection, layer after layer. The state lives outside the stepper so that a caller can
//! keep several (one per hypothesis), reorder or duplicate rows ([`StepState::select`]) and
//! go back to an earlier one.
//!
//! Where one step is large enough (from about 33 K multiply-adds of its recurrent product:
//! hidden 91 at batch 1), the stepper splits each step between two cores as the sequence
//! forward splits its steps, value for value the same, on the calling thread's helper thread
//! (`parallel/helper_thread.rs`): the one that thread's sequence calls use too, kept between
//! steps and calls, spinning for up to a millisecond after each, then sleeping until the next.
//!
//! Gradients through steps taken one at a time come from the layer itself: a training call
//! on each one-step input with that step's initial state, then [`Lstm::backward`] from the
//! last step to the first, each step's `dL/dh0`, `dL/dc0` fed to the step before as its
//! `dL/dh_n`, `dL/dc_n` (see [`Stepper`]).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};

use super::{Lstm, states};
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result, expect_shape};
use crate::parallel::helper_thread;
use crate::parallel::threads::num_threads;
use crate::recurrence::Record;
use crate::recurrence::mask::Validity;
use crate::recurrence::pass::{Pass, Run};
use crate::regularization::in_recurrence::InRecurrence;

/// Every step of every row is real: a stepper steps every row it is given.
static ALL_VALID: Validity = Validity::All;

/// A unidirectional stack set up to advance one time step per [`Stepper::step`]; made by
/// [`Lstm::stepper`]. Each step's output and state equal, bit for bit, those of the same step
/// in [`Lstm::forward`] over the whole sequence.
///
/// The stepper runs the layer in inference mode: no dropout, zoneout at its expectation. It
/// neither reads nor changes a stateful layer's carried state, and takes the steps in the
/// order given (`go_backwards` concerns whole sequences: feed them last step first).
///
/// ```
/// use lstm_runtime::ndarray::Array2;
/// use lstm_runtime::{Lstm, LstmConfig, zoo};
///
/// let config = LstmConfig::new(3, 8).with_num_layers(2);
/// let layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rand::rng())?;
/// let mut stepper = layer.stepper(2)?;
/// let mut state = stepper.zero_state();
/// let mut x = Array2::<f32>::zeros((2, 3));
/// for _ in 0..5 {
///     let h = stepper.step(x.view(), &mut state)?; // (batch, output_size), the top layer's h
///     x.fill(h[[0, 0]]);
/// }
/// // Beam search: continue from row 1, twice, and row 0.
/// let beams = state.select(&[1, 1, 0])?;
/// assert_eq!(beams.batch(), 3);
/// # Ok::<(), lstm_runtime::Error>(())
/// ```
///
/// Training through steps: record each step with a one-step training call, then run
/// backward from the last step, each step's initial-state gradient feeding the step before.
///
/// ```
/// use lstm_runtime::ndarray::Array3;
/// use lstm_runtime::{Call, Lstm, LstmConfig, OutputGrad, zoo};
///
/// let config = LstmConfig::new(3, 4).with_return_state(true);
/// let mut layer = Lstm::<zoo::Lstm<f64>>::new(config, &mut rand::rng())?;
/// let steps: Vec<Array3<f64>> = (0..4).map(|t| Array3::from_elem((1, 2, 3), t as f64)).collect();
/// let (mut h, mut c) = (Array3::zeros((1, 2, 4)), Array3::zeros((1, 2, 4)));
/// let mut tapes = Vec::new();
/// for x in &steps {
///     let call = Call::new().with_initial_state(h.view(), c.view()).with_training(true);
///     let (out, tape) = layer.forward_train(x.view(), call)?;
///     (h, c) = (out.h_n.unwrap(), out.c_n.unwrap());
///     tapes.push(tape);
/// }
/// // Loss: the sum of every step's output; dL/dh_n and dL/dc_n of the last step are zero.
/// let ones = Array3::<f64>::ones((1, 2, 4)).into_dyn();
/// let (mut dh, mut dc) = (Array3::zeros((1, 2, 4)), Array3::zeros((1, 2, 4)));
/// for tape in tapes.into_iter().rev() {
///     let grad = OutputGrad {
///         output: Some(ones.view()),
///         h_n: Some(dh.view()),
///         c_n: Some(dc.view()),
///         ..OutputGrad::default()
///     };
///     let grads = layer.backward(tape, grad)?; // grads.params: this step's share of the sum
///     (dh, dc) = (grads.h0, grads.c0);
/// }
/// // `dh`, `dc`: the loss's gradient with respect to the first step's initial state.
/// # Ok::<(), lstm_runtime::Error>(())
/// ```
pub struct Stepper<'l, C: Cell> {
    layer: &'l Lstm<C>,
    /// One per layer, forward direction, set up once.
    passes: Vec<Pass<'l, C>>,
    /// Each layer's workspaces for one step of [`Self::batch`] rows.
    runs: Vec<Run<C::Elem>>,
    /// Rows of the constant input the passes projected, when the cell reads one.
    constant_rows: Option<usize>,
    /// Whether a step of [`Self::batch`] rows is worth splitting between two threads (on the
    /// calling thread's helper, `helper_thread::with_helper`).
    helper: bool,
}

/// The recurrent state of every layer of a stack that a [`Stepper`] advances: per layer `h`
/// `(batch, output_size)` and `c` `(batch, hidden_size)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState<F> {
    h: Vec<Array2<F>>,
    c: Vec<Array2<F>>,
}

impl<C: Cell> Lstm<C> {
    /// A [`Stepper`] for `batch` rows (a [`StepState`] of another batch size makes it adjust
    /// its workspaces on the next step).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `bidirectional` for a layer with a reverse direction (which
    /// needs the whole sequence), `constants` for a cell that reads a constant input (use
    /// [`Lstm::stepper_with_constants`]), or any option the config or the cell rejects;
    /// [`Error::Allocation`] if a step's workspaces for `batch` rows cannot be allocated.
    ///
    /// [`Error::Allocation`]: crate::error::Error::Allocation
    pub fn stepper(&self, batch: usize) -> Result<Stepper<'_, C>> {
        self.make_stepper(batch, None)
    }

    /// A [`Stepper`] for a cell that reads a constant input (Keras `constants`),
    /// `(batch, constant_size)`, projected once for every step; its batch is fixed to the
    /// constants' rows.
    ///
    /// # Errors
    ///
    /// As [`Lstm::stepper`], and [`Error::Config`] naming `constants` if the cell reads none,
    /// [`Error::ShapeMismatch`] naming `constants` if its width is not `constant_size`.
    pub fn stepper_with_constants<'a>(
        &'a self,
        constants: ArrayView2<'a, C::Elem>,
    ) -> Result<Stepper<'a, C>> {
        if C::SPEC.constant.is_none() {
            return Err(Error::Config {
                option: "constants".into(),
                reason: format!("cell `{}` reads no constant input", C::SPEC.name),
            });
        }
        expect_shape(
            "constants",
            &[constants.nrows(), self.config.constant_size],
            constants.shape(),
        )?;
        self.make_stepper(constants.nrows(), Some(constants))
    }

    fn make_stepper<'a>(
        &'a self,
        batch: usize,
        constants: Option<ArrayView2<'a, C::Elem>>,
    ) -> Result<Stepper<'a, C>> {
        self.config.validate_for::<C>()?;
        if self.config.bidirectional {
            return Err(Error::Config {
                option: "bidirectional".into(),
                reason: "a stepper advances a unidirectional stack; the reverse direction of \
                         a step needs the steps after it"
                    .into(),
            });
        }
        Self::check_training_memory(&self.config, 1, batch)?;
        let inference = InRecurrence::inference(self.config.zoneout_c, self.config.zoneout_h);
        let passes = (0..self.config.num_layers)
            .map(|layer| self.pass(layer, Direction::Forward, &ALL_VALID, constants, inference))
            .collect::<Result<Vec<_>>>()?;
        let mut stepper = Stepper {
            layer: self,
            passes,
            runs: Vec::new(),
            constant_rows: constants.map(|constants| constants.nrows()),
            helper: false,
        };
        stepper.runs = stepper.workspaces(batch);
        Ok(stepper)
    }
}

impl<'l, C: Cell> Stepper<'l, C> {
    /// The batch rows the workspaces are sized for (the rows of the last step taken).
    pub fn batch(&self) -> usize {
        self.runs.first().map_or(0, |run| run.state.h.nrows())
    }

    /// A state of zeros for [`Self::batch`] rows (PyTorch's default initial state).
    pub fn zero_state(&self) -> StepState<C::Elem> {
        self.zero_state_of(self.batch())
    }

    /// A state of zeros for `batch` rows.
    fn zero_state_of(&self, batch: usize) -> StepState<C::Elem> {
        let config = &self.layer.config;
        let layers = config.num_layers;
        StepState {
            h: vec![Array2::zeros((batch, config.output_size())); layers],
            c: vec![Array2::zeros((batch, C::SPEC.state_width(config.hidden_size))); layers],
        }
    }

    /// A state from `h0` `(num_layers, batch, output_size)` and `c0`
    /// `(num_layers, batch, hidden_size)`, as [`Call::initial_state`](super::call::Call)
    /// takes them; the states a spec declares besides `h` and `c` start at zero.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `h0` or `c0`; [`Error::Config`] naming `c0` for a cell
    /// without a cell state.
    pub fn state_from(
        &self,
        h0: ArrayView3<'_, C::Elem>,
        c0: ArrayView3<'_, C::Elem>,
    ) -> Result<StepState<C::Elem>> {
        let config = &self.layer.config;
        let (layers, batch) = (config.num_layers, h0.len_of(Axis(1)));
        expect_shape("h0", &[layers, batch, config.output_size()], h0.shape())?;
        let mut packed = states::zeros(C::SPEC, layers, batch, config.hidden_size);
        states::put(C::SPEC, &mut packed, "c", c0, "c0")?;
        let standard = |states: ArrayView3<'_, C::Elem>| {
            states
                .outer_iter()
                .map(|state| state.as_standard_layout().into_owned())
                .collect()
        };
        Ok(StepState {
            h: standard(h0),
            c: standard(packed.view()),
        })
    }

    /// A state from `h0` `(num_layers, batch, output_size)` alone, every other carried state
    /// at zero (the initial state of an `h`-only cell such as a GRU), as
    /// [`Call::initial_h`](super::call::Call) takes it.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `h0`.
    pub fn state_from_h(&self, h0: ArrayView3<'_, C::Elem>) -> Result<StepState<C::Elem>> {
        let config = &self.layer.config;
        let (layers, batch) = (config.num_layers, h0.len_of(Axis(1)));
        expect_shape("h0", &[layers, batch, config.output_size()], h0.shape())?;
        let mut state = self.zero_state_of(batch);
        for (h, h0) in state.h.iter_mut().zip(h0.outer_iter()) {
            h.assign(&h0);
        }
        Ok(state)
    }

    /// Advances every layer one step: `x` is the step's input `(batch, input_size)`, `state`
    /// the state before the step, replaced by the state after it. Returns the top layer's
    /// output `(batch, output_size)`, which is its new `h`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `x`, or `h` / `c` of a layer (`h_l1`) if `state` is
    /// not a state of this stack with `x`'s rows; [`Error::Config`] naming `constants` if
    /// the rows differ from those of the constants the stepper was made with;
    /// [`Error::Allocation`] if workspaces for a new batch size cannot be allocated.
    ///
    /// [`Error::Allocation`]: crate::error::Error::Allocation
    pub fn step<'s>(
        &mut self,
        x: ArrayView2<'_, C::Elem>,
        state: &'s mut StepState<C::Elem>,
    ) -> Result<ArrayView2<'s, C::Elem>> {
        let config = &self.layer.config;
        let batch = x.nrows();
        expect_shape("x", &[batch, config.input_size], x.shape())?;
        self.check_state(state, batch)?;
        if batch != self.batch() {
            if let Some(rows) = self.constant_rows {
                return Err(Error::Config {
                    option: "constants".into(),
                    reason: format!(
                        "the stepper was made for constants of {rows} rows; the step has \
                         {batch}"
                    ),
                });
            }
            Lstm::<C>::check_training_memory(config, 1, batch)?;
            self.runs = self.workspaces(batch);
        }
        let x = x.insert_axis(Axis(0));
        let Stepper {
            passes,
            runs,
            helper,
            ..
        } = self;
        let run_layers = || -> Result<()> {
            for (layer, (pass, run)) in passes.iter().zip(runs.iter_mut()).enumerate() {
                let (below, here) = state.h.split_at_mut(layer);
                std::mem::swap(&mut run.state.h, &mut here[0]);
                std::mem::swap(&mut run.state.c, &mut state.c[layer]);
                let input = match below.last() {
                    Some(h) => h.view().insert_axis(Axis(0)),
                    None => x.view(),
                };
                let stepped = pass.run_chunk(input, 0, 1, run, None, Record::Nothing);
                std::mem::swap(&mut run.state.h, &mut here[0]);
                std::mem::swap(&mut run.state.c, &mut state.c[layer]);
                stepped?;
            }
            Ok(())
        };
        helper_thread::with_helper(*helper, run_layers)?;
        Ok(state.output())
    }

    /// As [`Self::step`] for the rows where `valid` is true; the other rows keep their state
    /// (PyTorch's lengths and Keras' masks: a sequence that has ended, a finished hypothesis),
    /// and their output is that kept `h`. Each valid row's result is the one [`Self::step`]
    /// gives it.
    ///
    /// # Errors
    ///
    /// As [`Self::step`], and [`Error::ShapeMismatch`] naming `valid` if it has not one entry
    /// per row.
    pub fn step_rows<'s>(
        &mut self,
        x: ArrayView2<'_, C::Elem>,
        state: &'s mut StepState<C::Elem>,
        valid: &[bool],
    ) -> Result<ArrayView2<'s, C::Elem>> {
        expect_shape("valid", &[x.nrows()], &[valid.len()])?;
        let kept: Vec<usize> = (0..valid.len()).filter(|&row| !valid[row]).collect();
        if kept.is_empty() {
            return self.step(x, state);
        }
        let before = state.select(&kept)?;
        self.step(x, state)?;
        for (layer, (h, c)) in before.h.iter().zip(&before.c).enumerate() {
            for (k, &row) in kept.iter().enumerate() {
                state.h[layer].row_mut(row).assign(&h.row(k));
                state.c[layer].row_mut(row).assign(&c.row(k));
            }
        }
        Ok(state.output())
    }

    /// Workspaces of every layer for one step of `batch` rows, and whether a step of that many
    /// rows splits between two threads.
    fn workspaces(&mut self, batch: usize) -> Vec<Run<C::Elem>> {
        let config = &self.layer.config;
        let h0 = Array2::zeros((batch, config.output_size()));
        let c0 = Array2::zeros((batch, C::SPEC.state_width(config.hidden_size)));
        let worth_it = self
            .passes
            .iter()
            .any(|pass| pass.step_worth_a_helper(batch));
        self.helper = worth_it && num_threads() >= 2;
        let helper = self.helper;
        self.passes
            .iter()
            .map(|pass| pass.start_with(h0.view(), c0.view(), 1, helper))
            .collect()
    }

    /// `Ok` if `state` is a state of this stack for `batch` rows.
    fn check_state(&self, state: &StepState<C::Elem>, batch: usize) -> Result<()> {
        let config = &self.layer.config;
        let layers = config.num_layers;
        if state.h.len() != layers || state.c.len() != layers {
            return Err(Error::shape_mismatch(
                "state",
                &[layers, batch, config.output_size()],
                &[
                    state.h.len(),
                    state.batch(),
                    state.h.first().map_or(0, |h| h.ncols()),
                ],
            ));
        }
        for layer in 0..layers {
            let checks = [
                ("h", config.output_size(), state.h[layer].shape()),
                (
                    "c",
                    C::SPEC.state_width(config.hidden_size),
                    state.c[layer].shape(),
                ),
            ];
            for (name, width, found) in checks {
                // Named only on a mismatch: every step checks.
                if found != [batch, width] {
                    return Err(Error::shape_mismatch(
                        format!("{name}_l{layer}"),
                        &[batch, width],
                        found,
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<F: crate::float::Float> StepState<F> {
    /// Batch rows.
    pub fn batch(&self) -> usize {
        self.h.first().map_or(0, |h| h.nrows())
    }

    /// Every layer's `h`: `(num_layers, batch, output_size)`, as [`Lstm::forward`]'s `h_n`.
    pub fn h(&self) -> Array3<F> {
        stack(&self.h)
    }

    /// Every layer's carried states besides `h`, packed as
    /// [`CellSpec::states`](crate::CellSpec::states) lists them: `(num_layers, batch,
    /// states · hidden_size)`. For a cell whose only such state is `c` (an LSTM), exactly
    /// [`Lstm::forward`]'s `c_n`; empty for an `h`-only cell.
    pub fn c(&self) -> Array3<F> {
        stack(&self.c)
    }

    /// The top layer's `h` `(batch, output_size)`: the stack's output at the last step.
    pub fn output(&self) -> ArrayView2<'_, F> {
        // A stepper's state has one entry per layer, and a layer has at least one.
        self.h.last().expect("a stack has a layer").view()
    }

    /// The state of the given rows, in the given order: rows may repeat or be left out (beam
    /// search keeps the best hypotheses' rows, a new prompt duplicates a row).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `rows` if one is not below [`Self::batch`].
    pub fn select(&self, rows: &[usize]) -> Result<Self> {
        let batch = self.batch();
        if let Some(row) = rows.iter().find(|&&row| row >= batch) {
            return Err(Error::invalid_value(
                "rows",
                format!("row {row} of a state of {batch} rows"),
            ));
        }
        let pick = |states: &[Array2<F>]| {
            states
                .iter()
                .map(|state| state.select(Axis(0), rows))
                .collect()
        };
        Ok(StepState {
            h: pick(&self.h),
            c: pick(&self.c),
        })
    }
}

/// Per-layer `(batch, width)` states stacked into `(layers, batch, width)`.
fn stack<F: crate::float::Float>(states: &[Array2<F>]) -> Array3<F> {
    let (batch, width) = states.first().map_or((0, 0), |state| state.dim());
    let mut stacked = Array3::zeros((states.len(), batch, width));
    for (mut layer, state) in stacked.outer_iter_mut().zip(states) {
        layer.assign(state);
    }
    stacked
}

#[cfg(test)]
#[path = "stepper_tests.rs"]
mod tests;
