//! The products of a block-diagonal recurrence ([`CellDims::heads`](crate::CellDims::heads)
//! `= K`): `weight_hh` is `(gates · H, d)` with `d = H / K`, and its row `g·H + j` (gate `g`,
//! unit `j` of head `k = j / d`) holds the weights over `h_prev[k·d .. (k+1)·d]` only. Each
//! product is one small dense product per (gate, head) block, so a step costs
//! `gates · H · d` multiply-adds per row, `1/K` of the dense `gates · H · H`:
//!
//! - forward, `zh[:, g·H + k·d ..][..d] = h[:, k·d ..][..d] · W_{g,k}ᵀ` (`forward`);
//! - backward, `dh[:, k·d ..][..d] = Σ_g dz[:, g·H + k·d ..][..d] · W_{g,k}` (`backward`);
//! - the weight gradient, `dW_{g,k} += dz[:, g·H + k·d ..][..d]ᵀ · h[:, k·d ..][..d]`
//!   (`weight_gradient`);
//!
//! where `W_{g,k}` is the contiguous `d × d` block of rows `g·H + k·d ..` of `weight_hh`. The
//! blocks run through the `gemm` crate on strided views (no copy) when they are wide enough
//! for its kernels (`GEMM_MIN_HEAD`); narrower heads (down to `d = 1`, a diagonal
//! recurrence) run as plain loops, where a call per block would cost more than its work.
//! Every element is computed the same way whatever the threads, so a stepped sequence and
//! the whole sequence agree bit for bit.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, s};

use super::{by_gemv, gemm_views, with_gemm};
use crate::error::{Result, expect_shape};
use crate::float::Float;
use crate::parallel::helper_thread;
use crate::parallel::threads::num_threads;

/// Head width from which a block runs through the `gemm` crate; below it, a call per `d × d`
/// block costs more than the block's multiply-adds, and plain loops run instead.
const GEMM_MIN_HEAD: usize = 16;

/// Multiply-adds of a step's product from which its blocks are split between two threads
/// with a helper thread running (as `step.rs`'s threshold).
const HELPER_MIN_WORK: usize = 1 << 14;

/// Multiply-adds from which a product without a helper thread splits its blocks between
/// Rayon's threads (as `step.rs`'s threshold).
const PARALLEL_MIN_WORK: usize = 1 << 21;

/// The shape facts of a block-diagonal `weight_hh`: `gates` blocks of `hidden` rows, `heads`
/// heads of `head` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Blocks {
    /// Gate blocks of the rows.
    pub(crate) gates: usize,
    /// Hidden units `H`.
    pub(crate) hidden: usize,
    /// Heads `K`.
    pub(crate) heads: usize,
}

impl Blocks {
    /// Units per head, `d = H / K`: the columns of `weight_hh`.
    pub(crate) fn head(self) -> usize {
        self.hidden / self.heads.max(1)
    }

    /// The columns (of `zh`, or rows of `weight_hh`) of block `block`, numbered gate-major
    /// (`block = g·K + k`): `g·H + k·d ..` for `d` values. Blocks in order are columns in
    /// order, so a range of blocks is a range of columns.
    fn columns(self, block: usize) -> Range<usize> {
        let start = block * self.head();
        start..start + self.head()
    }

    /// The head of block `block`.
    fn head_of(self, block: usize) -> usize {
        block % self.heads
    }
}

