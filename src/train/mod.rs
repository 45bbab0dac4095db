//! Training: built-in tasks, a sequence model (recurrent layer plus linear head), the
//! training loop with checkpoints that resume exactly, and the run directory a training run
//! leaves behind (checkpoint, metrics, loss plot). `lstm train` and `cargo run --release`
//! are thin layers over `train_run` and `compare_runs`; a custom cell trains with the same
//! calls (see `examples/custom_cell.rs`). Those two, with the progress bar and the plots,
//! come with the `cli` feature (on by default); the rest is the library's.
//!
//! - `tasks.rs`: the adding problem and running parity, batches seeded by `(seed, step)`.
//! - `model.rs`: [`SequenceModel`], forward, loss and backward of one batch.
//! - `trainer.rs`: [`Trainer`], one Adam step at a time, gradient clipping, checkpoints.
//! - `run.rs` (`cli`): `train_run` and `compare_runs`, progress bar and output files.
//! - `plot.rs` (`cli`): loss curves as PNG.

mod model;
#[cfg(feature = "cli")]
mod plot;
#[cfg(feature = "cli")]
mod run;
mod tasks;
mod trainer;

#[cfg(feature = "cli")]
use std::path::PathBuf;

pub use model::{Evaluation, SequenceModel};
#[cfg(feature = "cli")]
pub use plot::{Baseline, Curve, PlotError, plot_losses, smooth};
#[cfg(feature = "cli")]
pub use run::{
    CHECKPOINT_FILE, METRICS_FILE, Metrics, PLOT_FILE, RunOptions, RunOutcome, compare_runs,
    recent_mean, train_run,
};
pub use tasks::{Batch, Target, Task, eval_rng, train_rng};
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
    /// The metrics could not be serialized.
    #[error("cannot serialize the metrics: {0}")]
    Json(serde_json::Error),
}
