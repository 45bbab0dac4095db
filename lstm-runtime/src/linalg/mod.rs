//! The matrix products of the runtime. The input projection of all time steps and the weight
//! gradients of backpropagation through time go through the three functions here, which wrap
//! the pure Rust [`gemm`] crate, with vector kernels of their own for batch 1 (`gemv.rs`). The
//! products every time step repeats with the same weights (`h_prev · W_hhᵀ`, `dZ · W_hh`) go
//! through `step.rs`, which in f32 packs the weights once per call for kernels of its own
//! (`packed.rs`); `prefetch.rs` requests what those kernels read from the other core;
//! `ordered.rs` gives the input projection one summation order for any number of rows (and
//! at the AVX-512 level runs it on the packed kernels too);
//! `heads.rs` the products of a block-diagonal recurrence (`heads > 1`), block by block.
//!
//! They follow BLAS's convention `c ← beta·c + alpha·op(a)·op(b)` (the `gemm` crate itself
//! swaps the roles of `alpha` and `beta`; that stays inside this module) and take ndarray views
//! of any strides, so transposed or sliced operands need no copy. Small products run on the
//! calling thread; larger ones on [`num_threads`] Rayon threads, or, inside a time loop that
//! runs a helper thread (`parallel/helper_thread.rs`), as two halves on the two threads.

use std::any::TypeId;

use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

use crate::error::{Result, expect_shape as check};
use crate::float::Float;
use crate::parallel::helper_thread;
pub use crate::parallel::threads::{num_threads, set_num_threads};

mod gemv;
pub mod heads;
pub(crate) mod ordered;
#[cfg(target_arch = "x86_64")]
mod packed;
#[cfg(not(target_arch = "x86_64"))]
#[path = "packed_none.rs"]
mod packed;
pub(crate) mod prefetch;
pub(crate) mod step;

/// Multiply-adds below which a product runs single-threaded: handing work to other threads
/// costs more than it saves there. The `gemm` crate's own default threading threshold.
const PARALLEL_MIN_WORK: usize = 48 * 48 * 256;

/// `c ← beta·c + alpha·a·bᵀ` with `a: m×k`, `b: n×k`, `c: m×n`.
///
/// The shape of the input projection `zx = x · W_ihᵀ`. When `beta` is zero `c` is not read
/// (as in BLAS), so it may hold anything, NaN included.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit together.
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
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit together.
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
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit together.
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

/// Threads for a product `a: m×k` times `b: k×n` on the `gemm` crate: a matrix-vector product
/// (`m` or `n` is 1, batch 1; in f32 [`by_gemv`] takes most of these first) and anything below
/// [`PARALLEL_MIN_WORK`] multiply-adds runs on the calling thread, the rest on `max_threads`.
///
/// faer is not used: faster alone on some of these shapes, it made a layer call slower end to
/// end, its thread pool alternating with `gemm`'s (the README's Performance section).
fn threads_for(m: usize, k: usize, n: usize, max_threads: usize) -> usize {
    let work = m.saturating_mul(n).saturating_mul(k);
    if m == 1 || n == 1 || work < PARALLEL_MIN_WORK {
        1
    } else {
        max_threads
    }
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
    if threads > 1 && helper_thread::active() {
        // The two halves of the longer side of `c` on the caller's thread and the helper.
        // Split by columns, both threads would read (and the `gemm` crate pack) all of `a`:
        // for a weight gradient, far taller than wide, that is most of the work twice.
        if m > n {
            let mid = m / 2;
            let (c_top, c_bottom) = c.split_at(Axis(0), mid);
            let (a_top, a_bottom) = a.split_at(Axis(0), mid);
            helper_thread::join(
                || with_gemm(alpha, a_top, b, beta, c_top, 1),
                || with_gemm(alpha, a_bottom, b, beta, c_bottom, 1),
            );
        } else {
            let mid = n / 2;
            let (c_left, c_right) = c.split_at(Axis(1), mid);
            let (b_left, b_right) = b.split_at(Axis(1), mid);
            helper_thread::join(
                || with_gemm(alpha, a, b_left, beta, c_left, 1),
                || with_gemm(alpha, a, b_right, beta, c_right, 1),
            );
        }
        return;
    }
    with_gemm(alpha, a, b, beta, c, threads);
}

/// [`gemm_views`] for one contiguous row `a` of f32 times a contiguous matrix `b` (batch 1)
/// by the vector kernels of `gemv.rs`, faster there than the `gemm` crate's (the
/// `gemm_table` benchmark's `linalg` against `gemm_seq`); `false`, with nothing written, for
/// other operands or on a machine without AVX2 and FMA.
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
    use crate::error::Error;

    /// `(m, k, n)` triples: single rows and columns, zero sizes, odd sizes, and two products
    /// big enough to take the threaded path (with a helper thread one splits by rows, one by
    /// columns).
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

    pub(super) fn random<F: Float>(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<F> {
        Array2::from_shape_fn((rows, cols), |_| F::of(rng.random_range(-1.0..1.0)))
    }

    /// `beta·c + alpha·a·b` by the definition, in f64.
    pub(super) fn naive<F: Float>(
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

    pub(super) fn assert_close<F: Float>(
        found: &Array2<F>,
        expected: &Array2<f64>,
        tolerance: f64,
    ) {
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
    pub(super) type Product<F> =
        fn(F, ArrayView2<'_, F>, ArrayView2<'_, F>, F, ArrayViewMut2<'_, F>) -> Result<()>;

    /// Runs `product` (one of the three wrappers, given its operands in the layout it expects)
    /// on every shape and scalar pair, against the naive product of the logical operands.
    pub(super) fn check_against_naive<F: Float>(
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

    pub(super) fn same<F: Float>(x: Array2<F>) -> Array2<F> {
        x
    }

    pub(super) fn transposed<F: Float>(x: Array2<F>) -> Array2<F> {
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
}