/// `zh ← h · Wᵀ` for a block-diagonal `w: (gates·H, d)`, `h: (m, H)`, `zh: (m, gates·H)`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit.
pub(crate) fn forward<F: Float>(
    blocks: Blocks,
    w: ArrayView2<'_, F>,
    h: ArrayView2<'_, F>,
    zh: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (gates, hidden, d) = (blocks.gates, blocks.hidden, blocks.head());
    let m = h.nrows();
    expect_shape(
        "block-diagonal product: weight_hh",
        &[gates * hidden, d],
        w.shape(),
    )?;
    expect_shape("block-diagonal product: h", &[m, hidden], h.shape())?;
    expect_shape(
        "block-diagonal product: zh",
        &[m, gates * hidden],
        zh.shape(),
    )?;
    if d < GEMM_MIN_HEAD {
        let (w, h) = (w.as_standard_layout(), h.as_standard_layout());
        let (w, h) = (contiguous(&w), contiguous(&h));
        with_contiguous(zh, |zh| {
            // Narrow heads: plain loops head by head (no view per block, no division per
            // unit).
            for (row, out) in h
                .chunks_exact(hidden)
                .zip(zh.chunks_exact_mut(gates * hidden))
            {
                for (out_g, w_g) in out.chunks_exact_mut(hidden).zip(w.chunks_exact(hidden * d)) {
                    let heads = out_g.chunks_exact_mut(d).zip(w_g.chunks_exact(d * d));
                    for ((out_k, w_k), h_k) in heads.zip(row.chunks_exact(d)) {
                        for (out, w_j) in out_k.iter_mut().zip(w_k.chunks_exact(d)) {
                            *out = h_k
                                .iter()
                                .zip(w_j)
                                .fold(F::zero(), |sum, (&h, &w)| sum + h * w);
                        }
                    }
                }
            }
        });
        return Ok(());
    }
    let run = |range: Range<usize>, mut zh: ArrayViewMut2<'_, F>| {
        let offset = blocks.columns(range.start).start;
        for block in range {
            let columns = blocks.columns(block);
            let k = blocks.head_of(block);
            let a = h.slice(s![.., k * d..(k + 1) * d]);
            let b = w.slice(s![columns.clone(), ..]);
            let c = zh.slice_mut(s![.., columns.start - offset..columns.end - offset]);
            block_product(a, b.t(), c);
        }
    };
    split_blocks(0..gates * blocks.heads, d, m * gates * hidden * d, zh, &run);
    Ok(())
}

/// `dh ← dz · W` for a block-diagonal `w: (gates·H, d)`, `dz: (m, gates·H)`, `dh: (m, H)`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit.
pub(crate) fn backward<F: Float>(
    blocks: Blocks,
    w: ArrayView2<'_, F>,
    dz: ArrayView2<'_, F>,
    dh: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (gates, hidden, d) = (blocks.gates, blocks.hidden, blocks.head());
    let m = dz.nrows();
    expect_shape(
        "block-diagonal product: weight_hh",
        &[gates * hidden, d],
        w.shape(),
    )?;
    expect_shape(
        "block-diagonal product: dz",
        &[m, gates * hidden],
        dz.shape(),
    )?;
    expect_shape("block-diagonal product: dh", &[m, hidden], dh.shape())?;
    if d < GEMM_MIN_HEAD {
        let (w, dz) = (w.as_standard_layout(), dz.as_standard_layout());
        let (w, dz) = (contiguous(&w), contiguous(&dz));
        with_contiguous(dh, |dh| {
            // Narrow heads: each row summed gate by gate, unit by unit, as the blocks do.
            for (row, out) in dz
                .chunks_exact(gates * hidden)
                .zip(dh.chunks_exact_mut(hidden))
            {
                out.fill(F::zero());
                for (dz_g, w_g) in row.chunks_exact(hidden).zip(w.chunks_exact(hidden * d)) {
                    let heads = out.chunks_exact_mut(d).zip(dz_g.chunks_exact(d));
                    for ((out_k, dz_k), w_k) in heads.zip(w_g.chunks_exact(d * d)) {
                        for (&scale, w_j) in dz_k.iter().zip(w_k.chunks_exact(d)) {
                            for (out, &w) in out_k.iter_mut().zip(w_j) {
                                *out += scale * w;
                            }
                        }
                    }
                }
            }
        });
        return Ok(());
    }
    // Head `k` of `dh` sums the blocks of every gate: its own columns, so heads split
    // between threads write apart.
    let run = |heads: Range<usize>, mut dh: ArrayViewMut2<'_, F>| {
        let offset = heads.start * d;
        for k in heads {
            let mut c = dh.slice_mut(s![.., k * d - offset..(k + 1) * d - offset]);
            for g in 0..gates {
                let rows = g * hidden + k * d..g * hidden + (k + 1) * d;
                let a = dz.slice(s![.., rows.clone()]);
                let b = w.slice(s![rows, ..]);
                if g == 0 {
                    block_product(a, b, c.view_mut());
                } else {
                    block_add_product(a, b, c.view_mut());
                }
            }
        }
    };
    split_blocks(0..blocks.heads, d, m * gates * hidden * d, dh, &run);
    Ok(())
}

