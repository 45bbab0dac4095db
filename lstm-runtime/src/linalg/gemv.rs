//! Matrix-vector products in f32 for batch 1, where one time step's products are a row vector
//! times a weight matrix that sits in cache: `c ← beta·c + alpha·a·b` with `a` and `c` one
//! contiguous row and `b` a contiguous matrix, in either of the two layouts a layer uses. The
//! kernels use AVX2 and FMA intrinsics, or AVX-512 ones where the active level
//! ([`crate::isa::active`]) allows; on other machines, or other operands, [`super`] falls back
//! to the `gemm` crate.

use crate::isa::{self, Isa};

/// Lanes of one AVX2 register of f32, and the width of every accumulator.
const LANES: usize = 8;

/// Rows of the weight matrix that one pass of the `dot_rows` kernel reads together: each
/// register of `a` loaded once feeds this many independent chains of fused multiply-adds,
/// enough to hide their latency; the reduction at the end relies on it being `LANES`.
const DOT_ROWS: usize = LANES;

/// Columns that one pass of the `axpy_rows` kernel accumulates in registers: eight
/// independent chains of fused multiply-adds, enough to hide their latency.
const AXPY_COLUMNS: usize = 8 * LANES;

/// `c ← beta·c + alpha·W·a`, i.e. `c = a·Wᵀ` with `w` row-major `n×k` (`n = c.len()`,
/// `k = a.len()`): the recurrent projection `h_prev · W_hhᵀ` at batch 1. `None` (nothing
/// written) when the machine lacks AVX2 or FMA.
pub(super) fn dot_rows(alpha: f32, a: &[f32], w: &[f32], beta: f32, c: &mut [f32]) -> Option<()> {
    debug_assert_eq!(w.len(), a.len() * c.len());
    dot_rows_at(isa::active(), alpha, a, w, beta, c)
}

