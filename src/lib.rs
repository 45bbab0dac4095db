//! `lstm`: custom LSTM cells from declarative gate equations.
//!
//! This facade re-exports the runtime ([`lstm_runtime`]) and the `#[lstm_cell]` macro. The
//! README below is its documentation; its Rust examples are doctests, so every cell it shows
//! compiles in a crate that depends on `lstm` alone.
#![doc = include_str!("../README.md")]

// Lets cells defined inside this crate use the same `::lstm::…` paths as user crates.
extern crate self as lstm;

pub use lstm_runtime::*;

#[cfg(feature = "cli")]
pub mod cli;

// The unit tests of `cli::memory` and `cli::bench` count the heap as the `lstm` binary does.
#[cfg(all(test, feature = "cli"))]
#[global_allocator]
static ALLOCATOR: cli::memory::Counting = cli::memory::Counting;
pub mod train;
