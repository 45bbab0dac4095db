//! The input projection `zx = x · W_ihᵀ` with a summation order that does not depend on how
//! many rows are multiplied at once, so that a sequence projected in chunks of many steps and
//! the same steps projected one at a time ([`crate::Stepper`]) agree bit for bit.
//!
//! The `gemm` crate's blocked kernels compute each element as one chain of fused
//! multiply-adds over the depth in index order when the depth fits one block (up to 512
//! here), but they hand a single row to a vector kernel that sums in lanes, and tiny products
//! (`m · n ≤ 256`) or a depth of at most 2 to kernels that sum otherwise. [`project`] runs the
//! blocked kernels where they apply and, elsewhere, the step kernels of `packed.rs` where
//! they sum in the same order (f32, depth ≤ 256), else [`chain_rows`]: the same chain, written
//! out (with `mul_add`, which rounds once whatever the machine, so every ISA level agrees). Deeper
//! than one block, the crate sums block by block with a block depth chosen from the caches,
//! and the order is the crate's for any number of rows.
//!
//! At the AVX-512 level every f32 projection, whatever its rows and depth, runs on the step
//! kernels, which chain each element in index order at any depth there: they outrun the
//! crate, which also packs `w` again at every call.

use std::any::TypeId;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::step::StepRhs;
use super::{matmul_nt, packed};
use crate::error::Result;
use crate::float::Float;
use crate::isa::{self, Isa};

/// Depth up to which the `gemm` crate's blocked kernels sum in one block, in index order
/// (its smallest block depth).
const ONE_BLOCK_DEPTH: usize = 512;

/// Columns one pass of [`chain_rows`] accumulates in registers.
const COLUMNS: usize = 64;

/// Whether the `gemm` crate multiplies `m×k` by `k×n` with its blocked kernels (neither a
/// vector kernel for one row or column, nor its kernels for tiny products or depths).
fn blocked(m: usize, n: usize, k: usize) -> bool {
    m >= 2 && n >= 2 && k >= 3 && m * n > 256
}

/// `w` laid out for the products of few rows that the blocked kernels do not take (at the
/// AVX-512 level, for every f32 product): packed for the step kernels (`packed.rs`) when
/// those sum in order (f32 at the AVX-512 level), else transposed, `k×n` row-major, for
/// [`chain_rows`].
#[derive(Debug)]
pub(crate) enum FewRows<F> {
    /// Packed; the step kernels' product sums in order.
    Packed(StepRhs),
    /// `wᵀ` row-major.
    Transposed(Vec<F>),
}

impl<F: Float> FewRows<F> {
    /// `w: n×k` laid out for [`project`].
    pub(crate) fn new(w: ArrayView2<'_, F>) -> Self {
        let packed = StepRhs::transposed(w);
        if packed.sums_in_order() {
            FewRows::Packed(packed)
        } else {
            FewRows::Transposed(transposed(w))
        }
    }
}

/// `out = x · wᵀ` (`x: m×k`, `w: n×k`, `out: m×n`), every element one chain of fused
/// multiply-adds over `k` in index order, for any `m`. `few` is `w` laid out for the products
/// that need it ([`needs_few_rows`]), made by the caller once; a caller without it passes
/// `None` and it is made here.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit.
pub(crate) fn project<F: Float>(
    x: ArrayView2<'_, F>,
    w: ArrayView2<'_, F>,
    few: Option<&FewRows<F>>,
    mut out: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (m, k) = x.dim();
    let n = w.nrows();
    if !needs_few_rows::<F>(m, n, k) {
        // Blocked, or deeper than one block: then the `gemm` crate's block depth depends on
        // the machine's caches and the kernels it picks, which this module does not mirror.
        return matmul_nt(F::one(), x, w, F::zero(), out);
    }
    super::check("project: w", &[n, k], w.shape())?;
    super::check("project: out", &[m, n], out.shape())?;
    if m == 0 || n == 0 || k == 0 {
        // Nothing to sum: an empty product is zero.
        out.fill(F::zero());
        return Ok(());
    }
    let owned;
    let few = match few {
        Some(few) => few,
        None => {
            owned = FewRows::new(w);
            &owned
        }
    };
    let x = x.as_standard_layout();
    if let FewRows::Packed(packed) = few
        && packed.sums_in_order()
    {
        return packed.product(w, x.view(), out);
    }
    if !off_the_blocked_kernels(m, n, k) {
        // `few` was made at another level (the active one changed since): the order of
        // this shape is the `gemm` crate's at every row count.
        return matmul_nt(F::one(), x.view(), w, F::zero(), out);
    }
    let made;
    let w_t = match few {
        FewRows::Transposed(w_t) => w_t,
        FewRows::Packed(_) => {
            made = transposed(w);
            &made
        }
    };
    let x = x.as_slice().expect("in standard layout");
    match out.as_slice_mut() {
        Some(out) => chain_rows(x, w_t, k, n, out),
        None => {
            let mut product = vec![F::zero(); m * n];
            chain_rows(x, w_t, k, n, &mut product);
            let product = ArrayView2::from_shape((m, n), &product).expect("m × n values");
            out.assign(&product);
        }
    }
    Ok(())
}

/// Rows up to which [`project`] takes [`FewRows`] where the blocked kernels would apply too:
/// the `gemm` crate packs the weights at every call, which costs more than the product of a
/// few rows (a stepper's step at batch 2 took four times its step at batch 1).
const FEW_ROWS: usize = 16;

/// Whether [`project`] of `m` rows of depth `k` onto `n` columns reads [`FewRows`].
pub(crate) fn needs_few_rows<F: Float>(m: usize, n: usize, k: usize) -> bool {
    packs_every_row::<F>() || off_the_blocked_kernels(m, n, k)
}

