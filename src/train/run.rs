//! A whole training run with its outputs: [`train_run`] drives a [`Trainer`] to the end with
//! a progress bar (running loss and steps per second), checkpoints it periodically, evaluates
//! it on held-out batches and writes the run directory:
//!
//! ```text
//! runs/<name>/checkpoint.safetensors   weights, Adam state, step, seed, loss curve
//! runs/<name>/metrics.json             final and held-out loss, accuracy, steps, wall time
//! runs/<name>/loss.png                 the loss curve against the task's baseline
//! ```
//!
//! [`compare_runs`] trains several cells on the same task and seed, each into its own
//! subdirectory, and plots all their curves in one picture: the research-prototyping loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lstm::checkpoint::Checkpoint;
use lstm::{Cell, Float};
use serde::Serialize;

use super::TrainError;
use super::distributed::{Collective, DistributedError};
use super::plot::{Baseline, Curve, plot_losses};
use super::run_dir::{RunDir, Start};
use super::trainer::{TrainConfig, Trainer};

/// The checkpoint's file name in a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics' file name in a run directory.
pub const METRICS_FILE: &str = "metrics.json";
/// The loss plot's file name in a run directory.
pub const PLOT_FILE: &str = "loss.png";
/// The files a run writes, which [`Start::Overwrite`] deletes.
const RUN_FILES: &[&str] = &[CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE];

/// How a run is carried out, beyond what it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// The run directory; created if missing.
    pub out_dir: PathBuf,
    /// Steps between checkpoints (one is always written at the end); 0 for only the last.
    pub checkpoint_every: u64,
    /// Start afresh (refusing a directory with an earlier run), resume the directory's run
    /// from its checkpoint, or replace the earlier run.
    pub start: Start,
    /// Draw a progress bar on standard error (when it is a terminal).
    pub show_progress: bool,
}

/// What `metrics.json` holds for one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// The task (`adding`, `parity`).
    pub task: String,
    /// The cell's name (`lstm`, `forget_bias`, or a custom cell's).
    pub cell: String,
    /// Element type of weights and activations: `f32` or `f64`.
    pub precision: String,
    /// Steps per sequence (the longest, for parity).
    pub seq_len: usize,
    /// Hidden units.
    pub hidden_size: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// Learned values in the model.
    pub parameters: usize,
    /// Steps taken in all.
    pub steps: u64,
    /// The step this process resumed from, if it did.
    pub resumed_from_step: Option<u64>,
    /// Mean training loss over the last 2% of steps (at least one).
    pub final_loss: f64,
    /// Mean loss on held-out batches after the last step.
    pub eval_loss: f64,
    /// Accuracy on held-out batches, for classification tasks.
    pub eval_accuracy: Option<f64>,
    /// What an input-blind guess scores.
    pub baseline_loss: f64,
    /// Seconds this process spent training (without evaluation and plotting).
    pub wall_time_seconds: f64,
    /// Steps this process took per second.
    pub steps_per_second: f64,
    /// Processes the run's batches were split across (`--distributed`); absent for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
}

/// What a finished run returns.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// What was written to `metrics.json`.
    pub metrics: Metrics,
    /// The loss of every step, resumed steps included.
    pub losses: Vec<f64>,
}

/// Trains a model of cell `C` under `config` to its last step, writing checkpoints,
/// `metrics.json` and `loss.png` into `options.out_dir`.
///
/// # Errors
///
/// [`TrainError`] if the config cannot train, the directory or a file cannot be written,
/// `options.start` is [`Start::Resume`] and finds no usable checkpoint, or the loss
/// diverges; [`TrainError::RunExists`] for a fresh start in a directory with an earlier run,
/// [`TrainError::Locked`] if another process trains in the directory.
pub fn train_run<C: Cell>(
    config: &TrainConfig,
    options: &RunOptions,
) -> Result<RunOutcome, TrainError> {
    let _run_dir = RunDir::open(&options.out_dir, options.start, RUN_FILES)?;
    let resume = options.start == Start::Resume;
    let checkpoint_path = options.out_dir.join(CHECKPOINT_FILE);
    let mut trainer = if resume {
        let checkpoint = Checkpoint::<C::Elem>::load(&checkpoint_path)?;
        Trainer::<C>::resume(config.clone(), &checkpoint)?
    } else {
        Trainer::<C>::new(config.clone())?
    };
    let resumed_from_step = resume.then_some(trainer.steps_taken());
    let bar = progress_bar(&trainer, options.show_progress);
    let started = Instant::now();
    let steps_before = trainer.steps_taken();
    while !trainer.is_done() {
        trainer.step()?;
        after_step(&trainer, options, &bar, &checkpoint_path)?;
    }
    let elapsed = started.elapsed();
    bar.finish();
    finish_run(
        &mut trainer,
        options,
        resumed_from_step,
        elapsed,
        steps_before,
    )
}

