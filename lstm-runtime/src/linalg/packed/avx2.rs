//! The packed step products on AVX2 and FMA: a microkernel of up to [`MR`] rows × one panel
//! ([`NR`] columns, two `ymm` registers), its accumulators in 12 of the 16 registers, and a
//! one-row kernel that keeps four pairs of independent sums. A later depth range's sums are
//! added onto the earlier ones' in `c`, and a single row is summed in four lanes: each element
//! is one chain of multiply-adds in index order only within one depth range and from two rows
//! on ([`super::one_row_sums_in_order`]).

use std::ops::Range;

use super::{DEPTH_PER_PASS, Line, NR, Panels, TileCall, UNROLL, for_each_tile, row_blocks};

/// Rows of the microkernel: 6 rows × 2 registers = 12 accumulators, which with the two
/// registers of `b` and one broadcast of `a` fit in the 16 AVX2 registers.
pub(super) const MR: usize = 6;

impl Panels {
    /// [`Panels::product`] on AVX2 and FMA.
    ///
    /// # Safety
    ///
    /// As [`Self::product`], with `k > 0`, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product_avx2(
        &self,
        a: &[f32],
        m: usize,
        c: *mut f32,
        accumulate: bool,
        panels: Range<usize>,
    ) {
        let walk = (panels, false);
        for_each_tile(m, self.k, walk, 1, DEPTH_PER_PASS, accumulate, |call, _| {
            // SAFETY: as this function's caller promises; AVX2 and FMA are available.
            unsafe { self.panel_tiles(a, c, call) }
        });
    }

    /// The tiles of `call`, whose group is one panel.
    ///
    /// # Safety
    ///
    /// As [`Self::product`], on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn panel_tiles(&self, a: &[f32], c: *mut f32, call: TileCall) {
        let (k, n) = (self.k, self.n);
        let (rows, p, depth) = (&call.rows, call.group.start, &call.depth);
        let panel = &self.lines[p * k..(p + 1) * k][depth.clone()];
        let columns = NR.min(n - p * NR);
        for block in row_blocks(rows.len(), MR) {
            let row = rows.start + block.start;
            let tile = Tile {
                a: &a[row * k + depth.start..],
                lda: k,
                // SAFETY: row `row`, column `p·NR` of `c: m×n`.
                c: unsafe { c.add(row * n + p * NR) },
                ldc: n,
                columns,
                // The AVX2 kernels add a later depth range's sums onto the earlier ones'.
                accumulate: call.accumulate || call.resume,
            };
            // SAFETY: AVX2 and FMA are enabled in this function; the tile lies in the
            // caller's bounds.
            unsafe {
                match block.len() {
                    1 => kernel_1(panel, tile),
                    2 => kernel::<2>(panel, tile),
                    3 => kernel::<3>(panel, tile),
                    4 => kernel::<4>(panel, tile),
                    5 => kernel::<5>(panel, tile),
                    _ => kernel::<6>(panel, tile),
                }
            }
        }
    }
}

/// One microkernel call: rows of `a` (row stride `lda`, as many values per row as the panel
/// has lines) times one panel, into the `rows × columns` tile of `c` at `c` with row stride
/// `ldc`.
struct Tile<'a> {
    a: &'a [f32],
    lda: usize,
    c: *mut f32,
    ldc: usize,
    columns: usize,
    accumulate: bool,
}

/// `R` rows times one panel, `R` × 2 accumulators in registers.
///
/// # Safety
///
/// AVX2 and FMA; `tile.a` holds `R·k` values, `panel` `k` lines, and `tile.c` is writable for
/// `R` rows of `tile.columns` values at stride `tile.ldc`.
#[inline(always)]
unsafe fn kernel<const R: usize>(panel: &[Line], tile: Tile<'_>) {
    use std::arch::x86_64::{__m256, _mm256_setzero_ps};
    // SAFETY: AVX2 is available, as the caller promises.
    let mut acc: [[__m256; 2]; R] = [[unsafe { _mm256_setzero_ps() }; 2]; R];
    let a = tile.a.as_ptr();
    // Four depth indices per pass of the loop: their loads of `a` share one address
    // computation per row (with one per index, the integer work competes with the
    // multiply-adds for the ports).
    let mut quads = panel.chunks_exact(UNROLL);
    let mut kk = 0;
    for lines in &mut quads {
        for line in lines {
            // SAFETY: `kk < k`; `a` rows hold `k` values, as the caller promises.
            unsafe { depth_step(&mut acc, line, a, tile.lda, kk) };
            kk += 1;
        }
    }
    for line in quads.remainder() {
        // SAFETY: as above.
        unsafe { depth_step(&mut acc, line, a, tile.lda, kk) };
        kk += 1;
    }
    // SAFETY: as the caller promises.
    unsafe { store(&acc, &tile) };
}

