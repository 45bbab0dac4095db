//! The matrix products of the runtime. The input projection of all time steps and the weight
//! gradients of backpropagation through time go through the three functions here, which wrap
//! the pure Rust [`gemm`] crate, with vector kernels of their own for batch 1 ([`gemv`]). The
//! products every time step repeats with the same weights (`h_prev · W_hhᵀ`, `dZ · W_hh`) go
//! through [`StepRhs`], which in f32 packs the weights once per call for kernels of its own
//! (`packed.rs`).
//!
//! They follow BLAS's convention `c ← beta·c + alpha·op(a)·op(b)` (the `gemm` crate itself
//! swaps the roles of `alpha` and `beta`; that stays inside this module) and take ndarray views
//! of any strides, so transposed or sliced operands need no copy. Small products run on the
//! calling thread; larger ones on [`num_threads`] Rayon threads, or, inside a time loop's duet
//! (`duet.rs`), as two halves of the columns on the duet's two threads.

use std::any::TypeId;
use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::error::{Result, expect_shape as check};
use crate::{Float, duet};

mod gemv;
#[cfg(target_arch = "x86_64")]
mod packed;
#[cfg(not(target_arch = "x86_64"))]
#[path = "linalg/packed_none.rs"]
mod packed;

/// Multiply-adds below which a product runs single-threaded: handing work to other threads
/// costs more than it saves there. The `gemm` crate's own default threading threshold.
const PARALLEL_MIN_WORK: usize = 48 * 48 * 256;

/// Threads requested with [`set_num_threads`]; `0` means "not set".
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The machine's available parallelism, read once: asking the system costs tens of
/// microseconds (affinity and cgroup quota), more than a small product, and every product and
/// step asks.
static DEFAULT_THREADS: OnceLock<usize> = OnceLock::new();

/// Sets how many threads large matrix products use (PyTorch `torch.set_num_threads`).
///
/// `0` restores the default, the machine's available parallelism.
pub fn set_num_threads(threads: usize) {
    NUM_THREADS.store(threads, Ordering::Relaxed);
}

/// How many threads large matrix products use: the value given to [`set_num_threads`], or by
/// default [`std::thread::available_parallelism`] (1 if that is unknown), read on first use.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => *DEFAULT_THREADS
            .get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from)),
        threads => threads,
    }
}

/// `c ← beta·c + alpha·a·bᵀ` with `a: m×k`, `b: n×k`, `c: m×n`.
///
/// The shape of the input projection `zx = x · W_ihᵀ`. When `beta` is zero `c` is not read
/// (as in BLAS), so it may hold anything, NaN included.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] if the shapes do not fit together.
pub fn matmul_nt<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (m, k) = a.dim();
    let n = b.nrows();
    check("matmul_nt: b", &[n, k], b.shape())?;
    check("matmul_nt: c", &[m, n], c.shape())?;
    gemm_views(alpha, a, b.t(), beta, c);
    Ok(())
}

/// `c ← beta·c + alpha·aᵀ·b` with `a: k×m`, `b: k×n`, `c: m×n`.
///
/// The shape of weight gradients summed over rows: `dW_ih = dZᵀ · X`. When `beta` is zero `c`
/// is not read.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] if the shapes do not fit together.
pub fn matmul_tn<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (k, m) = a.dim();
    let n = b.ncols();
    check("matmul_tn: b", &[k, n], b.shape())?;
    check("matmul_tn: c", &[m, n], c.shape())?;
    gemm_views(alpha, a.t(), b, beta, c);
    Ok(())
}

/// `c ← beta·c + alpha·a·b` with `a: m×k`, `b: k×n`, `c: m×n`.
///
/// The shape of input gradients: `dX = dZ · W_ih`. When `beta` is zero `c` is not read.
///
/// # Errors
///
/// [`crate::Error::ShapeMismatch`] if the shapes do not fit together.
pub fn matmul_nn<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (m, k) = a.dim();
    let n = b.ncols();
    check("matmul_nn: b", &[k, n], b.shape())?;
    check("matmul_nn: c", &[m, n], c.shape())?;
    gemm_views(alpha, a, b, beta, c);
    Ok(())
}

/// Bytes up to which [`prefetch`] requests a buffer: a step's rows at small batch.
const PREFETCH_MAX_BYTES: usize = 16 * 1024;