/// What follows each step of a run on the process that writes it: the progress bar, and the
/// checkpoint every `options.checkpoint_every` steps.
fn after_step<C: Cell>(
    trainer: &Trainer<C>,
    options: &RunOptions,
    bar: &ProgressBar,
    checkpoint_path: &Path,
) -> Result<(), TrainError> {
    bar.set_position(trainer.steps_taken());
    bar.set_message(format!("{:.5}", recent_mean(trainer.losses())));
    let step = trainer.steps_taken();
    if options.checkpoint_every > 0 && step.is_multiple_of(options.checkpoint_every) {
        trainer.checkpoint().save(checkpoint_path)?;
    }
    Ok(())
}

/// [`train_run`] as one rank of a data-parallel run over `collective`: every rank must call
/// it with the same `config` and `options`. Every rank trains on its shard of each step's
/// batch of `config.batch_size` sequences ([`Trainer::step_distributed`]); rank 0 alone
/// touches the run directory: it locks it, reads the checkpoint to resume from and sends it
/// to the others, and writes the checkpoints, `metrics.json` and `loss.png`. The losses are
/// those of one process training on the whole batch, up to rounding.
///
/// Returns the outcome on rank 0 and `None` on the others.
///
/// # Errors
///
/// As [`train_run`] (on rank 0; the others report [`DistributedError::RootFailed`] when rank
/// 0 cannot start), and [`TrainError::Distributed`] if a collective operation fails or the
/// batch is smaller than the ranks. An error on one rank after the start leaves the others
/// waiting in the next step's all-reduce: the caller ends the whole run (`MPI_Abort`).
pub fn train_run_distributed<C: Cell>(
    config: &TrainConfig,
    options: &RunOptions,
    collective: &dyn Collective,
) -> Result<Option<RunOutcome>, TrainError> {
    let root = collective.rank() == 0;
    let resume = options.start == Start::Resume;
    let checkpoint_path = options.out_dir.join(CHECKPOINT_FILE);
    // Rank 0 opens the directory and reads the checkpoint; what it found, or why it could
    // not, goes to every rank in one broadcast, so a failed start ends every rank alike.
    let mut opened: Option<Result<RunDir, TrainError>> = None;
    let mut message = Vec::new();
    if root {
        let start = RunDir::open(&options.out_dir, options.start, RUN_FILES).and_then(|dir| {
            let bytes = if resume {
                Some(Checkpoint::<C::Elem>::load(&checkpoint_path)?.to_bytes()?)
            } else {
                None
            };
            Ok((dir, bytes))
        });
        message = match &start {
            Ok((_, None)) => vec![START_FRESH],
            Ok((_, Some(bytes))) => [&[START_RESUME][..], bytes].concat(),
            Err(err) => [&[START_FAILED][..], err.to_string().as_bytes()].concat(),
        };
        opened = Some(start.map(|(dir, _)| dir));
    }
    collective.broadcast_bytes(&mut message)?;
    let _run_dir = opened.transpose()?;
    let mut trainer = match message.split_first() {
        Some((&START_FRESH, _)) => Trainer::<C>::new_distributed(config.clone(), collective)?,
        Some((&START_RESUME, bytes)) => {
            let checkpoint = Checkpoint::<C::Elem>::from_bytes(bytes)?;
            Trainer::<C>::resume_distributed(config.clone(), &checkpoint, collective)?
        }
        Some((_, reason)) => {
            let reason = String::from_utf8_lossy(reason).into_owned();
            return Err(DistributedError::RootFailed(reason).into());
        }
        None => {
            return Err(DistributedError::RootFailed("it sent nothing".into()).into());
        }
    };
    let resumed_from_step = resume.then_some(trainer.steps_taken());
    let bar = progress_bar(&trainer, options.show_progress && root);
    let started = Instant::now();
    let steps_before = trainer.steps_taken();
    while !trainer.is_done() {
        trainer.step_distributed(collective)?;
        if root {
            after_step(&trainer, options, &bar, &checkpoint_path)?;
        }
    }
    let elapsed = started.elapsed();
    bar.finish();
    if !root {
        return Ok(None);
    }
    finish_run(
        &mut trainer,
        options,
        resumed_from_step,
        elapsed,
        steps_before,
    )
    .map(Some)
}

