//! The products every time step repeats with the same weights: `h_prev · W_hhᵀ` forward and
//! `dZ · W_hh` backward ([`StepRhs`]), and, for the batch-1 steps split by units
//! (`recurrence/split_units/`), each thread's products with its own rows of the weights
//! ([`PackedRows`]). In f32 the weights are packed once per call for the kernels of
//! `packed.rs`; otherwise each step is a `gemm` call.

use std::any::TypeId;
use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::prefetch::prefetch;
use super::{as_f32, as_f32_mut, gemm_views, packed};
use crate::error::{Result, expect_shape};
use crate::float::Float;
use crate::parallel::helper_thread;
use crate::parallel::threads::num_threads;

/// Multiply-adds from which a step product ([`StepRhs::product`]) without a helper thread splits
/// its panels between Rayon's threads, which costs tens of microseconds when called from outside
/// the pool (and never below the operand's helper threshold, where a cheaper split loses).
const STEP_PARALLEL_MIN_WORK: usize = 1 << 21;

/// Multiply-adds from which a forward product `h_prev · W_hhᵀ` splits in two with a helper
/// thread (`parallel/helper_thread.rs`), where handing half to the other core costs well under
/// a microsecond: each core then streams half of the weights from its own cache.
const HELPER_MIN_WORK: usize = 1 << 14;

/// [`HELPER_MIN_WORK`] for a backward product `dZ · W_hh`, whose split costs more than it saves
/// up to about two million multiply-adds (batch 16 or 32 at hidden 128, batch 8 at hidden 256;
/// measured in the reverse loop, the README's Performance section).
const BACKWARD_HELPER_MIN_WORK: usize = 1 << 22;

/// The right-hand operand `b: k×n` of a product that every time step repeats with new left
/// rows: the recurrent weights, as `h_prev · W_hhᵀ` (forward) and `dZ · W_hh` (backward)
/// read them. In f32 on a machine with AVX2 and FMA it is packed once (`packed.rs`) and every
/// step streams the packed panels; otherwise each step is a [`gemm`] call on the weights.
#[derive(Debug)]
pub(crate) struct StepRhs {
    /// Whether `b` is the transpose of the weights given.
    transposed: bool,
    /// Multiply-adds from which [`Self::product`] splits with a helper thread.
    helper_min_work: usize,
    /// `b` packed, when the kernels of `packed.rs` run here.
    packed: Option<packed::Panels>,
}

impl StepRhs {
    /// `b = wᵀ` for `w: n×k`: the forward step's operand, split from [`HELPER_MIN_WORK`].
    pub(crate) fn transposed<F: Float>(w: ArrayView2<'_, F>) -> Self {
        let (n, k) = w.dim();
        StepRhs {
            transposed: true,
            helper_min_work: HELPER_MIN_WORK,
            packed: f32_slice(&w).and_then(|w| packed::Panels::transposed(w, n, k)),
        }
    }

    /// `b = w` for `w: k×n`: the backward step's operand, split from
    /// [`BACKWARD_HELPER_MIN_WORK`].
    pub(crate) fn plain<F: Float>(w: ArrayView2<'_, F>) -> Self {
        let (k, n) = w.dim();
        StepRhs {
            transposed: false,
            helper_min_work: BACKWARD_HELPER_MIN_WORK,
            packed: f32_slice(&w).and_then(|w| packed::Panels::plain(w, k, n)),
        }
    }

    /// Whether [`Self::product`] with `rows` left rows splits with a helper thread when one
    /// runs.
    pub(crate) fn splits(&self, rows: usize, w: ArrayView2<'_, impl Float>) -> bool {
        rows.saturating_mul(w.len()) >= self.helper_min_work
    }

    /// Whether [`Self::product`] computes each element as one chain of fused multiply-adds
    /// over the depth in index order, for any number of rows: packed, at a level whose
    /// kernels chain at every depth and row count ([`packed::sums_in_order`]; AVX2's add a
    /// later depth range's sums onto the earlier ones' and sum a single row in four lanes).
    pub(crate) fn sums_in_order(&self) -> bool {
        self.packed.is_some() && packed::sums_in_order()
    }