/// Whether every projection of `F` values runs on the packed step kernels: f32 at a level
/// whose kernels chain each element in index order at any depth and row count
/// ([`packed::sums_in_order`]).
pub(crate) fn packs_every_row<F: Float>() -> bool {
    TypeId::of::<F>() == TypeId::of::<f32>() && packed::sums_in_order()
}

/// Whether the `gemm` crate's blocked kernels do not take an `m×k` by `k×n` product, or
/// take it at a cost [`FewRows`] beats, at a depth where they would sum in index order.
fn off_the_blocked_kernels(m: usize, n: usize, k: usize) -> bool {
    (!blocked(m, n, k) || m <= FEW_ROWS) && k <= ONE_BLOCK_DEPTH
}

/// `wᵀ` row-major: `k×n` for `w: n×k`.
pub(crate) fn transposed<F: Float>(w: ArrayView2<'_, F>) -> Vec<F> {
    w.t().as_standard_layout().iter().copied().collect()
}

/// `out = x · w_t` for `x: m×k`, `w_t: k×n`, `out: m×n` (all row-major), each element one
/// chain of fused multiply-adds over `k` in index order.
fn chain_rows<F: Float>(x: &[F], w_t: &[F], k: usize, n: usize, out: &mut [F]) {
    chain_rows_at(isa::active(), x, w_t, k, n, out);
}

/// [`chain_rows`] compiled for `level`, which the CPU supports.
fn chain_rows_at<F: Float>(level: Isa, x: &[F], w_t: &[F], k: usize, n: usize, out: &mut [F]) {
    debug_assert!(level.supported());
    match level {
        // SAFETY: the CPU supports the level's features, as `isa` checked.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { chain_rows_avx512(x, w_t, k, n, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { chain_rows_avx2(x, w_t, k, n, out) },
        _ => chain_rows_portable(x, w_t, k, n, out),
    }
}

/// [`chain_rows`] compiled for AVX-512.
///
/// # Safety
///
/// The CPU supports AVX-512 (F, VL, BW, DQ), AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
unsafe fn chain_rows_avx512<F: Float>(x: &[F], w_t: &[F], k: usize, n: usize, out: &mut [F]) {
    chain_rows_portable(x, w_t, k, n, out);
}

/// [`chain_rows`] compiled for AVX2 and FMA.
///
/// # Safety
///
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chain_rows_avx2<F: Float>(x: &[F], w_t: &[F], k: usize, n: usize, out: &mut [F]) {
    chain_rows_portable(x, w_t, k, n, out);
}

/// [`chain_rows`] in plain code, inlined into the ISA wrappers, which vectorise it across
/// the columns.
#[inline(always)]
fn chain_rows_portable<F: Float>(x: &[F], w_t: &[F], k: usize, n: usize, out: &mut [F]) {
    for (x_row, out_row) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        let mut start = 0;
        while start < n {
            let width = COLUMNS.min(n - start);
            let mut acc = [F::zero(); COLUMNS];
            if width == COLUMNS {
                for (p, &x_p) in x_row.iter().enumerate() {
                    let w = &w_t[p * n + start..p * n + start + COLUMNS];
                    for (sum, &w) in acc.iter_mut().zip(w) {
                        *sum = x_p.mul_add(w, *sum);
                    }
                }
            } else {
                for (p, &x_p) in x_row.iter().enumerate() {
                    let w = &w_t[p * n + start..p * n + start + width];
                    for (sum, &w) in acc.iter_mut().zip(w) {
                        *sum = x_p.mul_add(w, *sum);
                    }
                }
            }
            out_row[start..start + width].copy_from_slice(&acc[..width]);
            start += width;
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Any number of rows projects each row to the bits that 300 rows at once (the `gemm`
    /// crate's blocked kernels, or the step kernels at the AVX-512 level) give, at every ISA
    /// level this machine has, for depths within one block, and deeper where the step
    /// kernels take every row.
    fn rows_agree<F: Float>() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (k, n) in [
            (1, 8),
            (2, 40),
            (5, 24),
            (16, 512),
            (128, 100),
            (512, 64),
            (512, 2),
            (700, 40),
        ] {
            if k > ONE_BLOCK_DEPTH && !packs_every_row::<F>() {
                eprintln!("skipped depth {k}: the gemm crate's order at this level");
                continue;
            }
            let x = Array2::from_shape_simple_fn((300, k), || F::of(rng.random_range(-1.0..1.0)));
            let w = Array2::from_shape_simple_fn((n, k), || F::of(rng.random_range(-1.0..1.0)));
            let mut all = Array2::zeros((300, n));
            project(x.view(), w.view(), None, all.view_mut()).unwrap();
            let few = FewRows::new(w.view());
            let w_t: Vec<F> = w.t().iter().copied().collect();
            for m in [1, 2, 3, 7, 10, 33] {
                let what = format!("{} k {k} n {n} m {m}", F::DTYPE);
                let expected = all.slice(s![..m, ..]);
                let mut some = Array2::zeros((m, n));
                project(x.slice(s![..m, ..]), w.view(), Some(&few), some.view_mut()).unwrap();
                assert_eq!(some, expected, "{what}");
                let rows = x.slice(s![..m, ..]).to_owned();
                for level in Isa::supported_levels() {
                    let mut some = vec![F::zero(); m * n];
                    chain_rows_at(level, rows.as_slice().unwrap(), &w_t, k, n, &mut some);
                    assert_eq!(
                        some,
                        expected.iter().copied().collect::<Vec<_>>(),
                        "{what} at {level}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_row_count_gives_the_same_bits_f32() {
        rows_agree::<f32>();
    }

    #[test]
    fn every_row_count_gives_the_same_bits_f64() {
        rows_agree::<f64>();
    }
}
