//! The `lstm` command line. Parsing only: each subcommand's work lives in `cli`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Counts heap bytes so `lstm bench` can report the peak memory of training.
#[global_allocator]
static ALLOCATOR: cli::memory::Counting = cli::memory::Counting;

fn main() -> ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lstm: {err}");
            ExitCode::FAILURE
        }
    }
}
