//! The matrix products of one layer call, at the exact shapes of the three cases of the performance
//! issue (f32, row-major operands laid out as `recurrence/forward.rs` and `recurrence/backward.rs`
//! hold them), on each candidate backend. Throughput is reported in elements per second where an
//! element is one flop (`2·m·n·k` per product), so criterion's `Gelem/s` reads as GFLOP/s.
//!
//! The backends of one shape run next to each other, so machine noise hits them alike;
//! `linalg` is the runtime's own dispatch. Filter with criterion's usual argument, e.g.
//! `cargo bench -p lstm-runtime --features gemm-backends --bench gemm_shapes -- latency`.

mod gemm_common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gemm_common::{BACKENDS, Operands, THREADS, shapes};
use lstm_runtime::linalg;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

fn bench_shapes(criterion: &mut Criterion) {
    linalg::set_num_threads(THREADS);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for shape in shapes() {
        let operands = Operands::new(&mut rng, &shape);
        let (a, b) = operands.logical();
        let mut c = Array2::<f32>::zeros((shape.m, shape.n));
        let flops = 2 * shape.m * shape.n * shape.k;
        let mut group = criterion.benchmark_group(format!(
            "{}/{}/{}x{}x{}",
            shape.case, shape.product, shape.m, shape.k, shape.n
        ));
        group.throughput(Throughput::Elements(flops as u64));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_millis(1200));
        for &(name, backend) in BACKENDS {
            group.bench_function(BenchmarkId::from_parameter(name), |bencher| {
                bencher.iter(|| backend(black_box(a), black_box(b), c.view_mut()));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_shapes);
criterion_main!(benches);