/// `dw += dzᵀ · h` restricted to the blocks: `dz: (rows, gates·H)`, `h: (rows, H)`,
/// `dw: (gates·H, d)`.
///
/// # Errors
///
/// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit.
pub(crate) fn weight_gradient<F: Float>(
    blocks: Blocks,
    dz: ArrayView2<'_, F>,
    h: ArrayView2<'_, F>,
    mut dw: ArrayViewMut2<'_, F>,
) -> Result<()> {
    let (gates, hidden, d) = (blocks.gates, blocks.hidden, blocks.head());
    let rows = dz.nrows();
    expect_shape(
        "block-diagonal gradient: dz",
        &[rows, gates * hidden],
        dz.shape(),
    )?;
    expect_shape("block-diagonal gradient: h", &[rows, hidden], h.shape())?;
    expect_shape(
        "block-diagonal gradient: weight_hh",
        &[gates * hidden, d],
        dw.shape(),
    )?;
    if rows == 0 {
        return Ok(());
    }
    if d < GEMM_MIN_HEAD {
        let (dz, h) = (dz.as_standard_layout(), h.as_standard_layout());
        let (dz, h) = (contiguous(&dz), contiguous(&h));
        with_contiguous(dw, |dw| {
            // Row by row, each row's outer product restricted to the blocks.
            for (dz, h) in dz.chunks_exact(gates * hidden).zip(h.chunks_exact(hidden)) {
                for (dz_g, dw_g) in dz.chunks_exact(hidden).zip(dw.chunks_exact_mut(hidden * d)) {
                    let heads = dz_g.chunks_exact(d).zip(dw_g.chunks_exact_mut(d * d));
                    for ((dz_k, dw_k), h_k) in heads.zip(h.chunks_exact(d)) {
                        for (&scale, dw_j) in dz_k.iter().zip(dw_k.chunks_exact_mut(d)) {
                            for (out, &h) in dw_j.iter_mut().zip(h_k) {
                                *out += scale * h;
                            }
                        }
                    }
                }
            }
        });
        return Ok(());
    }
    for block in 0..gates * blocks.heads {
        let columns = blocks.columns(block);
        let k = blocks.head_of(block);
        let a = dz.slice(s![.., columns.clone()]);
        let b = h.slice(s![.., k * d..(k + 1) * d]);
        let c = dw.slice_mut(s![columns, ..]);
        gemm_views(F::one(), a.t(), b, F::one(), c);
    }
    Ok(())
}

/// The dense `(gates·H, H)` matrix of a block-diagonal `w: (gates·H, d)`: each row's weights
/// at its head's columns, zeros elsewhere. What a dense layer computes the same recurrence
/// with (the tests' reference).
pub fn expand<F: Float>(w: ArrayView2<'_, F>, hidden: usize) -> Array2<F> {
    let d = w.ncols().max(1);
    let mut dense = Array2::zeros((w.nrows(), hidden));
    for (r, (row, mut out)) in w.outer_iter().zip(dense.outer_iter_mut()).enumerate() {
        let k = (r % hidden.max(1)) / d;
        out.slice_mut(s![k * d..(k + 1) * d]).assign(&row);
    }
    dense
}

