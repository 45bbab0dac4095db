//! [`Trainer`]: the training loop of one model on one task, one step at a time. A step draws
//! the step's batch (a function of the seed and the step number alone), runs forward and
//! backward (with the config's penalties in the loss and gradients), clips the gradients by
//! their global norm, lets Adam update the weights and applies the config's constraints.
//!
//! Everything that shapes the next step is in the [`Checkpoint`] the trainer writes (weights,
//! Adam's moments and step, the seed, the loss curve so far), so a trainer rebuilt from a
//! checkpoint ([`Trainer::resume`]) continues with exactly the losses the uninterrupted run
//! would have had.

use std::collections::BTreeMap;

use lstm::checkpoint::Checkpoint;
use lstm::optim::{Adam, AdamConfig, Optimizer, clip_grad_norm};
use lstm::rand::Rng;
use lstm::{
    Cell, Constraints, Error, Float, Framework, LstmConfig, Parameters, Regularizers, Result,
};

use super::distributed::{self, Collective, DistributedError, FlatStep};
use super::model::{Evaluation, SequenceModel};
use super::tasks::{Task, eval_rng, train_rng};

/// Everything that defines a training run. Two runs with equal configs produce the same
/// losses, bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The task and its size. Default: the adding problem at 50 steps.
    pub task: Task,
    /// Hidden units of the recurrent layer. Default 32.
    pub hidden_size: usize,
    /// Sequences per step. Default 64.
    pub batch_size: usize,
    /// Optimizer steps of the whole run. Default 2000.
    pub steps: u64,
    /// Adam's learning rate. Default `0.01`.
    pub lr: f64,
    /// Gradients are scaled down to this global norm when above it (PyTorch
    /// `clip_grad_norm_`). Default 1.
    pub max_grad_norm: f64,
    /// Seeds the weights and every batch. Default 0.
    pub seed: u64,
    /// Held-out batches [`Trainer::evaluate`] averages over. Default 4.
    pub eval_batches: u64,
    /// Penalties on the recurrent layer's weights and outputs (Keras' `*_regularizer`),
    /// added to each step's loss and gradients before clipping. Default none.
    pub regularizers: Regularizers,
    /// Constraints on the recurrent layer's weights (Keras' `*_constraint`), applied after
    /// every optimizer step. Default none.
    pub constraints: Constraints,
    /// Dropout and zoneout inside the recurrence, the initialisation, the heads. Default none
    /// and one head.
    pub layer: LayerOptions,
}

/// The layer options of a training run besides its size: the regularisers inside the
/// recurrence ([`LstmConfig::input_dropout`] and the rest, Keras and paper names there), the
/// initialisation ([`LstmConfig::chrono_t_max`], [`LstmConfig::init`]) and the heads of the
/// recurrence ([`LstmConfig::heads`]).
#[derive(Clone, Copy, PartialEq)]
pub struct LayerOptions {
    /// Keras `dropout` on the layer's input.
    pub input_dropout: f64,
    /// Keras `recurrent_dropout` on `h_prev`.
    pub recurrent_dropout: f64,
    /// DropConnect on `weight_hh` (AWD-LSTM).
    pub weight_drop: f64,
    /// Zoneout rate of `c`.
    pub zoneout_c: f64,
    /// Zoneout rate of `h`.
    pub zoneout_h: f64,
    /// Chrono initialisation's `T_max`, if any.
    pub chrono_t_max: Option<f64>,
    /// Whose initialisation the layer's weights follow ([`LstmConfig::with_framework_init`]):
    /// PyTorch's (the default), Keras' or Flax's. The output head keeps PyTorch's `nn.Linear`
    /// init.
    pub init: Framework,
    /// Heads of a block-diagonal recurrence ([`LstmConfig::heads`]); 1 is a dense one.
    pub heads: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            input_dropout: 0.0,
            recurrent_dropout: 0.0,
            weight_drop: 0.0,
            zoneout_c: 0.0,
            zoneout_h: 0.0,
            chrono_t_max: None,
            init: Framework::default(),
            heads: 1,
        }
    }
}

