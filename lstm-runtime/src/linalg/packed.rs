//! The per-step products of the time loop, `zh = h_prev · W_hhᵀ` and `dh_prev = dZ · W_hh`,
//! in f32 against a right-hand operand packed once per call.
//!
//! A general GEMM (the `gemm` crate) re-packs its operands on every call; in the time loop the
//! weights are the same at every step, so re-packing `W_hh` (4 MB at hidden 512) every step
//! costs about as much as the arithmetic it feeds. Here the right-hand operand `b: k×n` is
//! packed once into panels of [`NR`] columns, each stored `k` lines of [`NR`] values (one
//! cache line), and every step streams those panels through an AVX2/FMA microkernel of up to
//! [`avx2::MR`] rows × [`NR`] columns ([`avx2`]), whose accumulators stay in registers. The
//! left operand (a step's batch of `h_prev` or `dZ` rows) is read in place. This module holds
//! what both levels share: the panels, the walk over their tiles and the level's dispatch.
//!
//! The panels are split between threads (each thread owns a column range of the output), so
//! each core streams only its share of the weights. On a CPU with AVX-512 the same panels run
//! through the wider kernels of [`avx512`], chosen at every call by [`crate::isa::active`];
//! at that level the input projection `x · W_ihᵀ` of a chunk of steps runs here as well
//! (`ordered.rs`), on `W_ih` packed once per call.

mod avx2;
mod avx512;

use std::ops::Range;

use super::gemv::has_avx2_fma;
use crate::isa::{self, Isa};
use crate::parallel::helper_thread;

/// Columns of one panel and of the microkernel: two AVX2 registers of f32, one cache line.
pub(super) const NR: usize = 16;

/// Left rows that one pass over the panels covers: bounds the part of `a` that must stay in
/// the L2 cache while the panels stream past.
const ROWS_PER_PASS: usize = 96;

/// Bytes of left rows (a pass of up to [`ROWS_PER_PASS`] rows at full depth) up to which a
/// panel is run to its full depth before the next: half of this machine's 512 KB L2, so the
/// rows stay there while the panels stream past.
const A_IN_L2_BYTES: usize = 256 * 1024;

/// Depth that one microkernel call covers, at every level, so that a product no deeper than
/// this sums each element as one chain in index order at AVX2 and AVX-512 alike (deeper,
/// only AVX-512's kernels continue the chain from one call to the next): at AVX2 a
/// panel's share (16 KB) and a row block's (6 KB) then fit in the L1 cache together; the
/// AVX-512 kernel's three panels (48 KB) are read from L2 by each block of rows in turn.
pub(super) const DEPTH_PER_PASS: usize = 256;

/// Depth indices per pass of a microkernel's loop.
const UNROLL: usize = 4;

/// Whether the one-row kernel of the active level computes each element as one chain over
/// the depth, as the kernels of several rows do: AVX-512's; AVX2's keeps four lanes of sums.
pub(crate) fn one_row_sums_in_order() -> bool {
    one_row_sums_in_order_at(isa::active())
}

/// [`one_row_sums_in_order`] at the level `level`.
fn one_row_sums_in_order_at(level: Isa) -> bool {
    level == Isa::Avx512
}

/// Whether every product at the active level computes each element as one chain of fused
/// multiply-adds over its whole depth in index order, whatever the number of rows: the
/// AVX-512 kernels resume each depth range's sums from the ones before, where the AVX2
/// kernels add a range's sums onto them (and sum a single row in four lanes).
pub(crate) fn sums_in_order() -> bool {
    sums_in_order_at(isa::active())
}

/// [`sums_in_order`] at the level `level`.
fn sums_in_order_at(level: Isa) -> bool {
    level == Isa::Avx512
}

/// One line of a panel: the [`NR`] values of one `k` index, aligned to a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f32; NR]);

/// A right-hand operand `b: k×n` packed into panels of [`NR`] columns.
#[derive(Clone, Debug)]
pub(crate) struct Panels {
    k: usize,
    n: usize,
    /// `n.div_ceil(NR)` panels of `k` lines; the columns past `n` in the last panel are zero.
    lines: Vec<Line>,
}

impl Panels {
    /// Packs `b = wᵀ` for a row-major `w: n×k` (the recurrent weights `W_hh` as the forward
    /// product `h_prev · W_hhᵀ` reads them); `None` on a machine without AVX2 and FMA.
    pub(crate) fn transposed(w: &[f32], n: usize, k: usize) -> Option<Self> {
        debug_assert_eq!(w.len(), n * k);
        Self::packed(k, n, |p, kk| {
            // Row `p·NR + j` of `w`, or past `n` a zero column.
            std::array::from_fn(|j| {
                w.get((p * NR + j) * k..(p * NR + j + 1) * k)
                    .map_or(0.0, |row| row[kk])
            })
        })
    }

