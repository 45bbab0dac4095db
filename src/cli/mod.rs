//! The command line's arguments and the dispatch to one module per subcommand.

mod cells;
mod infer;

use std::io::{self, Write};

use clap::{CommandFactory, Parser, Subcommand};

/// Custom LSTM cells from declarative gate equations.
#[derive(Debug, Parser)]
#[command(name = "lstm", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the zoo's cells: gates, parameters with shapes and inits, and equations.
    Cells,
    /// Run a cell's layer with PyTorch- or Keras-named weights on `.npy` inputs; write
    /// `.npy` outputs and, with `--grad-output`, the gradients.
    Infer(infer::InferArgs),
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
}

/// Runs the command line's command, writing to standard output.
pub fn run(cli: Cli) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    match cli.command {
        Some(Command::Cells) => cells::write_all(&mut out, lstm::zoo::all())?,
        Some(Command::Infer(args)) => infer::run(&args)?,
        None => write_overview(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// What `lstm` without a subcommand prints: the subcommands and a pointer to `--help`.
fn write_overview(out: &mut impl Write) -> io::Result<()> {
    let command = Cli::command();
    writeln!(
        out,
        "lstm: custom LSTM cells from declarative gate equations\n"
    )?;
    writeln!(out, "subcommands:")?;
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        writeln!(out, "  {:<8} {about}", sub.get_name())?;
    }
    writeln!(
        out,
        "\nrun `lstm --help` or `lstm <subcommand> --help` for details"
    )
}

#[cfg(test)]
mod tests {
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
        assert!(Cli::parse_from(["lstm"]).command.is_none());
        assert!(Cli::try_parse_from(["lstm", "nonsense"]).is_err());
    }

    #[test]
    fn overview_lists_every_subcommand() {
        let mut out = Vec::new();
        write_overview(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  cells    List the zoo's cells"), "{text}");
    }
}
