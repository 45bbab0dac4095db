//! `lstm`: custom LSTM cells from declarative gate equations.
//!
//! This facade re-exports the runtime ([`lstm_runtime`]) and the `#[lstm_cell]` macro.

// Lets cells defined inside this crate use the same `::lstm::…` paths as user crates.
extern crate self as lstm;

pub use lstm_runtime::*;