    /// `c ← a·b` with `a: m×k` and `c: m×n`; `w` is the matrix this operand was made from
    /// (read only when it was not packed).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) if the shapes do not fit
    /// together.
    pub(crate) fn product<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        c: ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        self.product_walking(w, a, c, false)
    }

    /// [`Self::product`], walking the panels from the last to the first if `backwards` (the
    /// same values): a product repeated at every step reads its weights faster walking them
    /// one way and then the other (`packed::Panels::product`).
    ///
    /// # Errors
    ///
    /// As [`Self::product`].
    pub(crate) fn product_walking<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        c: ArrayViewMut2<'_, F>,
        backwards: bool,
    ) -> Result<()> {
        self.product_split(w, a, c, (true, backwards), || {}, || {})
    }

    /// [`Self::product_walking`], with two more pieces of work that do not touch `c`: where
    /// the product splits between two threads, each thread runs one after its share (the
    /// step's other work rides on the product's hand-over); otherwise both run after it here.
    ///
    /// # Errors
    ///
    /// As [`Self::product`].
    pub(crate) fn product_beside<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        c: ArrayViewMut2<'_, F>,
        backwards: bool,
        first: impl FnOnce(),
        second: impl FnOnce() + Send,
    ) -> Result<()> {
        self.product_split(w, a, c, (true, backwards), first, second)
    }

    /// [`Self::product`] on the calling thread alone: for a thread that runs its own share of
    /// a step's rows.
    ///
    /// # Errors
    ///
    /// As [`Self::product`].
    pub(crate) fn product_here<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        c: ArrayViewMut2<'_, F>,
    ) -> Result<()> {
        self.product_split(w, a, c, (false, false), || {}, || {})
    }

    /// Whether the product runs on packed panels (the kernels of `packed.rs`), whose sum for
    /// each value does not depend on which rows run together, but for a lone row at the AVX2
    /// level (`packed::one_row_sums_in_order`).
    pub(crate) fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// [`Self::product_beside`], split between threads only if `may_split`, walking
    /// backwards if `backwards`.
    fn product_split<F: Float>(
        &self,
        w: ArrayView2<'_, F>,
        a: ArrayView2<'_, F>,
        mut c: ArrayViewMut2<'_, F>,
        (may_split, backwards): (bool, bool),
        first: impl FnOnce(),
        second: impl FnOnce() + Send,
    ) -> Result<()> {
        let b = if self.transposed {
            w.reversed_axes()
        } else {
            w
        };
        let (k, n) = b.dim();
        let m = a.nrows();
        expect_shape("step product: a", &[m, k], a.shape())?;
        expect_shape("step product: c", &[m, n], c.shape())?;
        let packed = self
            .packed
            .as_ref()
            .filter(|panels| (panels.depth(), panels.width()) == (k, n));
        let (Some(panels), Some(a_values), Some(c_values)) =
            (packed, f32_slice(&a), c.as_slice_mut())
        else {
            gemm_views(F::one(), a, b, F::zero(), c);
            first();
            second();
            return Ok(());
        };
        let work = m * k * n;
        let out = SharedOut(c_values.as_mut_ptr().cast::<f32>());
        // SAFETY: `F` is `f32` (`f32_slice` succeeded). `a` holds `m·k` values and `c` `m·n`
        // (both checked above, contiguous); each thread gets a disjoint panel range, hence
        // disjoint columns of `c`, which the unique view `c` lets no one else touch meanwhile.
        let run = |range: Range<usize>| unsafe {
            panels.product(a_values, m, out.get(), false, (range, backwards))
        };
        let count = panels.panel_count();
        if may_split && helper_thread::active() && work >= self.helper_min_work && count > 1 {
            let mid = count / 2;
            helper_thread::join(
                || {
                    run(0..mid);
                    first();
                },
                || {
                    prefetch(a_values);
                    run(mid..count);
                    second();
                },
            );
            return Ok(());
        }
        if may_split
            && !helper_thread::active()
            && work >= STEP_PARALLEL_MIN_WORK.max(self.helper_min_work)
        {
            split_panels(0..count, num_threads().min(count), &run);
        } else {
            run(0..count);
        }
        first();
        second();
        Ok(())
    }
}

