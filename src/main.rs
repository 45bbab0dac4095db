//! The `lstm` command line. Parsing only: each subcommand's work lives in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lstm: {err}");
            ExitCode::FAILURE
        }
    }
}
