//! Training on a data set: [`fit`] runs epochs over a [`Dataset`] in batches (shuffled by
//! the seed and the epoch), with the learning rate of a [`Schedule`] after an optional
//! warmup, gradient clipping and Adam, evaluates the validation set after every epoch, keeps
//! the checkpoint of the best epoch (lowest validation loss, or training loss without
//! validation) and stops early after `patience` epochs without improvement.
//!
//! Its checkpoints carry, besides the weights and Adam's state, everything `lstm predict`
//! needs to rebuild the model: the cell, the sizes, the objective and its classes.
//!
//! [`fit_distributed`] is the same fit as one rank of a data-parallel run: each rank trains
//! on its share of every batch's sequences, and one all-reduce per step sums the gradients
//! (see `distributed.rs`).

use std::collections::BTreeMap;

use lstm::checkpoint::Checkpoint;
use lstm::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use lstm::{Cell, Error, Float, LstmConfig, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::data::{Dataset, Objective};
use super::distributed::{self, Collective, DistributedError, FlatStep};
use super::fit_resume;
use super::model::{Evaluation, SequenceModel, ShardShare};
use super::schedule::{LrSchedule, Schedule};
use super::tasks::{Labels, Target};
use super::trainer::LayerOptions;

/// Everything that defines training on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// Hidden units per layer and direction. Default 32.
    pub hidden_size: usize,
    /// Stacked layers. Default 1.
    pub num_layers: usize,
    /// Both directions. Default false.
    pub bidirectional: bool,
    /// Passes over the training set. Default 20.
    pub epochs: usize,
    /// Sequences per step. Default 64.
    pub batch_size: usize,
    /// Adam's base learning rate. Default 0.01.
    pub lr: f64,
    /// The learning rate's course. Default constant.
    pub schedule: Schedule,
    /// Optimizer steps of linear warmup. Default 0.
    pub warmup_steps: u64,
    /// Stop after this many epochs without a better monitored loss. Default none.
    pub patience: Option<usize>,
    /// Gradients are scaled down to this global norm. Default 1.
    pub max_grad_norm: f64,
    /// Seeds the weights, the shuffling and the masks. Default 0.
    pub seed: u64,
    /// Dropout and zoneout inside the recurrence, the initialisation, the heads. Default none
    /// and one head.
    pub layer: LayerOptions,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            hidden_size: 32,
            num_layers: 1,
            bidirectional: false,
            epochs: 20,
            batch_size: 64,
            lr: 0.01,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            patience: None,
            max_grad_norm: 1.0,
            seed: 0,
            layer: LayerOptions::default(),
        }
    }
}

impl FitConfig {
    /// The layer config of a model under this config (before the objective's choices).
    pub fn configure(&self, config: LstmConfig) -> LstmConfig {
        self.layer.apply(
            config
                .with_num_layers(self.num_layers)
                .with_bidirectional(self.bidirectional),
        )
    }

    /// `Ok` if every option can train.
    fn validate(&self) -> Result<()> {
        for (what, value) in [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if value == 0 {
                return Err(Error::invalid_value(what, "0; expected at least 1"));
            }
        }
        for (what, value) in [("lr", self.lr), ("max_grad_norm", self.max_grad_norm)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::invalid_value(
                    what,
                    format!("{value}; expected a positive finite number"),
                ));
            }
        }
        if self.patience == Some(0) {
            return Err(Error::invalid_value(
                "patience",
                "0; expected at least 1 epoch",
            ));
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by counted rows).
    pub train_loss: f64,
    /// Loss on the validation set after the epoch.
    pub val_loss: Option<f64>,
    /// Accuracy on the validation set, for classification.
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

/// A model trained on a data set, with its course.
#[derive(Clone, Debug)]
pub struct Fitted<C: Cell> {
    /// The model after the last epoch.
    pub model: SequenceModel<C>,
    /// The checkpoint of the last epoch.
    pub last: Checkpoint<C::Elem>,
    /// The checkpoint of the best epoch.
    pub best: Checkpoint<C::Elem>,
    /// The best epoch, from 1.
    pub best_epoch: usize,
    /// Every epoch's figures.
    pub epochs: Vec<EpochReport>,
    /// The objective trained for.
    pub objective: Objective,
}