/// Requests every cache line of a small buffer (up to [`PREFETCH_MAX_BYTES`]) before it is
/// read, all at once; larger buffers are left to the hardware prefetcher.
///
/// Inside a duet each step hands values from one core to the other: the helper's half of the
/// product reads `h_prev`, which the calling thread has just written, and the elementwise step
/// reads the helper's half of `zh`. The kernels read those one value at a time among other
/// loads, so without this each cache line would cross between the cores in turn (at batch 1
/// the helper's half of the product took about 1.5 µs longer than the caller's).
pub(crate) fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        if size_of_val(values) > PREFETCH_MAX_BYTES {
            return;
        }
        let bytes = values.as_ptr().cast::<i8>();
        for offset in (0..size_of_val(values)).step_by(64) {
            // SAFETY: the address lies inside `values`; a prefetch reads nothing and never
            // faults.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// Threads for a product `a: m×k` times `b: k×n` on the `gemm` crate: a matrix-vector product
/// (`m` or `n` is 1, batch 1; in f32 [`by_gemv`] takes most of these first) and anything below
/// [`PARALLEL_MIN_WORK`] multiply-adds runs on the calling thread, the rest on `max_threads`.
///
/// faer was measured too (the `gemm_table` benchmark): alone, on two idle threads, it beats
/// `gemm` by 5–55% on the projections and `dh_prev`, but inside a layer call, where its thread
/// pool alternates with `gemm`'s, forward plus backward got slower end to end (batch 32,
/// hidden 256: 1.3×), so it is not used.
fn threads_for(m: usize, k: usize, n: usize, max_threads: usize) -> usize {
    let work = m.saturating_mul(n).saturating_mul(k);
    if m == 1 || n == 1 || work < PARALLEL_MIN_WORK {
        1
    } else {
        max_threads
    }
}

/// Multiply-adds from which a step product ([`StepRhs::product`]) outside a duet splits its
/// panels between Rayon's threads, which costs tens of microseconds when called from outside
/// the pool.
const STEP_PARALLEL_MIN_WORK: usize = 1 << 21;

/// Multiply-adds from which a product splits in two inside a duet (`duet.rs`), where handing
/// half to the other core costs well under a microsecond. Batch 1 at hidden 128 (65 536)
/// splits: each core then streams half of the weights from its own cache.
const DUET_MIN_WORK: usize = 1 << 14;

/// The right-hand operand `b: k×n` of a product that every time step repeats with new left
/// rows: the recurrent weights, as `h_prev · W_hhᵀ` (forward) and `dZ · W_hh` (backward)
/// read them. In f32 on a machine with AVX2 and FMA it is packed once (`packed.rs`) and every
/// step streams the packed panels; otherwise each step is a [`gemm`] call on the weights.
#[derive(Debug)]
pub(crate) struct StepRhs {
    /// Whether `b` is the transpose of the weights given.
    transposed: bool,
    /// `b` packed, when the kernels of `packed.rs` run here.
    packed: Option<packed::Panels>,
}

impl StepRhs {
    /// `b = wᵀ` for `w: n×k`.
    pub(crate) fn transposed<F: Float>(w: ArrayView2<'_, F>) -> Self {
        let (n, k) = w.dim();
        StepRhs {
            transposed: true,
            packed: f32_slice(&w).and_then(|w| packed::Panels::transposed(w, n, k)),
        }
    }

    /// `b = w` for `w: k×n`.
    pub(crate) fn plain<F: Float>(w: ArrayView2<'_, F>) -> Self {
        let (k, n) = w.dim();
        StepRhs {
            transposed: false,
            packed: f32_slice(&w).and_then(|w| packed::Panels::plain(w, k, n)),
        }
    }

    /// `c ← a·b`, or `c ← c + a·b` when `accumulate`, with `a: m×k` and `c: m×n`; `w` is the
    /// matrix this operand was made from (read only when it was not packed).
    ///
    /// # Errors
    ///
    /// [`crate::Error::ShapeMismatch`] if the shapes do not fit together.
    pub(crate) fn product<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        mut c: ArrayViewMut2<'_, F>,
        accumulate: bool,
    ) -> Result<()> {
        let b = if self.transposed {
            w.reversed_axes()
        } else {
            w
        };
        let (k, n) = b.dim();
        let m = a.nrows();
        check("step product: a", &[m, k], a.shape())?;
        check("step product: c", &[m, n], c.shape())?;
        let beta = if accumulate { F::one() } else { F::zero() };
        let packed = self
            .packed
            .as_ref()
            .filter(|panels| (panels.depth(), panels.width()) == (k, n));
        let (Some(panels), Some(a_values), Some(c_values)) =
            (packed, f32_slice(&a), c.as_slice_mut())
        else {
            gemm_views(F::one(), a, b, beta, c);
            return Ok(());
        };
        let work = m * k * n;
        let out = SharedOut(c_values.as_mut_ptr().cast::<f32>());
        // SAFETY: `F` is `f32` (`f32_slice` succeeded). `a` holds `m·k` values and `c` `m·n`
        // (both checked above, contiguous); each thread gets a disjoint panel range, hence
        // disjoint columns of `c`, which the unique view `c` lets no one else touch meanwhile.
        let run = |range: Range<usize>| unsafe {
            panels.product(a_values, m, out.get(), accumulate, range)
        };
        let count = panels.panel_count();
        if duet::active() && work >= DUET_MIN_WORK && count > 1 {
            let mid = count / 2;
            duet::join(
                || run(0..mid),
                || {
                    prefetch(a_values);
                    run(mid..count);
                },
            );
        } else if !duet::active() && work >= STEP_PARALLEL_MIN_WORK {
            split_panels(0..count, num_threads().min(count), &run);
        } else {
            run(0..count);
        }
        Ok(())
    }
}

