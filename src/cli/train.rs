//! `lstm train` (and `lstm` with no arguments): train a zoo cell, or several side by side with
//! `--compare`, on a built-in task, and report where the run's files went.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, FromArgMatches, ValueEnum};
use lstm::train::Collective;
use lstm::train::{
    BEST_FILE, CHECKPOINT_FILE, DataMetrics, Dataset, FitConfig, LayerOptions, METRICS_FILE,
    PLOT_FILE, RunOptions, RunOutcome, Schedule, Start, Task, TrainConfig, TrainError,
    compare_runs, csv_windows, data_run, data_run_distributed, train_run,
};
use lstm::{Cell, CellVisitor, Float, Framework};

use super::catalog::Catalog;
use super::regularization::RegularizationArgs;

/// Options of `lstm train`. Every option has a default, so `lstm train` alone trains the
/// standard LSTM on the adding problem.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct TrainArgs {
    /// The task: `adding` (the adding problem, MSE) or `parity` (running parity, accuracy).
    #[arg(long, value_enum, default_value_t = TaskName::Adding)]
    pub task: TaskName,
    /// The zoo cell to train (`lstm cells` lists them).
    #[arg(long, default_value = "lstm", conflicts_with = "compare")]
    pub cell: String,
    /// Train several zoo cells on the same task and seed and plot their curves together,
    /// e.g. `lstm,forget_bias,scaled_forget`.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub compare: Vec<String>,
    /// Optimizer steps [default: 2000].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of the weights and of every batch; the same seed gives the same run [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// The run directory [default: runs/<task>-<cell>, or runs/<task>-compare].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Adam's learning rate [default: 0.01].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Sequences per step [default: 64].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Hidden units [default: 32].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Steps per sequence; for parity the longest sequence [default: 50 for adding, 20 for
    /// parity].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Clip gradients to this global norm [default: 1].
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Element type of weights and activations.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Steps between checkpoints; one is always written at the end (0: only that one).
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Continue the run in the run directory from its checkpoint, up to `--steps` (with
    /// `--data`: from its last epoch, up to `--epochs`), under the same settings.
    #[arg(long)]
    pub resume: bool,
    /// Replace an earlier run in the run directory (its checkpoint, metrics and plot);
    /// without it (or `--resume`) a run directory that holds a run is an error.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Threads of each process' matrix products [default: the machine's cores, or with
    /// `--distributed` its cores shared among the ranks on it].
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,
    /// Data-parallel training under `mpirun -np N`: each of the N processes trains on its
    /// share of every batch of `--batch` sequences, and the gradients are summed across them
    /// before each step; rank 0 writes the run directory. Needs a build with the `mpi`
    /// feature.
    #[arg(long, conflicts_with = "compare")]
    pub distributed: bool,
    /// Dropout and zoneout inside the recurrence.
    #[command(flatten)]
    pub regularization: RegularizationArgs,
    /// Chrono initialisation (Tallec & Ollivier 2018) for dependencies up to T_MAX steps:
    /// forget bias log U(1, T_MAX − 1), input bias its negative.
    #[arg(long, value_name = "T_MAX")]
    pub chrono: Option<f64>,
    /// Initialise the layer's weights as this framework does by default: `pytorch` (uniform
    /// ±1/√hidden), `keras` (glorot_uniform kernel, orthogonal recurrent kernel, zero bias with
    /// the forget gate's at 1), `flax` (lecun_normal kernel, orthogonal recurrent kernel per
    /// gate, zero bias).
    #[arg(long, value_enum, default_value_t = InitName::Pytorch)]
    pub init: InitName,
    /// Heads of a block-diagonal recurrence (`weight_hh` is `(gates·H, H/K)`; each head's
    /// units read only their own head's `h_prev`); 1 is a dense recurrence.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub heads: usize,
    /// Training on a data set of one's own instead of a built-in task.
    #[command(flatten)]
    pub data: DataArgs,
}

