//! The fused elementwise steps the macro generates, on the first case of the performance
//! issue (batch 64, hidden 512): forward (inference and training) and backward, per cell.

use criterion::{Criterion, criterion_group, criterion_main};
use lstm_runtime::zoo::{ForgetBias, LayerNorm, Lstm, ScaledForget};
use lstm_runtime::{BackwardIo, Cell, CellDims, StepIo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

const BATCH: usize = 64;
const HIDDEN: usize = 512;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn bench_cell<C: Cell<Elem = f32>>(c: &mut Criterion) {
    let spec = C::SPEC;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let cell = C::init(CellDims::new(HIDDEN, HIDDEN), &mut rng);
    let gates = spec.gates.len() * HIDDEN;
    let zx = random(&mut rng, BATCH * gates);
    let zh = random(&mut rng, BATCH * gates);
    let bias_ih = random(&mut rng, gates);
    let bias_hh = random(&mut rng, gates);
    let c_prev = random(&mut rng, BATCH * HIDDEN);
    let h_prev = random(&mut rng, BATCH * HIDDEN);
    let mut h = vec![0.0; BATCH * HIDDEN];
    let mut c_new = vec![0.0; BATCH * HIDDEN];
    let mut scratch = vec![0.0; BATCH * spec.scratch.len(HIDDEN)];
    let mut cache = vec![0.0; BATCH * spec.cache.len(HIDDEN)];
    macro_rules! io {
        () => {
            StepIo {
                rows: BATCH,
                zx: &zx,
                zh: &zh,
                bias_ih: &bias_ih,
                bias_hh: &bias_hh,
                constant: &[],
                c_prev: &c_prev,
                h_prev: &h_prev,
                h: &mut h,
                c: &mut c_new,
                scratch: &mut scratch,
            }
        };
    }
    c.bench_function(&format!("{}/step", spec.name), |b| {
        b.iter(|| cell.step(black_box(io!())))
    });
    c.bench_function(&format!("{}/step_train", spec.name), |b| {
        b.iter(|| cell.step_train(black_box(io!()), &mut cache))
    });
    let dh = random(&mut rng, BATCH * HIDDEN);
    let dc = random(&mut rng, BATCH * HIDDEN);
    let mut dzx = vec![0.0; BATCH * gates];
    let mut dzh = vec![
        0.0;
        if spec.shared_preactivation_grad {
            0
        } else {
            BATCH * gates
        }
    ];
    let mut dc_prev = vec![0.0; BATCH * HIDDEN];
    let mut dbias_ih = vec![0.0; gates];
    let mut dbias_hh = vec![0.0; gates];
    let mut back_scratch = vec![0.0; BATCH * spec.backward_scratch.len(HIDDEN)];
    let mut grads = C::zeros(cell.dims());
    c.bench_function(&format!("{}/step_backward", spec.name), |b| {
        b.iter(|| {
            cell.step_backward(
                black_box(BackwardIo {
                    rows: BATCH,
                    dh: &dh,
                    dc: &dc,
                    c_prev: &c_prev,
                    c: &c_new,
                    h_prev: &h_prev,
                    bias_ih: &bias_ih,
                    bias_hh: &bias_hh,
                    constant: &[],
                    cache: &cache,
                    dzx: &mut dzx,
                    dzh: &mut dzh,
                    dc_prev: &mut dc_prev,
                    dh_prev: &mut [],
                    dconstant: &mut [],
                    dbias_ih: &mut dbias_ih,
                    dbias_hh: &mut dbias_hh,
                    scratch: &mut back_scratch,
                }),
                &mut grads,
            )
        })
    });
}

fn steps(c: &mut Criterion) {
    bench_cell::<Lstm>(c);
    bench_cell::<ForgetBias>(c);
    bench_cell::<ScaledForget>(c);
    bench_cell::<LayerNorm>(c);
}

criterion_group!(benches, steps);
criterion_main!(benches);