/// `b = w[rows]ᵀ` for a selection of the rows of `w: n×k`, packed (`packed.rs`): the right
/// operand of the products one thread runs for its share of a step's units (`units.rs`),
/// `c = a · b` for a few left rows `a: m×k`, on the calling thread.
#[derive(Debug)]
pub(crate) struct PackedRows<F> {
    panels: packed::Panels,
    elem: std::marker::PhantomData<F>,
}

impl<F: Float> PackedRows<F> {
    /// Packs the rows `rows` of `w`, in that order; `None` unless `F` is `f32` on a machine
    /// with the kernels of `packed.rs` (AVX2 and FMA).
    pub(crate) fn new(w: ArrayView2<'_, F>, rows: &[usize]) -> Option<Self> {
        if TypeId::of::<F>() != TypeId::of::<f32>() {
            return None;
        }
        let k = w.ncols();
        let mut gathered = Vec::with_capacity(rows.len() * k);
        for &row in rows {
            let row = w.row(row);
            match row.as_slice() {
                // SAFETY: `F` is `f32`, checked above.
                Some(values) => gathered.extend_from_slice(unsafe { as_f32(values) }),
                // SAFETY: as above.
                None => gathered.extend(
                    row.iter()
                        .map(|v| unsafe { *(v as *const F).cast::<f32>() }),
                ),
            }
        }
        packed::Panels::transposed(&gathered, rows.len(), k).map(|panels| PackedRows {
            panels,
            elem: std::marker::PhantomData,
        })
    }

    /// Columns of `b`: the rows selected.
    pub(crate) fn width(&self) -> usize {
        self.panels.width()
    }

    /// `c ← a · b`, or `c += a · b` when `accumulate`, for one left row `a` of `k` values.
    ///
    /// # Panics
    ///
    /// If `a` and `c` do not hold `k` and `n` values (a bug of the caller).
    pub(crate) fn row_product(&self, a: &[F], c: &mut [F], accumulate: bool) {
        let (k, n) = (self.panels.depth(), self.panels.width());
        assert!(
            a.len() == k && c.len() == n,
            "packed row product: a has {} values for {k}, c {} for {n}",
            a.len(),
            c.len()
        );
        // SAFETY: `F` is `f32` (the only type `new` packs for); bounds checked above; the
        // unique borrow of `c` keeps it to this call.
        unsafe {
            self.panels
                .row_product(as_f32(a), as_f32_mut(c).as_mut_ptr(), accumulate);
        }
    }

    /// Number of panels of [`packed::NR`] columns (the last one may be partly empty).
    pub(crate) fn panel_count(&self) -> usize {
        self.panels.panel_count()
    }