/// The blocks of a dense `(gates·H, H)` matrix as a block-diagonal `(gates·H, H / heads)`
/// one, dropping everything off the blocks: the inverse of [`expand`] on its image.
pub fn restrict<F: Float>(dense: ArrayView2<'_, F>, heads: usize) -> Array2<F> {
    let hidden = dense.ncols();
    let d = hidden / heads.max(1);
    let mut w = Array2::zeros((dense.nrows(), d));
    for (r, (row, mut out)) in dense.outer_iter().zip(w.outer_iter_mut()).enumerate() {
        let k = (r % hidden.max(1)) / d.max(1);
        out.assign(&row.slice(s![k * d..(k + 1) * d]));
    }
    w
}

/// `c ← a · b` for one block (`a: m×d`, `b: d×d`), by the `gemm` crate from
/// [`GEMM_MIN_HEAD`] on (the vector kernels of `gemv.rs` for one f32 row), else by loops.
fn block_product<F: Float>(
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) {
    if a.ncols() >= GEMM_MIN_HEAD {
        if a.nrows() == 1 && by_gemv(F::one(), a, b, F::zero(), &mut c) {
            return;
        }
        if !a.is_empty() {
            with_gemm(F::one(), a, b, F::zero(), c, 1);
        }
        return;
    }
    c.fill(F::zero());
    loop_add_product(a, b, c);
}

/// `c += a · b` for one block, as [`block_product`].
fn block_add_product<F: Float>(
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) {
    if a.ncols() >= GEMM_MIN_HEAD {
        if a.nrows() == 1 && by_gemv(F::one(), a, b, F::one(), &mut c) {
            return;
        }
        if !a.is_empty() {
            with_gemm(F::one(), a, b, F::one(), c, 1);
        }
        return;
    }
    loop_add_product(a, b, c);
}

/// The elements of an array in standard layout (from `as_standard_layout`), row-major.
fn contiguous<'a, F>(array: &'a ndarray::CowArray<'_, F, ndarray::Ix2>) -> &'a [F] {
    // `as_standard_layout` returns a standard-layout array, whose slice always exists.
    array
        .as_slice()
        .expect("as_standard_layout gives a contiguous array")
}

/// Runs `work` on the elements of `out` in row-major order: in place when contiguous, else on
/// a copy written back.
fn with_contiguous<F: Float>(mut out: ArrayViewMut2<'_, F>, work: impl FnOnce(&mut [F])) {
    match out.as_slice_mut() {
        Some(values) => work(values),
        None => {
            let mut copy = out.to_owned();
            work(copy.as_slice_mut().expect("an owned array is contiguous"));
            out.assign(&copy);
        }
    }
}

/// `c += a · b` by loops, each element summed over the depth in index order.
fn loop_add_product<F: Float>(
    a: ArrayView2<'_, F>,
    b: ArrayView2<'_, F>,
    mut c: ArrayViewMut2<'_, F>,
) {
    for (a, mut c) in a.outer_iter().zip(c.outer_iter_mut()) {
        for (&a, b) in a.iter().zip(b.outer_iter()) {
            c.zip_mut_with(&b, |c, &b| *c += a * b);
        }
    }
}