/// Checkpoints record a run's options as this text and resume only under the same text, so
/// `heads` appears only when it is not 1: runs recorded before it existed still resume.
impl std::fmt::Debug for LayerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut options = f.debug_struct("LayerOptions");
        options
            .field("input_dropout", &self.input_dropout)
            .field("recurrent_dropout", &self.recurrent_dropout)
            .field("weight_drop", &self.weight_drop)
            .field("zoneout_c", &self.zoneout_c)
            .field("zoneout_h", &self.zoneout_h)
            .field("chrono_t_max", &self.chrono_t_max)
            .field("init", &self.init);
        if self.heads != 1 {
            options.field("heads", &self.heads);
        }
        options.finish()
    }
}

impl LayerOptions {
    /// `config` with these options.
    pub fn apply(&self, config: LstmConfig) -> LstmConfig {
        config
            .with_heads(self.heads)
            .with_framework_init(self.init)
            .with_input_dropout(self.input_dropout)
            .with_recurrent_dropout(self.recurrent_dropout)
            .with_weight_drop(self.weight_drop)
            .with_zoneout(self.zoneout_c, self.zoneout_h)
            .with_chrono_t_max(self.chrono_t_max)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: Task::adding(50),
            hidden_size: 32,
            batch_size: 64,
            steps: 2000,
            lr: 0.01,
            max_grad_norm: 1.0,
            seed: 0,
            eval_batches: 4,
            regularizers: Regularizers::new(),
            constraints: Constraints::new(),
            layer: LayerOptions::default(),
        }
    }
}