    /// `c ← a · b` for the columns of the panels `panels`, with `a` row-major `m×k` and `c`
    /// row-major `m×n` (its other columns untouched).
    ///
    /// # Panics
    ///
    /// If `a` or `c` is not of that length or `panels` exceeds the panel count (a bug of the
    /// caller, which sizes both once).
    pub(crate) fn product(&self, a: &[F], m: usize, c: &mut [F], panels: Range<usize>) {
        let (k, n) = (self.panels.depth(), self.panels.width());
        assert!(
            a.len() == m * k && c.len() == m * n && panels.end <= self.panels.panel_count(),
            "packed product: a has {} values for {m}×{k}, c {} for {m}×{n}, panels {panels:?}",
            a.len(),
            c.len()
        );
        // SAFETY: `F` is `f32` (the only type `new` packs for); `a` holds `m·k` values and `c`
        // `m·n` writable ones, the panels exist (checked above); the unique borrow keeps `c`
        // to this call.
        unsafe {
            self.panels
                .product(as_f32(a), m, as_f32_mut(c).as_mut_ptr(), false, panels);
        }
    }
}

/// The output of a step product, shared by the threads that write its disjoint column
/// ranges.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the threads given a `SharedOut` write disjoint columns (see `StepRhs::product`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `work` over `panels` split into `parts` contiguous ranges on Rayon's threads.
fn split_panels(panels: Range<usize>, parts: usize, work: &(dyn Fn(Range<usize>) + Sync)) {
    if parts <= 1 || panels.len() <= 1 {
        work(panels);
        return;
    }
    let left = parts / 2;
    let mid = panels.start + panels.len() * left / parts;
    rayon::join(
        || split_panels(panels.start..mid, left, work),
        || split_panels(mid..panels.end, parts - left, work),
    );
}

/// The values of a standard-layout f32 view, as f32; `None` for f64 or other layouts.
fn f32_slice<'v, F: Float>(view: &'v ArrayView2<'_, F>) -> Option<&'v [f32]> {
    if TypeId::of::<F>() != TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: `F` is `f32`, checked above.
    view.as_slice().map(|values| unsafe { as_f32(values) })
}

/// `c ← beta·c + alpha·a·b` for views whose shapes the caller has checked to fit.
fn gemm_views<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: only the scaling of `c` remains. Handled here so the kernel never sees
        // a zero depth, and so `beta == 0` clears `c` without reading it.
        if beta == F::zero() {
            c.fill(F::zero());
        } else {
            c.map_inplace(|value| *value = beta * *value);
        }
        return;
    }
    if m == 1 && by_gemv(alpha, a, b, beta, &mut c) {
        return;
    }
    let threads = threads_for(m, k, n, num_threads());
    if threads > 1 && duet::active() {
        // The two halves of the longer side of `c` on the two threads of the duet. Split by
        // columns, both threads read (and the `gemm` crate packs) all of `a`: for a weight
        // gradient (`c` 2048×512 at hidden 512, `a` the transposed `dZ`), that ran at
        // 87–124 GFLOP/s against 147–158 split by rows.
        if m > n {
            let mid = m / 2;
            let (c_top, c_bottom) = c.split_at(Axis(0), mid);
            let (a_top, a_bottom) = a.split_at(Axis(0), mid);
            duet::join(
                || with_gemm(alpha, a_top, b, beta, c_top, 1),
                || with_gemm(alpha, a_bottom, b, beta, c_bottom, 1),
            );
        } else {
            let mid = n / 2;
            let (c_left, c_right) = c.split_at(Axis(1), mid);
            let (b_left, b_right) = b.split_at(Axis(1), mid);
            duet::join(
                || with_gemm(alpha, a, b_left, beta, c_left, 1),
                || with_gemm(alpha, a, b_right, beta, c_right, 1),
            );
        }
        return;
    }
    with_gemm(alpha, a, b, beta, c, threads);
}

/// [`gemm_views`] for one contiguous row `a` of f32 times a contiguous matrix `b` (batch 1)
/// by the vector kernels of [`gemv`], which beat the `gemm` crate's there by 15–40% (`linalg`
/// against `gemm_seq` in the `gemm_table` benchmark); `false`, with nothing written, for other
/// operands or on a machine without AVX2 and FMA.
fn by_gemv<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    c: &mut ArrayViewMut2<'_, F>,
) -> bool {
    if TypeId::of::<F>() != TypeId::of::<f32>() {
        return false;
    }
    let b_transposed = b.t();
    let (Some(a), Some(c)) = (a.as_slice(), c.as_slice_mut()) else {
        return false;
    };
    let (alpha, beta) = (alpha.to_f64_lossy() as f32, beta.to_f64_lossy() as f32);
    // SAFETY (every cast): `F` is `f32`, checked above, so the slices are reinterpreted as the
    // type they hold; the f64 round trip of the scalars is exact.
    let (a, c) = unsafe { (as_f32(a), as_f32_mut(c)) };
    let done = if let Some(w) = b_transposed.as_slice() {
        gemv::dot_rows(alpha, a, unsafe { as_f32(w) }, beta, c)
    } else if let Some(b) = b.as_slice() {
        gemv::axpy_rows(alpha, a, unsafe { as_f32(b) }, beta, c)
    } else {
        None
    };
    done.is_some()
}

