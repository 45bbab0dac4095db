//! The packed step products on AVX-512: the same panels as the AVX2 kernels (one 64-byte line
//! of [`NR`] columns per depth index, which is exactly one `zmm` register), streamed through a
//! microkernel of up to [`MR`] rows × [`PANELS`] panels whose 24 accumulators stay in 24 of
//! the 32 `zmm` registers. Each line of `b` loaded feeds [`MR`] fused multiply-adds and each
//! broadcast of `a` feeds [`PANELS`], so the kernel is bound by the FMA units, not by loads.
//! Products of one or two rows (batch 1: the step's matrix-vector products) run up to
//! [`NARROW_PANELS`] panels per call instead, enough independent sums to keep both FMA units
//! busy; each column is still summed over its depth in order, whatever the panels' grouping.
//! A call past the first depth range starts from the sums in `c` rather than adding onto
//! them, so each element is one chain of fused multiply-adds over the whole depth, as
//! `ordered.rs` needs to run projections of any depth here.
//!
//! While a call of several rows computes, its blocks of rows prefetch the panels of the next
//! call into L2, one line per depth index: where `W_hh` does not fit in L2 (hidden 512), each
//! step streams it from L3, and the hardware prefetcher alone does not keep ahead of the
//! kernel (it starts afresh at every 4 KB page).

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_load_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
};
use std::ops::Range;

use super::{DEPTH_PER_PASS, Line, NR, Panels, TileCall, UNROLL, for_each_tile, row_blocks};

/// Rows of the microkernel: the batch sizes the layers run (32, 64) are whole multiples.
const MR: usize = 8;

/// Panels side by side in one microkernel call: [`MR`] × 3 = 24 accumulators, plus 3
/// registers of `b` and one broadcast, fit in the 32 `zmm` registers.
const PANELS: usize = 3;

/// Rows up to which a product runs [`NARROW_PANELS`] panels per microkernel call: with one
/// or two rows, [`PANELS`] accumulator chains per row leave the FMA units waiting on each
/// chain's latency.
const NARROW_ROWS: usize = 2;

/// Panels side by side in one microkernel call of at most [`NARROW_ROWS`] rows: 16
/// accumulators and 8 registers of `b`.
const NARROW_PANELS: usize = 8;

impl Panels {
    /// [`Panels::product`] on AVX-512.
    ///
    /// # Safety
    ///
    /// As [`Panels::product`], with `k > 0`, on a CPU with AVX-512 (F, VL, BW, DQ).
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) unsafe fn product_avx512(
        &self,
        a: &[f32],
        m: usize,
        c: *mut f32,
        accumulate: bool,
        walk: (Range<usize>, bool),
    ) {
        let tiles = |call: TileCall, next: Option<TileCall>| {
            // SAFETY: as this function's caller promises; AVX-512 is available.
            unsafe { self.group_tiles(a, c, call, next) }
        };
        let (k, depth) = (self.k, DEPTH_PER_PASS);
        if m <= NARROW_ROWS {
            // Narrow products' weights are small enough to stay in cache (batch 1), where a
            // prefetch costs more than it brings.
            for_each_tile(m, k, walk, NARROW_PANELS, depth, accumulate, |call, _| {
                tiles(call, None)
            });
        } else {
            for_each_tile(m, k, walk, PANELS, depth, accumulate, tiles);
        }
    }

    /// The tiles of `call`, each block of rows prefetching its share of `next`'s panels
    /// ([`Panels::prefetch_target`]).
    ///
    /// # Safety
    ///
    /// As [`Self::product_avx512`]; the call's group holds 1 to [`PANELS`] panels, or up to
    /// [`NARROW_PANELS`] in a product of at most [`NARROW_ROWS`] rows.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    unsafe fn group_tiles(&self, a: &[f32], c: *mut f32, call: TileCall, next: Option<TileCall>) {
        let (k, n) = (self.k, self.n);
        let (rows, group, depth) = (&call.rows, &call.group, &call.depth);
        let lines = |p: usize| self.lines[p * k..(p + 1) * k][depth.clone()].as_ptr();
        for (j, block) in row_blocks(rows.len(), MR).enumerate() {
            let row = rows.start + block.start;
            let tile = Tile {
                a: &a[row * k + depth.start..],
                lda: k,
                // SAFETY: row `row`, column `group.start·NR` of `c: m×n`.
                c: unsafe { c.add(row * n + group.start * NR) },
                ldc: n,
                columns: n - group.start * NR,
                accumulate: call.accumulate,
                resume: call.resume,
                prefetch: self.prefetch_target(next.as_ref(), j, lines(group.start)),
            };
            let depth = depth.len();
            // SAFETY: AVX-512 is enabled here; the panels hold `depth` lines from these
            // pointers and the tile lies in the caller's bounds.
            unsafe {
                let rows = block.len();
                let at = group.start;
                match group.len() {
                    1 => rows_kernel::<1>(rows, group_lines(&lines, at), depth, tile),
                    2 => rows_kernel::<2>(rows, group_lines(&lines, at), depth, tile),
                    3 => rows_kernel::<3>(rows, group_lines(&lines, at), depth, tile),
                    4 => narrow_kernel::<4>(rows, group_lines(&lines, at), depth, tile),
                    5 => narrow_kernel::<5>(rows, group_lines(&lines, at), depth, tile),
                    6 => narrow_kernel::<6>(rows, group_lines(&lines, at), depth, tile),
                    7 => narrow_kernel::<7>(rows, group_lines(&lines, at), depth, tile),
                    _ => narrow_kernel::<8>(rows, group_lines(&lines, at), depth, tile),
                }
            }
        }
    }

    /// The lines that block `block` of a tile call's rows prefetches into L2 as it computes:
    /// panel `block` of the `next` call's group from that call's depth on, so that the blocks
    /// of rows together bring in the next call's panels before the kernel reaches them.
    /// Blocks past the group's panels, and the last call, prefetch `own` (their own lines,
    /// already in L1).
    fn prefetch_target(
        &self,
        next: Option<&TileCall>,
        block: usize,
        own: *const Line,
    ) -> *const Line {
        match next {
            Some(next) if block < next.group.len() => {
                self.lines[(next.group.start + block) * self.k + next.depth.start..].as_ptr()
            }
            _ => own,
        }
    }
}

