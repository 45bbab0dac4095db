//! [`SequenceModel`]: what the trainer trains, a recurrent layer ([`Lstm`] of any cell)
//! followed by a [`Linear`] head, with the forward pass, the loss and the backward pass of one
//! batch wired together.
//!
//! The head reads what the task asks for: the last step's output for the adding problem (the
//! layer is configured with `return_sequences = false`), every step's output for parity (the
//! head runs on all `seq_len · batch` outputs as one matrix, and the loss counts each
//! sequence's own steps only).

use lstm::loss::{accuracy, cross_entropy, mse, sequence_accuracy, sequence_cross_entropy};
use lstm::ndarray::{Array2, Array3, ArrayView2, ArrayViewD, ArrayViewMutD};
use lstm::{
    Call, Cell, Error, Float, Gradients, Linear, Lstm, LstmConfig, OutputGrad, Parameters, Result,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::data::Objective;
use super::tasks::{Batch, Labels, Target, Task};

/// Name prefix of the recurrent layer's tensors (`lstm.weight_ih_l0`).
const LSTM_PREFIX: &str = "lstm.";
/// Name prefix of the head's tensors (`head.weight`).
const HEAD_PREFIX: &str = "head.";

/// A recurrent layer and a linear head on its outputs.
#[derive(Clone, Debug)]
pub struct SequenceModel<C: Cell> {
    lstm: Lstm<C>,
    head: Linear<C::Elem>,
}

/// A rank's shard's part of the global batch of a data-parallel step: the weights that make
/// the sum of every shard's loss the loss of the whole batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShardShare {
    /// The shard's part of the rows the loss averages over (sequences for the adding
    /// problem, valid steps for parity).
    pub loss: f64,
    /// The shard's part of the batch's sequences (what activity penalties average over).
    pub sequences: f64,
}

/// How well a model does on a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// The task's loss (MSE or cross-entropy), in `f64`.
    pub loss: f64,
    /// The fraction of correctly classified steps, for classification tasks.
    pub accuracy: Option<f64>,
}

impl<C: Cell> SequenceModel<C> {
    /// A freshly initialised model for `task` with `hidden_size` units, its weights drawn
    /// from a generator seeded with `seed` (the layer's first, then the head's).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the cell cannot run in a plain one-layer [`Lstm`] (a cell that
    /// needs constants), or `hidden_size` is 0.
    pub fn new(task: &Task, hidden_size: usize, seed: u64) -> Result<Self> {
        Self::with_layer_config(task, hidden_size, seed, |config| config)
    }