/// The options of training on a data set (`--data` or `--csv`).
#[derive(Clone, Debug, Default, PartialEq, Args)]
pub struct DataArgs {
    /// Train on the arrays of an `.npz` file: `x` `(N, T, I)`, `y` (its dtype and shape choose
    /// the objective), optional `lengths` `(N,)` or `mask` `(N, T)`.
    #[arg(long, value_name = "TRAIN.npz", conflicts_with_all = ["csv", "compare", "task"])]
    pub data: Option<PathBuf>,
    /// Validate after every epoch on the arrays of this `.npz` file.
    #[arg(long, value_name = "VAL.npz", conflicts_with = "val_fraction")]
    pub val: Option<PathBuf>,
    /// Validate on this fraction of the training sequences (drawn with the seed).
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
    /// Train on windows of one column of a CSV file (a single time series): each window of
    /// `--window` values predicts the value `--horizon` steps after it.
    #[arg(long, value_name = "FILE.csv", conflicts_with_all = ["compare", "task"], requires_all = ["column", "window"])]
    pub csv: Option<PathBuf>,
    /// The CSV column of the series.
    #[arg(long, value_name = "NAME", requires = "csv")]
    pub column: Option<String>,
    /// Steps per window.
    #[arg(long, value_name = "T", requires = "csv")]
    pub window: Option<usize>,
    /// How many steps after a window its target lies.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "csv")]
    pub horizon: usize,
    /// Stacked layers.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Run both directions (outputs concatenated).
    #[arg(long)]
    pub bidirectional: bool,
    /// Passes over the training data [default: 20].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The learning rate's course.
    #[arg(long, value_enum, default_value_t = ScheduleName::Constant)]
    pub schedule: ScheduleName,
    /// Optimizer steps of linear warmup before the schedule.
    #[arg(long, value_name = "STEPS", default_value_t = 0)]
    pub warmup: u64,
    /// Stop after N epochs without a lower validation loss (training loss without
    /// validation); the best epoch's checkpoint is kept either way.
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
}

/// `--init`: the frameworks whose default initialisation a layer can copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum InitName {
    /// PyTorch's `nn.LSTM`.
    #[default]
    Pytorch,
    /// Keras 3's `LSTM`.
    Keras,
    /// Flax's `LSTMCell`.
    Flax,
}

impl From<InitName> for Framework {
    fn from(name: InitName) -> Self {
        match name {
            InitName::Pytorch => Framework::PyTorch,
            InitName::Keras => Framework::Keras,
            InitName::Flax => Framework::Flax,
        }
    }
}

/// Learning-rate schedules by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ScheduleName {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Cosine annealing to 0 over the run.
    Cosine,
    /// Divided by 10 every third of the epochs.
    Step,
    /// Divided by 10 after 2 epochs without improvement.
    Plateau,
}

impl From<ScheduleName> for Schedule {
    fn from(name: ScheduleName) -> Self {
        match name {
            ScheduleName::Constant => Schedule::Constant,
            ScheduleName::Cosine => Schedule::Cosine,
            ScheduleName::Step => Schedule::Step,
            ScheduleName::Plateau => Schedule::Plateau,
        }
    }
}

/// The built-in tasks by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TaskName {
    /// The adding problem.
    #[default]
    Adding,
    /// Running parity of bit sequences.
    Parity,
}

/// Element types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// 32-bit floats: faster.
    #[default]
    F32,
    /// 64-bit floats.
    F64,
}

/// Parity's default longest sequence.
const PARITY_DEFAULT_LEN: usize = 20;

impl TrainArgs {
    /// The options of `lstm train` without arguments: what `lstm` alone runs.
    pub fn defaults() -> Self {
        let command = TrainArgs::augment_args(clap::Command::new("train"));
        let matches = command.get_matches_from(["train"]);
        // Every option has a default or is optional, so no arguments always parse.
        TrainArgs::from_arg_matches(&matches).expect("`lstm train` needs no arguments")
    }

    /// The run's config: the options given, [`TrainConfig::default`] for the rest.
    pub fn config(&self) -> TrainConfig {
        let defaults = TrainConfig::default();
        let task = match self.task {
            TaskName::Adding => Task::adding(self.seq_len.unwrap_or(defaults.task.seq_len())),
            TaskName::Parity => Task::parity(self.seq_len.unwrap_or(PARITY_DEFAULT_LEN)),
        };
        TrainConfig {
            task,
            hidden_size: self.hidden.unwrap_or(defaults.hidden_size),
            batch_size: self.batch.unwrap_or(defaults.batch_size),
            steps: self.steps.unwrap_or(defaults.steps),
            lr: self.lr.unwrap_or(defaults.lr),
            max_grad_norm: self.max_grad_norm.unwrap_or(defaults.max_grad_norm),
            seed: self.seed.unwrap_or(defaults.seed),
            eval_batches: defaults.eval_batches,
            regularizers: defaults.regularizers,
            constraints: defaults.constraints,
            layer: self.layer_options(),
        }
    }

