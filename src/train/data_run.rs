//! A whole training run on a data set with its outputs ([`data_run`]): [`fit`] with a
//! progress bar of epochs, then the run directory:
//!
//! ```text
//! <dir>/best.safetensors         the checkpoint of the best epoch (what `lstm predict` reads)
//! <dir>/checkpoint.safetensors   the checkpoint of the last epoch
//! <dir>/metrics.json             losses, accuracy, best epoch, time per epoch, settings
//! <dir>/loss.png                 training and validation loss per epoch
//! ```

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lstm::checkpoint::Checkpoint;
use lstm::{Cell, Float};
use serde::Serialize;

use super::TrainError;
use super::data::Dataset;
use super::fit::{EpochReport, FitConfig, FitResume, fit, keys};
use super::plot::{Curve, plot_epoch_losses};
use super::run::{CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE, RunOptions};
use super::run_dir::{RunDir, Start};

/// The best epoch's checkpoint's file name in a run directory.
pub const BEST_FILE: &str = "best.safetensors";
/// The files a data run writes, which [`Start::Overwrite`] deletes.
const DATA_RUN_FILES: &[&str] = &[BEST_FILE, CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE];

/// What `metrics.json` holds for a run on a data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataMetrics {
    /// Where the training data came from (a path, or `file.csv:column`).
    pub data: String,
    /// The cell's name.
    pub cell: String,
    /// Element type: `f32` or `f64`.
    pub precision: String,
    /// The objective `y` chose (`sequence_classification`, …).
    pub objective: String,
    /// Classes (classification) or values per label (regression).
    pub outputs: usize,
    /// Training sequences.
    pub train_sequences: usize,
    /// Validation sequences (0 without validation).
    pub val_sequences: usize,
    /// Hidden units.
    pub hidden_size: usize,
    /// Layers.
    pub layers: usize,
    /// Both directions.
    pub bidirectional: bool,
    /// Sequences per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f64,
    /// The schedule's name.
    pub schedule: String,
    /// Warmup steps.
    pub warmup_steps: u64,
    /// Early-stopping patience in epochs.
    pub patience: Option<usize>,
    /// The seed.
    pub seed: u64,
    /// Learned values in the model.
    pub parameters: usize,
    /// Epochs run (fewer than asked when stopped early).
    pub epochs: usize,
    /// The best epoch (lowest validation loss, or training loss without validation), from 1.
    pub best_epoch: usize,
    /// Training loss of the last epoch.
    pub train_loss: f64,
    /// Validation loss of the best epoch.
    pub val_loss: Option<f64>,
    /// Validation accuracy of the best epoch, for classification.
    pub val_accuracy: Option<f64>,
    /// Mean seconds per epoch (training and validation).
    pub epoch_seconds: f64,
    /// Seconds of the whole fit.
    pub wall_time_seconds: f64,
    /// Every epoch's figures.
    pub history: Vec<EpochMetrics>,
}

/// One epoch in `metrics.json`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
}

impl From<&EpochReport> for EpochMetrics {
    fn from(report: &EpochReport) -> Self {
        EpochMetrics {
            epoch: report.epoch,
            train_loss: report.train_loss,
            val_loss: report.val_loss,
            val_accuracy: report.val_accuracy,
            lr: report.lr,
        }
    }
}

