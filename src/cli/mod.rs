//! The `lstm` command line: its arguments, the dispatch to one module per subcommand, and
//! [`main_with`], which runs the same command line with cells of one's own besides the zoo's
//! (a user's binary, or `examples/own_cells_cli.rs`). With the `cli` feature (on by default).

mod bench;
mod catalog;
mod cells;
mod convert;
mod expand;
mod infer;
pub mod memory;
mod predict;
mod regularization;
mod train;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use catalog::{Catalog, CliCell};

/// Custom LSTM cells from declarative gate equations.
#[derive(Debug, Parser)]
#[command(name = "lstm", version)]
pub struct Cli {
    /// What to do; without a subcommand, `train` with its defaults.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the zoo's cells: gates, parameters with shapes and inits, and equations.
    Cells,
    /// Map weights from the layout they were saved in (PyTorch, Keras, Flax, or a
    /// hand-written cell's tensors described by flags) to `nn.LSTM` names, or Keras' with
    /// `--to keras`.
    Convert(Box<convert::ConvertArgs>),
    /// Print the code `#[lstm_cell]` generates for the cells of a Rust file, or with
    /// `--equations` their forward and derived backward equations.
    Expand(expand::ExpandArgs),
    /// Run a cell's layer with PyTorch- or Keras-named weights on `.npy` inputs; write
    /// `.npy` outputs and, with `--grad-output`, the gradients.
    Infer(Box<infer::InferArgs>),
    /// Median time of a layer's forward pass and of forward plus backward (`--json` for one
    /// JSON object per line).
    Bench(bench::BenchArgs),
    /// Train a cell (or compare several) on a built-in task, or on a data set with
    /// `--data`/`--csv`; the default command.
    Train(Box<train::TrainArgs>),
    /// Apply the best model of a `train --data` run to the sequences of an `.npz` file.
    Predict(predict::PredictArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Standard output could not be written (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// Reading, checking, running or writing a model failed.
    #[error(transparent)]
    Runtime(#[from] lstm::Error),
    /// A training run failed.
    #[error(transparent)]
    Train(#[from] lstm::train::TrainError),
    /// `lstm expand` found no cell to print, or errors in the specs.
    #[error(transparent)]
    Expand(#[from] expand::ExpandError),
    /// `lstm train --distributed` in a build without the `mpi` feature.
    #[error(
        "--distributed needs an `lstm` built with the `mpi` feature (and MPI installed): \
         cargo build --release --features mpi, then mpirun -np N target/release/lstm train \
         --distributed"
    )]
    NoMpi,
}

/// The `lstm` command line on this process' arguments, with the zoo's cells and `own`: every
/// subcommand that takes `--cell` (`infer`, `train`, `bench`, `predict`) accepts their names,
/// and `cells` lists them after the zoo's. Errors are printed as one line on standard error,
/// `lstm: …`, with a failure exit code.
///
/// A binary of one's own is a `main` that calls it:
///
/// ```no_run
/// use lstm::cli::CliCell;
///
/// /// The standard LSTM with a learned temperature on the candidate.
/// #[lstm::lstm_cell(g = tanh(z_g / temperature))]
/// pub struct Tempered {
///     #[init(ones)]
///     temperature: Scalar,
/// }
///
/// fn main() -> std::process::ExitCode {
///     lstm::cli::main_with(&[CliCell::of::<Tempered<f32>, Tempered<f64>>()])
/// }
/// ```
///
/// It first asks glibc to keep freed memory for later allocations
/// ([`memory::keep_freed_memory`]), a setting of the whole process.
///
/// `lstm bench` reports the peak heap memory only where the binary counts it, by declaring
/// `#[global_allocator] static ALLOCATOR: lstm::cli::memory::Counting =
/// lstm::cli::memory::Counting;` as the `lstm` binary does; elsewhere it reports 0 MB.
pub fn main_with(own: &[CliCell]) -> ExitCode {
    memory::keep_freed_memory();
    let result = Catalog::with(own)
        .map_err(Error::from)
        .and_then(|catalog| run_with(Cli::parse(), &catalog));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lstm: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command line's command with the zoo's cells, writing to standard output.
///
/// # Errors
///
/// The command's [`Error`].
pub fn run(cli: Cli) -> Result<(), Error> {
    run_with(cli, &Catalog::zoo())
}

/// Runs the command line's command with the cells of `catalog`, writing to standard output.
///
/// # Errors
///
/// The command's [`Error`].
pub fn run_with(cli: Cli, catalog: &Catalog) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    match cli.command {
        Some(Command::Bench(args)) => bench::run(&args, catalog, &mut out)?,
        Some(Command::Cells) => cells::write_all(&mut out, &catalog.specs())?,
        Some(Command::Convert(args)) => convert::run(&args, &mut out)?,
        Some(Command::Expand(args)) => expand::run(&args, &mut out)?,
        Some(Command::Infer(args)) => infer::run(&args, catalog)?,
        Some(Command::Predict(args)) => predict::run(&args, catalog)?,
        Some(Command::Train(args)) => train::run(&args, catalog, &mut out)?,
        None => train::run(&train::TrainArgs::defaults(), catalog, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_subcommands() {
        assert!(matches!(
            Cli::parse_from(["lstm", "cells"]).command,
            Some(Command::Cells)
        ));
        assert!(matches!(
            Cli::parse_from(["lstm", "expand", "cells.rs", "--equations"]).command,
            Some(Command::Expand(args)) if args.equations && args.cell.is_none()
        ));
        assert!(Cli::parse_from(["lstm"]).command.is_none());
        assert!(Cli::try_parse_from(["lstm", "nonsense"]).is_err());
    }
}