impl TrainConfig {
    /// The settings a checkpoint must share with a config to be resumed under it: all but
    /// `steps` (a resumed run may go on longer) and `eval_batches` (evaluation does not touch
    /// the training trajectory).
    ///
    /// Regularizers and constraints are recorded only when set, so checkpoints of runs
    /// without them look as they always have.
    fn trajectory_metadata(&self) -> BTreeMap<String, String> {
        let mut metadata: BTreeMap<String, String> = [
            ("train.task", self.task.name().to_string()),
            ("train.seq_len", self.task.seq_len().to_string()),
            ("train.hidden_size", self.hidden_size.to_string()),
            ("train.batch_size", self.batch_size.to_string()),
            ("train.lr", self.lr.to_string()),
            ("train.max_grad_norm", self.max_grad_norm.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        if self.regularizers != Regularizers::new() {
            metadata.insert(REGULARIZERS_KEY.into(), format!("{:?}", self.regularizers));
        }
        if !self.constraints.is_empty() {
            metadata.insert(CONSTRAINTS_KEY.into(), format!("{:?}", self.constraints));
        }
        if self.layer != LayerOptions::default() {
            metadata.insert(LAYER_KEY.into(), format!("{:?}", self.layer));
        }
        metadata
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The step's number, counted from 1.
    pub step: u64,
    /// The loss on the step's batch, before the update.
    pub loss: f64,
    /// The global norm of the gradients, before clipping.
    pub grad_norm: f64,
}

/// The training loop of one model on one task.
#[derive(Clone, Debug)]
pub struct Trainer<C: Cell> {
    config: TrainConfig,
    model: SequenceModel<C>,
    optimizer: Adam<C::Elem>,
    /// Steps taken.
    step: u64,
    /// The loss of every step taken, in order.
    losses: Vec<f64>,
    /// Ranks the global batch is split across: 1 for one process.
    ranks: usize,
}

/// Name of the loss curve in a checkpoint's history.
const LOSS_HISTORY: &str = "loss";
/// Metadata key of the cell's name.
const CELL_KEY: &str = "train.cell";
/// Metadata key of the regularizers, when set.
const REGULARIZERS_KEY: &str = "train.regularizers";
/// Metadata key of the constraints, when set.
const CONSTRAINTS_KEY: &str = "train.constraints";
/// Metadata key of the layer options, when set.
const LAYER_KEY: &str = "train.layer";
/// Metadata key of the number of ranks of a distributed run, when more than 1.
const RANKS_KEY: &str = "train.ranks";

impl<C: Cell> Trainer<C> {
    /// A trainer at step 0 with freshly initialised weights.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming the option that cannot train (`batch_size` 0, a
    /// non-positive `lr` or `max_grad_norm`, a task too small), [`Error::Config`] if the
    /// cell cannot run in a plain layer, or [`Error::Allocation`] naming the sizes if the
    /// model or a batch's training pass cannot be allocated.
    pub fn new(config: TrainConfig) -> Result<Self> {
        check_config(&config)?;
        let (regularizers, constraints) = (config.regularizers, config.constraints);
        let layer_options = config.layer;
        let model = SequenceModel::with_layer_config(
            &config.task,
            config.hidden_size,
            config.seed,
            |layer| {
                layer_options
                    .apply(layer)
                    .with_regularizers(regularizers)
                    .with_constraints(constraints)
            },
        )?;
        // Before any batch is drawn: a batch or length past memory is an error, not an abort.
        lstm::Lstm::<C>::check_training_memory(
            model.lstm().config(),
            config.task.seq_len(),
            config.batch_size,
        )?;
        let optimizer = Adam::new(AdamConfig::adam().with_lr(config.lr))?;
        Ok(Trainer {
            config,
            model,
            optimizer,
            step: 0,
            losses: Vec::new(),
            ranks: 1,
        })
    }

    /// A trainer at step 0 for rank `collective.rank()` of a data-parallel run: every rank
    /// starts from the same weights (they are drawn from the seed) and trains on its shard of
    /// each step's batch of `config.batch_size` sequences ([`Trainer::step_distributed`]).
    ///
    /// # Errors
    ///
    /// As [`Trainer::new`], and [`DistributedError::BatchTooSmall`] if the batch has fewer
    /// sequences than there are ranks.
    pub fn new_distributed(
        config: TrainConfig,
        collective: &dyn Collective,
    ) -> std::result::Result<Self, DistributedError> {
        let ranks = check_ranks(&config, collective)?;
        let mut trainer = Trainer::new(config)?;
        trainer.ranks = ranks;
        Ok(trainer)
    }

    /// A trainer that continues the distributed run `checkpoint` was taken from, on as many
    /// ranks as it had (a different count would draw other dropout masks and sum in another
    /// order, so the run would not continue as it would have).
    ///
    /// # Errors
    ///
    /// As [`Trainer::resume`] (naming `train.ranks` when the counts differ) and
    /// [`Trainer::new_distributed`].
    pub fn resume_distributed(
        config: TrainConfig,
        checkpoint: &Checkpoint<C::Elem>,
        collective: &dyn Collective,
    ) -> std::result::Result<Self, DistributedError> {
        let ranks = check_ranks(&config, collective)?;
        Ok(Trainer::resume_on(config, checkpoint, ranks)?)
    }

    /// A trainer that continues the run `checkpoint` was taken from, under `config` (which
    /// may ask for more `steps`).
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidValue`] naming `checkpoint` if it was written for another cell, seed,
    ///   task or hyperparameters, or is past `config.steps`.
    /// - [`Error::InvalidValue`] naming `checkpoint` if its step, loss history and optimizer
    ///   state disagree (the optimizer's step is not the run's, the loss history is not one
    ///   value per step, an Adam moment of a weight is missing).
    /// - Whatever restoring the weights and the optimizer state reports (missing tensors,
    ///   wrong shapes).
    pub fn resume(config: TrainConfig, checkpoint: &Checkpoint<C::Elem>) -> Result<Self> {
        Trainer::resume_on(config, checkpoint, 1)
    }

    /// [`Trainer::resume`] for a run on `ranks` ranks.
    fn resume_on(
        config: TrainConfig,
        checkpoint: &Checkpoint<C::Elem>,
        ranks: usize,
    ) -> Result<Self> {
        let mut trainer = Trainer::new(config)?;
        trainer.ranks = ranks;
        let mut expected = trainer.metadata();
        expected.insert("seed".into(), trainer.config.seed.to_string());
        let mut found = checkpoint.metadata.clone();
        found.insert("seed".into(), checkpoint.seed.to_string());
        // One process is one rank, whether or not its checkpoint says so.
        for map in [&mut expected, &mut found] {
            map.entry(RANKS_KEY.into()).or_insert_with(|| "1".into());
        }
        // The optional keys are compared both ways: a checkpoint with regularizers does not
        // resume without them either.
        let optional = [REGULARIZERS_KEY, CONSTRAINTS_KEY, LAYER_KEY];
        let keys = expected.keys().map(String::as_str).chain(optional);
        for key in keys {
            let value = |map: &BTreeMap<String, String>| {
                map.get(key).cloned().unwrap_or_else(|| "(absent)".into())
            };
            let (saved, wanted) = (value(&found), value(&expected));
            if saved != wanted {
                return Err(Error::invalid_value(
                    "checkpoint",
                    format!("it was written with {key} = {saved}; this run has {wanted}"),
                ));
            }
        }
        if checkpoint.step > trainer.config.steps {
            return Err(Error::invalid_value(
                "checkpoint",
                format!(
                    "it is at step {}, past the {} steps asked for",
                    checkpoint.step, trainer.config.steps
                ),
            ));
        }
        check_trainer_state(checkpoint)?;
        checkpoint.restore_model(&mut trainer.model)?;
        trainer.optimizer.load_state(checkpoint.optimizer.clone())?;
        trainer.step = checkpoint.step;
        trainer.losses = checkpoint
            .history
            .get(LOSS_HISTORY)
            .cloned()
            .unwrap_or_default();
        Ok(trainer)
    }

    /// One optimizer step on the next batch.
    ///
    /// # Errors
    ///
    /// Whatever the model reports, or [`Error::InvalidValue`] naming `gradients` if they are
    /// not finite (the loss diverged; the weights are left as they were).
    pub fn step(&mut self) -> Result<StepReport> {
        let mut rng = train_rng(self.config.seed, self.step);
        let batch = self
            .config
            .task
            .batch::<C::Elem, _>(self.config.batch_size, &mut rng)?;
        // Masks depend only on (seed, step), so a resumed run draws what the whole run drew.
        self.model.reseed(rng.random());
        let (evaluation, mut grads) = self.model.loss_and_gradients(&batch)?;
        let grad_norm = clip_grad_norm(&mut grads, self.config.max_grad_norm)?;
        self.optimizer.step(&mut self.model, &grads)?;
        self.model.apply_constraints();
        self.step += 1;
        self.losses.push(evaluation.loss);
        Ok(StepReport {
            step: self.step,
            loss: evaluation.loss,
            grad_norm: grad_norm.to_f64_lossy(),
        })
    }

    /// One optimizer step of a data-parallel run, on rank `collective.rank()`'s shard of the
    /// next batch (see the `distributed` module): the shard's loss and gradients, one
    /// all-reduce of them over the ranks, then the weight penalties, clipping, Adam and the
    /// constraints on the summed gradients, as [`Trainer::step`] does on one process. Every
    /// rank must call it, the same number of times.
    ///
    /// # Errors
    ///
    /// [`DistributedError::RankCount`] if the communicator is not the trainer's size, a
    /// failed all-reduce, or what [`Trainer::step`] reports (the same on every rank, since
    /// every rank sees the same summed gradients).
    pub fn step_distributed(
        &mut self,
        collective: &dyn Collective,
    ) -> std::result::Result<StepReport, DistributedError> {
        if collective.size() != self.ranks {
            return Err(DistributedError::RankCount {
                expected: self.ranks,
                found: collective.size(),
            });
        }
        let mut rng = train_rng(self.config.seed, self.step);
        let batch = self
            .config
            .task
            .batch::<C::Elem, _>(self.config.batch_size, &mut rng)?;
        let rank = collective.rank();
        self.model
            .reseed(distributed::mask_seed(rng.random(), rank));
        let range = distributed::shard_range(self.config.batch_size, self.ranks, rank);
        let (shard, share) = distributed::shard(&batch, range)?;
        let (evaluation, grads) = self.model.shard_loss_and_gradients(&shard, share)?;
        let has_accuracy = evaluation.accuracy.is_some();
        let mut flat = FlatStep::pack(grads, evaluation.loss, evaluation.accuracy);
        flat.sum_over(collective)?;
        let (mut grads, mut loss, _) = flat.unpack(has_accuracy);
        loss += self.model.add_weight_penalties(&mut grads)?;
        let grad_norm = clip_grad_norm(&mut grads, self.config.max_grad_norm)?;
        self.optimizer.step(&mut self.model, &grads)?;
        self.model.apply_constraints();
        self.step += 1;
        self.losses.push(loss);
        Ok(StepReport {
            step: self.step,
            loss,
            grad_norm: grad_norm.to_f64_lossy(),
        })
    }

    /// The model's mean loss (and accuracy) over the config's held-out batches, which no
    /// training step draws.
    ///
    /// # Errors
    ///
    /// Whatever the model reports.
    pub fn evaluate(&mut self) -> Result<Evaluation> {
        let batches = self.config.eval_batches.max(1);
        let mut loss = 0.0;
        let mut accuracy = 0.0;
        let mut has_accuracy = false;
        for index in 0..batches {
            let mut rng = eval_rng(self.config.seed, index);
            let batch = self
                .config
                .task
                .batch::<C::Elem, _>(self.config.batch_size, &mut rng)?;
            let evaluation = self.model.evaluate(&batch)?;
            loss += evaluation.loss;
            if let Some(value) = evaluation.accuracy {
                accuracy += value;
                has_accuracy = true;
            }
        }
        let count = batches as f64;
        Ok(Evaluation {
            loss: loss / count,
            accuracy: has_accuracy.then_some(accuracy / count),
        })
    }

    /// A checkpoint of the run so far: weights, optimizer state, step, seed, the loss curve,
    /// and the settings [`Trainer::resume`] checks.
    pub fn checkpoint(&self) -> Checkpoint<C::Elem> {
        let mut checkpoint =
            Checkpoint::capture(&self.model, &self.optimizer, self.step, self.config.seed);
        checkpoint.metadata = self.metadata();
        checkpoint
            .history
            .insert(LOSS_HISTORY.into(), self.losses.clone());
        checkpoint
    }

    /// What a checkpoint records to be resumed: the config's trajectory, the cell, and the
    /// ranks when more than one.
    fn metadata(&self) -> BTreeMap<String, String> {
        let mut metadata = self.config.trajectory_metadata();
        metadata.insert(CELL_KEY.into(), C::SPEC.name.into());
        if self.ranks > 1 {
            metadata.insert(RANKS_KEY.into(), self.ranks.to_string());
        }
        metadata
    }

    /// Ranks the global batch is split across: 1 for one process.
    pub fn ranks(&self) -> usize {
        self.ranks
    }

    /// The config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &SequenceModel<C> {
        &self.model
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Whether the run has taken all its steps.
    pub fn is_done(&self) -> bool {
        self.step >= self.config.steps
    }

    /// The loss of every step taken, in order.
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// Learned values in the model.
    pub fn num_parameters(&self) -> usize {
        self.model.num_parameters()
    }
}

/// `Ok` if a checkpoint's step, loss history and optimizer state tell one story: one Adam
/// step and one loss per training step, and after the first step both of Adam's moments for
/// every weight (Adam updates every weight at every step).
fn check_trainer_state<F: Float>(checkpoint: &Checkpoint<F>) -> Result<()> {
    let disagree = |reason: String| Err(Error::invalid_value("checkpoint", reason));
    let step = checkpoint.step;
    if checkpoint.optimizer.step != step {
        return disagree(format!(
            "it is at step {step}, but its optimizer is at step {}",
            checkpoint.optimizer.step
        ));
    }
    let losses = checkpoint.history.get(LOSS_HISTORY).map_or(0, Vec::len) as u64;
    if losses != step {
        return disagree(format!(
            "it is at step {step}, but its loss history has {losses} values"
        ));
    }
    if step > 0 {
        for name in checkpoint.model.keys() {
            for statistic in ["exp_avg", "exp_avg_sq"] {
                let key = format!("{statistic}.{name}");
                if !checkpoint.optimizer.buffers.contains_key(&key) {
                    return disagree(format!(
                        "it is at step {step}, but Adam's `optim.{key}` is missing"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The ranks of `collective`, if each can have a shard of `config`'s batch.
fn check_ranks(
    config: &TrainConfig,
    collective: &dyn Collective,
) -> std::result::Result<usize, DistributedError> {
    let ranks = collective.size();
    if config.batch_size < ranks {
        return Err(DistributedError::BatchTooSmall {
            batch_size: config.batch_size,
            ranks,
        });
    }
    Ok(ranks)
}

/// `Ok` if every option of `config` can train.
fn check_config(config: &TrainConfig) -> Result<()> {
    config.task.validate()?;
    let positive = |what: &str, value: f64| {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(Error::invalid_value(
                what,
                format!("{value}; expected a positive finite number"),
            ))
        }
    };
    positive("lr", config.lr)?;
    positive("max_grad_norm", config.max_grad_norm)?;
    if config.batch_size == 0 {
        return Err(Error::invalid_value("batch_size", "0; expected at least 1"));
    }
    if config.hidden_size == 0 {
        return Err(Error::invalid_value(
            "hidden_size",
            "0; expected at least 1",
        ));
    }
    Ok(())
}
