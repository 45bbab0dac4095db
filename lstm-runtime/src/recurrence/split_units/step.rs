//! One side's step of a chunk split by units, and the pieces of the chunk's input projection
//! that fill its waits for the other side.

use ndarray::{ArrayViewMut2, Axis, aview1};
use num_traits::Zero;

use super::handoff::{Other, SharedH};
use super::side::Workspace;
use super::{Chunk, SideTape, UnitSplit};
use crate::cell::{Cell, StepIo};
use crate::direction::Direction;
use crate::isa::Isa;
use crate::linalg::prefetch::prefetch;
use crate::linalg::step::{NR, PackedRows};
use crate::recurrence::Record;

/// The share of a chunk's input projection that one piece of it covers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece {
    /// Rows (steps): one block of the packed kernel's rows.
    rows: usize,
    /// Panels of 16 columns: whole calls of the kernel, about half a microsecond of work, the
    /// size of the waits a piece fills.
    panels: usize,
}

impl Piece {
    /// The piece for the kernels of `level`: 8 rows × 6 panels (two calls of 8 × 3) at
    /// AVX-512, 6 rows × 4 panels (four calls of 6 × 1) at AVX2.
    pub(super) fn at(level: Isa) -> Self {
        match level {
            Isa::Avx512 => Piece { rows: 8, panels: 6 },
            Isa::Avx2 | Isa::Baseline => Piece { rows: 6, panels: 4 },
        }
    }
}

/// One side's share of a chunk's buffers.
pub(super) struct SideWork<'a, 't, F> {
    /// Its units of the two `c` buffers.
    pub(super) c: [&'a mut [F]; 2],
    pub(super) buffers: &'a mut Workspace<F>,
    /// `(steps, units)`.
    pub(super) output: Option<ArrayViewMut2<'a, F>>,
    /// Its units' share of the tape, in a training pass.
    pub(super) record: Record<SideTape<'t, F>>,
    /// Pieces of the chunk's projection done ([`UnitSplit::project_piece`]).
    pub(super) projected: usize,
}

impl<C: Cell> UnitSplit<C> {
    /// Pieces of the projection per block of rows on side `me`.
    pub(super) fn pieces_per_block(&self, me: usize) -> usize {
        self.sides[me]
            .input
            .panel_count()
            .div_ceil(self.piece.panels)
            .max(1)
    }

    /// The next piece of the chunk's input projection for side `me`'s units, into its `zx`:
    /// a [`Piece`]'s panels of a block of its rows, blocks in the order the steps read them.
    /// `false` once the whole chunk is projected.
    pub(super) fn project_piece(
        &self,
        me: usize,
        chunk: &Chunk<'_, C::Elem>,
        work: &mut SideWork<'_, '_, C::Elem>,
    ) -> bool {
        let side = &self.sides[me];
        let steps = chunk.x.nrows();
        let count = side.input.panel_count();
        let per_block = self.pieces_per_block(me);
        let (block, piece) = (work.projected / per_block, work.projected % per_block);
        let Piece {
            rows: block_rows,
            panels: piece_panels,
        } = self.piece;
        let first = block * block_rows;
        if first >= steps {
            return false;
        }
        let panels = (piece * piece_panels).min(count)..((piece + 1) * piece_panels).min(count);
        let last = steps.min(first + block_rows);
        let rows = match chunk.direction {
            Direction::Forward => first..last,
            Direction::Reverse => steps - last..steps - first,
        };
        let (input, width) = (chunk.x.ncols(), side.input.width());
        let x = chunk
            .x
            .as_slice()
            .expect("the chunk input is in standard layout");
        let x = &x[rows.start * input..rows.end * input];
        let zx = &mut work.buffers.zx[rows.start * width..rows.end * width];
        if rows.len() == 1 && !PackedRows::<C::Elem>::one_row_in_order() {
            // A block of one row would take the one-row kernel, which does not sum in the
            // order of the projection that is not split: the row goes twice through the
            // kernels of two rows.
            let twice = [x, x].concat();
            let mut pair = vec![C::Elem::zero(); 2 * width];
            side.input
                .product(&twice, 2, &mut pair, (panels.clone(), false));
            let columns = panels.start * NR..(panels.end * NR).min(width);
            zx[columns.clone()].copy_from_slice(&pair[columns]);
        } else {
            side.input.product(x, rows.len(), zx, (panels, false));
        }
        work.projected += 1;
        true
    }

