//! The `lstm` command line with cells of your own: every subcommand that takes `--cell`
//! (`infer`, `train`, `bench`, `predict`) runs them by name, and `cells` lists them after the
//! zoo's. A binary of your own is this file: the cells, and a `main` that hands them to
//! `lstm::cli::main_with`.
//!
//! ```sh
//! cargo run --release --example own_cells_cli -- cells
//! cargo run --release --example own_cells_cli -- train --cell open_coupled --steps 200
//! cargo run --release --example own_cells_cli -- infer --cell styled --weights w.safetensors \
//!     --input x.npy --constants style.npy --output y.npy
//! ```

use std::process::ExitCode;

use lstm::cli::CliCell;
use lstm::lstm_cell;

/// Coupled input and forget gates whose forget gate starts open (a learned per-unit bias,
/// initialised to 1).
#[lstm_cell(f = sigmoid(z_f + forget_bias), i = 1.0 - f)]
pub struct OpenCoupled {
    /// Added to the forget gate's pre-activation.
    #[init(ones)]
    forget_bias: PerUnit,
}

/// The standard LSTM conditioned on a per-sequence style vector (`--constants`, Keras'
/// `constants`), projected to every gate.
#[lstm_cell(z = z + style)]
pub struct Styled {
    /// The style vector, `(batch, constant_size)`.
    style: Constant,
}

/// Counts heap bytes, so `bench` reports the peak memory of training as `lstm bench` does.
#[global_allocator]
static ALLOCATOR: lstm::cli::memory::Counting = lstm::cli::memory::Counting;

fn main() -> ExitCode {
    lstm::cli::main_with(&[
        CliCell::of::<OpenCoupled<f32>, OpenCoupled<f64>>(),
        CliCell::of::<Styled<f32>, Styled<f64>>(),
    ])
}