/// Metadata keys of a data run's checkpoint that `lstm predict` reads.
pub mod keys {
    /// The cell's name.
    pub const CELL: &str = "train.cell";
    /// The objective's name.
    pub const OBJECTIVE: &str = "data.objective";
    /// Classes or values per label.
    pub const OUTPUTS: &str = "data.outputs";
    /// Features per step.
    pub const INPUT_SIZE: &str = "data.input_size";
    /// Hidden units.
    pub const HIDDEN_SIZE: &str = "data.hidden_size";
    /// Layers.
    pub const LAYERS: &str = "data.layers";
    /// Directions.
    pub const BIDIRECTIONAL: &str = "data.bidirectional";
    /// The epoch the checkpoint was taken after.
    pub const EPOCH: &str = "data.epoch";
    /// Heads of a block-diagonal recurrence; absent (a checkpoint written before heads
    /// existed) means 1.
    pub const HEADS: &str = "data.heads";
    /// Zoneout rate of `c`.
    pub const ZONEOUT_C: &str = "data.zoneout_c";
    /// Zoneout rate of `h`.
    pub const ZONEOUT_H: &str = "data.zoneout_h";
    /// The settings that shape the run's course, which a resumed run must share.
    pub const TRAJECTORY: &str = "data.trajectory";
    /// Every finished epoch's figures.
    pub const HISTORY: &str = "data.history";
}

/// A data run to continue ([`fit`]): the checkpoints after its last and its best epoch.
#[derive(Clone, Debug)]
pub struct FitResume<F> {
    /// The checkpoint after the last finished epoch: weights, Adam's state, every epoch's
    /// figures.
    pub last: Checkpoint<F>,
    /// The checkpoint after the best epoch so far; needed only when that is not the last
    /// epoch.
    pub best: Option<Checkpoint<F>>,
}

/// What [`fit`] reports after every epoch: the figures, the checkpoint after it, and the
/// checkpoint of a new best epoch (when this one is).
#[derive(Clone, Copy, Debug)]
pub struct EpochEnd<'a, F> {
    /// The epoch's figures.
    pub report: &'a EpochReport,
    /// The checkpoint after this epoch.
    pub last: &'a Checkpoint<F>,
    /// The same checkpoint when this epoch is the best so far, else `None`.
    pub new_best: Option<&'a Checkpoint<F>>,
}