    /// Step `i` of the chunk for side `me`'s units: reads `h` buffer `i % 2` whole and its
    /// units of `c` buffer `i % 2`, writes its units of both buffers `(i + 1) % 2`.
    ///
    /// The step's row of the chunk's projection comes first if no earlier wait has computed
    /// it. While the other side has not finished its step `i − 1` (`other_side`), pieces of
    /// later rows of the projection fill the wait; then the step gathers all of `h_prev`,
    /// multiplies it over the full depth, and writes.
    ///
    /// # Safety
    ///
    /// This side has finished step `i − 1`, and `other_side.wait` returns only once the other
    /// side has too; until this side finishes step `i`, the other side reads buffer `i % 2` and
    /// writes only its own units (of buffer `i % 2` until its step `i − 1` is done, then of
    /// buffer `(i + 1) % 2`).
    pub(super) unsafe fn step(
        &self,
        me: usize,
        i: usize,
        chunk: &Chunk<'_, C::Elem>,
        shared: &SharedH<C::Elem>,
        work: &mut SideWork<'_, '_, C::Elem>,
        other_side: Other<'_>,
    ) {
        let side = &self.sides[me];
        let steps = chunk.x.nrows();
        let width = side.input.width();
        let units = side.units.clone();
        let k = chunk.direction.time_of(i, steps);
        let t = chunk.t0 + k;
        // This step's row of the projection, if earlier waits have not computed it.
        let needed = (i / self.piece.rows + 1) * self.pieces_per_block(me);
        while work.projected < needed && self.project_piece(me, chunk, work) {}
        // While the other side is not done, project rows of later steps instead of spinning.
        while !(other_side.ready)() && self.project_piece(me, chunk, work) {}
        (other_side.wait)();
        // SAFETY: both sides have finished step `i − 1` (this one, and the other by `wait`),
        // and neither writes buffer `i % 2` before this side finishes step `i`.
        let (own_prev, parts, h_next) = unsafe {
            (
                shared.side(i % 2, me),
                [shared.side(i % 2, 0), shared.side(i % 2, 1)],
                shared.side_mut(1 - i % 2, me),
            )
        };
        // Written on the other core: every line asked for at once, not one by one as the
        // copy reads them.
        prefetch(parts[1 - me]);
        let h_prev = &mut work.buffers.h_prev;
        let at = parts[0].len();
        h_prev[..at].copy_from_slice(parts[0]);
        h_prev[at..].copy_from_slice(parts[1]);
        // Back and forth over the weights, one step each way: each step starts on the panels
        // the step before read last, still in L1.
        let walk = (0..side.recurrent.panel_count(), i % 2 == 1);
        side.recurrent
            .product(h_prev, 1, &mut work.buffers.zh, walk);
        let SideWork {
            c: [c_a, c_b],
            buffers,
            output,
            record,
            ..
        } = work;
        let (c_prev, c_next): (&[C::Elem], &mut [C::Elem]) = if i.is_multiple_of(2) {
            (&**c_a, &mut **c_b)
        } else {
            (&**c_b, &mut **c_a)
        };
        let io = StepIo {
            rows: 1,
            zx: &buffers.zx[k * width..(k + 1) * width],
            zh: &buffers.zh,
            bias_ih: &side.bias_ih,
            bias_hh: &side.bias_hh,
            constant: &side.constant,
            c_prev,
            h_prev: if C::SPEC.reads_h_prev { own_prev } else { &[] },
            h: &mut *h_next,
            c: &mut *c_next,
            scratch: &mut buffers.scratch,
        };
        match record {
            Record::Tape(tape) => {
                side.cell.step_train(io, &mut buffers.cache);
                let n = units.len();
                let mut row = tape.cache.index_axis_mut(Axis(0), t);
                for (mut to, from) in row.axis_iter_mut(Axis(0)).zip(buffers.cache.chunks(n)) {
                    to.assign(&aview1(from));
                }
                tape.h_prev.row_mut(t).assign(&aview1(own_prev));
                let s = chunk.direction.time_of(t, chunk.seq_len);
                tape.c_states.row_mut(s + 1).assign(&aview1(c_next));
            }
            Record::Nothing => side.cell.step(io),
        }
        if let Some(output) = output.as_mut() {
            output.row_mut(k).assign(&aview1(h_next));
        }
    }
}