/// Trains a model of cell `C` on `train` (validating on `validation`) and writes the run
/// directory `options.out_dir` (see the module documentation). `data` names the training
/// data in the metrics.
///
/// # Errors
///
/// As [`fit`]; [`TrainError::RunExists`] / [`TrainError::Locked`] as for
/// [`train_run`](super::train_run); for [`Start::Resume`], the errors of loading the run's
/// last and best checkpoints and of [`fit`]'s checks of them; [`TrainError::Io`] or
/// [`TrainError::Plot`] if the files cannot be written.
pub fn data_run<C: Cell>(
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    validation: Option<&Dataset<C::Elem>>,
    data: &str,
    options: &RunOptions,
) -> Result<DataMetrics, TrainError> {
    let _run_dir = RunDir::open(&options.out_dir, options.start, DATA_RUN_FILES)?;
    let (last_path, best_path) = (
        options.out_dir.join(CHECKPOINT_FILE),
        options.out_dir.join(BEST_FILE),
    );
    let resume = match options.start {
        Start::Resume => Some(FitResume {
            last: Checkpoint::load(&last_path)?,
            best: best_path
                .exists()
                .then(|| Checkpoint::load(&best_path))
                .transpose()?,
        }),
        Start::Fresh | Start::Overwrite => None,
    };
    let resumed_epochs = resume.as_ref().map_or(0, |resume| {
        resume
            .last
            .metadata
            .get(keys::EPOCH)
            .and_then(|epoch| epoch.parse().ok())
            .unwrap_or(0)
    });
    let target = if options.show_progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(config.epochs as u64), target);
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} epoch {pos}/{len} {msg} eta {eta}",
    )
    // The template is a constant that this module's test renders, so it always parses.
    .expect("the progress template is valid");
    bar.set_style(style.progress_chars("█▓░"));
    bar.set_prefix(C::SPEC.name);
    let started = Instant::now();
    bar.set_position(resumed_epochs);
    let fitted = fit::<C, TrainError>(config, train, validation, resume, |end| {
        // The last first: a kill between the two writes leaves a best checkpoint that is
        // older than the last epoch, which is then the best, and resuming uses the last.
        end.last.save(&last_path)?;
        if let Some(best) = end.new_best {
            best.save(&best_path)?;
        }
        let report = end.report;
        bar.set_position(report.epoch as u64);
        let val = report
            .val_loss
            .map_or(String::new(), |loss| format!(" val {loss:.4}"));
        bar.set_message(format!("loss {:.4}{val}", report.train_loss));
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish();
    let epochs_run = (fitted.epochs.len() as u64).saturating_sub(resumed_epochs);
    let best = &fitted.epochs[fitted.best_epoch - 1];
    let last = fitted.epochs.last().unwrap_or(best);
    let metrics = DataMetrics {
        data: data.to_string(),
        cell: C::SPEC.name.to_string(),
        precision: C::Elem::DTYPE.to_string(),
        objective: fitted.objective.name().to_string(),
        outputs: fitted.objective.output_size(),
        train_sequences: train.len(),
        val_sequences: validation.map_or(0, Dataset::len),
        hidden_size: config.hidden_size,
        layers: config.num_layers,
        bidirectional: config.bidirectional,
        batch_size: config.batch_size,
        lr: config.lr,
        schedule: config.schedule.name().to_string(),
        warmup_steps: config.warmup_steps,
        patience: config.patience,
        seed: config.seed,
        parameters: lstm::Parameters::num_parameters(&fitted.model),
        epochs: fitted.epochs.len(),
        best_epoch: fitted.best_epoch,
        train_loss: last.train_loss,
        val_loss: best.val_loss,
        val_accuracy: best.val_accuracy,
        epoch_seconds: elapsed / epochs_run.max(1) as f64,
        wall_time_seconds: elapsed,
        history: fitted.epochs.iter().map(EpochMetrics::from).collect(),
    };
    super::run::write_metrics(&options.out_dir.join(METRICS_FILE), &metrics)?;
    let mut curves = vec![Curve {
        label: "training".into(),
        losses: fitted.epochs.iter().map(|epoch| epoch.train_loss).collect(),
    }];
    if validation.is_some() {
        curves.push(Curve {
            label: "validation".into(),
            losses: fitted
                .epochs
                .iter()
                .filter_map(|epoch| epoch.val_loss)
                .collect(),
        });
    }
    let title = format!(
        "{} on {data}, hidden {}, best epoch {}",
        C::SPEC.name,
        config.hidden_size,
        fitted.best_epoch
    );
    plot_epoch_losses(&options.out_dir.join(PLOT_FILE), &title, &curves)?;
    Ok(metrics)
}