/// Depth index `kk` of [`kernel`]: `R` × 2 fused multiply-adds with the panel's line `line`.
///
/// # Safety
///
/// AVX2 and FMA; `a` holds `R` rows at stride `lda` of more than `kk` values.
#[inline(always)]
unsafe fn depth_step<const R: usize>(
    acc: &mut [[std::arch::x86_64::__m256; 2]; R],
    line: &Line,
    a: *const f32,
    lda: usize,
    kk: usize,
) {
    use std::arch::x86_64::{_mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_load_ps};
    // SAFETY: lines are 64-byte aligned and hold 16 values; the rows of `a` as the caller
    // promises.
    unsafe {
        let b0 = _mm256_load_ps(line.0.as_ptr());
        let b1 = _mm256_load_ps(line.0.as_ptr().add(8));
        for (i, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_broadcast_ss(&*a.add(i * lda + kk));
            acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
        }
    }
}

/// One row times one panel: four independent pairs of accumulators over `k` (one register
/// pair alone would wait on each fused multiply-add's latency).
///
/// # Safety
///
/// As [`kernel`] with `R = 1`.
#[inline(always)]
unsafe fn kernel_1(panel: &[Line], tile: Tile<'_>) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_load_ps,
        _mm256_setzero_ps,
    };
    // SAFETY: AVX2 is available, as the caller promises.
    let mut acc: [[__m256; 2]; 4] = [[unsafe { _mm256_setzero_ps() }; 2]; 4];
    // Both cut to the panel's depth and walked in step, so the loops carry no bounds checks
    // (with them, a quarter more instructions than the arithmetic).
    let a = &tile.a[..panel.len()];
    let body = panel.len() / 4 * 4;
    // SAFETY: lines are 64-byte aligned and hold 16 values; `a` holds `k` values.
    unsafe {
        for (lines, a) in panel[..body].chunks_exact(4).zip(a.chunks_exact(4)) {
            for (u, acc) in acc.iter_mut().enumerate() {
                let line = &lines[u].0;
                let x = _mm256_broadcast_ss(&a[u]);
                acc[0] = _mm256_fmadd_ps(x, _mm256_load_ps(line.as_ptr()), acc[0]);
                acc[1] = _mm256_fmadd_ps(x, _mm256_load_ps(line.as_ptr().add(8)), acc[1]);
            }
        }
        for (line, a) in panel[body..].iter().zip(&a[body..]) {
            let line = &line.0;
            let x = _mm256_broadcast_ss(a);
            acc[0][0] = _mm256_fmadd_ps(x, _mm256_load_ps(line.as_ptr()), acc[0][0]);
            acc[0][1] = _mm256_fmadd_ps(x, _mm256_load_ps(line.as_ptr().add(8)), acc[0][1]);
        }
        let sum = [[
            _mm256_add_ps(
                _mm256_add_ps(acc[0][0], acc[1][0]),
                _mm256_add_ps(acc[2][0], acc[3][0]),
            ),
            _mm256_add_ps(
                _mm256_add_ps(acc[0][1], acc[1][1]),
                _mm256_add_ps(acc[2][1], acc[3][1]),
            ),
        ]];
        store(&sum, &tile);
    }
}

/// Writes (or adds) `R` rows of accumulators into the tile.
///
/// # Safety
///
/// AVX2; `tile.c` is writable for `R` rows of `tile.columns` values at stride `tile.ldc`.
#[inline(always)]
unsafe fn store<const R: usize>(acc: &[[std::arch::x86_64::__m256; 2]; R], tile: &Tile<'_>) {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_loadu_ps, _mm256_storeu_ps};
    for (i, acc) in acc.iter().enumerate() {
        // SAFETY: row `i` of the tile, within the caller's bounds.
        unsafe {
            let row = tile.c.add(i * tile.ldc);
            if tile.columns == NR {
                let (mut lo, mut hi) = (acc[0], acc[1]);
                if tile.accumulate {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8)));
                }
                _mm256_storeu_ps(row, lo);
                _mm256_storeu_ps(row.add(8), hi);
            } else {
                let mut values = [0.0f32; NR];
                _mm256_storeu_ps(values.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(values.as_mut_ptr().add(8), acc[1]);
                for (j, &value) in values[..tile.columns].iter().enumerate() {
                    let out = row.add(j);
                    *out = if tile.accumulate { *out + value } else { value };
                }
            }
        }
    }
}