    /// The regularisers inside the recurrence and the initialisation.
    fn layer_options(&self) -> LayerOptions {
        LayerOptions {
            init: self.init.into(),
            heads: self.heads,
            ..self.regularization.layer_options(self.chrono)
        }
    }

    /// What to do with an earlier run in the run directory: `--resume`, `--overwrite`, or
    /// refuse.
    pub fn start(&self) -> Start {
        match (self.resume, self.overwrite) {
            (true, _) => Start::Resume,
            (false, true) => Start::Overwrite,
            (false, false) => Start::Fresh,
        }
    }

    /// The config of a run on a data set.
    pub fn fit_config(&self) -> FitConfig {
        let defaults = FitConfig::default();
        let data = &self.data;
        FitConfig {
            hidden_size: self.hidden.unwrap_or(defaults.hidden_size),
            num_layers: data.layers,
            bidirectional: data.bidirectional,
            epochs: data.epochs.unwrap_or(defaults.epochs),
            batch_size: self.batch.unwrap_or(defaults.batch_size),
            lr: self.lr.unwrap_or(defaults.lr),
            schedule: data.schedule.into(),
            warmup_steps: data.warmup,
            patience: data.patience,
            max_grad_norm: self.max_grad_norm.unwrap_or(defaults.max_grad_norm),
            seed: self.seed.unwrap_or(defaults.seed),
            layer: self.layer_options(),
        }
    }

    /// The training data of `--data` or `--csv`, and its name for reports.
    fn training_data<F: Float>(&self) -> Result<(Dataset<F>, String), TrainError> {
        let data = &self.data;
        match (&data.data, &data.csv, &data.column, data.window) {
            (Some(path), _, _, _) => {
                Ok((Dataset::read_npz(path, true)?, path.display().to_string()))
            }
            (None, Some(path), Some(column), Some(window)) => Ok((
                csv_windows(path, column, window, data.horizon)?,
                format!("{}:{column}", path.display()),
            )),
            // clap requires `--column` and `--window` with `--csv`, and `run` comes here only
            // with `--data` or `--csv`.
            _ => Err(lstm::Error::invalid_value(
                "data",
                "give --data, or --csv with --column and --window",
            )
            .into()),
        }
    }

    /// The run directory of a data run: `--out`, or `runs/<data file's stem>-<cell>`.
    pub fn data_out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let file = self.data.data.as_ref().or(self.data.csv.as_ref());
            let stem = file
                .and_then(|file| file.file_stem())
                .map_or_else(|| "data".into(), |stem| stem.to_string_lossy().into_owned());
            PathBuf::from("runs").join(format!("{stem}-{}", self.cell))
        })
    }

    /// How the run on a built-in task is carried out: its directory, checkpoints, start and
    /// progress bar.
    pub fn run_options(&self, config: &TrainConfig) -> RunOptions {
        RunOptions {
            out_dir: self.out_dir(config),
            checkpoint_every: self.checkpoint_every,
            start: self.start(),
            show_progress: !self.quiet,
        }
    }

    /// The run directory: `--out`, or `runs/<task>-<cell>` (`runs/<task>-compare`).
    pub fn out_dir(&self, config: &TrainConfig) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let what = if self.compare.is_empty() {
                self.cell.as_str()
            } else {
                "compare"
            };
            PathBuf::from("runs").join(format!("{}-{what}", config.task.name()))
        })
    }
}

/// Trains as `args` say and writes a summary of each run to `out`.
pub fn run(args: &TrainArgs, catalog: &Catalog, out: &mut impl Write) -> Result<(), super::Error> {
    if let Some(threads) = args.threads {
        lstm::linalg::set_num_threads(threads);
    }
    if args.distributed {
        return run_distributed(args, catalog, out);
    }
    if args.data.data.is_some() || args.data.csv.is_some() {
        return run_data(args, catalog, None, out);
    }
    let config = args.config();
    let options = args.run_options(&config);
    if args.compare.is_empty() {
        let outcome = train_named(catalog, &args.cell, args.precision, &config, &options)?;
        write_summary(out, &outcome, &options.out_dir)?;
    } else {
        let outcomes = compare_runs(&args.compare, &config, &options, |cell, cell_options| {
            train_named(catalog, cell, args.precision, &config, cell_options)
        })?;
        for outcome in &outcomes {
            write_summary(out, outcome, &options.out_dir.join(&outcome.metrics.cell))?;
        }
        writeln!(
            out,
            "compared {}: {} and {} in {}",
            args.compare.join(", "),
            PLOT_FILE,
            METRICS_FILE,
            options.out_dir.display()
        )?;
    }
    Ok(())
}

