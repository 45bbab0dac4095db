//! A whole training run on a data set with its outputs ([`data_run`]): [`fit`] with a
//! progress bar of epochs, then the run directory:
//!
//! ```text
//! <dir>/best.safetensors         the checkpoint of the best epoch (what `lstm predict` reads)
//! <dir>/checkpoint.safetensors   the checkpoint of the last epoch
//! <dir>/metrics.json             losses, accuracy, best epoch, time per epoch, settings
//! <dir>/loss.png                 training and validation loss per epoch
//! ```
//!
//! [`data_run_distributed`] is the same run as one rank of a data-parallel run
//! ([`fit_distributed`]): rank 0 alone touches the run directory.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lstm::checkpoint::Checkpoint;
use lstm::{Cell, Float};
use serde::Serialize;

use super::TrainError;
use super::data::Dataset;
use super::distributed::{Collective, DistributedError};
use super::fit::{EpochEnd, EpochReport, FitConfig, FitResume, Fitted, fit, fit_distributed, keys};
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
    let resume = load_resume::<C::Elem>(options)?;
    let resumed_epochs = resumed_epochs(resume.as_ref());
    let bar = progress_bar::<C>(config, options.show_progress, resumed_epochs);
    let started = Instant::now();
    let fitted = fit::<C, TrainError>(config, train, validation, resume, |end| {
        save_epoch(&end, options, &bar)
    })?;
    let run = FinishedRun {
        train,
        validation,
        data,
        elapsed: started.elapsed().as_secs_f64(),
        resumed_epochs,
    };
    bar.finish();
    finish_run(config, options, &fitted, &run)
}

/// [`data_run`] as one rank of a data-parallel run over `collective` ([`fit_distributed`]):
/// every rank must call it with the same arguments and its own copy of the data. Rank 0
/// locks the run directory, reads the checkpoints to resume from and sends them to the
/// others, and writes the checkpoints, `metrics.json` and `loss.png`.
///
/// Returns the metrics on rank 0 and `None` on the others.
///
/// # Errors
///
/// As [`data_run`] (on rank 0; the others report [`DistributedError::RootFailed`] when rank
/// 0 cannot start) and [`fit_distributed`]. An error on one rank after the start leaves the
/// others waiting in the next all-reduce: the caller ends the whole run (`MPI_Abort`).
pub fn data_run_distributed<C: Cell>(
    config: &FitConfig,
    train: &Dataset<C::Elem>,
    validation: Option<&Dataset<C::Elem>>,
    data: &str,
    options: &RunOptions,
    collective: &dyn Collective,
) -> Result<Option<DataMetrics>, TrainError> {
    let root = collective.rank() == 0;
    let mut opened: Option<Result<RunDir, TrainError>> = None;
    let mut message = Vec::new();
    if root {
        let start = RunDir::open(&options.out_dir, options.start, DATA_RUN_FILES).and_then(|dir| {
            let resume = load_resume::<C::Elem>(options)?;
            Ok((dir, resume))
        });
        message = match &start {
            Ok((_, resume)) => encode_resume(resume.as_ref())?,
            Err(err) => [&[START_FAILED][..], err.to_string().as_bytes()].concat(),
        };
        opened = Some(start.map(|(dir, _)| dir));
    }
    collective.broadcast_bytes(&mut message)?;
    let _run_dir = opened.transpose()?;
    let resume = decode_resume::<C::Elem>(&message)?;
    let resumed_epochs = resumed_epochs(resume.as_ref());
    let bar = progress_bar::<C>(config, options.show_progress && root, resumed_epochs);
    let started = Instant::now();
    let fitted =
        fit_distributed::<C, TrainError>(config, train, validation, resume, collective, |end| {
            if root {
                save_epoch(&end, options, &bar)?;
            }
            Ok(())
        })?;
    let run = FinishedRun {
        train,
        validation,
        data,
        elapsed: started.elapsed().as_secs_f64(),
        resumed_epochs,
    };
    bar.finish();
    if !root {
        return Ok(None);
    }
    finish_run(config, options, &fitted, &run).map(Some)
}

/// What rank 0 tells the others about the start: a fresh run.
const START_FRESH: u8 = 0;
/// A resumed run: the last checkpoint's length (8 bytes, little-endian), its bytes, then the
/// best checkpoint's bytes (none when there is none).
const START_RESUME: u8 = 1;
/// Rank 0 could not start; its error follows.
const START_FAILED: u8 = 2;