    /// As [`SequenceModel::new`], with the layer's config passed through `configure` before
    /// the layer is made: to add regularizers, constraints or a bias init. The sizes,
    /// `return_sequences` and the layout must stay as they are (the head reads them).
    ///
    /// # Errors
    ///
    /// As [`SequenceModel::new`], and whatever [`Lstm::new`] reports for the configured
    /// config.
    pub fn with_layer_config(
        task: &Task,
        hidden_size: usize,
        seed: u64,
        configure: impl FnOnce(LstmConfig) -> LstmConfig,
    ) -> Result<Self> {
        task.validate()?;
        let config = LstmConfig::new(task.input_size(), hidden_size)
            .with_return_sequences(matches!(task, Task::Parity { .. }))
            .with_return_state(false)
            .with_seed(seed);
        let config = configure(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lstm = Lstm::new(config, &mut rng)?;
        let head = Linear::new(hidden_size, task.output_size(), &mut rng);
        Ok(SequenceModel { lstm, head })
    }

    /// A freshly initialised model for a data set's `objective` on sequences of `input_size`
    /// features: the layer (configured by `configure`, which may add layers, directions and
    /// regularisers) returns every step for a per-step objective and each sequence's last
    /// valid step otherwise, and the head maps its merged output to the objective's classes
    /// or values. Weights are drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    ///
    /// Whatever [`Lstm::new`] reports for the configured config.
    pub fn for_objective(
        input_size: usize,
        objective: Objective,
        hidden_size: usize,
        seed: u64,
        configure: impl FnOnce(LstmConfig) -> LstmConfig,
    ) -> Result<Self> {
        let config = LstmConfig::new(input_size, hidden_size)
            .with_return_sequences(objective.per_step())
            .with_return_state(false)
            .with_seed(seed);
        let config = configure(config);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let width = config.merged_size();
        let lstm = Lstm::new(config, &mut rng)?;
        let head = Linear::new(width, objective.output_size(), &mut rng);
        Ok(SequenceModel { lstm, head })
    }

    /// The recurrent layer.
    pub fn lstm(&self) -> &Lstm<C> {
        &self.lstm
    }

    /// The head.
    pub fn head(&self) -> &Linear<C::Elem> {
        &self.head
    }

    /// The loss on `batch` and its gradient with respect to every parameter (named as
    /// [`Parameters`] names them: `lstm.weight_ih_l0`, `head.bias`, …). The loss includes the
    /// layer's weight and activity penalties, if its config has regularizers, as Keras' `fit`
    /// adds `model.losses` to the loss it reports and differentiates.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] if the batch does not fit the model (another task's batch),
    /// or whatever the layer reports for it.
    pub fn loss_and_gradients(
        &mut self,
        batch: &Batch<C::Elem>,
    ) -> Result<(Evaluation, Gradients<C::Elem>)> {
        let (mut evaluation, activity_penalty, mut grads) =
            self.batch_loss_and_gradients(batch, None)?;
        let weight_penalty = self.add_weight_penalties(&mut grads)?;
        evaluation.loss += activity_penalty + weight_penalty;
        Ok((evaluation, grads))
    }

    /// One rank's part of a step of data-parallel training: the loss of its `shard` of the
    /// global batch and the gradients, both scaled by the shard's `share` of the global batch,
    /// so that the sum over all ranks' shards is the loss and gradients of the whole batch.
    /// The layer's weight penalties are left out: they belong to the weights, not to a
    /// shard, and are added once to the summed gradients ([`SequenceModel::add_weight_penalties`]).
    ///
    /// # Errors
    ///
    /// As [`SequenceModel::loss_and_gradients`].
    pub fn shard_loss_and_gradients(
        &mut self,
        shard: &Batch<C::Elem>,
        share: ShardShare,
    ) -> Result<(Evaluation, Gradients<C::Elem>)> {
        let (evaluation, activity_penalty, grads) =
            self.batch_loss_and_gradients(shard, Some(share))?;
        let evaluation = Evaluation {
            loss: evaluation.loss * share.loss + activity_penalty * share.sequences,
            accuracy: evaluation.accuracy.map(|accuracy| accuracy * share.loss),
        };
        Ok((evaluation, grads))
    }

    /// Adds the gradients of the layer's weight penalties into `grads` (named as
    /// [`SequenceModel::loss_and_gradients`] names them) and returns the penalty, 0 without
    /// weight regularizers.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming a gradient in `grads` shaped unlike its parameter.
    pub fn add_weight_penalties(&self, grads: &mut Gradients<C::Elem>) -> Result<f64> {
        let names: Vec<String> = grads
            .iter()
            .filter(|(name, _)| name.starts_with(LSTM_PREFIX))
            .map(|(name, _)| name.to_string())
            .collect();
        let mut layer_grads = Gradients::new();
        for name in names {
            if let Some(values) = grads.remove(&name) {
                layer_grads.insert(&name[LSTM_PREFIX.len()..], values);
            }
        }
        let added = self.lstm.add_regularization_gradients(&mut layer_grads);
        // Put back whatever happened, so an error leaves `grads` whole.
        grads.extend_prefixed(LSTM_PREFIX, layer_grads);
        added?;
        Ok(self.lstm.regularization_loss())
    }

    /// The task's loss on `batch`, the layer's activity penalty, and the gradients of their
    /// sum (without the weight penalties); with a `share`, the gradients of the loss are
    /// scaled by `share.loss` and those of the penalty by `share.sequences` before the
    /// backward pass (the returned loss and penalty are not scaled).
    fn batch_loss_and_gradients(
        &mut self,
        batch: &Batch<C::Elem>,
        share: Option<ShardShare>,
    ) -> Result<(Evaluation, f64, Gradients<C::Elem>)> {
        let call = self.call(batch);
        let (output, tape) = self.lstm.forward_train(batch.input.view(), call)?;
        let features = self.features(output.output.view())?;
        let logits = self.head.forward(features.view())?;
        let (evaluation, mut grad_logits) = score_with_gradient(logits, &batch.target)?;
        if let Some(share) = share {
            let factor = C::Elem::of(share.loss);
            grad_logits.mapv_inplace(|value| value * factor);
        }
        let mut head_grads = self.head.backward(features.view(), grad_logits.view())?;
        let grad_features = head_grads
            .remove("input")
            // `Linear::backward` always returns the input's gradient.
            .ok_or_else(|| Error::MissingTensor {
                name: "input".into(),
                source_name: "the head's gradients".into(),
            })?;
        let grad_shape = grad_features.shape().to_vec();
        let mut grad_output = grad_features
            .into_shape_with_order(output.output.shape())
            // The features are the layer's output with the time axis folded into the rows,
            // so their gradient unfolds back.
            .map_err(|_| {
                Error::shape_mismatch("grad output", output.output.shape(), &grad_shape)
            })?;
        let (activity_penalty, mut activity_grad) = self.lstm.activity_regularization(&output);
        if let Some(share) = share {
            // The penalty is a mean over the shard's sequences; its share of the whole
            // batch's mean is the shard's share of the sequences.
            let factor = C::Elem::of(share.sequences);
            activity_grad.output.mapv_inplace(|value| value * factor);
            for state in [&mut activity_grad.h_n, &mut activity_grad.c_n]
                .into_iter()
                .flatten()
            {
                state.mapv_inplace(|value| value * factor);
            }
        }
        // Both are shaped like the layer's output.
        grad_output += &activity_grad.output;
        let lstm_grads = self.lstm.backward(
            tape,
            OutputGrad {
                output: Some(grad_output.view()),
                h_n: activity_grad.h_n.as_ref().map(|grad| grad.view()),
                c_n: activity_grad.c_n.as_ref().map(|grad| grad.view()),
                ..OutputGrad::default()
            },
        )?;
        let mut grads = Gradients::new();
        grads.extend_prefixed(LSTM_PREFIX, lstm_grads.params);
        grads.extend_prefixed(HEAD_PREFIX, head_grads);
        Ok((evaluation, activity_penalty, grads))
    }

    /// The loss (and accuracy) on `batch`, in inference mode: the task's loss alone, without
    /// the penalties [`SequenceModel::loss_and_gradients`] adds.
    ///
    /// # Errors
    ///
    /// As [`SequenceModel::loss_and_gradients`].
    pub fn evaluate(&mut self, batch: &Batch<C::Elem>) -> Result<Evaluation> {
        let call = self.call(batch);
        let output = self
            .lstm
            .forward(batch.input.view(), call.with_training(false))?;
        let features = self.features(output.output.view())?;
        let logits = self.head.forward(features.view())?;
        score(logits, &batch.target)
    }

    /// The head's output on `batch` in inference mode, one row per sequence (or per step,
    /// time-major: row `t · batch + b`): logits for classification, values for regression.
    ///
    /// # Errors
    ///
    /// As [`SequenceModel::evaluate`].
    pub fn predict(&mut self, batch: &Batch<C::Elem>) -> Result<Array2<C::Elem>> {
        let call = self.call(batch);
        let output = self
            .lstm
            .forward(batch.input.view(), call.with_training(false))?;
        let features = self.features(output.output.view())?;
        self.head.forward(features.view())
    }

    /// Applies the layer's weight constraints (Keras applies them after every optimizer
    /// step); nothing without constraints.
    pub fn apply_constraints(&mut self) {
        self.lstm.apply_constraints();
    }

    /// Restarts the layer's mask generator from `seed` (see [`Lstm::reseed`]).
    pub fn reseed(&mut self, seed: u64) {
        self.lstm.reseed(seed);
    }

    /// The layer's training call for `batch`: its lengths, if it has them, and training mode
    /// (the layer's dropout and zoneout draw masks; `evaluate` turns it off).
    fn call<'a>(&self, batch: &'a Batch<C::Elem>) -> Call<'a, C::Elem> {
        let call = Call::new().with_training(true);
        match &batch.target {
            Target::StepClasses { lengths, .. } => call.with_lengths(lengths),
            Target::Rows {
                lengths: Some(lengths),
                ..
            } => call.with_lengths(lengths),
            Target::Rows {
                mask: Some(mask), ..
            } => call.with_mask(mask.view()),
            Target::LastValue(_) | Target::Rows { .. } => call,
        }
    }

    /// The layer's output as rows for the head: `(batch, hidden)` as it is, or
    /// `(seq_len, batch, hidden)` folded into `(seq_len · batch, hidden)`.
    fn features(&self, output: ArrayViewD<'_, C::Elem>) -> Result<Array2<C::Elem>> {
        let hidden = self.head.in_features();
        let rows = output.len() / hidden.max(1);
        let shape = output.shape().to_vec();
        output
            .to_shape((rows, hidden))
            .map(|rows| rows.into_owned())
            .map_err(|_| Error::shape_mismatch("output", &[rows, hidden], &shape))
    }
}