/// `--distributed` in a build without MPI.
#[cfg(not(feature = "mpi"))]
fn run_distributed(
    _args: &TrainArgs,
    _catalog: &Catalog,
    _out: &mut impl Write,
) -> Result<(), super::Error> {
    Err(super::Error::NoMpi)
}

/// `--distributed`: this process' rank of a data-parallel run (see `distributed.rs`).
#[cfg(feature = "mpi")]
fn run_distributed(
    args: &TrainArgs,
    catalog: &Catalog,
    out: &mut impl Write,
) -> Result<(), super::Error> {
    use lstm::train::MpiWorld;

    let world = MpiWorld::init().map_err(TrainError::from)?;
    if args.threads.is_none() {
        // The ranks on a machine share its cores; more threads than cores only contend.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        lstm::linalg::set_num_threads((cores / world.ranks_on_this_node()).max(1));
    }
    let result = if args.data.data.is_some() || args.data.csv.is_some() {
        run_data(args, catalog, Some(&world), out)
    } else {
        let config = args.config();
        let options = args.run_options(&config);
        train_named_distributed(catalog, args, &config, &options, &world)
            .map_err(super::Error::from)
            .and_then(|outcome| match outcome {
                Some(outcome) => {
                    write_summary(out, &outcome, &options.out_dir)?;
                    Ok(())
                }
                None => Ok(()),
            })
    };
    match result {
        Err(err) if world.size() > 1 => {
            // The other ranks may be waiting for this one in an all-reduce: end them all.
            eprintln!("lstm: rank {} of {}: {err}", world.rank(), world.size());
            world.abort(1)
        }
        result => result,
    }
}

/// [`train_run_distributed`] for the cell of `--cell` in `--precision`.
#[cfg(feature = "mpi")]
fn train_named_distributed(
    catalog: &Catalog,
    args: &TrainArgs,
    config: &TrainConfig,
    options: &RunOptions,
    collective: &dyn lstm::train::Collective,
) -> Result<Option<RunOutcome>, TrainError> {
    let visitor = TrainCellDistributed {
        config,
        options,
        collective,
    };
    let cell = catalog.find(&args.cell)?;
    match args.precision {
        Precision::F32 => cell.jobs::<f32>().train_distributed(visitor),
        Precision::F64 => cell.jobs::<f64>().train_distributed(visitor),
    }
}

/// [`train_run_distributed`] for a cell type chosen by name.
#[cfg(feature = "mpi")]
pub(crate) struct TrainCellDistributed<'a> {
    config: &'a TrainConfig,
    options: &'a RunOptions,
    collective: &'a dyn lstm::train::Collective,
}

#[cfg(feature = "mpi")]
impl<F: Float> CellVisitor<F> for TrainCellDistributed<'_> {
    type Output = Result<Option<RunOutcome>, TrainError>;

    fn visit<C: Cell<Elem = F>>(self) -> Self::Output {
        lstm::train::train_run_distributed::<C>(self.config, self.options, self.collective)
    }
}