/// One microkernel call: rows of `a` (row stride `lda`, one value per depth index) times a
/// group of panels, into the tile of `c` at `c` with row stride `ldc`, of which `columns`
/// (counted from the group's first column to the end of `c`'s row) exist.
struct Tile<'a> {
    a: &'a [f32],
    lda: usize,
    c: *mut f32,
    ldc: usize,
    columns: usize,
    /// Whether the tile's sums are added onto `c` (rather than written over it).
    accumulate: bool,
    /// Whether the tile's sums start from the values in `c` (the sums of the depths before,
    /// which each element's chain of multiply-adds continues), rather than from zero.
    resume: bool,
    /// A line the kernel prefetches into L2 at each depth index, from this one on (never
    /// read, so it may point anywhere).
    prefetch: *const Line,
}

/// [`kernel`] for a block of `rows` (1 to [`MR`]) rows, prefetching as the tile asks.
///
/// # Safety
///
/// As [`kernel`].
#[inline(always)]
unsafe fn rows_kernel<const P: usize>(
    rows: usize,
    panels: [*const Line; P],
    depth: usize,
    tile: Tile<'_>,
) {
    // SAFETY: as the caller promises.
    unsafe {
        match rows {
            1 => kernel::<1, P, true>(panels, depth, tile),
            2 => kernel::<2, P, true>(panels, depth, tile),
            3 => kernel::<3, P, true>(panels, depth, tile),
            4 => kernel::<4, P, true>(panels, depth, tile),
            5 => kernel::<5, P, true>(panels, depth, tile),
            6 => kernel::<6, P, true>(panels, depth, tile),
            7 => kernel::<7, P, true>(panels, depth, tile),
            _ => kernel::<8, P, true>(panels, depth, tile),
        }
    }
}

/// The line pointers of `P` panels from panel `first` on.
fn group_lines<const P: usize>(
    lines: &impl Fn(usize) -> *const Line,
    first: usize,
) -> [*const Line; P] {
    std::array::from_fn(|j| lines(first + j))
}

/// [`kernel`] for a block of at most [`NARROW_ROWS`] rows and more than [`PANELS`] panels
/// (groups that wide are formed only for products of that few rows), without prefetching:
/// at one or two rows a prefetch per depth index costs more than it brings.
///
/// # Safety
///
/// As [`kernel`].
#[inline(always)]
unsafe fn narrow_kernel<const P: usize>(
    rows: usize,
    panels: [*const Line; P],
    depth: usize,
    tile: Tile<'_>,
) {
    // SAFETY: as the caller promises.
    unsafe {
        debug_assert!(rows <= NARROW_ROWS);
        match rows {
            1 => kernel::<1, P, false>(panels, depth, tile),
            _ => kernel::<2, P, false>(panels, depth, tile),
        }
    }
}