/// [`dot_rows`] with the kernel of `level`; `None` for the baseline level.
fn dot_rows_at(
    level: Isa,
    alpha: f32,
    a: &[f32],
    w: &[f32],
    beta: f32,
    c: &mut [f32],
) -> Option<()> {
    debug_assert!(level.supported());
    match level {
        Isa::Baseline => return None,
        // SAFETY: the CPU supports the level's features, as `isa` checked.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { dot_rows_avx2(alpha, a, w, beta, c) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { dot_rows_avx512(alpha, a, w, beta, c) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    }
    Some(())
}

/// `c ← beta·c + alpha·a·B` with `b` row-major `k×n` (`k = a.len()`, `n = c.len()`): the
/// gradient `dh_prev = dZ · W_hh` at batch 1. `None` (nothing written) when the machine lacks
/// AVX2 or FMA.
pub(super) fn axpy_rows(alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) -> Option<()> {
    debug_assert_eq!(b.len(), a.len() * c.len());
    axpy_rows_at(isa::active(), alpha, a, b, beta, c)
}

/// [`axpy_rows`] with the kernel of `level`; `None` for the baseline level.
fn axpy_rows_at(
    level: Isa,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) -> Option<()> {
    debug_assert!(level.supported());
    match level {
        Isa::Baseline => return None,
        // SAFETY: the CPU supports the level's features, as `isa` checked.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { axpy_rows_avx2(alpha, a, b, beta, c) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { axpy_rows_avx512(alpha, a, b, beta, c) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    }
    Some(())
}

/// Whether this machine runs the kernels here (AVX2 and FMA).
pub(super) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::__private::has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `beta·old + alpha·sum`, where `beta == 0` ignores `old` (BLAS: NaN there must not leak).
#[inline(always)]
fn scaled(alpha: f32, sum: f32, beta: f32, old: f32) -> f32 {
    if beta == 0.0 {
        alpha * sum
    } else {
        beta * old + alpha * sum
    }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(alpha: f32, a: &[f32], w: &[f32], beta: f32, c: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps, _mm256_permute2f128_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let (k, n) = (a.len(), c.len());
    let body = k / LANES * LANES;
    let full_rows = n / DOT_ROWS * DOT_ROWS;
    let tail =
        |row: &[f32]| -> f32 { a[body..].iter().zip(&row[body..]).map(|(x, y)| x * y).sum() };
    for first in (0..full_rows).step_by(DOT_ROWS) {
        let block = &w[first * k..(first + DOT_ROWS) * k];
        let mut acc = [_mm256_setzero_ps(); DOT_ROWS];
        for start in (0..body).step_by(LANES) {
            // SAFETY: `start + LANES ≤ body ≤ k`, the length of `a` and of each of the
            // `DOT_ROWS` rows of `block`.
            let x = unsafe { _mm256_loadu_ps(a.as_ptr().add(start)) };
            for (row, sum) in acc.iter_mut().enumerate() {
                // SAFETY: as for `x`.
                let y = unsafe { _mm256_loadu_ps(block.as_ptr().add(row * k + start)) };
                *sum = _mm256_fmadd_ps(x, y, *sum);
            }
        }
        // Reduce the eight registers to one holding the eight sums, in row order: pairwise
        // horizontal adds leave each 128-bit half with a partial sum of every row.
        let pairs = [0, 2, 4, 6].map(|row| _mm256_hadd_ps(acc[row], acc[row + 1]));
        let low_rows = _mm256_hadd_ps(pairs[0], pairs[1]);
        let high_rows = _mm256_hadd_ps(pairs[2], pairs[3]);
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(low_rows, high_rows),
            _mm256_permute2f128_ps::<0x31>(low_rows, high_rows),
        );
        let mut lanes = [0.0f32; DOT_ROWS];
        // SAFETY: `lanes` holds `DOT_ROWS = LANES` elements.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sums) };
        for (row, (value, sum)) in c[first..first + DOT_ROWS].iter_mut().zip(lanes).enumerate() {
            let sum = sum + tail(&block[row * k..(row + 1) * k]);
            *value = scaled(alpha, sum, beta, *value);
        }
    }
    // The last rows, fewer than a block: one by one.
    for (row, value) in c.iter_mut().enumerate().skip(full_rows) {
        let sum: f32 = a
            .iter()
            .zip(&w[row * k..(row + 1) * k])
            .map(|(x, y)| x * y)
            .sum();
        *value = scaled(alpha, sum, beta, *value);
    }
}

/// # Safety
///
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_rows_avx2(alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    const REGISTERS: usize = AXPY_COLUMNS / LANES;
    let n = c.len();
    let body = n / AXPY_COLUMNS * AXPY_COLUMNS;
    let mut sums = [0.0f32; AXPY_COLUMNS];
    for start in (0..body).step_by(AXPY_COLUMNS) {
        let mut acc = [_mm256_setzero_ps(); REGISTERS];
        for (p, &x) in a.iter().enumerate() {
            let x = _mm256_set1_ps(x);
            let row = &b[p * n + start..p * n + start + AXPY_COLUMNS];
            for (register, sum) in acc.iter_mut().enumerate() {
                // SAFETY: `row` holds `AXPY_COLUMNS = REGISTERS · LANES` elements.
                let y = unsafe { _mm256_loadu_ps(row.as_ptr().add(register * LANES)) };
                *sum = _mm256_fmadd_ps(x, y, *sum);
            }
        }
        for (register, sum) in acc.iter().enumerate() {
            // SAFETY: `sums` holds `REGISTERS · LANES` elements.
            unsafe { _mm256_storeu_ps(sums.as_mut_ptr().add(register * LANES), *sum) };
        }
        for (value, sum) in c[start..start + AXPY_COLUMNS].iter_mut().zip(sums) {
            *value = scaled(alpha, sum, beta, *value);
        }
    }
    // The last columns, fewer than a block: one by one.
    for column in body..n {
        let sum: f32 = a
            .iter()
            .zip(b[column..].iter().step_by(n))
            .map(|(x, y)| x * y)
            .sum();
        c[column] = scaled(alpha, sum, beta, c[column]);
    }
}

/// Lanes of one AVX-512 register of f32.
const LANES_512: usize = 16;

/// # Safety
///
/// The CPU supports AVX-512 (F, VL, BW, DQ), AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
unsafe fn dot_rows_avx512(alpha: f32, a: &[f32], w: &[f32], beta: f32, c: &mut [f32]) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_hadd_ps, _mm256_permute2f128_ps, _mm256_storeu_ps,
        _mm512_castps512_ps256, _mm512_extractf32x8_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_maskz_loadu_ps, _mm512_setzero_ps,
    };
    let (k, n) = (a.len(), c.len());
    let body = k / LANES_512 * LANES_512;
    let tail_mask = ((1u32 << (k - body)) - 1) as u16;
    let full_rows = n / DOT_ROWS * DOT_ROWS;
    for first in (0..full_rows).step_by(DOT_ROWS) {
        let block = &w[first * k..(first + DOT_ROWS) * k];
        let mut acc = [_mm512_setzero_ps(); DOT_ROWS];
        for start in (0..body).step_by(LANES_512) {
            // SAFETY: `start + LANES_512 ≤ body ≤ k`, the length of `a` and of each of the
            // `DOT_ROWS` rows of `block`.
            let x = unsafe { _mm512_loadu_ps(a.as_ptr().add(start)) };
            for (row, sum) in acc.iter_mut().enumerate() {
                // SAFETY: as for `x`.
                let y = unsafe { _mm512_loadu_ps(block.as_ptr().add(row * k + start)) };
                *sum = _mm512_fmadd_ps(x, y, *sum);
            }
        }
        if body < k {
            // SAFETY: the mask covers the `k - body` values left in `a` and in each row.
            let x = unsafe { _mm512_maskz_loadu_ps(tail_mask, a.as_ptr().add(body)) };
            for (row, sum) in acc.iter_mut().enumerate() {
                // SAFETY: as for `x`.
                let y =
                    unsafe { _mm512_maskz_loadu_ps(tail_mask, block.as_ptr().add(row * k + body)) };
                *sum = _mm512_fmadd_ps(x, y, *sum);
            }
        }
        // Fold each register's halves, then reduce the eight 8-lane sums as the AVX2 kernel
        // does: pairwise horizontal adds leave each 128-bit half with a partial sum of every
        // row.
        let halves = acc.map(|sum| {
            _mm256_add_ps(
                _mm512_castps512_ps256(sum),
                _mm512_extractf32x8_ps::<1>(sum),
            )
        });
        let pairs = [0, 2, 4, 6].map(|row| _mm256_hadd_ps(halves[row], halves[row + 1]));
        let low_rows = _mm256_hadd_ps(pairs[0], pairs[1]);
        let high_rows = _mm256_hadd_ps(pairs[2], pairs[3]);
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(low_rows, high_rows),
            _mm256_permute2f128_ps::<0x31>(low_rows, high_rows),
        );
        let mut lanes = [0.0f32; DOT_ROWS];
        // SAFETY: `lanes` holds `DOT_ROWS = LANES` elements.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sums) };
        for (value, sum) in c[first..first + DOT_ROWS].iter_mut().zip(lanes) {
            *value = scaled(alpha, sum, beta, *value);
        }
    }
    // The last rows, fewer than a block: one by one.
    for (row, value) in c.iter_mut().enumerate().skip(full_rows) {
        let sum: f32 = a
            .iter()
            .zip(&w[row * k..(row + 1) * k])
            .map(|(x, y)| x * y)
            .sum();
        *value = scaled(alpha, sum, beta, *value);
    }
}

