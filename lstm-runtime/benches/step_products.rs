//! GFLOP/s of the per-step recurrent products on one thread, at every kernel level this CPU
//! supports, against the `gemm` crate on the same operands: the numbers behind the packed
//! kernels of `linalg/packed.rs` (and their AVX-512 variant); `linalg::matmul_nn` runs the
//! `gemm` crate, or at one row the matrix-vector kernels. The shapes are one step of the
//! three cases of the performance issue, forward (`h_prev · W_hhᵀ`) and backward
//! (`dZ · W_hh`). Levels and the crate are timed in alternation, round after round; each
//! cell is the best round (other processes on the machine only ever slow a round down).
//!
//! `cargo bench -p lstm-runtime --bench step_products`

use std::hint::black_box;
use std::time::Instant;

use lstm_runtime::__private::StepProduct;
use lstm_runtime::isa::{self, Isa};
use lstm_runtime::linalg;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 15;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

/// Seconds per call of `f`, averaged over `calls` calls.
fn seconds(f: &mut dyn FnMut(), calls: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn main() {
    linalg::set_num_threads(1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let levels: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|level| level.supported())
        .collect();
    let mut names: Vec<String> = vec!["linalg::matmul_nn".into()];
    names.extend(levels.iter().map(|level| format!("packed {level}")));
    println!("| step product (m×k×n) | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    // (case, m = batch, hidden, gates · hidden)
    for (case, m, hidden) in [("case 1", 64, 512), ("case 2", 32, 256), ("case 3", 1, 128)] {
        let gates = 4 * hidden;
        let w = random(&mut rng, gates, hidden);
        for (product, k, n) in [("forward", hidden, gates), ("backward", gates, hidden)] {
            let a = random(&mut rng, m, k);
            let mut c = Array2::<f32>::zeros((m, n));
            let packed = match product {
                "forward" => StepProduct::transposed(w.view()),
                _ => StepProduct::plain(w.view()),
            };
            let b = match product {
                "forward" => w.t(),
                _ => w.view(),
            };
            let flops = 2.0 * (m * k * n) as f64;
            let calls = ((2e8 / flops) as usize).max(1);
            let mut best = vec![f64::INFINITY; names.len()];
            for _ in 0..ROUNDS {
                isa::set_active(Isa::detected()).expect("the detected level is supported");
                let time = seconds(
                    &mut || {
                        linalg::matmul_nn(1.0, black_box(a.view()), b, 0.0, c.view_mut())
                            .expect("shapes fit")
                    },
                    calls,
                );
                best[0] = best[0].min(time);
                for (slot, &level) in best[1..].iter_mut().zip(&levels) {
                    isa::set_active(level).expect("only supported levels are listed");
                    let time = seconds(
                        &mut || {
                            packed
                                .run(w.view(), black_box(a.view()), c.view_mut())
                                .expect("shapes fit")
                        },
                        calls,
                    );
                    *slot = slot.min(time);
                }
            }
            let cells: Vec<String> = best
                .iter()
                .map(|seconds| format!("{:.1}", flops / seconds / 1e9))
                .collect();
            println!("| {case} {product} {m}×{k}×{n} | {} |", cells.join(" | "));
        }
    }
    isa::set_active(Isa::detected()).expect("the detected level is supported");
}
