//! GFLOP/s of every backend on every shape of `gemm_common`, as a markdown table: the numbers
//! behind the dispatch in `linalg`. The backends of one shape are timed in alternation, round
//! after round, and each cell is the median round, so load from other processes on the
//! machine hits every backend alike (criterion's `gemm_shapes` times them one after another).
//!
//! `cargo bench -p lstm-runtime --features gemm-backends --bench gemm_table [-- FILTER]`:
//! only the shapes whose name contains `FILTER`.

mod gemm_common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use gemm_common::{BACKENDS, Operands, THREADS, shapes};
use lstm_runtime::linalg;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Rounds per shape; each backend runs once per round.
const ROUNDS: usize = 11;
/// How long one backend's turn in a round lasts, at least (it runs the product this many
/// times over, and always at least once).
const TURN: Duration = Duration::from_millis(25);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .unwrap_or_default();
    linalg::set_num_threads(THREADS);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let names: Vec<&str> = BACKENDS.iter().map(|(name, _)| *name).collect();
    println!("| shape (m×k×n) | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for shape in shapes() {
        let label = format!(
            "{}/{}/{}x{}x{}",
            shape.case, shape.product, shape.m, shape.k, shape.n
        );
        if !label.contains(&filter) {
            continue;
        }
        let operands = Operands::new(&mut rng, &shape);
        let (a, b) = operands.logical();
        let mut c = Array2::<f32>::zeros((shape.m, shape.n));
        let flops = 2.0 * (shape.m * shape.n * shape.k) as f64;
        // Calls per turn, from one warm-up call of each backend.
        let calls: Vec<usize> = BACKENDS
            .iter()
            .map(|(_, backend)| {
                backend(a, b, c.view_mut());
                let start = Instant::now();
                backend(black_box(a), black_box(b), c.view_mut());
                let once = start.elapsed().as_secs_f64().max(1e-9);
                ((TURN.as_secs_f64() / once).ceil() as usize).max(1)
            })
            .collect();
        let mut seconds_per_call = vec![Vec::with_capacity(ROUNDS); BACKENDS.len()];
        for round in 0..ROUNDS {
            for offset in 0..BACKENDS.len() {
                // Rotate the order so no backend always follows the same one.
                let index = (round + offset) % BACKENDS.len();
                let backend = BACKENDS[index].1;
                let start = Instant::now();
                for _ in 0..calls[index] {
                    backend(black_box(a), black_box(b), c.view_mut());
                }
                seconds_per_call[index].push(start.elapsed().as_secs_f64() / calls[index] as f64);
            }
        }
        let gflops: Vec<f64> = seconds_per_call
            .into_iter()
            .map(|times| flops / median(times) / 1e9)
            .collect();
        let best = gflops.iter().copied().fold(0.0, f64::max);
        let cells: Vec<String> = gflops
            .iter()
            .map(|&g| {
                if g == best {
                    format!("**{g:.1}**")
                } else {
                    format!("{g:.1}")
                }
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}