    /// Packs `b = w` for a row-major `w: k×n` (the recurrent weights `W_hh` as the backward
    /// product `dZ · W_hh` reads them); `None` on a machine without AVX2 and FMA.
    pub(crate) fn plain(w: &[f32], k: usize, n: usize) -> Option<Self> {
        debug_assert_eq!(w.len(), k * n);
        Self::packed(k, n, |p, kk| {
            let columns = p * NR..(p * NR + NR).min(n);
            let mut line = [0.0; NR];
            line[..columns.len()].copy_from_slice(&w[kk * n..][columns]);
            line
        })
    }

    /// The `n.div_ceil(NR)` panels of `k` lines whose line `kk` of panel `p` is
    /// `line(p, kk)`; the two halves of the panels are packed on two threads where a helper
    /// thread runs (packing is otherwise the one part of a call's first step that a single
    /// core does while the other waits). `None` on a machine without AVX2 and FMA.
    fn packed(k: usize, n: usize, line: impl Fn(usize, usize) -> [f32; NR] + Sync) -> Option<Self> {
        if !has_avx2_fma() {
            return None;
        }
        let count = n.div_ceil(NR);
        let lines = helper_thread::written_by_both(count * k, count / 2 * k, |start, lines| {
            for (p, panel) in lines.chunks_mut(k.max(1)).enumerate() {
                for (kk, slot) in panel.iter_mut().enumerate() {
                    slot.write(Line(line(start / k.max(1) + p, kk)));
                }
            }
        });
        Some(Panels { k, n, lines })
    }

    /// Depth `k` of the product.
    pub(crate) fn depth(&self) -> usize {
        self.k
    }

    /// Columns `n` of the product.
    pub(crate) fn width(&self) -> usize {
        self.n
    }

    /// Number of panels.
    pub(crate) fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }

    /// `c ← a · b` (or `c += a · b` when `accumulate`) for the columns of the panels in
    /// `panels`, with `a` row-major `m×k` and `c` row-major `m×n`; `backwards` walks the
    /// groups of panels from the last to the first, which computes the same values.
    ///
    /// A product that every step repeats with weights larger than the L1 cache but within
    /// L2 (batch 1's `h_prev · W_hhᵀ`) reads them faster walking back and forth, one step
    /// forwards and the next backwards: each step then starts on the panels that the one
    /// before read last, which are still in L1. The AVX2 kernels always walk forwards: their
    /// one-row products, one panel per call, did not gain from it.
    ///
    /// # Safety
    ///
    /// `a` holds `m·k` values and `c` points at `m·n` writable values that no one else reads
    /// or writes in the columns of `panels` meanwhile; `panels` lies within the panel count.
    pub(crate) unsafe fn product(
        &self,
        a: &[f32],
        m: usize,
        c: *mut f32,
        accumulate: bool,
        (panels, backwards): (Range<usize>, bool),
    ) {
        // SAFETY: as the caller promises.
        unsafe { self.product_at(isa::active(), a, m, c, accumulate, (panels, backwards)) }
    }

    /// [`Self::product`] with the kernels of `level` (AVX2's below AVX-512).
    ///
    /// # Safety
    ///
    /// As [`Self::product`]; the CPU supports `level`.
    unsafe fn product_at(
        &self,
        level: Isa,
        a: &[f32],
        m: usize,
        c: *mut f32,
        accumulate: bool,
        (panels, backwards): (Range<usize>, bool),
    ) {
        debug_assert_eq!(a.len(), m * self.k);
        debug_assert!(panels.end <= self.panel_count());
        if self.k == 0 {
            if !accumulate {
                for row in 0..m {
                    for column in panels.start * NR..(panels.end * NR).min(self.n) {
                        // SAFETY: in bounds of `c: m×n`, as the caller promises.
                        unsafe { *c.add(row * self.n + column) = 0.0 };
                    }
                }
            }
            return;
        }
        // SAFETY: `Panels` exist only where `has_avx2_fma` held, and the CPU supports `level`;
        // bounds as the caller promises.
        unsafe {
            match level {
                Isa::Avx512 => self.product_avx512(a, m, c, accumulate, (panels, backwards)),
                Isa::Avx2 | Isa::Baseline => self.product_avx2(a, m, c, accumulate, panels),
            }
        }
    }
}