/// The loss and accuracy of `logits` (or predictions) against `target`.
fn score<F: Float>(logits: Array2<F>, target: &Target<F>) -> Result<Evaluation> {
    score_with_gradient(logits, target).map(|(evaluation, _)| evaluation)
}

/// The loss and accuracy of `logits` against `target`, and the loss's gradient with respect
/// to `logits` (same shape).
fn score_with_gradient<F: Float>(
    logits: Array2<F>,
    target: &Target<F>,
) -> Result<(Evaluation, Array2<F>)> {
    match target {
        Target::LastValue(values) => {
            let (loss, grad) = mse(logits.view(), values.view())?;
            let evaluation = Evaluation {
                loss: loss.to_f64_lossy(),
                accuracy: None,
            };
            Ok((evaluation, grad))
        }
        Target::Rows {
            labels: Labels::Classes(classes),
            counted,
            ..
        } => {
            let (loss, grad) = cross_entropy(logits.view(), classes, counted.as_deref())?;
            let accuracy = accuracy(logits.view(), classes, counted.as_deref())?;
            let evaluation = Evaluation {
                loss: loss.to_f64_lossy(),
                accuracy: Some(accuracy),
            };
            Ok((evaluation, grad))
        }
        Target::Rows {
            labels: Labels::Values(values),
            counted,
            ..
        } => {
            let (loss, grad) = match counted {
                Some(counted) => counted_mse(logits.view(), values.view(), counted)?,
                None => mse(logits.view(), values.view())?,
            };
            let evaluation = Evaluation {
                loss: loss.to_f64_lossy(),
                accuracy: None,
            };
            Ok((evaluation, grad))
        }
        Target::StepClasses { classes, lengths } => {
            let logits = unfold_steps(logits.view(), classes.dim())?;
            let (loss, grad) =
                sequence_cross_entropy(logits.view(), classes.view(), Some(lengths))?;
            let accuracy = sequence_accuracy(logits.view(), classes.view(), Some(lengths))?;
            let evaluation = Evaluation {
                loss: loss.to_f64_lossy(),
                accuracy: Some(accuracy),
            };
            let (seq_len, batch, classes) = grad.dim();
            let grad = grad
                .into_shape_with_order((seq_len * batch, classes))
                // `sequence_cross_entropy` returns a standard-layout array: it folds.
                .map_err(|_| {
                    Error::shape_mismatch("grad logits", &[seq_len * batch, classes], &[])
                })?;
            Ok((evaluation, grad))
        }
    }
}