/// Runs `work` over the blocks `blocks`, each `width` columns of `out`, split between the
/// helper thread and this one, or Rayon's threads, when `flops` is worth it.
fn split_blocks<F: Float>(
    blocks: Range<usize>,
    width: usize,
    flops: usize,
    out: ArrayViewMut2<'_, F>,
    work: &(dyn Fn(Range<usize>, ArrayViewMut2<'_, F>) + Sync),
) {
    if out.is_empty() {
        return;
    }
    let count = blocks.len();
    if helper_thread::active() && flops >= HELPER_MIN_WORK && count > 1 {
        let mid = blocks.start + count / 2;
        let (first, second) = out.split_at(Axis(1), (mid - blocks.start) * width);
        helper_thread::join(
            || work(blocks.start..mid, first),
            || work(mid..blocks.end, second),
        );
    } else if !helper_thread::active() && flops >= PARALLEL_MIN_WORK {
        split_rayon(blocks, width, num_threads().min(count), out, work);
    } else {
        work(blocks, out);
    }
}

/// Runs `work` over `blocks` split into `parts` contiguous ranges on Rayon's threads.
fn split_rayon<F: Float>(
    blocks: Range<usize>,
    width: usize,
    parts: usize,
    out: ArrayViewMut2<'_, F>,
    work: &(dyn Fn(Range<usize>, ArrayViewMut2<'_, F>) + Sync),
) {
    if parts <= 1 || blocks.len() <= 1 {
        work(blocks, out);
        return;
    }
    let left = parts / 2;
    let mid = blocks.start + blocks.len() * left / parts;
    let (first, second) = out.split_at(Axis(1), (mid - blocks.start) * width);
    rayon::join(
        || split_rayon(blocks.start..mid, width, left, first, work),
        || split_rayon(mid..blocks.end, width, parts - left, second, work),
    );
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::super::tests::{assert_close, naive, random};
    use super::*;
    use crate::parallel::threads::with_threads;

    /// `(m, gates, hidden, heads)`: one row and many, narrow heads (loops) and wide ones
    /// (the `gemm` crate), a diagonal recurrence, a dense one, an empty batch.
    const SHAPES: &[(usize, usize, usize, usize)] = &[
        (1, 4, 8, 2),
        (5, 4, 8, 8),
        (3, 3, 12, 3),
        (1, 4, 64, 2),
        (7, 4, 64, 4),
        (33, 4, 128, 2),
        (4, 1, 32, 1),
        (0, 4, 8, 2),
    ];

    /// Each product against the dense product with the expanded weights.
    fn check<F: Float>(tolerance: f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for &(m, gates, hidden, heads) in SHAPES {
            let blocks = Blocks {
                gates,
                hidden,
                heads,
            };
            let w = random::<F>(&mut rng, gates * hidden, hidden / heads);
            let dense = expand(w.view(), hidden);
            assert_eq!(restrict(dense.view(), heads), w);
            let h = random::<F>(&mut rng, m, hidden);
            let mut zh = Array2::from_elem((m, gates * hidden), F::nan());
            forward(blocks, w.view(), h.view(), zh.view_mut()).unwrap();
            let zero = Array2::zeros((m, gates * hidden));
            let expected = naive(F::one(), &h, &dense.t().to_owned(), F::zero(), &zero);
            assert_close(&zh, &expected, tolerance);

            let dz = random::<F>(&mut rng, m, gates * hidden);
            let mut dh = Array2::from_elem((m, hidden), F::nan());
            backward(blocks, w.view(), dz.view(), dh.view_mut()).unwrap();
            let zero = Array2::zeros((m, hidden));
            let expected = naive(F::one(), &dz, &dense, F::zero(), &zero);
            assert_close(&dh, &expected, tolerance);

            let dw0 = random::<F>(&mut rng, gates * hidden, hidden / heads);
            let mut dw = dw0.clone();
            weight_gradient(blocks, dz.view(), h.view(), dw.view_mut()).unwrap();
            let dense0 = expand(dw0.view(), hidden);
            let expected = naive(F::one(), &dz.t().to_owned(), &h, F::one(), &dense0);
            let expected = restrict(expected.view(), heads);
            assert_close(&dw, &expected, tolerance);
        }
    }

    #[test]
    fn block_products_match_the_dense_product_of_the_expanded_weights() {
        check::<f32>(1e-4);
        check::<f64>(1e-12);
        with_threads(2, || {
            helper_thread::with_helper(true, || check::<f32>(1e-4));
            check::<f64>(1e-12);
        });
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let blocks = Blocks {
            gates: 4,
            hidden: 8,
            heads: 2,
        };
        let w = Array2::<f64>::zeros((32, 8));
        let h = Array2::<f64>::zeros((1, 8));
        let mut zh = Array2::<f64>::zeros((1, 32));
        assert!(forward(blocks, w.view(), h.view(), zh.view_mut()).is_err());
    }
}
