//! Training: built-in tasks, a sequence model (recurrent layer plus linear head), the
//! training loop with checkpoints that resume exactly, and the run directory a training run
//! leaves behind (checkpoint, metrics, loss plot). `lstm train` and `cargo run --release`
//! are thin layers over `train_run` and `compare_runs`; a custom cell trains with the same
//! calls (see `examples/custom_cell.rs`). Those two, with the progress bar and the plots,
//! come with the `cli` feature (on by default); the rest is the library's.
//!
//! - `tasks.rs`: the adding problem and running parity, batches seeded by `(seed, step)`.
//! - `data.rs`: a data set of one's own (`.npz` arrays or CSV windows) and its objective.
//! - `schedule.rs`: learning-rate schedules and warmup.
//! - `fit.rs`: [`fit`], epochs over a data set with validation, best epoch, early stopping;
//!   `fit_resume.rs`: what a data run's checkpoints carry to be continued, and its checks.
//! - `data_run.rs` (`cli`): `data_run`, a fit with its run directory.
//! - `model.rs`: [`SequenceModel`], forward, loss and backward of one batch.
//! - `trainer.rs`: [`Trainer`], one Adam step at a time, gradient clipping, checkpoints.
//! - `distributed.rs`: data-parallel steps, each rank on its shard of the batch, one
//!   all-reduce of one flat buffer per step ([`Collective`]); `mpi_world.rs` (feature `mpi`):
//!   [`Collective`] over MPI.
//! - `run.rs` (`cli`): `train_run` and `compare_runs`, progress bar and output files.
//! - `run_dir.rs` (`cli`): the run directory's lock, and the check that a fresh run does not
//!   replace an earlier one.
//! - `plot.rs` (`cli`): loss curves as PNG.

mod data;
#[cfg(feature = "cli")]
mod data_run;
mod distributed;
mod fit;
mod fit_resume;
mod model;
#[cfg(feature = "mpi")]
mod mpi_world;
#[cfg(feature = "cli")]
mod plot;
#[cfg(feature = "cli")]
mod run;
#[cfg(feature = "cli")]
mod run_dir;
mod schedule;
mod tasks;
mod trainer;

#[cfg(feature = "cli")]
use std::path::PathBuf;

pub use data::{DataLabels, Dataset, Objective, csv_windows};
#[cfg(feature = "cli")]
pub use data_run::{BEST_FILE, DataMetrics, EpochMetrics, data_run, data_run_distributed};
pub use distributed::{Collective, DistributedError, FlatStep, mask_seed, shard, shard_range};
pub use fit::{
    EpochEnd, EpochReport, FitConfig, FitResume, Fitted, evaluate, fit, fit_distributed, keys,
};
pub use model::{Evaluation, SequenceModel, ShardShare};
#[cfg(feature = "mpi")]
pub use mpi_world::MpiWorld;
#[cfg(feature = "cli")]
pub use plot::{Baseline, Curve, PlotError, plot_epoch_losses, plot_losses, smooth};
#[cfg(feature = "cli")]
pub use run::{
    CHECKPOINT_FILE, METRICS_FILE, Metrics, PLOT_FILE, RunOptions, RunOutcome, compare_runs,
    recent_mean, train_run, train_run_distributed,
};
#[cfg(feature = "cli")]
pub use run_dir::{LOCK_FILE, RunDir, Start};
pub use schedule::{LrSchedule, Schedule};
pub use tasks::{Batch, Labels, Target, Task, eval_rng, train_rng};
pub use trainer::{LayerOptions, StepReport, TrainConfig, Trainer};

/// Why a training run failed.
#[cfg(feature = "cli")]
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The runtime rejected something: a config, a checkpoint, a diverged gradient.
    #[error(transparent)]
    Runtime(#[from] lstm::Error),
    /// The loss plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// A file or directory of the run could not be written.
    #[error("cannot write `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A fresh run was asked for in a directory that holds an earlier run.
    #[error(
        "`{dir}` already holds a run (`{file}`); pass --resume to continue it, --overwrite to \
         replace it, or choose another directory with --out"
    )]
    RunExists {
        /// The run directory.
        dir: PathBuf,
        /// A file of the earlier run (the first by name).
        file: String,
    },
    /// Another process holds the run directory's lock.
    #[error(
        "another process is training in `{dir}` (it holds `{dir}/run.lock`); wait for it to \
         finish or choose another directory with --out"
    )]
    Locked {
        /// The run directory.
        dir: PathBuf,
    },
    /// The metrics could not be serialized.
    #[error("cannot serialize the metrics: {0}")]
    Json(serde_json::Error),
    /// A data-parallel run failed: a collective operation, or a start rank 0 refused.
    #[error(transparent)]
    Distributed(DistributedError),
}

#[cfg(feature = "cli")]
impl From<DistributedError> for TrainError {
    fn from(err: DistributedError) -> Self {
        // A runtime error stays one, whichever rank met it.
        match err {
            DistributedError::Runtime(err) => TrainError::Runtime(err),
            other => TrainError::Distributed(other),
        }
    }
}