/// Trains on the data set of `--data` or `--csv` (as one rank of `collective`, if given)
/// and writes a summary to `out` (rank 0's alone).
fn run_data(
    args: &TrainArgs,
    catalog: &Catalog,
    collective: Option<&dyn Collective>,
    out: &mut impl Write,
) -> Result<(), super::Error> {
    let options = RunOptions {
        out_dir: args.data_out_dir(),
        checkpoint_every: 0,
        start: args.start(),
        show_progress: !args.quiet,
    };
    let visitor = TrainData {
        args,
        options: &options,
        collective,
    };
    let cell = catalog.find(&args.cell)?;
    let metrics = match args.precision {
        Precision::F32 => cell.jobs::<f32>().train_data(visitor),
        Precision::F64 => cell.jobs::<f64>().train_data(visitor),
    }?;
    let Some(metrics) = metrics else {
        return Ok(());
    };
    write!(
        out,
        "{} on {} ({}, {} outputs): training loss {:.5}",
        metrics.cell, metrics.data, metrics.objective, metrics.outputs, metrics.train_loss
    )?;
    if let Some(loss) = metrics.val_loss {
        write!(out, ", validation loss {loss:.5}")?;
    }
    if let Some(accuracy) = metrics.val_accuracy {
        write!(out, ", validation accuracy {:.1}%", 100.0 * accuracy)?;
    }
    writeln!(
        out,
        " at best epoch {} of {}; {:.3} s per epoch",
        metrics.best_epoch, metrics.epochs, metrics.epoch_seconds
    )?;
    writeln!(
        out,
        "  wrote {dir}/{BEST_FILE}, {dir}/{CHECKPOINT_FILE}, {dir}/{METRICS_FILE}, {dir}/{PLOT_FILE}",
        dir = options.out_dir.display()
    )?;
    Ok(())
}

/// [`data_run`] for a cell type chosen by name.
pub(crate) struct TrainData<'a> {
    args: &'a TrainArgs,
    options: &'a RunOptions,
    /// The ranks of a data-parallel run, if it is one.
    collective: Option<&'a dyn Collective>,
}

impl<F: Float> CellVisitor<F> for TrainData<'_> {
    /// The metrics, on rank 0 (one process is rank 0).
    type Output = Result<Option<DataMetrics>, TrainError>;

    fn visit<C: Cell<Elem = F>>(self) -> Self::Output {
        let args = self.args;
        let config = args.fit_config();
        let (train, name) = args.training_data::<F>()?;
        let (train, validation) = match (&args.data.val, args.data.val_fraction) {
            (Some(path), _) => (train, Some(Dataset::<F>::read_npz(path, true)?)),
            (None, Some(fraction)) => {
                let (train, validation) = train.split(fraction, config.seed)?;
                (train, Some(validation))
            }
            (None, None) => (train, None),
        };
        let validation = validation.as_ref();
        match self.collective {
            None => data_run::<C>(&config, &train, validation, &name, self.options).map(Some),
            Some(collective) => data_run_distributed::<C>(
                &config,
                &train,
                validation,
                &name,
                self.options,
                collective,
            ),
        }
    }
}

/// Trains the cell of `catalog` called `cell` in `precision`.
fn train_named(
    catalog: &Catalog,
    cell: &str,
    precision: Precision,
    config: &TrainConfig,
    options: &RunOptions,
) -> Result<RunOutcome, TrainError> {
    let visitor = TrainCell { config, options };
    let cell = catalog.find(cell)?;
    match precision {
        Precision::F32 => cell.jobs::<f32>().train_cell(visitor),
        Precision::F64 => cell.jobs::<f64>().train_cell(visitor),
    }
}

/// [`train_run`] for a cell type chosen by name.
pub(crate) struct TrainCell<'a> {
    config: &'a TrainConfig,
    options: &'a RunOptions,
}

impl<F: Float> CellVisitor<F> for TrainCell<'_> {
    type Output = Result<RunOutcome, TrainError>;

    fn visit<C: Cell<Elem = F>>(self) -> Self::Output {
        train_run::<C>(self.config, self.options)
    }
}

/// `adding/lstm: loss 0.00123 (held out 0.00119, baseline 0.1667) after 2000 steps in 61.2 s
/// (32.7 steps/s)` and the run's files.
fn write_summary(
    out: &mut impl Write,
    outcome: &RunOutcome,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    let metrics = &outcome.metrics;
    write!(
        out,
        "{}/{}: loss {:.5} (held out {:.5}, baseline {:.4})",
        metrics.task, metrics.cell, metrics.final_loss, metrics.eval_loss, metrics.baseline_loss
    )?;
    if let Some(accuracy) = metrics.eval_accuracy {
        write!(out, ", held-out accuracy {:.1}%", 100.0 * accuracy)?;
    }
    writeln!(
        out,
        " after {} steps in {:.1} s ({:.1} steps/s)",
        metrics.steps, metrics.wall_time_seconds, metrics.steps_per_second
    )?;
    writeln!(
        out,
        "  wrote {dir}/{CHECKPOINT_FILE}, {dir}/{METRICS_FILE}, {dir}/{PLOT_FILE}",
        dir = dir.display()
    )
}

#[cfg(test)]
#[path = "train_tests.rs"]
mod tests;