/// Trains a model of cell `C` on `train` under `config`, validating on `validation`, from
/// scratch or continuing `resume` (up to `config.epochs`; a run that early stopping ended
/// stays ended); `on_epoch` sees every epoch's figures and checkpoints as they come (to show
/// progress and save them), and its error stops the fit.
///
/// A resumed run computes what the uninterrupted run would have, bit for bit: each epoch's
/// shuffle and masks depend only on the seed, the epoch and the step.
///
/// # Errors
///
/// [`Error::InvalidValue`] naming the option that cannot train or the data that has no
/// labels; [`Error::InvalidValue`] naming `validation` if its labels do not fit the training
/// set's objective; [`Error::InvalidValue`] naming `checkpoint` or `best checkpoint` if
/// `resume` disagrees with the config, the data or itself; whatever the model reports (a
/// diverged gradient) or `on_epoch` returns.
pub fn fit<C: Cell, E: From<Error>>(
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    validation: Option<&Dataset<C::Elem>>,
    resume: Option<FitResume<C::Elem>>,
    on_epoch: impl FnMut(EpochEnd<'_, C::Elem>) -> std::result::Result<(), E>,
) -> std::result::Result<Fitted<C>, E> {
    let gradients = |model: &mut SequenceModel<C>,
                     rows: &[usize],
                     objective: Objective,
                     step: u64|
     -> std::result::Result<StepGradients<C::Elem>, E> {
        let batch = train.batch(rows, objective);
        model.reseed(mask_seed(config, step));
        let (evaluation, grads) = model.loss_and_gradients(&batch)?;
        Ok((evaluation, grads, counted_rows(&batch.target) as f64))
    };
    fit_with(config, train, validation, resume, 1, gradients, on_epoch)
}

/// [`fit`] as rank `collective.rank()` of a data-parallel run: every rank must call it with
/// the same arguments (the same data, every rank reads its own copy). Each rank computes
/// the loss and gradients of its contiguous share of each batch's sequences
/// ([`shard_range`](super::shard_range)), one all-reduce sums them, and every rank takes the
/// same step, so the weights stay identical and the course is that of [`fit`] on one
/// process up to rounding (dropout masks apart: each rank draws its own). Every rank
/// evaluates the validation set (the schedule and early stopping need its loss); `on_epoch`
/// runs on every rank, and the caller lets one of them write.
///
/// The checkpoints record the number of ranks, and a run resumes on as many.
///
/// # Errors
///
/// As [`fit`], [`DistributedError::BatchTooSmall`] if a batch has fewer sequences than
/// there are ranks, and a failed all-reduce.
pub fn fit_distributed<C: Cell, E: From<Error> + From<DistributedError>>(
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    validation: Option<&Dataset<C::Elem>>,
    resume: Option<FitResume<C::Elem>>,
    collective: &dyn Collective,
    on_epoch: impl FnMut(EpochEnd<'_, C::Elem>) -> std::result::Result<(), E>,
) -> std::result::Result<Fitted<C>, E> {
    let ranks = collective.size();
    // The last batch of an epoch is the smallest.
    let smallest = match train.len() % config.batch_size.max(1) {
        0 => config.batch_size.min(train.len()),
        rest => rest,
    };
    if smallest < ranks {
        return Err(DistributedError::BatchTooSmall {
            batch_size: smallest,
            ranks,
        }
        .into());
    }
    let rank = collective.rank();
    let gradients = |model: &mut SequenceModel<C>,
                     rows: &[usize],
                     objective: Objective,
                     step: u64|
     -> std::result::Result<StepGradients<C::Elem>, E> {
        let range = distributed::shard_range(rows.len(), ranks, rank);
        let total = counted_rows(&train.batch(rows, objective).target) as f64;
        let shard = train.batch(&rows[range.clone()], objective);
        let share = ShardShare {
            loss: counted_rows(&shard.target) as f64 / total.max(1.0),
            sequences: range.len() as f64 / rows.len() as f64,
        };
        model.reseed(distributed::mask_seed(mask_seed(config, step), rank));
        let (evaluation, grads) = model.shard_loss_and_gradients(&shard, share)?;
        let has_accuracy = evaluation.accuracy.is_some();
        let mut flat = FlatStep::pack(grads, evaluation.loss, evaluation.accuracy);
        flat.sum_over(collective)?;
        let (mut grads, mut loss, accuracy) = flat.unpack(has_accuracy);
        loss += model.add_weight_penalties(&mut grads)?;
        Ok((Evaluation { loss, accuracy }, grads, total))
    };
    fit_with(
        config, train, validation, resume, ranks, gradients, on_epoch,
    )
}

/// The seed of the masks of step `step` (a step of one process, or rank 0's).
fn mask_seed(config: &FitConfig, step: u64) -> u64 {
    config
        .seed
        .wrapping_add(step)
        .wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The loss and gradients of one step on the training rows `rows` (with the model's masks
/// seeded for step `step`), and the rows the loss counts.
type StepGradients<F> = (Evaluation, lstm::Gradients<F>, f64);

/// [`fit`] with the gradients of each step from `gradients`, on `ranks` ranks.
fn fit_with<C: Cell, E: From<Error>>(
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    validation: Option<&Dataset<C::Elem>>,
    resume: Option<FitResume<C::Elem>>,
    ranks: usize,
    mut gradients: impl FnMut(
        &mut SequenceModel<C>,
        &[usize],
        Objective,
        u64,
    ) -> std::result::Result<StepGradients<C::Elem>, E>,
    mut on_epoch: impl FnMut(EpochEnd<'_, C::Elem>) -> std::result::Result<(), E>,
) -> std::result::Result<Fitted<C>, E> {
    config.validate()?;
    let objective = train
        .objective()
        .ok_or_else(|| Error::invalid_value("y", "the training data has no labels"))?;
    if let Some(validation) = validation {
        check_validation(train, validation, objective)?;
    }
    let mut model = SequenceModel::<C>::for_objective(
        train.input_size(),
        objective,
        config.hidden_size,
        config.seed,
        |layer| config.configure(layer),
    )?;
    lstm::Lstm::<C>::check_training_memory(
        model.lstm().config(),
        train.seq_len(),
        config.batch_size.min(train.len()),
    )?;
    let mut optimizer = Adam::<C::Elem>::new(AdamConfig::adam().with_lr(config.lr))?;
    let steps_per_epoch = train.len().div_ceil(config.batch_size) as u64;
    let mut schedule = LrSchedule::new(
        config.schedule,
        config.lr,
        config.warmup_steps,
        config.epochs,
        steps_per_epoch,
    );
    let mut trajectory =
        fit_resume::trajectory(config, train.len(), validation.map(Dataset::len), objective);
    if ranks > 1 {
        // A resumed run must split its batches the same way.
        trajectory.push_str(&format!(", ranks {ranks}"));
    }
    let mut step = 0u64;
    let mut epochs = Vec::new();
    let mut best: Option<(f64, usize, Checkpoint<C::Elem>)> = None;
    if let Some(FitResume {
        last,
        best: best_checkpoint,
    }) = resume
    {
        let resumed = fit_resume::check(
            &last,
            best_checkpoint.as_ref(),
            C::SPEC.name,
            &trajectory,
            steps_per_epoch,
            config.epochs,
        )?;
        last.restore_model(&mut model)?;
        optimizer.load_state(last.optimizer.clone())?;
        step = last.step;
        for epoch in &resumed.epochs {
            schedule.end_epoch(fit_resume::monitored(epoch));
        }
        let (loss, best_epoch) = resumed.best;
        let best_checkpoint = match best_checkpoint {
            Some(checkpoint) if best_epoch < resumed.epochs.len() => checkpoint,
            _ => last,
        };
        epochs = resumed.epochs;
        best = Some((loss, best_epoch, best_checkpoint));
    }
    let stop_early = |epochs_done: usize, best_epoch: usize| {
        config
            .patience
            .is_some_and(|patience| epochs_done - best_epoch >= patience)
    };
    let resumed_epochs = epochs.len();
    let checkpoint = |model: &SequenceModel<C>, optimizer: &Adam<C::Elem>, step, epochs: &[_]| {
        checkpoint_of(
            model,
            optimizer,
            step,
            config,
            train,
            objective,
            epochs,
            &trajectory,
        )
    };
    // The checkpoint of the last epoch this call ran, if it ran any.
    let mut last_run = None;
    for epoch in resumed_epochs..config.epochs {
        if best
            .as_ref()
            .is_some_and(|(_, best_epoch, _)| stop_early(epoch, *best_epoch))
        {
            break;
        }
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ));
        let (mut loss_sum, mut rows_sum) = (0.0, 0.0);
        let mut lr = config.lr;
        for rows in order.chunks(config.batch_size) {
            let (evaluation, mut grads, weight) = gradients(&mut model, rows, objective, step)?;
            clip_grad_norm(&mut grads, config.max_grad_norm)?;
            lr = schedule.lr(step, epoch);
            optimizer.set_learning_rate(lr);
            optimizer.step(&mut model, &grads)?;
            model.apply_constraints();
            loss_sum += evaluation.loss * weight;
            rows_sum += weight;
            step += 1;
        }
        let train_loss = loss_sum / rows_sum.max(1.0);
        let val = match validation {
            Some(validation) => Some(evaluate(
                &mut model,
                validation,
                objective,
                config.batch_size,
            )?),
            None => None,
        };
        let monitored = val.map_or(train_loss, |val| val.loss);
        schedule.end_epoch(monitored);
        let report = EpochReport {
            epoch: epoch + 1,
            train_loss,
            val_loss: val.map(|val| val.loss),
            val_accuracy: val.and_then(|val| val.accuracy),
            lr,
        };
        epochs.push(report);
        let last = checkpoint(&model, &optimizer, step, &epochs);
        let improved = best.as_ref().is_none_or(|(loss, _, _)| monitored < *loss);
        if improved {
            best = Some((monitored, epoch + 1, last.clone()));
        }
        on_epoch(EpochEnd {
            report: &report,
            last: &last,
            new_best: improved.then_some(&last),
        })?;
        last_run = Some(last);
    }
    let last = match last_run {
        Some(last) => last,
        // A resumed run with nothing left to do: the state it was resumed in.
        None => checkpoint(&model, &optimizer, step, &epochs),
    };
    // At least one epoch ran (`epochs` ≥ 1), and the first always improves on nothing.
    let (_, best_epoch, best) = best.ok_or_else(|| Error::invalid_value("epochs", "0"))?;
    Ok(Fitted {
        model,
        last,
        best,
        best_epoch,
        epochs,
        objective,
    })
}

/// The loss (and accuracy) of `model` on all of `data`, in batches of `batch_size`, each
/// weighted by the rows it counts: the same mean as one batch of everything.
///
/// # Errors
///
/// Whatever the model reports.
pub fn evaluate<C: Cell>(
    model: &mut SequenceModel<C>,
    data: &Dataset<C::Elem>,
    objective: Objective,
    batch_size: usize,
) -> Result<Evaluation> {
    let (mut loss, mut correct, mut rows) = (0.0, 0.0, 0.0);
    let order: Vec<usize> = (0..data.len()).collect();
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = data.batch(chunk, objective);
        let weight = counted_rows(&batch.target) as f64;
        if weight == 0.0 {
            continue;
        }
        let evaluation = model.evaluate(&batch)?;
        loss += evaluation.loss * weight;
        correct += evaluation.accuracy.unwrap_or(0.0) * weight;
        rows += weight;
    }
    let rows = rows.max(1.0);
    Ok(Evaluation {
        loss: loss / rows,
        accuracy: objective.is_classification().then_some(correct / rows),
    })
}

/// Rows of a batch's target that count in its loss.
fn counted_rows<F>(target: &Target<F>) -> usize {
    match target {
        Target::Rows {
            counted: Some(counted),
            ..
        } => counted.iter().filter(|&&counted| counted).count(),
        Target::Rows {
            labels: Labels::Classes(classes),
            ..
        } => classes.len(),
        Target::Rows {
            labels: Labels::Values(values),
            ..
        } => values.nrows(),
        Target::LastValue(values) => values.nrows(),
        Target::StepClasses { lengths, .. } => lengths.iter().sum(),
    }
}

/// `Ok` if the validation set fits the training set's model and objective.
fn check_validation<F: Float>(
    train: &Dataset<F>,
    validation: &Dataset<F>,
    objective: Objective,
) -> Result<()> {
    if validation.input_size() != train.input_size() {
        return Err(Error::invalid_value(
            "validation x",
            format!(
                "{} features per step; the training data has {}",
                validation.input_size(),
                train.input_size()
            ),
        ));
    }
    let found = validation
        .objective()
        .ok_or_else(|| Error::invalid_value("validation y", "the validation data has no labels"))?;
    let fits = match (objective, found) {
        (
            Objective::SequenceClassification { classes },
            Objective::SequenceClassification { classes: found },
        )
        | (
            Objective::StepClassification { classes },
            Objective::StepClassification { classes: found },
        ) => found <= classes,
        (a, b) => a == b,
    };
    if fits {
        Ok(())
    } else {
        Err(Error::invalid_value(
            "validation y",
            format!(
                "its labels ask for {} with {} outputs; the training data's for {} with {}",
                found.name(),
                found.output_size(),
                objective.name(),
                objective.output_size()
            ),
        ))
    }
}

/// The checkpoint of a data run so far.
#[allow(clippy::too_many_arguments)]
fn checkpoint_of<C: Cell>(
    model: &SequenceModel<C>,
    optimizer: &Adam<C::Elem>,
    step: u64,
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    objective: Objective,
    epochs: &[EpochReport],
    trajectory: &str,
) -> Checkpoint<C::Elem> {
    let mut checkpoint = Checkpoint::capture(model, optimizer, step, config.seed);
    let entries: BTreeMap<String, String> = [
        (keys::CELL, C::SPEC.name.to_string()),
        (keys::OBJECTIVE, objective.name().to_string()),
        (keys::OUTPUTS, objective.output_size().to_string()),
        (keys::INPUT_SIZE, train.input_size().to_string()),
        (keys::HIDDEN_SIZE, config.hidden_size.to_string()),
        (keys::LAYERS, config.num_layers.to_string()),
        (keys::BIDIRECTIONAL, config.bidirectional.to_string()),
        (keys::HEADS, config.layer.heads.to_string()),
        (keys::EPOCH, epochs.len().to_string()),
        (keys::TRAJECTORY, trajectory.to_string()),
        (keys::HISTORY, fit_resume::encode_history(epochs)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    checkpoint.metadata = entries;
    // Zoneout changes inference (it runs on its expectation); the other options do not.
    for (key, rate) in [
        (keys::ZONEOUT_C, config.layer.zoneout_c),
        (keys::ZONEOUT_H, config.layer.zoneout_h),
    ] {
        checkpoint.metadata.insert(key.into(), rate.to_string());
    }
    checkpoint
}