/// PyTorch's `MSELoss` (mean reduction) over the rows where `counted` is set, and its
/// gradient (zero at the other rows): the per-step regression loss of padded sequences.
fn counted_mse<F: Float>(
    prediction: ArrayView2<'_, F>,
    target: ArrayView2<'_, F>,
    counted: &[bool],
) -> Result<(F, Array2<F>)> {
    if prediction.shape() != target.shape() {
        return Err(Error::shape_mismatch(
            "target",
            prediction.shape(),
            target.shape(),
        ));
    }
    if counted.len() != prediction.nrows() {
        return Err(Error::shape_mismatch(
            "counted",
            &[prediction.nrows()],
            &[counted.len()],
        ));
    }
    let rows = counted.iter().filter(|&&counted| counted).count();
    if rows == 0 {
        return Err(Error::invalid_value(
            "mask",
            "no step of the batch is valid; a mean needs at least one",
        ));
    }
    let elements = F::of((rows * prediction.ncols()) as f64);
    let mut grad = Array2::zeros(prediction.raw_dim());
    let mut sum = F::zero();
    for (row, &counted) in counted.iter().enumerate() {
        if !counted {
            continue;
        }
        for column in 0..prediction.ncols() {
            let difference = prediction[[row, column]] - target[[row, column]];
            sum += difference * difference;
            grad[[row, column]] = F::of(2.0) * difference / elements;
        }
    }
    Ok((sum / elements, grad))
}