/// One call of a tile function: `rows` of `a` times the panels of `group` over `depth`,
/// added onto `c` (`accumulate`, the caller's own `c += a · b`) or written over it, or, past
/// the first depth range (`resume`), continuing the sums that `c` holds.
#[derive(Clone, Debug, PartialEq)]
struct TileCall {
    rows: Range<usize>,
    group: Range<usize>,
    depth: Range<usize>,
    accumulate: bool,
    resume: bool,
}

/// Runs `tile(call, next)` over every tile of an `m×k` by panels product, `next` being the
/// call that follows in the same pass of rows (whose panels `tile` may prefetch while it
/// computes): passes of up to [`ROWS_PER_PASS`] rows, the `panels` in groups of `group_len`
/// (first to last, or last to first when `backwards`), the depth in ranges of
/// `depth_per_pass` (each range past the first resumes the sums of the ones before). When a
/// pass's rows fit in L2, each group runs to its full depth before the next (its tiles of `c`
/// stay in L1 between depths, the rows of `a` in L2 across groups); rows too deep for L2 run
/// every group at one depth range, then the next.
fn for_each_tile(
    m: usize,
    k: usize,
    (panels, backwards): (Range<usize>, bool),
    group_len: usize,
    depth_per_pass: usize,
    accumulate: bool,
    mut tile: impl FnMut(TileCall, Option<TileCall>),
) {
    let (groups, depths) = (panels.len().div_ceil(group_len), k.div_ceil(depth_per_pass));
    // The `g`-th group of the walk.
    let group = |g: usize| {
        let g = if backwards { groups - 1 - g } else { g };
        let first = panels.start + g * group_len;
        first..(first + group_len).min(panels.end)
    };
    let depth = |d: usize| d * depth_per_pass..((d + 1) * depth_per_pass).min(k);
    for pass in (0..m).step_by(ROWS_PER_PASS) {
        let rows = pass..(pass + ROWS_PER_PASS).min(m);
        let call = |g: usize, d: usize| TileCall {
            rows: rows.clone(),
            group: group(g),
            depth: depth(d),
            accumulate: accumulate && d == 0,
            resume: d > 0,
        };
        let mut run = |g: usize, d: usize, next: Option<(usize, usize)>| {
            tile(call(g, d), next.map(|(g, d)| call(g, d)));
        };
        if rows.len() * k * size_of::<f32>() <= A_IN_L2_BYTES {
            for g in 0..groups {
                for d in 0..depths {
                    let next = if d + 1 < depths {
                        Some((g, d + 1))
                    } else {
                        (g + 1 < groups).then_some((g + 1, 0))
                    };
                    run(g, d, next);
                }
            }
        } else {
            for d in 0..depths {
                for g in 0..groups {
                    let next = if g + 1 < groups {
                        Some((g + 1, d))
                    } else {
                        (d + 1 < depths).then_some((0, d + 1))
                    };
                    run(g, d, next);
                }
            }
        }
    }
}