/// Rank 0's start message for `resume`.
fn encode_resume<F: Float>(resume: Option<&FitResume<F>>) -> Result<Vec<u8>, TrainError> {
    let Some(resume) = resume else {
        return Ok(vec![START_FRESH]);
    };
    let last = resume.last.to_bytes()?;
    let mut message = vec![START_RESUME];
    message.extend_from_slice(&(last.len() as u64).to_le_bytes());
    message.extend_from_slice(&last);
    if let Some(best) = &resume.best {
        message.extend_from_slice(&best.to_bytes()?);
    }
    Ok(message)
}

/// The run to resume, from rank 0's start message.
fn decode_resume<F: Float>(message: &[u8]) -> Result<Option<FitResume<F>>, TrainError> {
    let malformed = || DistributedError::RootFailed("it sent a malformed start".into());
    match message.split_first() {
        Some((&START_FRESH, _)) => Ok(None),
        Some((&START_RESUME, rest)) => {
            let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
            let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| malformed())?;
            if len > rest.len() {
                return Err(malformed().into());
            }
            let (last, best) = rest.split_at(len);
            Ok(Some(FitResume {
                last: Checkpoint::from_bytes(last)?,
                best: (!best.is_empty())
                    .then(|| Checkpoint::from_bytes(best))
                    .transpose()?,
            }))
        }
        Some((_, reason)) => {
            let reason = String::from_utf8_lossy(reason).into_owned();
            Err(DistributedError::RootFailed(reason).into())
        }
        None => Err(malformed().into()),
    }
}

/// The run in the directory to continue, for [`Start::Resume`].
fn load_resume<F: Float>(options: &RunOptions) -> Result<Option<FitResume<F>>, TrainError> {
    let (last_path, best_path) = (
        options.out_dir.join(CHECKPOINT_FILE),
        options.out_dir.join(BEST_FILE),
    );
    Ok(match options.start {
        Start::Resume => Some(FitResume {
            last: Checkpoint::load(&last_path)?,
            best: best_path
                .exists()
                .then(|| Checkpoint::load(&best_path))
                .transpose()?,
        }),
        Start::Fresh | Start::Overwrite => None,
    })
}

/// Epochs the run to resume has finished.
fn resumed_epochs<F>(resume: Option<&FitResume<F>>) -> u64 {
    resume.map_or(0, |resume| {
        resume
            .last
            .metadata
            .get(keys::EPOCH)
            .and_then(|epoch| epoch.parse().ok())
            .unwrap_or(0)
    })
}

/// The bar of epochs.
fn progress_bar<C: Cell>(config: &FitConfig, visible: bool, resumed_epochs: u64) -> ProgressBar {
    let target = if visible {
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
    bar.set_position(resumed_epochs);
    bar
}

/// Writes an epoch's checkpoints and shows its figures.
fn save_epoch<F: Float>(
    end: &EpochEnd<'_, F>,
    options: &RunOptions,
    bar: &ProgressBar,
) -> Result<(), TrainError> {
    // The last first: a kill between the two writes leaves a best checkpoint that is
    // older than the last epoch, which is then the best, and resuming uses the last.
    end.last.save(&options.out_dir.join(CHECKPOINT_FILE))?;
    if let Some(best) = end.new_best {
        best.save(&options.out_dir.join(BEST_FILE))?;
    }
    let report = end.report;
    bar.set_position(report.epoch as u64);
    let val = report
        .val_loss
        .map_or(String::new(), |loss| format!(" val {loss:.4}"));
    bar.set_message(format!("loss {:.4}{val}", report.train_loss));
    Ok(())
}

/// What the end of a data run reports besides the fit.
struct FinishedRun<'a, F> {
    train: &'a Dataset<F>,
    validation: Option<&'a Dataset<F>>,
    data: &'a str,
    elapsed: f64,
    resumed_epochs: u64,
}

/// The metrics and the plot of a finished fit.
fn finish_run<C: Cell>(
    config: &FitConfig,
    options: &RunOptions,
    fitted: &Fitted<C>,
    run: &FinishedRun<'_, C::Elem>,
) -> Result<DataMetrics, TrainError> {
    let FinishedRun {
        train,
        validation,
        data,
        elapsed,
        resumed_epochs,
    } = *run;
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
