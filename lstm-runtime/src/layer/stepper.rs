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
//! Gradients through steps taken one at a time come from the layer itself: a training call
//! on each one-step input with that step's initial state, then [`Lstm::backward`] from the
//! last step to the first, each step's `dL/dh0`, `dL/dc0` fed to the step before as its
//! `dL/dh_n`, `dL/dc_n` (see [`Stepper`]).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};

use super::Lstm;
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result, expect_shape};
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
        };
        stepper.runs = stepper.workspaces(batch);
        Ok(stepper)
    }
}

impl<'l, C: Cell> Stepper<'l, C> {
    /// The batch rows the workspaces are sized for (the rows of the last step taken).
    pub fn batch(&self) -> usize {
        self.runs.first().map_or(0, |run| run.state.c.nrows())
    }

    /// A state of zeros for [`Self::batch`] rows (PyTorch's default initial state).
    pub fn zero_state(&self) -> StepState<C::Elem> {
        let config = &self.layer.config;
        let batch = self.batch();
        let layers = config.num_layers;
        StepState {
            h: vec![Array2::zeros((batch, config.output_size())); layers],
            c: vec![Array2::zeros((batch, config.hidden_size)); layers],
        }
    }

    /// A state from `h0` `(num_layers, batch, output_size)` and `c0`
    /// `(num_layers, batch, hidden_size)`, as [`Call::initial_state`](super::call::Call)
    /// takes them.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `h0` or `c0`.
    pub fn state_from(
        &self,
        h0: ArrayView3<'_, C::Elem>,
        c0: ArrayView3<'_, C::Elem>,
    ) -> Result<StepState<C::Elem>> {
        let config = &self.layer.config;
        let (layers, batch) = (config.num_layers, h0.len_of(Axis(1)));
        expect_shape("h0", &[layers, batch, config.output_size()], h0.shape())?;
        expect_shape("c0", &[layers, batch, config.hidden_size], c0.shape())?;
        let standard = |states: ArrayView3<'_, C::Elem>| {
            states
                .outer_iter()
                .map(|state| state.as_standard_layout().into_owned())
                .collect()
        };
        Ok(StepState {
            h: standard(h0),
            c: standard(c0),
        })
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
        for (layer, (pass, run)) in self.passes.iter().zip(&mut self.runs).enumerate() {
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

    /// Workspaces of every layer for one step of `batch` rows.
    fn workspaces(&self, batch: usize) -> Vec<Run<C::Elem>> {
        let config = &self.layer.config;
        let h0 = Array2::zeros((batch, config.output_size()));
        let c0 = Array2::zeros((batch, config.hidden_size));
        self.passes
            .iter()
            .map(|pass| pass.start(h0.view(), c0.view(), 1))
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
                ("c", config.hidden_size, state.c[layer].shape()),
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
        self.c.first().map_or(0, |c| c.nrows())
    }

    /// Every layer's `h`: `(num_layers, batch, output_size)`, as [`Lstm::forward`]'s `h_n`.
    pub fn h(&self) -> Array3<F> {
        stack(&self.h)
    }

    /// Every layer's `c`: `(num_layers, batch, hidden_size)`, as [`Lstm::forward`]'s `c_n`.
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
mod tests {
    use ndarray::{Array, Array3, ArrayD, Dimension, ShapeBuilder, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::float::Float;
    use crate::layer::call::{Call, OutputGrad};
    use crate::layer::config::LstmConfig;
    use crate::parallel::threads::with_threads;
    use crate::zoo::{self, lookup::CellVisitor, lookup::visit_zoo_cell};

    fn random<F: Float, Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<F, Sh::Dim>
    where
        Sh::Dim: Dimension,
    {
        Array::from_shape_simple_fn(shape, || F::of(rng.random_range(-1.0..1.0)))
    }

    /// Panics naming the first element where `steps` and `sequence` differ in any bit.
    fn assert_same_bits<F: Float, D: Dimension>(
        what: &str,
        steps: &Array<F, D>,
        sequence: &Array<F, D>,
    ) {
        assert_eq!(steps.shape(), sequence.shape(), "{what}: shapes");
        let differs = steps
            .indexed_iter()
            .zip(sequence)
            .find(|((_, a), b)| a.to_f64_lossy().to_bits() != b.to_f64_lossy().to_bits());
        if let Some(((at, a), b)) = differs {
            panic!("{what}: at {at:?} the stepper gives {a:?}, the sequence forward {b:?}");
        }
    }

    /// A random layer of the visited cell under `config`, run over a random sequence of
    /// `(seq_len, batch)` from a random initial state, whole and step by step.
    struct StepsEqualSequence {
        config: LstmConfig,
        seq_len: usize,
        batch: usize,
    }

    impl<F: Float> CellVisitor<F> for StepsEqualSequence {
        type Output = ();

        fn visit<C: Cell<Elem = F>>(self) {
            let Self {
                config,
                seq_len,
                batch,
            } = self;
            let what = format!("{} {} ({seq_len}, {batch})", C::SPEC.name, F::DTYPE);
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
            let layers = config.num_layers;
            let input: Array3<F> = random(&mut rng, (seq_len, batch, config.input_size));
            let h0: Array3<F> = random(&mut rng, (layers, batch, config.output_size()));
            let c0: Array3<F> = random(&mut rng, (layers, batch, config.hidden_size));
            let whole = layer
                .forward(
                    input.view(),
                    Call::new().with_initial_state(h0.view(), c0.view()),
                )
                .unwrap();
            let sequence = whole.output.sequence().unwrap();
            let mut stepper = layer.stepper(batch).unwrap();
            let mut state = stepper.state_from(h0.view(), c0.view()).unwrap();
            for t in 0..seq_len {
                let output = stepper
                    .step(input.index_axis(Axis(0), t), &mut state)
                    .unwrap()
                    .to_owned();
                let expected = sequence.index_axis(Axis(0), t).to_owned();
                assert_same_bits(&format!("{what}: output at step {t}"), &output, &expected);
            }
            assert_same_bits(
                &format!("{what}: h_n"),
                &state.h(),
                whole.h_n.as_ref().unwrap(),
            );
            assert_same_bits(
                &format!("{what}: c_n"),
                &state.c(),
                whole.c_n.as_ref().unwrap(),
            );
        }
    }

    fn every_zoo_cell(config: &LstmConfig, seq_len: usize, batch: usize) {
        for spec in zoo::all() {
            let visitor = |config: LstmConfig| StepsEqualSequence {
                config,
                seq_len,
                batch,
            };
            visit_zoo_cell::<f64, _>(spec.name, visitor(config.clone())).unwrap();
            visit_zoo_cell::<f32, _>(spec.name, visitor(config.clone())).unwrap();
        }
    }

    #[test]
    fn every_zoo_cell_steps_as_the_sequence_forward_in_a_stack() {
        every_zoo_cell(&LstmConfig::new(5, 6).with_num_layers(3), 9, 3);
    }

    #[test]
    fn every_zoo_cell_steps_as_the_sequence_forward_at_batch_1() {
        // Long enough for the sequence forward's input projection to run in chunks (64 steps
        // at batch 1, then 6). On one thread: on two, the forward splits each step's units
        // between the threads, which groups the sums of `f32` products otherwise.
        with_threads(1, || every_zoo_cell(&LstmConfig::new(16, 128), 70, 1));
    }

    #[test]
    fn projection_and_zoneout_step_as_the_sequence_forward() {
        let config = LstmConfig::new(4, 7).with_num_layers(2).with_proj_size(3);
        visit_zoo_cell::<f32, _>(
            "lstm",
            StepsEqualSequence {
                config,
                seq_len: 6,
                batch: 5,
            },
        )
        .unwrap();
        let config = LstmConfig::new(4, 7).with_zoneout(0.3, 0.1);
        visit_zoo_cell::<f64, _>(
            "peephole",
            StepsEqualSequence {
                config,
                seq_len: 6,
                batch: 2,
            },
        )
        .unwrap();
    }

    #[test]
    fn rows_past_their_length_keep_their_state_as_in_the_sequence_forward() {
        let (seq_len, batch) = (7, 4);
        let lengths = [7, 3, 0, 5];
        let config = LstmConfig::new(3, 5).with_num_layers(2);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rng).unwrap();
        let input: Array3<f32> = random(&mut rng, (seq_len, batch, 3));
        let whole = layer
            .forward(input.view(), Call::new().with_lengths(&lengths))
            .unwrap();
        let sequence = whole.output.sequence().unwrap();
        let mut stepper = layer.stepper(batch).unwrap();
        let mut state = stepper.zero_state();
        for t in 0..seq_len {
            let valid: Vec<bool> = lengths.iter().map(|&length| t < length).collect();
            let output = stepper
                .step_rows(input.index_axis(Axis(0), t), &mut state, &valid)
                .unwrap()
                .to_owned();
            for (row, valid) in valid.iter().enumerate() {
                if *valid {
                    assert_same_bits(
                        &format!("output of row {row} at step {t}"),
                        &output.row(row).to_owned(),
                        &sequence.slice(s![t, row, ..]).to_owned(),
                    );
                }
            }
        }
        assert_same_bits("h_n", &state.h(), whole.h_n.as_ref().unwrap());
        assert_same_bits("c_n", &state.c(), whole.c_n.as_ref().unwrap());
        let x = Array2::<f32>::zeros((batch, 3));
        assert!(matches!(
            stepper.step_rows(x.view(), &mut state, &[true]),
            Err(Error::ShapeMismatch { what, .. }) if what == "valid"
        ));
    }

    #[test]
    fn selected_rows_continue_as_those_rows_would() {
        let config = LstmConfig::new(3, 5).with_num_layers(2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let layer = Lstm::<zoo::Peephole<f64>>::new(config, &mut rng).unwrap();
        let mut stepper = layer.stepper(3).unwrap();
        let mut state = stepper.zero_state();
        for _ in 0..4 {
            let x: Array2<f64> = random(&mut rng, (3, 3));
            stepper.step(x.view(), &mut state).unwrap();
        }
        let rows = [2, 0, 2, 2];
        let mut selected = state.select(&rows).unwrap();
        assert_eq!(selected.batch(), 4);
        for (new, &old) in rows.iter().enumerate() {
            assert_eq!(
                selected.h().slice(s![.., new, ..]),
                state.h().slice(s![.., old, ..])
            );
            assert_eq!(
                selected.c().slice(s![.., new, ..]),
                state.c().slice(s![.., old, ..])
            );
        }
        // The next step of the selected rows (the workspaces grow to 4 rows) is the step of
        // each row alone from its own state.
        let x: Array2<f64> = random(&mut rng, (4, 3));
        let together = stepper.step(x.view(), &mut selected).unwrap().to_owned();
        for (new, &old) in rows.iter().enumerate() {
            let mut alone = state.select(&[old]).unwrap();
            let mut single = layer.stepper(1).unwrap();
            let output = single
                .step(x.slice(s![new..new + 1, ..]), &mut alone)
                .unwrap();
            assert_same_bits(
                "selected row",
                &output.to_owned(),
                &together.slice(s![new..new + 1, ..]).to_owned(),
            );
        }
        assert!(matches!(
            state.select(&[0, 3]),
            Err(Error::InvalidValue { what, .. }) if what == "rows"
        ));
    }

    #[test]
    fn chained_one_step_training_calls_give_the_sequence_gradients() {
        let (seq_len, batch) = (5, 3);
        let config = LstmConfig::new(3, 4).with_num_layers(2);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut layer = Lstm::<zoo::Lstm<f64>>::new(config.clone(), &mut rng).unwrap();
        let input: Array3<f64> = random(&mut rng, (seq_len, batch, 3));
        let d_output: Array3<f64> = random(&mut rng, (seq_len, batch, 4));
        let (h0, c0) = (Array3::zeros((2, batch, 4)), Array3::zeros((2, batch, 4)));
        let call = Call::new().with_training(true);
        let (_, tape) = layer.forward_train(input.view(), call).unwrap();
        let whole = layer
            .backward(
                tape,
                OutputGrad {
                    output: Some(d_output.view().into_dyn()),
                    ..OutputGrad::default()
                },
            )
            .unwrap();

        let (mut h, mut c) = (h0, c0);
        let mut tapes = Vec::new();
        for t in 0..seq_len {
            let call = Call::new()
                .with_initial_state(h.view(), c.view())
                .with_training(true);
            let (out, tape) = layer
                .forward_train(input.slice(s![t..t + 1, .., ..]), call)
                .unwrap();
            (h, c) = (out.h_n.unwrap(), out.c_n.unwrap());
            tapes.push(tape);
        }
        let (mut dh, mut dc) = (Array3::zeros(h.raw_dim()), Array3::zeros(c.raw_dim()));
        let mut params = crate::params::Gradients::<f64>::new();
        let mut d_input = Array3::zeros(input.raw_dim());
        for (t, tape) in tapes.into_iter().enumerate().rev() {
            let d_step: ArrayD<f64> = d_output.slice(s![t..t + 1, .., ..]).to_owned().into_dyn();
            let grads = layer
                .backward(
                    tape,
                    OutputGrad {
                        output: Some(d_step.view()),
                        h_n: Some(dh.view()),
                        c_n: Some(dc.view()),
                        ..OutputGrad::default()
                    },
                )
                .unwrap();
            for (name, grad) in grads.params.iter() {
                match params.get_mut(name) {
                    Some(sum) => *sum += grad,
                    None => params.insert(name, grad.clone()),
                }
            }
            d_input.slice_mut(s![t..t + 1, .., ..]).assign(&grads.input);
            (dh, dc) = (grads.h0, grads.c0);
        }
        let close = |what: &str, a: ArrayD<f64>, b: ArrayD<f64>| {
            assert_eq!(a.shape(), b.shape(), "{what}");
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-12, "{what}: off by {worst:e}");
        };
        assert_eq!(params.len(), whole.params.len());
        for (name, grad) in whole.params.iter() {
            close(name, params.get(name).unwrap().clone(), grad.clone());
        }
        close("input", d_input.into_dyn(), whole.input.into_dyn());
        close("h0", dh.into_dyn(), whole.h0.into_dyn());
        close("c0", dc.into_dyn(), whole.c0.into_dyn());
    }

    #[test]
    fn misuse_is_an_error_naming_what() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let config = LstmConfig::new(3, 4).with_bidirectional(true);
        let layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rng).unwrap();
        assert!(matches!(
            layer.stepper(2),
            Err(Error::Config { option, .. }) if option == "bidirectional"
        ));
        let layer = Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(3, 4).with_num_layers(2), &mut rng)
            .unwrap();
        let mut stepper = layer.stepper(2).unwrap();
        let mut state = stepper.zero_state();
        let wrong_x = Array2::<f32>::zeros((2, 4));
        assert!(matches!(
            stepper.step(wrong_x.view(), &mut state),
            Err(Error::ShapeMismatch { what, .. }) if what == "x"
        ));
        let x = Array2::<f32>::zeros((3, 3));
        assert!(matches!(
            stepper.step(x.view(), &mut state),
            Err(Error::ShapeMismatch { what, .. }) if what == "h_l0"
        ));
        let other = Lstm::<zoo::Lstm<f32>>::new(LstmConfig::new(3, 4), &mut rng).unwrap();
        let mut other_state = other.stepper(2).unwrap().zero_state();
        let x = Array2::<f32>::zeros((2, 3));
        assert!(matches!(
            stepper.step(x.view(), &mut other_state),
            Err(Error::ShapeMismatch { what, .. }) if what == "state"
        ));
        let h0 = Array3::<f32>::zeros((1, 2, 4));
        assert!(matches!(
            stepper.state_from(h0.view(), h0.view()),
            Err(Error::ShapeMismatch { what, .. }) if what == "h0"
        ));
        assert!(matches!(
            layer.stepper(usize::MAX),
            Err(Error::Allocation { .. })
        ));
        assert!(matches!(
            layer.stepper_with_constants(x.view()),
            Err(Error::Config { option, .. }) if option == "constants"
        ));
    }
}