/// What rank 0 tells the others about the start: a fresh run.
const START_FRESH: u8 = 0;
/// A resumed run; the checkpoint's bytes follow.
const START_RESUME: u8 = 1;
/// Rank 0 could not start; its error follows.
const START_FAILED: u8 = 2;

/// The end of a run: the last checkpoint, `metrics.json` after a held-out evaluation, and
/// `loss.png`.
fn finish_run<C: Cell>(
    trainer: &mut Trainer<C>,
    options: &RunOptions,
    resumed_from_step: Option<u64>,
    elapsed: Duration,
    steps_before: u64,
) -> Result<RunOutcome, TrainError> {
    let config = trainer.config().clone();
    trainer
        .checkpoint()
        .save(&options.out_dir.join(CHECKPOINT_FILE))?;
    let metrics = metrics(trainer, resumed_from_step, elapsed, steps_before)?;
    write_metrics(&options.out_dir.join(METRICS_FILE), &metrics)?;
    let curve = Curve {
        label: C::SPEC.name.to_string(),
        losses: trainer.losses().to_vec(),
    };
    plot_losses(
        &options.out_dir.join(PLOT_FILE),
        &plot_title(&config, &[C::SPEC.name]),
        &[curve],
        Some(&baseline(&config)),
    )?;
    Ok(RunOutcome {
        metrics,
        losses: trainer.losses().to_vec(),
    })
}

/// Trains every cell that `run_cell` knows by name in `cells`, each with `config` into
/// `options.out_dir/<cell>/`, then writes `options.out_dir/loss.png` with every curve and
/// `options.out_dir/metrics.json` with every run's metrics (a JSON array, in `cells` order).
///
/// `run_cell(name, options)` trains one cell ([`train_run`] for the cell type called `name`).
///
/// # Errors
///
/// The first run's error, [`TrainError::RunExists`] / [`TrainError::Locked`] as for
/// [`train_run`], or [`TrainError`] if the combined files cannot be written.
pub fn compare_runs(
    cells: &[String],
    config: &TrainConfig,
    options: &RunOptions,
    mut run_cell: impl FnMut(&str, &RunOptions) -> Result<RunOutcome, TrainError>,
) -> Result<Vec<RunOutcome>, TrainError> {
    // The combined files are the comparison's own; each cell's run locks its subdirectory.
    let _run_dir = RunDir::open(&options.out_dir, options.start, &[METRICS_FILE, PLOT_FILE])?;
    let mut outcomes = Vec::with_capacity(cells.len());
    for cell in cells {
        let cell_options = RunOptions {
            out_dir: options.out_dir.join(cell),
            ..options.clone()
        };
        outcomes.push(run_cell(cell, &cell_options)?);
    }
    let metrics: Vec<&Metrics> = outcomes.iter().map(|outcome| &outcome.metrics).collect();
    write_metrics(&options.out_dir.join(METRICS_FILE), &metrics)?;
    let curves: Vec<Curve> = outcomes
        .iter()
        .map(|outcome| Curve {
            label: outcome.metrics.cell.clone(),
            losses: outcome.losses.clone(),
        })
        .collect();
    let names: Vec<&str> = cells.iter().map(String::as_str).collect();
    plot_losses(
        &options.out_dir.join(PLOT_FILE),
        &plot_title(config, &names),
        &curves,
        Some(&baseline(config)),
    )?;
    Ok(outcomes)
}

