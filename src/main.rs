//! The `lstm` command line: [`lstm::cli::main_with`] with the zoo's cells alone.

use std::process::ExitCode;

/// Counts heap bytes so `lstm bench` can report the peak memory of training.
#[global_allocator]
static ALLOCATOR: lstm::cli::memory::Counting = lstm::cli::memory::Counting;

fn main() -> ExitCode {
    lstm::cli::main_with(&[])
}