/// Splits `m` rows into blocks of at most `mr` rows, as even as possible (32 rows in blocks of
/// 6 are 6, 6, 5, 5, 5, 5 rather than five 6s and a 2, whose kernel would be latency bound).
fn row_blocks(m: usize, mr: usize) -> impl Iterator<Item = Range<usize>> {
    let blocks = m.div_ceil(mr);
    let (base, extra) = m
        .checked_div(blocks)
        .map_or((0, 0), |base| (base, m % blocks));
    (0..blocks).scan(0, move |start, b| {
        let len = base + usize::from(b < extra);
        let range = *start..*start + len;
        *start += len;
        Some(range)
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// `a·wᵀ` in f64 for row-major `a: m×k`, `w: n×k`, plus `c0` where given.
    fn naive(a: &[f32], w: &[f32], m: usize, k: usize, n: usize, c0: Option<&[f32]>) -> Vec<f64> {
        (0..m * n)
            .map(|index| {
                let (row, column) = (index / n, index % n);
                let sum: f64 = (0..k)
                    .map(|kk| f64::from(a[row * k + kk]) * f64::from(w[column * k + kk]))
                    .sum();
                sum + c0.map_or(0.0, |c0| f64::from(c0[index]))
            })
            .collect()
    }

    fn assert_close(found: &[f32], expected: &[f64], what: &str) {
        for (index, (&found, &expected)) in found.iter().zip(expected).enumerate() {
            let tolerance = 1e-5 * (1.0 + expected.abs());
            assert!(
                (f64::from(found) - expected).abs() <= tolerance,
                "{what}: c[{index}] = {found}, expected {expected}"
            );
        }
    }

    /// Every kernel level this CPU supports, on shapes that exercise partial row blocks,
    /// partial panel groups, partial last panels, several depth passes and L2 passes, and
    /// panel subranges, with and without accumulation.
    #[test]
    fn every_level_matches_naive() {
        let levels: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|level| level.supported())
            .collect();
        for level in [Isa::Avx2, Isa::Avx512] {
            if !level.supported() {
                eprintln!("skipped: this CPU does not run the {level} kernels");
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let shapes = [
            (1, 64, 128),
            (1, 37, 21),
            (1, 130, 112),
            (2, 300, 200),
            (3, 5, 16),
            (13, 300, 70),
            (64, 129, 112),
            (33, 260, 49),
            (100, 700, 40),
            (9, 0, 20),
        ];
        for (m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let Some(panels) = Panels::transposed(&w, n, k) else {
                eprintln!("skipped: no AVX2 and FMA");
                return;
            };
            let all = 0..panels.panel_count();
            let part = all.len() / 3..all.len() - all.len() / 4;
            for &level in &levels {
                let what = format!("{level} {m}x{k}x{n}");
                let mut c = vec![f32::NAN; m * n];
                let forwards = (all.clone(), false);
                // SAFETY: the CPU supports `level`; `a` is m×k and `c` m×n.
                unsafe { panels.product_at(level, &a, m, c.as_mut_ptr(), false, forwards) };
                assert_close(&c, &naive(&a, &w, m, k, n, None), &what);
                // Walking the panels backwards computes the same values, bit for bit.
                let mut back = vec![f32::NAN; m * n];
                let backwards = (all.clone(), true);
                // SAFETY: as above.
                unsafe { panels.product_at(level, &a, m, back.as_mut_ptr(), false, backwards) };
                for (index, (found, expected)) in back.iter().zip(&c).enumerate() {
                    assert_eq!(
                        found.to_bits(),
                        expected.to_bits(),
                        "{what} backwards: {index}"
                    );
                }
                let mut c = c0.clone();
                // SAFETY: as above.
                unsafe {
                    panels.product_at(level, &a, m, c.as_mut_ptr(), true, (all.clone(), false))
                };
                assert_close(
                    &c,
                    &naive(&a, &w, m, k, n, Some(&c0)),
                    &format!("{what} +="),
                );
                let mut c = c0.clone();
                // SAFETY: as above; `part` lies within the panel count. Walked backwards, as
                // every other step of batch 1 walks its part of the panels.
                unsafe {
                    panels.product_at(level, &a, m, c.as_mut_ptr(), false, (part.clone(), true))
                };
                let expected = naive(&a, &w, m, k, n, None);
                for (index, (&found, &old)) in c.iter().zip(&c0).enumerate() {
                    let column = index % n;
                    if part.contains(&(column / NR)) {
                        let tolerance = 1e-5 * (1.0 + expected[index].abs());
                        assert!(
                            (f64::from(found) - expected[index]).abs() <= tolerance,
                            "{what} part"
                        );
                    } else {
                        assert_eq!(
                            found.to_bits(),
                            old.to_bits(),
                            "{what}: column {column} written"
                        );
                    }
                }
            }
        }
    }

    /// Up to one pass's depth, every level sums each element as one chain of fused
    /// multiply-adds in index order (a single row only where the level says so), bit for bit
    /// what `mul_add` computes: the order `ordered.rs` relies on when a few rows' projection
    /// runs here and many rows' runs in the `gemm` crate. Deeper, the levels that say so
    /// ([`sums_in_order_at`]) still do, whatever the rows.
    #[test]
    fn sums_each_element_in_index_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (m, k, n) in [
            (1, 200, 40),
            (2, 129, 33),
            (8, 256, 48),
            (13, 200, 70),
            (64, 160, 112),
            (1, 600, 130),
            (2, 257, 40),
            (9, 513, 50),
            (64, 2048, 48),
            (100, 700, 33),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let Some(panels) = Panels::transposed(&w, n, k) else {
                eprintln!("skipped: no AVX2 and FMA");
                return;
            };
            let chained: Vec<f32> = (0..m * n)
                .map(|index| {
                    let (row, column) = (index / n, index % n);
                    (0..k).fold(0.0f32, |sum, kk| {
                        a[row * k + kk].mul_add(w[column * k + kk], sum)
                    })
                })
                .collect();
            for level in [Isa::Avx2, Isa::Avx512] {
                if !level.supported() {
                    eprintln!("skipped: this CPU does not run the {level} kernels");
                    continue;
                }
                if m == 1 && !one_row_sums_in_order_at(level)
                    || k > DEPTH_PER_PASS && !sums_in_order_at(level)
                {
                    continue;
                }
                for backwards in [false, true] {
                    let mut c = vec![f32::NAN; m * n];
                    let walk = (0..panels.panel_count(), backwards);
                    // SAFETY: the CPU supports `level`; `a` is m×k and `c` m×n.
                    unsafe { panels.product_at(level, &a, m, c.as_mut_ptr(), false, walk) };
                    for (index, (found, expected)) in c.iter().zip(&chained).enumerate() {
                        assert_eq!(
                            found.to_bits(),
                            expected.to_bits(),
                            "{level} {m}x{k}x{n} (backwards: {backwards}): c[{index}] = {found}, \
                             the chain gives {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row_blocks_cover_the_rows_evenly() {
        for m in 0..40 {
            let blocks: Vec<_> = row_blocks(m, avx2::MR).collect();
            let mut next = 0;
            for block in &blocks {
                assert_eq!(block.start, next);
                assert!((1..=avx2::MR).contains(&block.len()), "{m}: {blocks:?}");
                next = block.end;
            }
            assert_eq!(next, m);
            let lens: Vec<_> = blocks.iter().map(Range::len).collect();
            if let (Some(max), Some(min)) = (lens.iter().max(), lens.iter().min()) {
                assert!(max - min <= 1, "{m}: {lens:?}");
            }
        }
        assert_eq!(
            row_blocks(32, avx2::MR)
                .map(|b| b.len())
                .collect::<Vec<_>>(),
            [6, 6, 5, 5, 5, 5]
        );
    }

    /// Every tile call of a product covers each (row, panel, depth) once, each (row, panel)'s
    /// depth ranges in order (a sum resumed where the one before stopped), resumes exactly
    /// past the first depth range, and is told of the call that really comes next in its
    /// pass of rows (the panels it prefetches), in both orders of the walk (groups first or
    /// depth first), over the groups first to last and last to first.
    #[test]
    fn tile_calls_cover_the_product_and_name_the_next_call() {
        // (m, k): rows whose depth fits the L2 budget (groups first) and rows that do not
        // (depth first); more rows than one pass; a depth that is not a whole number of ranges.
        for (m, k) in [(64, 512), (64, 2048), (200, 300), (3, 1), (1, 700)] {
            for ((panels, group_len), backwards) in [(0..7, 3), (2..9, 1), (0..1, 3)]
                .into_iter()
                .flat_map(|groups| [(groups.clone(), false), (groups, true)])
            {
                let mut calls = Vec::new();
                let walk = (panels.clone(), backwards);
                for_each_tile(m, k, walk, group_len, 256, false, |call, next| {
                    calls.push((call, next));
                });
                // The groups come in the order of the walk.
                let firsts: Vec<usize> = calls.iter().map(|(call, _)| call.group.start).collect();
                let mut ordered = firsts.clone();
                ordered.sort_unstable();
                if backwards {
                    ordered.reverse();
                }
                if k <= 256 && m <= ROWS_PER_PASS {
                    assert_eq!(firsts, ordered, "{m}×{k} backwards: {backwards}");
                }
                let mut seen = vec![0u32; m * panels.end * k];
                // Depth reached so far by each (row, panel).
                let mut reached = vec![0usize; m * panels.end];
                for (i, (call, next)) in calls.iter().enumerate() {
                    assert_eq!(call.resume, call.depth.start > 0, "{m}×{k}: {call:?}");
                    assert!(!call.accumulate, "{m}×{k}: {call:?}");
                    assert!(call.group.len() <= group_len && !call.group.is_empty());
                    for row in call.rows.clone() {
                        for p in call.group.clone() {
                            let reached = &mut reached[row * panels.end + p];
                            assert_eq!(call.depth.start, *reached, "{m}×{k}: {call:?}");
                            *reached = call.depth.end;
                            for kk in call.depth.clone() {
                                seen[(row * panels.end + p) * k + kk] += 1;
                            }
                        }
                    }
                    let following = calls.get(i + 1).map(|(c, _)| c);
                    let expected = following.filter(|c| c.rows == call.rows);
                    assert_eq!(next.as_ref(), expected, "{m}×{k}, call {i}: {call:?}");
                }
                for row in 0..m {
                    for p in 0..panels.end {
                        for kk in 0..k {
                            let count = seen[(row * panels.end + p) * k + kk];
                            assert_eq!(count, u32::from(panels.contains(&p)), "{m}×{k}");
                        }
                    }
                }
            }
        }
    }
}