/// `b = w[rows]ᵀ` for a selection of the rows of `w: n×k`, packed (`packed.rs`): the right
/// operand of the products one thread runs for its share of a step's units
/// (`recurrence/split_units/`),
/// `c = a · b` for a few left rows `a: m×k`, on the calling thread.
#[derive(Debug)]
pub(crate) struct PackedRows<F> {
    panels: packed::Panels,
    elem: std::marker::PhantomData<F>,
}

/// Columns of one panel of the packed kernels: [`PackedRows::product`] takes its columns in
/// ranges of panels.
pub(crate) const NR: usize = packed::NR;

impl<F: Float> PackedRows<F> {
    /// Depth up to which [`Self::product`] computes each element as one chain of fused
    /// multiply-adds in index order (one pass of the kernels), for blocks of two rows or more
    /// at every level and for one row where the level's one-row kernel chains too
    /// ([`Self::one_row_in_order`]).
    pub(crate) const IN_ORDER_DEPTH: usize = packed::DEPTH_PER_PASS;

    /// Whether a product of one left row sums in index order at the active level.
    pub(crate) fn one_row_in_order() -> bool {
        packed::one_row_sums_in_order()
    }

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

    /// Number of panels of [`packed::NR`] columns (the last one may be partly empty).
    pub(crate) fn panel_count(&self) -> usize {
        self.panels.panel_count()
    }

    /// `c ← a · b` for the columns of the panels `panels`, with `a` row-major `m×k` and `c`
    /// row-major `m×n` (its other columns untouched); `backwards` walks the panels from the
    /// last to the first (the same values; see `packed::Panels::product`).
    ///
    /// # Panics
    ///
    /// If `a` or `c` is not of that length or `panels` exceeds the panel count (a bug of the
    /// caller, which sizes both once).
    pub(crate) fn product(
        &self,
        a: &[F],
        m: usize,
        c: &mut [F],
        (panels, backwards): (Range<usize>, bool),
    ) {
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
            self.panels.product(
                as_f32(a),
                m,
                as_f32_mut(c).as_mut_ptr(),
                false,
                (panels, backwards),
            );
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

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::super::gemv::has_avx2_fma;
    use super::super::tests::{assert_close, check_against_naive, naive, random, same, transposed};
    use super::super::{matmul_nn, matmul_nt, matmul_tn};
    use super::*;
    use crate::error::Error;

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

    /// [`StepRhs::product`] in both layouts, over NaN (never read), against the naive
    /// product.
    fn check_step_products<F: Float>(tolerance: f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for &(m, k, n) in STEP_SHAPES {
            let a = random::<F>(&mut rng, m, k);
            let b = random::<F>(&mut rng, k, n);
            let c0 = Array2::from_elem((m, n), F::nan());
            let expected = naive(F::one(), &a, &b, F::zero(), &c0);
            let w_transposed = b.t().to_owned();
            let by_transposed = StepRhs::transposed(w_transposed.view());
            let by_plain = StepRhs::plain(b.view());
            for (rhs, w) in [(&by_transposed, w_transposed.view()), (&by_plain, b.view())] {
                let mut c = c0.clone();
                rhs.product(w, a.view(), c.view_mut()).unwrap();
                assert_close(&c, &expected, tolerance);
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
            has_avx2_fma()
        );
        assert!(
            StepRhs::transposed(Array2::<f64>::ones((8, 4)).view())
                .packed
                .is_none()
        );
    }

    #[test]
    fn products_split_with_a_helper_thread_match_naive() {
        helper_thread::with_helper(true, || {
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
        let error = rhs.product(w.view(), a.view(), c.view_mut()).unwrap_err();
        assert!(matches!(error, Error::ShapeMismatch { .. }), "{error}");
    }
}
