//! The research loop on a cell of your own: define it with `#[lstm_cell]`, check its
//! generated backward pass against finite differences, train it on the adding problem.
//!
//! ```sh
//! cargo run --release --example custom_cell
//! ```
//!
//! The cell is not in the zoo: coupled input and forget gates (`i = 1 - f`, as CIFG) whose
//! forget gate has a learned per-unit bias starting at 1, so the cell starts out remembering
//! (Jozefowicz et al. 2015), and an output gate that peeks at the new cell state. The run
//! leaves `runs/custom_cell/` with a checkpoint, `metrics.json` and `loss.png`.

use std::error::Error;
use std::path::PathBuf;

use lstm::ndarray::Array3;
use lstm::train::{RunOptions, Start, Task, TrainConfig, train_run};
use lstm::{Call, Cell, GradcheckOptions, Lstm, LstmConfig, gradcheck, lstm_cell};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Coupled gates with an open-by-default forget gate and an output peephole.
#[lstm_cell(
    f = sigmoid(z_f + forget_bias),
    i = 1.0 - f,
    o = sigmoid(z_o + peephole_o * c)
)]
pub struct OpenCoupled {
    /// Added to the forget gate's pre-activation; starts at 1.
    #[init(ones)]
    forget_bias: PerUnit,
    /// Output-gate peephole weights.
    peephole_o: PerUnit,
}

/// Worst relative error the gradient check accepts (f64 central differences).
const GRADCHECK_TOLERANCE: f64 = 1e-6;

fn main() -> Result<(), Box<dyn Error>> {
    check_gradients()?;

    let config = TrainConfig {
        task: Task::adding(50),
        hidden_size: 32,
        steps: 1500,
        ..TrainConfig::default()
    };
    let options = RunOptions {
        out_dir: PathBuf::from("runs/custom_cell"),
        checkpoint_every: 0,
        // The example's own output: running it again replaces it.
        start: Start::Overwrite,
        show_progress: true,
    };
    let outcome = train_run::<OpenCoupled<f32>>(&config, &options)?;
    let metrics = &outcome.metrics;
    println!(
        "trained {} on the adding problem (T = {}): loss {:.5}, held out {:.5} \
         (predicting the mean scores {:.4}) in {:.1} s",
        metrics.cell,
        metrics.seq_len,
        metrics.final_loss,
        metrics.eval_loss,
        metrics.baseline_loss,
        metrics.wall_time_seconds
    );
    println!("wrote {}", options.out_dir.display());
    Ok(())
}

/// Backward of a small two-layer bidirectional layer of the cell, against central finite
/// differences of its forward pass, for every parameter and the inputs.
fn check_gradients() -> Result<(), Box<dyn Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let config = LstmConfig::new(3, 4)
        .with_num_layers(2)
        .with_bidirectional(true);
    let layer = Lstm::<OpenCoupled<f64>>::new(config, &mut rng)?;
    let input = Array3::from_shape_fn((6, 2, 3), |_| rng.random_range(-1.0..1.0));
    let lengths = [6, 4];
    let call = Call::new().with_lengths(&lengths);
    let report = gradcheck(&layer, input.view(), call, &GradcheckOptions::default())?;
    print!(
        "gradient check of {}:\n{report}",
        <OpenCoupled<f64> as Cell>::SPEC.name
    );
    let worst = report.worst_relative_error();
    if worst > GRADCHECK_TOLERANCE {
        return Err(format!("gradient check failed: worst relative error {worst:.2e}").into());
    }
    println!("worst relative error {worst:.2e} (tolerance {GRADCHECK_TOLERANCE:.0e})\n");
    Ok(())
}