/// Rows of logits, `(seq_len · batch, classes)`, as time-major sequences.
fn unfold_steps<F: Float>(
    logits: ArrayView2<'_, F>,
    (seq_len, batch): (usize, usize),
) -> Result<Array3<F>> {
    let classes = logits.ncols();
    let steps = logits.to_shape((seq_len, batch, classes)).map_err(|_| {
        Error::shape_mismatch("logits", &[seq_len * batch, classes], logits.shape())
    })?;
    Ok(steps.into_owned())
}

impl<C: Cell> Parameters<C::Elem> for SequenceModel<C> {
    fn visit_parameters(&self, visitor: &mut dyn FnMut(&str, ArrayViewD<'_, C::Elem>)) {
        self.lstm
            .visit_parameters(&mut |name, values| visitor(&format!("{LSTM_PREFIX}{name}"), values));
        self.head
            .visit_parameters(&mut |name, values| visitor(&format!("{HEAD_PREFIX}{name}"), values));
    }

    fn visit_parameters_mut(&mut self, visitor: &mut dyn FnMut(&str, ArrayViewMutD<'_, C::Elem>)) {
        self.lstm.visit_parameters_mut(&mut |name, values| {
            visitor(&format!("{LSTM_PREFIX}{name}"), values)
        });
        self.head.visit_parameters_mut(&mut |name, values| {
            visitor(&format!("{HEAD_PREFIX}{name}"), values)
        });
    }
}

#[cfg(test)]
mod tests {
    use lstm::ndarray::{Array2, array};

    use super::*;

    #[test]
    fn counted_mse_is_the_mse_of_the_counted_rows() {
        let prediction = array![[1.0, 2.0], [3.0, -1.0], [0.5, 0.25], [4.0, 4.0]];
        let target = array![[0.0, 2.5], [9.0, 9.0], [1.0, -0.75], [9.0, 9.0]];
        let counted = [true, false, true, false];
        let (loss, grad) = counted_mse(prediction.view(), target.view(), &counted).unwrap();
        // The reference: `mse` on the counted rows alone, zeros elsewhere.
        let rows = [0, 2];
        let (expected, expected_grad) = mse(
            prediction.select(lstm::ndarray::Axis(0), &rows).view(),
            target.select(lstm::ndarray::Axis(0), &rows).view(),
        )
        .unwrap();
        assert_eq!(loss, expected);
        let mut full = Array2::zeros((4, 2));
        for (index, &row) in rows.iter().enumerate() {
            full.row_mut(row).assign(&expected_grad.row(index));
        }
        assert_eq!(grad, full);
        assert!(counted_mse(prediction.view(), target.view(), &[false; 4]).is_err());
    }
}