/// # Safety
///
/// `F` is `f32`.
unsafe fn as_f32<F: Float>(values: &[F]) -> &[f32] {
    // SAFETY: `F` is `f32`, as the caller guarantees.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) }
}

/// # Safety
///
/// `F` is `f32`.
unsafe fn as_f32_mut<F: Float>(values: &mut [F]) -> &mut [f32] {
    // SAFETY: `F` is `f32`, as the caller guarantees.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast(), values.len()) }
}

/// [`gemm_views`] on the [`gemm`] crate.
fn with_gemm<F: Float>(
    alpha: F,
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    beta: F,
    mut c: ArrayViewMut2<'_, F>,
    threads: usize,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let [c_rs, c_cs] = [c.strides()[0], c.strides()[1]];
    let [a_rs, a_cs] = [a.strides()[0], a.strides()[1]];
    let [b_rs, b_cs] = [b.strides()[0], b.strides()[1]];
    // SAFETY: the caller checked `a: m×k`, `b: k×n`, `c: m×n`; every pointer is the first
    // logical element of its view and every stride is the view's own, so the kernel stays
    // inside the three views. `c` is a unique mutable view, so it overlaps neither `a` nor
    // `b`. `F` is `f32` or `f64` (`Float` is sealed), both of which `gemm` supports, so its
    // type dispatch cannot panic. The `gemm` crate computes `dst ← alpha·dst + beta·lhs·rhs`
    // and reads `dst` only when `read_dst`: hence the swapped scalars.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != F::zero(),
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::Error;

    /// `(m, k, n)` triples: single rows and columns, zero sizes, odd sizes, and two products
    /// big enough to take the threaded path (in a duet one splits by rows, one by columns).
    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (1, 7, 1),
        (1, 5, 9),
        (9, 5, 1),
        (3, 4, 5),
        (17, 13, 11),
        (33, 65, 31),
        (0, 3, 4),
        (3, 0, 4),
        (3, 4, 0),
        (0, 0, 0),
        (131, 120, 100),
        (100, 120, 131),
    ];

    fn random<F: Float>(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<F> {
        Array2::from_shape_fn((rows, cols), |_| F::of(rng.random_range(-1.0..1.0)))
    }

    /// `beta·c + alpha·a·b` by the definition, in f64.
    fn naive<F: Float>(
        alpha: F,
        a: &Array2<F>,
        b: &Array2<F>,
        beta: F,
        c: &Array2<F>,
    ) -> Array2<f64> {
        let (m, k) = a.dim();
        let n = b.ncols();
        let mut out = Array2::zeros((m, n));
        for i in 0..m {
            for j in 0..n {
                let mut sum = 0.0;
                for p in 0..k {
                    sum += a[[i, p]].to_f64_lossy() * b[[p, j]].to_f64_lossy();
                }
                let scaled_c = if beta == F::zero() {
                    0.0
                } else {
                    beta.to_f64_lossy() * c[[i, j]].to_f64_lossy()
                };
                out[[i, j]] = scaled_c + alpha.to_f64_lossy() * sum;
            }
        }
        out
    }

    fn assert_close<F: Float>(found: &Array2<F>, expected: &Array2<f64>, tolerance: f64) {
        assert_eq!(found.shape(), expected.shape());
        for (f, e) in found.iter().zip(expected) {
            let f = f.to_f64_lossy();
            assert!(
                (f - e).abs() <= tolerance * (1.0 + e.abs()),
                "found {f}, expected {e}"
            );
        }
    }

    /// One of the three wrappers.
    type Product<F> =
        fn(F, ArrayView2<'_, F>, ArrayView2<'_, F>, F, ArrayViewMut2<'_, F>) -> Result<()>;

    /// Runs `product` (one of the three wrappers, given its operands in the layout it expects)
    /// on every shape and scalar pair, against the naive product of the logical operands.
    fn check_against_naive<F: Float>(
        tolerance: f64,
        layout_a: fn(Array2<F>) -> Array2<F>,
        layout_b: fn(Array2<F>) -> Array2<F>,
        product: Product<F>,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for &(m, k, n) in SHAPES {
            for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, 1.5)] {
                let a = random::<F>(&mut rng, m, k);
                let b = random::<F>(&mut rng, k, n);
                let mut c = random::<F>(&mut rng, m, n);
                let expected = naive(F::of(alpha), &a, &b, F::of(beta), &c);
                product(
                    F::of(alpha),
                    layout_a(a).view(),
                    layout_b(b).view(),
                    F::of(beta),
                    c.view_mut(),
                )
                .unwrap();
                assert_close(&c, &expected, tolerance);
            }
        }
    }

    fn same<F: Float>(x: Array2<F>) -> Array2<F> {
        x
    }

    fn transposed<F: Float>(x: Array2<F>) -> Array2<F> {
        x.t().to_owned()
    }

    #[test]
    fn matmul_nt_matches_naive() {
        check_against_naive::<f64>(1e-12, same, transposed, matmul_nt);
        check_against_naive::<f32>(1e-5, same, transposed, matmul_nt);
    }

    #[test]
    fn matmul_tn_matches_naive() {
        check_against_naive::<f64>(1e-12, transposed, same, matmul_tn);
        check_against_naive::<f32>(1e-5, transposed, same, matmul_tn);
    }

    #[test]
    fn matmul_nn_matches_naive() {
        check_against_naive::<f64>(1e-12, same, same, matmul_nn);
        check_against_naive::<f32>(1e-5, same, same, matmul_nn);
    }

    #[test]
    fn zero_beta_does_not_read_c() {
        let a = Array2::from_elem((2, 3), 1.0f64);
        let b = Array2::from_elem((4, 3), 2.0f64);
        for k in [3, 0] {
            let mut c = Array2::from_elem((2, 4), f64::NAN);
            matmul_nt(
                1.0,
                a.slice(s![.., ..k]),
                b.slice(s![.., ..k]),
                0.0,
                c.view_mut(),
            )
            .unwrap();
            assert!(c.iter().all(|&v| v == 2.0 * k as f64));
        }
    }

    #[test]
    fn strided_views_need_no_copy() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a = random::<f64>(&mut rng, 6, 8);
        let b = random::<f64>(&mut rng, 8, 10);
        let a_view = a.slice(s![..;2, 1..;2]);
        let b_view = b.slice(s![1..5;-1, ..;3]);
        let mut c = Array2::zeros((6, 8));
        let mut c_view = c.slice_mut(s![..3, 1..;2]);
        matmul_nn(1.0, a_view, b_view, 0.0, c_view.view_mut()).unwrap();
        let expected = naive(
            1.0,
            &a_view.to_owned(),
            &b_view.to_owned(),
            0.0,
            &c_view.to_owned(),
        );
        assert_close(&c_view.to_owned(), &expected, 1e-12);
        assert!(c.slice(s![.., ..;2]).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let a = Array2::<f32>::zeros((2, 3));
        let b = Array2::<f32>::zeros((4, 5));
        let mut c = Array2::<f32>::zeros((2, 4));
        assert_eq!(
            matmul_nt(1.0, a.view(), b.view(), 0.0, c.view_mut()),
            Err(Error::shape_mismatch("matmul_nt: b", &[4, 3], &[4, 5]))
        );
        assert_eq!(
            matmul_nn(1.0, a.view(), b.view(), 0.0, c.view_mut()),
            Err(Error::shape_mismatch("matmul_nn: b", &[3, 5], &[4, 5]))
        );
        assert_eq!(
            matmul_tn(1.0, a.view(), b.view(), 0.0, c.view_mut()),
            Err(Error::shape_mismatch("matmul_tn: b", &[2, 5], &[4, 5]))
        );
        let b = Array2::<f32>::zeros((3, 5));
        assert_eq!(
            matmul_nn(1.0, a.view(), b.view(), 0.0, c.view_mut()),
            Err(Error::shape_mismatch("matmul_nn: c", &[2, 5], &[2, 4]))
        );
    }

    /// How a test stores a logical matrix: its view has these strides.
    #[derive(Clone, Copy, Debug)]
    enum Storage {
        RowMajor,
        ColumnMajor,
        /// Every other row, backwards, and every third column: negative and non-unit strides.
        Strided,
    }

    const STORAGES: [Storage; 3] = [Storage::RowMajor, Storage::ColumnMajor, Storage::Strided];

    /// A buffer holding `x` in `storage`; [`stored_view`] gives the view of `x` in it.
    fn store<F: Float>(x: &Array2<F>, storage: Storage) -> Array2<F> {
        let (rows, cols) = x.dim();
        match storage {
            Storage::RowMajor => x.clone(),
            Storage::ColumnMajor => x.t().to_owned(),
            Storage::Strided => {
                let mut buffer = Array2::from_elem((2 * rows, 3 * cols), F::nan());
                buffer.slice_mut(s![..;-2, 1..;3]).assign(x);
                buffer
            }
        }
    }

    fn stored_view<F: Float>(buffer: &mut Array2<F>, storage: Storage) -> ArrayViewMut2<'_, F> {
        match storage {
            Storage::RowMajor => buffer.view_mut(),
            Storage::ColumnMajor => buffer.view_mut().reversed_axes(),
            Storage::Strided => buffer.slice_mut(s![..;-2, 1..;3]),
        }
    }

    /// `(m, k, n)` for the forced backends (`k ≥ 1`: `gemm_views` handles `k = 0` before
    /// choosing): vectors, odd sizes, and products past the small-matrix kernels.
    const BACKEND_SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (1, 7, 1),
        (1, 37, 29),
        (29, 37, 1),
        (3, 4, 5),
        (17, 13, 11),
        (33, 65, 31),
        (67, 45, 71),
    ];

    #[test]
    fn every_thread_count_matches_naive_on_every_storage() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for threads in [1, 2] {
            for &(m, k, n) in BACKEND_SHAPES {
                for (a_storage, b_storage, c_storage) in STORAGES
                    .into_iter()
                    .flat_map(|a| STORAGES.into_iter().map(move |b| (a, b)))
                    .flat_map(|(a, b)| STORAGES.into_iter().map(move |c| (a, b, c)))
                {
                    // beta 0 over NaN (must not leak), beta 1 (accumulate), and general scalars.
                    for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0)] {
                        let a = random::<f64>(&mut rng, m, k);
                        let b = random::<f64>(&mut rng, k, n);
                        let mut c = random::<f64>(&mut rng, m, n);
                        if beta == 0.0 {
                            c.fill(f64::NAN);
                        }
                        let expected = naive(alpha, &a, &b, beta, &c);
                        let (mut a_buffer, mut b_buffer) =
                            (store(&a, a_storage), store(&b, b_storage));
                        let mut c_buffer = store(&c, c_storage);
                        let a_view = stored_view(&mut a_buffer, a_storage);
                        let b_view = stored_view(&mut b_buffer, b_storage);
                        let c_view = stored_view(&mut c_buffer, c_storage);
                        let (a_view, b_view) = (a_view.view(), b_view.view());
                        with_gemm(alpha, a_view, b_view, beta, c_view, threads);
                        let found = stored_view(&mut c_buffer, c_storage).to_owned();
                        assert_close(&found, &expected, 1e-12);
                    }
                }
            }
        }
    }

    #[test]
    fn gemv_matches_naive_in_both_layouts() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for &(k, n) in &[(1, 1), (7, 3), (8, 4), (37, 29), (130, 70), (128, 512)] {
            for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0)] {
                let a = random::<f32>(&mut rng, 1, k);
                let b = random::<f32>(&mut rng, k, n);
                let mut c = random::<f32>(&mut rng, 1, n);
                if beta == 0.0 {
                    c.fill(f32::NAN);
                }
                let expected = naive(alpha, &a, &b, beta, &c);
                // The recurrent projection's layout (`b` the transpose of a row-major
                // matrix), then dh_prev's (`b` row-major).
                let w = b.t().to_owned();
                for b_view in [w.t(), b.view()] {
                    let mut found = c.clone();
                    let ran = by_gemv(alpha, a.view(), b_view, beta, &mut found.view_mut());
                    assert_eq!(ran, gemv::has_avx2_fma());
                    if ran {
                        assert_close(&found, &expected, 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn gemv_leaves_other_operands_to_the_general_kernels() {
        let a = Array2::<f32>::ones((1, 6));
        let b = Array2::<f32>::ones((6, 8));
        let mut c = Array2::<f32>::zeros((1, 4));
        let strided_b = b.slice(s![.., ..;2]);
        assert!(!by_gemv(1.0, a.view(), strided_b, 0.0, &mut c.view_mut()));
        let a = Array2::<f64>::ones((1, 6));
        let b = Array2::<f64>::ones((6, 4));
        let mut c = Array2::<f64>::zeros((1, 4));
        assert!(!by_gemv(1.0, a.view(), b.view(), 0.0, &mut c.view_mut()));
        assert!(c.iter().all(|&value| value == 0.0));
    }

    #[test]
    fn vectors_and_small_products_stay_on_the_calling_thread() {
        assert_eq!(threads_for(1, 128, 512, 2), 1);
        assert_eq!(threads_for(1, 4096, 4096, 2), 1);
        assert_eq!(threads_for(4096, 4096, 1, 2), 1);
        assert_eq!(threads_for(8, 8, 8, 2), 1);
        assert_eq!(threads_for(64, 512, 2048, 2), 2);
    }

    /// `(m, k, n)` of step products: batch 1 (the vector kernel), row counts that leave every
    /// row block size, widths that leave a partial panel, zero sizes, and sizes large enough
    /// to split between threads.
    const STEP_SHAPES: &[(usize, usize, usize)] = &[
        (1, 128, 512),
        (1, 7, 5),
        (2, 3, 16),
        (7, 50, 200),
        (13, 17, 33),
        (32, 64, 256),
        (6, 0, 5),
        (0, 4, 5),
        (5, 4, 0),
        (100, 40, 48),
    ];

    /// [`StepRhs::product`] in both layouts, overwriting and accumulating, against the naive
    /// product.
    fn check_step_products<F: Float>(tolerance: f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for &(m, k, n) in STEP_SHAPES {
            for accumulate in [false, true] {
                let a = random::<F>(&mut rng, m, k);
                let b = random::<F>(&mut rng, k, n);
                let c0 = random::<F>(&mut rng, m, n);
                let beta = if accumulate { F::one() } else { F::zero() };
                let expected = naive(F::one(), &a, &b, beta, &c0);
                let w_transposed = b.t().to_owned();
                let by_transposed = StepRhs::transposed(w_transposed.view());
                let by_plain = StepRhs::plain(b.view());
                for (rhs, w) in [(&by_transposed, w_transposed.view()), (&by_plain, b.view())] {
                    let mut c = c0.clone();
                    rhs.product(w, a.view(), c.view_mut(), accumulate).unwrap();
                    assert_close(&c, &expected, tolerance);
                }
            }
        }
    }

    #[test]
    fn step_products_match_naive() {
        check_step_products::<f32>(1e-5);
        check_step_products::<f64>(1e-12);
    }

    #[test]
    fn f32_step_products_are_packed_where_the_kernels_run() {
        let w = Array2::<f32>::ones((8, 4));
        assert_eq!(
            StepRhs::transposed(w.view()).packed.is_some(),
            gemv::has_avx2_fma()
        );
        assert!(
            StepRhs::transposed(Array2::<f64>::ones((8, 4)).view())
                .packed
                .is_none()
        );
    }

    #[test]
    fn products_split_in_a_duet_match_naive() {
        duet::with_duet(true, || {
            check_step_products::<f32>(1e-5);
            check_step_products::<f64>(1e-12);
            check_against_naive::<f32>(1e-5, same, transposed, matmul_nt);
            check_against_naive::<f64>(1e-12, transposed, same, matmul_tn);
            check_against_naive::<f64>(1e-12, same, same, matmul_nn);
        });
    }

    #[test]
    fn step_products_reject_shapes_that_do_not_fit() {
        let w = Array2::<f32>::ones((8, 4));
        let rhs = StepRhs::transposed(w.view());
        let a = Array2::<f32>::ones((2, 3));
        let mut c = Array2::<f32>::zeros((2, 8));
        let error = rhs
            .product(w.view(), a.view(), c.view_mut(), false)
            .unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    }

    #[test]
    fn thread_count_can_be_set_and_reset() {
        set_num_threads(3);
        assert_eq!(num_threads(), 3);
        set_num_threads(0);
        assert!(num_threads() >= 1);
    }
}