/// # Safety
///
/// The CPU supports AVX-512 (F, VL, BW, DQ), AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
unsafe fn axpy_rows_avx512(alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_storeu_ps,
    };
    /// Columns of one block: eight independent chains of fused multiply-adds.
    const REGISTERS: usize = 8;
    const COLUMNS: usize = REGISTERS * LANES_512;
    let n = c.len();
    let mut sums = [0.0f32; COLUMNS];
    let mut start = 0;
    while start < n {
        let columns = COLUMNS.min(n - start);
        // One mask per register: whole registers, then the part of the last one that exists.
        let masks: [u16; REGISTERS] = std::array::from_fn(|register| {
            let lanes = columns.saturating_sub(register * LANES_512).min(LANES_512);
            ((1u32 << lanes) - 1) as u16
        });
        let mut acc: [__m512; REGISTERS] = [_mm512_setzero_ps(); REGISTERS];
        for (p, &x) in a.iter().enumerate() {
            let x = _mm512_set1_ps(x);
            let row = &b[p * n + start..p * n + start + columns];
            if columns == COLUMNS {
                for (register, sum) in acc.iter_mut().enumerate() {
                    // SAFETY: `row` holds `COLUMNS = REGISTERS · LANES_512` elements.
                    let y = unsafe { _mm512_loadu_ps(row.as_ptr().add(register * LANES_512)) };
                    *sum = _mm512_fmadd_ps(x, y, *sum);
                }
            } else {
                for (register, sum) in acc.iter_mut().enumerate() {
                    // SAFETY: the mask covers only the elements of `row` past this register's
                    // start (none past its end).
                    let y = unsafe {
                        _mm512_maskz_loadu_ps(
                            masks[register],
                            row.as_ptr().add((register * LANES_512).min(columns)),
                        )
                    };
                    *sum = _mm512_fmadd_ps(x, y, *sum);
                }
            }
        }
        for (register, sum) in acc.iter().enumerate() {
            // SAFETY: `sums` holds `REGISTERS · LANES_512` elements.
            unsafe { _mm512_storeu_ps(sums.as_mut_ptr().add(register * LANES_512), *sum) };
        }
        for (value, sum) in c[start..start + columns].iter_mut().zip(sums) {
            *value = scaled(alpha, sum, beta, *value);
        }
        start += columns;
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Both kernels at every level this CPU supports against a naive f64 product, on lengths
    /// with and without tails, with `beta` 0 (NaN in `c` ignored) and 0.5.
    #[test]
    fn every_level_matches_naive() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let levels: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|level| level.supported())
            .collect();
        if levels.len() < 2 {
            eprintln!("skipped: levels this CPU lacks (it runs {levels:?})");
        }
        for (k, n) in [
            (1, 1),
            (5, 9),
            (16, 8),
            (37, 130),
            (128, 512),
            (64, 300),
            (300, 64),
        ] {
            let a: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c0: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            for &level in &levels {
                for beta in [0.0f32, 0.5] {
                    // dot_rows: w is n×k.
                    let mut c = if beta == 0.0 {
                        vec![f32::NAN; n]
                    } else {
                        c0.clone()
                    };
                    dot_rows_at(level, 1.5, &a, &w, beta, &mut c).unwrap();
                    for (row, &found) in c.iter().enumerate() {
                        let sum: f64 = (0..k)
                            .map(|kk| f64::from(a[kk]) * f64::from(w[row * k + kk]))
                            .sum();
                        let expected = 1.5 * sum + f64::from(beta) * f64::from(c0[row]);
                        assert!(
                            (f64::from(found) - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                            "{level} dot_rows {k}x{n} beta {beta}: c[{row}] = {found}, expected {expected}"
                        );
                    }
                    // axpy_rows: b is k×n.
                    let mut c = if beta == 0.0 {
                        vec![f32::NAN; n]
                    } else {
                        c0.clone()
                    };
                    axpy_rows_at(level, 1.5, &a, &w, beta, &mut c).unwrap();
                    for (column, &found) in c.iter().enumerate() {
                        let sum: f64 = (0..k)
                            .map(|kk| f64::from(a[kk]) * f64::from(w[kk * n + column]))
                            .sum();
                        let expected = 1.5 * sum + f64::from(beta) * f64::from(c0[column]);
                        assert!(
                            (f64::from(found) - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                            "{level} axpy_rows {k}x{n} beta {beta}: c[{column}] = {found}, expected {expected}"
                        );
                    }
                }
            }
        }
    }
}