/// The bar: `adding/lstm [00:00:12] ████░░░ 600/2000 loss 0.01234 48.2 steps/s`.
fn progress_bar<C: Cell>(trainer: &Trainer<C>, visible: bool) -> ProgressBar {
    let config = trainer.config();
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(config.steps), target);
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} loss {msg} {per_sec} eta {eta}",
    )
    // The template is a constant that the tests render, so it always parses.
    .expect("the progress template is valid");
    bar.set_style(style.progress_chars("█▓░"));
    bar.set_prefix(format!("{}/{}", config.task.name(), C::SPEC.name));
    bar.set_position(trainer.steps_taken());
    bar.reset_eta();
    bar
}

/// The metrics of a finished trainer.
fn metrics<C: Cell>(
    trainer: &mut Trainer<C>,
    resumed_from_step: Option<u64>,
    elapsed: Duration,
    steps_before: u64,
) -> Result<Metrics, TrainError> {
    let evaluation = trainer.evaluate()?;
    let config = trainer.config().clone();
    let seconds = elapsed.as_secs_f64();
    let steps_here = trainer.steps_taken() - steps_before;
    Ok(Metrics {
        task: config.task.name().to_string(),
        cell: C::SPEC.name.to_string(),
        precision: C::Elem::DTYPE.to_string(),
        seq_len: config.task.seq_len(),
        hidden_size: config.hidden_size,
        batch_size: config.batch_size,
        lr: config.lr,
        seed: config.seed,
        parameters: trainer.num_parameters(),
        steps: trainer.steps_taken(),
        resumed_from_step,
        final_loss: recent_mean(trainer.losses()),
        eval_loss: evaluation.loss,
        eval_accuracy: evaluation.accuracy,
        baseline_loss: config.task.baseline_loss(),
        wall_time_seconds: seconds,
        steps_per_second: if seconds > 0.0 {
            steps_here as f64 / seconds
        } else {
            0.0
        },
        ranks: (trainer.ranks() > 1).then_some(trainer.ranks()),
    })
}

/// The mean of the last 2% of `losses` (at least one, at most 100): a running loss that does
/// not jump with every batch. NaN for no losses.
pub fn recent_mean(losses: &[f64]) -> f64 {
    let window = (losses.len() / 50).clamp(1, 100).min(losses.len());
    if window == 0 {
        return f64::NAN;
    }
    losses[losses.len() - window..].iter().sum::<f64>() / window as f64
}

/// Writes `value` as pretty JSON to `path`.
pub(super) fn write_metrics(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let mut text = serde_json::to_string_pretty(value).map_err(TrainError::Json)?;
    text.push('\n');
    lstm::io::write_atomically(path, text.as_bytes())?;
    Ok(())
}

/// `lstm on the adding problem (T = 50), hidden 32, seed 0`, or `The adding problem (T = 50),
/// hidden 32, seed 0` when several cells are compared (the legend names them).
fn plot_title(config: &TrainConfig, cells: &[&str]) -> String {
    let task = match config.task.name() {
        "adding" => format!("the adding problem (T = {})", config.task.seq_len()),
        _ => format!("running parity (up to {} steps)", config.task.seq_len()),
    };
    let settings = format!("hidden {}, seed {}", config.hidden_size, config.seed);
    match cells {
        [cell] => format!("{cell} on {task}, {settings}"),
        _ => format!("{}, {settings}", capitalized(&task)),
    }
}

/// `text` with its first letter in upper case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The task's baseline as a plot line.
fn baseline(config: &TrainConfig) -> Baseline {
    let label = match config.task.name() {
        "adding" => "predict the mean (1/6)".to_string(),
        _ => "guess (ln 2)".to_string(),
    };
    Baseline {
        label,
        value: config.task.baseline_loss(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_mean_averages_the_tail() {
        assert!(recent_mean(&[]).is_nan());
        assert_eq!(recent_mean(&[3.0]), 3.0);
        let losses: Vec<f64> = (0..200).map(f64::from).collect();
        // 2% of 200 steps: the last 4.
        assert_eq!(recent_mean(&losses), (196.0 + 197.0 + 198.0 + 199.0) / 4.0);
    }

    #[test]
    fn titles_name_the_task_and_the_cells() {
        let config = TrainConfig::default();
        assert_eq!(
            plot_title(&config, &["lstm"]),
            "lstm on the adding problem (T = 50), hidden 32, seed 0"
        );
        assert_eq!(
            plot_title(&config, &["lstm", "cifg"]),
            "The adding problem (T = 50), hidden 32, seed 0"
        );
    }
}