/// `R` rows times `P` panels, `R × P` accumulators in registers; with `PREFETCH`, one line
/// from `tile.prefetch` on per depth index is prefetched into L2.
///
/// # Safety
///
/// AVX-512; each panel pointer reads `depth` lines, `tile.a` holds `R` rows of `depth` values
/// at stride `tile.lda`, and `tile.c` is writable for `R` rows of the tile's columns.
#[inline(always)]
unsafe fn kernel<const R: usize, const P: usize, const PREFETCH: bool>(
    panels: [*const Line; P],
    depth: usize,
    tile: Tile<'_>,
) {
    let lda = tile.lda;
    let a = tile.a.as_ptr();
    // SAFETY: AVX-512 is available, as the caller promises.
    let mut acc: [[__m512; P]; R] = [[unsafe { _mm512_setzero_ps() }; P]; R];
    if tile.resume {
        // SAFETY: as the caller promises.
        unsafe { load(&mut acc, &tile) };
    }
    // `UNROLL` depth indices per pass of the loop: their loads of `a` share one address
    // computation per row (with one per index, the integer work competes with the
    // multiply-adds for the ports).
    let whole = depth - depth % UNROLL;
    for start in (0..whole).step_by(UNROLL) {
        for kk in start..start + UNROLL {
            if PREFETCH {
                prefetch_l2(tile.prefetch.wrapping_add(kk));
            }
            // SAFETY: `kk < depth`, as the caller promises.
            unsafe { depth_step(&mut acc, panels, a, lda, kk) };
        }
    }
    for kk in whole..depth {
        // SAFETY: as above.
        unsafe { depth_step(&mut acc, panels, a, lda, kk) };
    }
    // SAFETY: as the caller promises.
    unsafe { store(&acc, &tile) };
}

/// One depth index `kk` of [`kernel`]: `R × P` fused multiply-adds.
///
/// # Safety
///
/// As [`kernel`], with `kk < depth`.
#[inline(always)]
unsafe fn depth_step<const R: usize, const P: usize>(
    acc: &mut [[__m512; P]; R],
    panels: [*const Line; P],
    a: *const f32,
    lda: usize,
    kk: usize,
) {
    // SAFETY: lines are 64-byte aligned and hold 16 values; each panel has `depth` lines
    // and each row of `a` `depth` values, as the caller promises.
    unsafe {
        let mut b = [_mm512_setzero_ps(); P];
        for (b, panel) in b.iter_mut().zip(panels) {
            *b = _mm512_load_ps(panel.add(kk).cast::<f32>());
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(i * lda + kk));
            for (acc, b) in acc.iter_mut().zip(&b) {
                *acc = _mm512_fmadd_ps(x, *b, *acc);
            }
        }
    }
}

/// Asks for the cache line at `line` to be brought into L2: a hint, which never faults, so
/// `line` may point anywhere.
#[inline(always)]
fn prefetch_l2(line: *const Line) {
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
    // SAFETY: a prefetch reads nothing and cannot fault, whatever the address; SSE is part
    // of x86-64.
    unsafe { _mm_prefetch::<_MM_HINT_T1>(line.cast::<i8>()) };
}

/// Sets `acc` to the values of the tile in `c` (zero past `tile.columns`): the sums to resume.
///
/// # Safety
///
/// AVX-512; `tile.c` is readable for `R` rows of `min(tile.columns, P·NR)` values at stride
/// `tile.ldc`.
#[inline(always)]
unsafe fn load<const R: usize, const P: usize>(acc: &mut [[__m512; P]; R], tile: &Tile<'_>) {
    for (i, acc) in acc.iter_mut().enumerate() {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row `i`, panel `j` of the tile: the masked lanes lie within the caller's
            // bounds, the others are not read.
            *acc = unsafe {
                _mm512_maskz_loadu_ps(column_mask(tile, j), tile.c.add(i * tile.ldc + j * NR))
            };
        }
    }
}

/// The lanes of panel `j` of the tile that hold columns of `c` (all but past `tile.columns`).
#[inline(always)]
fn column_mask(tile: &Tile<'_>, j: usize) -> u16 {
    let columns = tile.columns.saturating_sub(j * NR).min(NR);
    if columns == NR {
        u16::MAX
    } else {
        (1u16 << columns) - 1
    }
}

/// Writes (or adds) `R` rows of `P` panels of accumulators into the tile; the columns past
/// `tile.columns` are neither read nor written.
///
/// # Safety
///
/// AVX-512; `tile.c` is writable for `R` rows of `min(tile.columns, P·NR)` values at stride
/// `tile.ldc`.
#[inline(always)]
unsafe fn store<const R: usize, const P: usize>(acc: &[[__m512; P]; R], tile: &Tile<'_>) {
    for (i, acc) in acc.iter().enumerate() {
        for (j, &value) in acc.iter().enumerate() {
            let mask = column_mask(tile, j);
            // SAFETY: row `i`, panel `j` of the tile: the masked lanes lie within the
            // caller's bounds, the others are not touched.
            unsafe {
                let out = tile.c.add(i * tile.ldc + j * NR);
                let value = if tile.accumulate {
                    _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, out))
                } else {
                    value
                };
                _mm512_mask_storeu_ps(out, mask, value);
            }
        }
    }
}
