//! Time steps of one batch row split by hidden units between the two threads of a duet.
//!
//! At batch 1 a step is a matrix-vector product `zh = h_prev · W_hhᵀ` and the cell's
//! elementwise step over one row. The row split of `split.rs` has nothing to split, and
//! handing half of the product's columns to the other core each step ([`crate::duet::join`])
//! costs a round trip between the cores (about 0.3 µs here), after which one core runs the
//! whole elementwise step while the other waits.
//!
//! For a cell whose units do not read each other ([`crate::CellSpec::unit_local`]), the units
//! `a..b` of a step are a step of a cell of `b − a` units, given the columns of `zx`, `zh`,
//! the biases and the per-unit parameters that belong to them. So each of the two threads
//! owns half of the units for a whole chunk of steps: the rows of `W_ih` and `W_hh` that feed
//! them (packed once per call), its own input projection, product, elementwise step, and its
//! half of `c`, which never leaves its core. The only value that crosses is `h`: each step
//! needs all of `h_prev`. A step first multiplies the half of `h_prev` its own thread wrote,
//! then waits (spinning) until the other thread has written the other half, and finishes
//! the product with it: one cache-line transfer per step instead of a round trip, hidden
//! behind half of the product when the two threads keep pace.
//!
//! `h` alternates between two buffers: step `i` reads buffer `i % 2` and writes its half of
//! the other. A thread writes only after its wait, when the other has finished step `i − 1`
//! (the last step that read the buffer now written), and the other reads this thread's half
//! of the buffer only after waiting for this thread in turn. Each side's part of each buffer,
//! like its `c` and the second side's output rows, sits on cache lines of its own
//! ([`Lines`]): a line holding values of both threads would cross between the cores at every
//! write.
//!
//! The second half's steps are claimed one at a time ([`Progress`]): the duet's helper runs
//! them, but when the caller needs one that nobody has claimed (the system has not given the
//! helper a core), it runs it itself, so a chunk never waits for a thread that is not running.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis, aview1, s};
use num_traits::Zero;

use crate::duet;
use crate::linalg::{PackedRows, prefetch};
use crate::{Cell, CellDims, ParamShape, StepIo};

/// Hidden units below which a step is not split: each side's elementwise step would be a few
/// vector lanes.
const MIN_UNITS: usize = 16;

/// Rows of the chunk's input projection one piece of it covers: one block of the packed
/// kernel's rows.
const PROJECTION_ROWS: usize = 6;

/// Panels (16 columns each) one piece of the projection covers: about half a microsecond of
/// work, the size of the waits it fills.
const PROJECTION_PANELS: usize = 4;

/// Chunks run split by units so far, in this process (`__private::unit_split_chunks`).
pub(crate) static CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// A cell's batch-1 steps split by units between two threads, set up for one call.
pub(crate) struct UnitSplit<C: Cell> {
    /// The cell's hidden units.
    hidden: usize,
    sides: [Side<C>; 2],
}

/// What one thread needs for its units.
struct Side<C: Cell> {
    units: Range<usize>,
    /// A cell of `units.len()` units, holding the spec parameters of these units.
    cell: C,
    /// The rows of `W_ih` that feed these units' gates (gate after gate), packed.
    input: PackedRows<C::Elem>,
    /// The rows of `W_hh` likewise, in two packings: the columns of the first side's units
    /// and those of the second's, each product over one part of `h_prev` streaming one
    /// contiguous block (over both parts of one packing it skipped half of each panel, and the
    /// product ran about 10% slower).
    recurrent: [PackedRows<C::Elem>; 2],
    bias_ih: Vec<C::Elem>,
    bias_hh: Vec<C::Elem>,
    /// The constant input's projection for these units, or empty.
    constant: Vec<C::Elem>,
}

/// Bytes of memory the values that one thread writes keep to themselves: two cache lines,
/// as the adjacent-line prefetcher moves lines in pairs.
const OWN_BYTES: usize = 128;

/// The per-call workspace of a split: each side's, and the two `h` buffers.
pub(crate) struct SplitBuffers<F> {
    sides: [SideBuffers<F>; 2],
    /// `h` buffer `which`, side `s`'s units: `h[which][s]`.
    h: [[Lines<F>; 2]; 2],
}

/// One side's per-call workspace.
struct SideBuffers<F> {
    step: Workspace<F>,
    /// This side's units of the two `c` buffers (see `h` in [`SplitBuffers`]).
    c: [Lines<F>; 2],
    /// The second side's `h` of the chunk's steps, `(chunk steps, units)`, copied to the
    /// output after the chunk; empty for the first side, which writes the output directly.
    output: Lines<F>,
}

/// What one side's step computes in.
struct Workspace<F> {
    /// The chunk's input projection for this side's units: `(chunk steps, gates · units)`.
    zx: Vec<F>,
    /// `h_prev · W_hhᵀ` for this side's units: `gates · units`.
    zh: Vec<F>,
    scratch: Vec<F>,
    /// The training step's cache for this side's units, before it goes to the tape.
    cache: Vec<F>,
}

/// `len` values on cache lines of their own ([`OWN_BYTES`] on either side).
///
/// Each thread writes its units of `h`, `c` and the output at every step; where the two
/// threads' values share a line, every write first pulls the line from the other core.
struct Lines<F> {
    values: Vec<F>,
    start: usize,
    len: usize,
}

impl<F: Zero + Clone> Lines<F> {
    fn new(len: usize) -> Self {
        let pad = (OWN_BYTES / size_of::<F>().max(1)).max(1);
        let values = vec![F::zero(); len + 2 * pad];
        // `align_offset` may decline (`usize::MAX`): then the values start unaligned, which
        // costs speed, never correctness.
        let start = match values.as_ptr().align_offset(OWN_BYTES) {
            offset if offset < pad => offset,
            _ => 0,
        };
        Lines { values, start, len }
    }

    fn get(&self) -> &[F] {
        &self.values[self.start..self.start + self.len]
    }

    fn get_mut(&mut self) -> &mut [F] {
        &mut self.values[self.start..self.start + self.len]
    }
}

/// A chunk's share of the tape for one side: whole-sequence arrays cut to its units.
pub(crate) struct SideTape<'t, F> {
    /// `(T, cache values per unit, units)`.
    pub(crate) cache: ArrayViewMut3<'t, F>,
    /// `(T, units)`.
    pub(crate) h_prev: ArrayViewMut2<'t, F>,
    /// `(T + 1, units)`, by processing order.
    pub(crate) c_states: ArrayViewMut2<'t, F>,
}

/// What the two threads of a chunk share, besides the split itself.
pub(crate) struct Chunk<'x, F> {
    /// The chunk's input, `(steps, input_size)`, standard layout.
    pub(crate) x: ArrayView2<'x, F>,
    /// Walk the chunk's steps backwards.
    pub(crate) reverse: bool,
    /// Time index of the chunk's first row.
    pub(crate) t0: usize,
    pub(crate) seq_len: usize,
}

impl<C: Cell> UnitSplit<C> {
    /// Whether a cell of this type, with `hidden` units, splits at all.
    pub(crate) fn applies(hidden: usize) -> bool {
        let spec = C::SPEC;
        spec.unit_local
            && spec.cache.per_row == 0
            && spec.scratch.per_row == 0
            && hidden >= MIN_UNITS
    }

    /// Splits `cell` (stepping with the recurrent weights `weight_hh`, the gate-stacked biases
    /// and the constant projection `(1, gates · hidden)` or empty) in two halves of its units;
    /// `None` unless the element type is `f32` on a machine with the packed kernels.
    pub(crate) fn new(
        cell: &C,
        weight_hh: ArrayView2<'_, C::Elem>,
        bias_ih: &[C::Elem],
        bias_hh: &[C::Elem],
        constant: ArrayView2<'_, C::Elem>,
    ) -> Option<Self> {
        let dims = cell.dims();
        let hidden = dims.hidden_size;
        let half = hidden / 2;
        let parts = [0..half, half..hidden];
        let side = |units: Range<usize>| {
            Side::new(
                cell, dims, units, &parts, weight_hh, bias_ih, bias_hh, constant,
            )
        };
        Some(UnitSplit {
            hidden,
            sides: [side(0..half)?, side(half..hidden)?],
        })
    }

    /// Workspaces for both sides, for chunks of up to `chunk_steps` steps.
    pub(crate) fn buffers(&self, chunk_steps: usize) -> SplitBuffers<C::Elem> {
        let [first, second] = self.sides.each_ref().map(|side| {
            let n = side.units.len();
            let width = side.input.width();
            SideBuffers {
                step: Workspace {
                    zx: vec![C::Elem::zero(); chunk_steps * width],
                    zh: vec![C::Elem::zero(); width],
                    scratch: vec![C::Elem::zero(); C::SPEC.scratch.len(n)],
                    cache: vec![C::Elem::zero(); C::SPEC.cache.len(n)],
                },
                c: [Lines::new(n), Lines::new(n)],
                output: Lines::new(0),
            }
        });
        let second = SideBuffers {
            output: Lines::new(chunk_steps * self.sides[1].units.len()),
            ..second
        };
        let h = || {
            self.sides
                .each_ref()
                .map(|side| Lines::new(side.units.len()))
        };
        SplitBuffers {
            sides: [first, second],
            h: [h(), h()],
        }
    }

    /// Where the units split: the first side's count.
    pub(crate) fn at(&self) -> usize {
        self.sides[0].units.len()
    }

    /// Runs the chunk's steps on both threads. `h` holds `h_prev` and receives the last
    /// step's `h`, likewise `c`; `output` `(steps, units)` per side receives every step's `h`,
    /// `tape` records training steps.
    pub(crate) fn run_chunk(
        &self,
        chunk: Chunk<'_, C::Elem>,
        h: &mut [C::Elem],
        c: &mut [C::Elem],
        buffers: &mut SplitBuffers<C::Elem>,
        output: [Option<ArrayViewMut2<'_, C::Elem>>; 2],
        tape: [Option<SideTape<'_, C::Elem>>; 2],
    ) {
        let steps = chunk.x.nrows();
        assert!(
            h.len() == self.hidden && c.len() == self.hidden,
            "h and c hold the {} units",
            self.hidden
        );
        let at = self.at();
        let SplitBuffers {
            sides: [buffers0, buffers1],
            h: h_buffers,
        } = buffers;
        for (s, range) in [(0, 0..at), (1, at..self.hidden)] {
            h_buffers[0][s].get_mut().copy_from_slice(&h[range.clone()]);
        }
        buffers0.c[0].get_mut().copy_from_slice(&c[..at]);
        buffers1.c[0].get_mut().copy_from_slice(&c[at..]);
        let shared = SharedH {
            buffers: h_buffers
                .each_mut()
                .map(|sides| sides.each_mut().map(|side| side.get_mut().as_mut_ptr())),
            lens: [at, self.hidden - at],
        };
        let [output0, mut output1] = output;
        let [tape0, tape1] = tape;
        let n1 = self.hidden - at;
        let [c_a, c_b] = &mut buffers0.c;
        let mut first = SideWork {
            c: [c_a.get_mut(), c_b.get_mut()],
            buffers: &mut buffers0.step,
            output: output0,
            tape: tape0,
            projected: 0,
        };
        let [c_a, c_b] = &mut buffers1.c;
        let second = Claimed(std::cell::UnsafeCell::new(SideWork {
            c: [c_a.get_mut(), c_b.get_mut()],
            buffers: &mut buffers1.step,
            output: output1.as_ref().map(|_| {
                ArrayViewMut2::from_shape((steps, n1), &mut buffers1.output.get_mut()[..steps * n1])
                    .expect("the output buffer holds a chunk of steps")
            }),
            tape: tape1,
            projected: 0,
        }));
        CHUNKS.fetch_add(1, Ordering::Relaxed);
        let progress = Progress::default();
        let (chunk, shared, second, progress) = (&chunk, &shared, &second, &progress);
        // SAFETY (both sides): the second side's work runs only under a claim of its step
        // (`Progress`), once its step before has finished; `first_side` tells when the first
        // side has finished the step before too (see `step`).
        let run_second = |i: usize, first_side: Other<'_>| unsafe {
            self.step(1, i, chunk, shared, &mut *second.0.get(), first_side);
        };
        // A step of the second side that the first runs: the first side's step before it is
        // done.
        let steal = |j: usize| {
            run_second(
                j,
                Other {
                    ready: &|| true,
                    wait: &|| {},
                },
            );
        };
        duet::join(
            || {
                let _ended = Ended(&progress.first);
                for i in 0..steps {
                    // Until the second side's step `i − 1` is done, run here if unclaimed.
                    let ready = || i == 0 || progress.second.0.load(Ordering::Acquire) >= i;
                    let wait = || {
                        if i > 0 {
                            progress.complete_second(i - 1, &steal);
                        }
                    };
                    // SAFETY: this side has finished step `i − 1`; `second_side` as `step`
                    // needs.
                    let second_side = Other {
                        ready: &ready,
                        wait: &wait,
                    };
                    unsafe { self.step(0, i, chunk, shared, &mut first, second_side) };
                    progress.first.0.store(i + 1, Ordering::Release);
                }
                if steps > 0 {
                    progress.complete_second(steps - 1, &steal);
                }
            },
            || {
                let _ended = Ended(&progress.second);
                progress.help(steps, &run_second);
            },
        );
        // The last step wrote buffer `steps % 2`.
        let last = steps % 2;
        for (s, range) in [(0, 0..at), (1, at..self.hidden)] {
            h[range].copy_from_slice(h_buffers[last][s].get());
        }
        c[..at].copy_from_slice(buffers0.c[last].get());
        c[at..].copy_from_slice(buffers1.c[last].get());
        if let Some(output1) = output1.as_mut() {
            let written = ArrayView2::from_shape((steps, n1), &buffers1.output.get()[..steps * n1])
                .expect("the output buffer holds a chunk of steps");
            output1.assign(&written);
        }
    }

    /// Pieces of the projection per block of rows on side `me`.
    fn pieces_per_block(&self, me: usize) -> usize {
        self.sides[me]
            .input
            .panel_count()
            .div_ceil(PROJECTION_PANELS)
            .max(1)
    }

    /// The next piece of the chunk's input projection for side `me`'s units, into its `zx`:
    /// [`PROJECTION_PANELS`] panels of a block of [`PROJECTION_ROWS`] rows, blocks in the
    /// order the steps read them. `false` once the whole chunk is projected.
    fn project_piece(
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
        let first = block * PROJECTION_ROWS;
        if first >= steps {
            return false;
        }
        let panels =
            (piece * PROJECTION_PANELS).min(count)..((piece + 1) * PROJECTION_PANELS).min(count);
        let last = steps.min(first + PROJECTION_ROWS);
        let rows = if chunk.reverse {
            steps - last..steps - first
        } else {
            first..last
        };
        let (input, width) = (chunk.x.ncols(), side.input.width());
        let x = chunk
            .x
            .as_slice()
            .expect("the chunk input is in standard layout");
        side.input.product(
            &x[rows.start * input..rows.end * input],
            rows.len(),
            &mut work.buffers.zx[rows.start * width..rows.end * width],
            panels,
        );
        work.projected += 1;
        true
    }

    /// Step `i` of the chunk for side `me`'s units: reads `h` buffer `i % 2` whole and its
    /// units of `c` buffer `i % 2`, writes its units of both buffers `(i + 1) % 2`.
    ///
    /// The step's row of the chunk's projection comes first if no earlier wait has computed
    /// it, then the product over its own units of `h_prev`. While the other side has not
    /// finished its step `i − 1` (`other_side`), pieces of later rows of the projection fill
    /// the wait; then the step reads the other side's units of `h_prev` and writes.
    ///
    /// # Safety
    ///
    /// This side has finished step `i − 1`, and `other_side.wait` returns only once the other
    /// side has too; until this side finishes step `i`, the other side reads buffer `i % 2` and
    /// writes only its own units (of buffer `i % 2` until its step `i − 1` is done, then of
    /// buffer `(i + 1) % 2`).
    unsafe fn step(
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
        let k = if chunk.reverse { steps - 1 - i } else { i };
        let t = chunk.t0 + k;
        // This step's row of the projection, if earlier waits have not computed it.
        let needed = (i / PROJECTION_ROWS + 1) * self.pieces_per_block(me);
        while work.projected < needed && self.project_piece(me, chunk, work) {}
        // SAFETY: this side wrote these values in its step `i − 1` (or they are the chunk's
        // start); the other side writes other units.
        let own_prev = unsafe { shared.side(i % 2, me) };
        side.recurrent[me].row_product(own_prev, &mut work.buffers.zh, false);
        // While the other side is not done, project rows of later steps instead of spinning.
        while !(other_side.ready)() && self.project_piece(me, chunk, work) {}
        (other_side.wait)();
        let zh = &mut work.buffers.zh;
        // SAFETY: the other side has finished step `i − 1` (`wait`) and does not write
        // buffer `i % 2` before this side finishes step `i`.
        let (other_prev, h_next) =
            unsafe { (shared.side(i % 2, 1 - me), shared.side_mut(1 - i % 2, me)) };
        // Written on the other core: every line asked for at once, not one by one as the
        // product reads them.
        prefetch(other_prev);
        side.recurrent[1 - me].row_product(other_prev, zh, true);
        let SideWork {
            c: [c_a, c_b],
            buffers,
            output,
            tape,
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
        match tape.as_mut() {
            Some(tape) => {
                side.cell.step_train(io, &mut buffers.cache);
                let n = units.len();
                let mut row = tape.cache.index_axis_mut(Axis(0), t);
                for (mut to, from) in row.axis_iter_mut(Axis(0)).zip(buffers.cache.chunks(n)) {
                    to.assign(&aview1(from));
                }
                tape.h_prev.row_mut(t).assign(&aview1(own_prev));
                let s = if chunk.reverse {
                    chunk.seq_len - 1 - t
                } else {
                    t
                };
                tape.c_states.row_mut(s + 1).assign(&aview1(c_next));
            }
            None => side.cell.step(io),
        }
        if let Some(output) = output.as_mut() {
            output.row_mut(k).assign(&aview1(h_next));
        }
    }
}

/// How a step learns that the other side has finished the step before it.
#[derive(Clone, Copy)]
struct Other<'a> {
    /// Whether it has.
    ready: &'a dyn Fn() -> bool,
    /// Returns once it has.
    wait: &'a dyn Fn(),
}

/// One side's share of a chunk's buffers.
struct SideWork<'a, 't, F> {
    /// Its units of the two `c` buffers.
    c: [&'a mut [F]; 2],
    buffers: &'a mut Workspace<F>,
    /// `(steps, units)`.
    output: Option<ArrayViewMut2<'a, F>>,
    tape: Option<SideTape<'t, F>>,
    /// Pieces of the chunk's projection done ([`UnitSplit::project_piece`]).
    projected: usize,
}

/// The second side's work, run by whichever thread claims its next step.
struct Claimed<T>(std::cell::UnsafeCell<T>);

// SAFETY: one thread at a time runs the second side's steps: the one that claimed the step
// (`Progress`), after the step before it finished (its writes acquired through `second`).
unsafe impl<T: Send> Sync for Claimed<T> {}

/// How far the two sides of a chunk have come, and who runs the second side's next step.
///
/// The caller's thread runs the first side; the second side's steps go to the duet's helper,
/// one claim at a time. When the caller needs a step of the second side that nobody has
/// claimed (the helper is not on a core: the system may put both threads on one for a while),
/// it claims and runs it itself, so a chunk never waits for a thread that is not running.
#[derive(Default)]
struct Progress {
    /// Steps the first side has finished.
    first: Counter,
    /// Steps the second side has finished.
    second: Counter,
    /// The second side's next unclaimed step.
    next: Counter,
}

/// A step count alone on its cache lines: one thread writes it while the other reads.
#[derive(Default)]
#[repr(align(128))]
struct Counter(AtomicUsize);

/// Marks a side as past every step when its thread leaves the chunk, by returning or by a
/// panic, so the other never waits for it forever (a panic is resumed by `duet::join`).
struct Ended<'a>(&'a Counter);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.0.store(usize::MAX, Ordering::Release);
    }
}

impl Progress {
    /// Claims the second side's step `i` for the calling thread, if nobody has.
    fn claim(&self, i: usize) -> bool {
        self.next.0.load(Ordering::Relaxed) == i
            && self
                .next
                .0
                .compare_exchange(i, i + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Returns once the second side's step `i` has finished, running it here if unclaimed.
    /// The caller has seen its step `i − 1` finish.
    fn complete_second(&self, i: usize, run: &dyn Fn(usize)) {
        let mut spins = 0;
        while self.second.0.load(Ordering::Acquire) <= i {
            if self.claim(i) {
                run(i);
                self.second.0.store(i + 1, Ordering::Release);
                return;
            }
            duet::pause(&mut spins);
        }
    }

    /// The helper's loop: claims and runs the second side's steps, each once its step before
    /// has finished, until all `steps` are claimed. A step it runs waits, after the product
    /// over its own units, for the first side's step before (`run`'s second argument).
    fn help(&self, steps: usize, run: &dyn Fn(usize, Other<'_>)) {
        let first_done = |i: usize| self.first.0.load(Ordering::Acquire) >= i;
        let wait_first = |i: usize| {
            let mut spins = 0;
            while !first_done(i) {
                duet::pause(&mut spins);
            }
        };
        loop {
            let i = self.next.0.load(Ordering::Acquire);
            if i >= steps {
                return;
            }
            let mut spins = 0;
            while self.second.0.load(Ordering::Acquire) < i {
                duet::pause(&mut spins);
            }
            if self.claim(i) {
                run(
                    i,
                    Other {
                        ready: &|| first_done(i),
                        wait: &|| wait_first(i),
                    },
                );
                self.second.0.store(i + 1, Ordering::Release);
            }
        }
    }
}

impl<C: Cell> Side<C> {
    /// The side of `units`, with `W_hh` packed in the column `parts` of the two sides.
    #[allow(clippy::too_many_arguments)]
    fn new(
        cell: &C,
        dims: CellDims,
        units: Range<usize>,
        parts: &[Range<usize>; 2],
        weight_hh: ArrayView2<'_, C::Elem>,
        bias_ih: &[C::Elem],
        bias_hh: &[C::Elem],
        constant: ArrayView2<'_, C::Elem>,
    ) -> Option<Self> {
        let hidden = dims.hidden_size;
        let gates = C::SPEC.num_gates();
        let rows: Vec<usize> = (0..gates)
            .flat_map(|gate| units.clone().map(move |unit| gate * hidden + unit))
            .collect();
        let weights = cell.weights();
        let input = PackedRows::new(weights.weight_ih.view(), &rows)?;
        let [first, second] = parts
            .each_ref()
            .map(|part| PackedRows::new(weight_hh.slice(s![.., part.clone()]), &rows));
        let gather =
            |values: &[C::Elem]| -> Vec<C::Elem> { rows.iter().map(|&row| values[row]).collect() };
        let n = units.len();
        let mut sub = C::zeros(CellDims {
            input_size: 0,
            hidden_size: n,
            recurrent_size: n,
            ..dims
        });
        if !copy_params(cell, &mut sub, gates, hidden, &units) {
            return None;
        }
        Some(Side {
            cell: sub,
            input,
            recurrent: [first?, second?],
            bias_ih: gather(bias_ih),
            bias_hh: gather(bias_hh),
            constant: match constant.rows().into_iter().next() {
                Some(row) => rows.iter().map(|&column| row[column]).collect(),
                None => Vec::new(),
            },
            units,
        })
    }
}

/// Copies the spec parameters of `units` from `cell` into `sub`, a cell of that many units;
/// `false` if a parameter's size does not fit its shape.
fn copy_params<C: Cell>(
    cell: &C,
    sub: &mut C,
    gates: usize,
    hidden: usize,
    units: &Range<usize>,
) -> bool {
    let mut taken: Vec<(&'static str, Vec<C::Elem>)> = Vec::new();
    let mut fits = true;
    cell.visit(&mut |name, values| {
        let Some(param) = C::SPEC.params.iter().find(|param| param.name == name) else {
            return;
        };
        let all: Vec<C::Elem> = values.iter().copied().collect();
        if all.len() != param.shape.len(gates, hidden) {
            fits = false;
            return;
        }
        let picked = match param.shape {
            ParamShape::Scalar => all,
            ParamShape::PerUnit => all[units.clone()].to_vec(),
            ParamShape::Gates => (0..gates)
                .flat_map(|gate| all[gate * hidden..][units.clone()].iter().copied())
                .collect(),
        };
        taken.push((name, picked));
    });
    sub.visit_mut(&mut |name, mut values| {
        if let Some((_, picked)) = taken.iter().find(|(param, _)| *param == name) {
            if values.len() == picked.len() {
                for (to, from) in values.iter_mut().zip(picked) {
                    *to = *from;
                }
            } else {
                fits = false;
            }
        }
    });
    fits && taken.len() == C::SPEC.params.len()
}

/// The two `h` buffers of a chunk, each in two parts (a side's units), each part written by
/// its side's thread and read by both, in the order [`UnitSplit::step`] keeps.
struct SharedH<F> {
    /// Part `s` of buffer `which`: `buffers[which][s]`, `lens[s]` values.
    buffers: [[*mut F; 2]; 2],
    lens: [usize; 2],
}

// SAFETY: the threads access the buffers only as `side` and `side_mut` allow, in lockstep.
unsafe impl<F: Send> Sync for SharedH<F> {}

impl<F> SharedH<F> {
    /// Side `s`'s units of buffer `which`.
    ///
    /// # Safety
    ///
    /// No thread writes these values while the returned slice is used.
    unsafe fn side(&self, which: usize, s: usize) -> &[F] {
        // SAFETY: a whole part; no writer, as the caller promises.
        unsafe { std::slice::from_raw_parts(self.buffers[which][s], self.lens[s]) }
    }

    /// Side `s`'s units of buffer `which`, to write.
    ///
    /// # Safety
    ///
    /// No other thread reads or writes these values while the returned slice is used.
    #[allow(clippy::mut_from_ref)]
    unsafe fn side_mut(&self, which: usize, s: usize) -> &mut [F] {
        // SAFETY: a whole part; exclusive, as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.buffers[which][s], self.lens[s]) }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::zoo::Lstm;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Outside a duet the caller claims every step of the second side itself: the chunk still
    /// comes out as the standard LSTM's steps, computed here in `f64` one unit at a time.
    #[test]
    fn the_caller_runs_both_sides_when_no_helper_runs() {
        let (hidden, input, steps) = (21, 3, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let cell = Lstm::<f32>::init(CellDims::new(input, hidden), &mut rng);
        let weights = cell.weights();
        let (bias_ih, bias_hh) = (
            weights.bias_ih.unwrap().to_vec(),
            weights.bias_hh.unwrap().to_vec(),
        );
        let Some(split) = UnitSplit::new(
            &cell,
            weights.weight_hh.view(),
            &bias_ih,
            &bias_hh,
            Array2::zeros((0, 0)).view(),
        ) else {
            // No packed kernels on this machine: nothing splits.
            return;
        };
        assert_eq!(split.at(), 10);
        let x = Array2::from_shape_fn((steps, input), |_| rng.random_range(-1.0f32..1.0));
        let mut h: Vec<f32> = (0..hidden).map(|_| rng.random_range(-0.5..0.5)).collect();
        let mut c: Vec<f32> = (0..hidden).map(|_| rng.random_range(-0.5..0.5)).collect();
        let mut output = Array2::<f32>::zeros((steps, hidden));
        // The naive steps, from the same start.
        let (mut h64, mut c64): (Vec<f64>, Vec<f64>) = (
            h.iter().map(|&v| f64::from(v)).collect(),
            c.iter().map(|&v| f64::from(v)).collect(),
        );
        let mut expected = Array2::<f64>::zeros((steps, hidden));
        let w = |m: &Array2<f32>, row: usize, v: &[f64]| -> f64 {
            m.row(row)
                .iter()
                .zip(v)
                .map(|(&a, b)| f64::from(a) * b)
                .sum()
        };
        for t in 0..steps {
            let xt: Vec<f64> = x.row(t).iter().map(|&v| f64::from(v)).collect();
            let z = |gate: usize, j: usize| {
                let row = gate * hidden + j;
                w(weights.weight_ih, row, &xt)
                    + w(weights.weight_hh, row, &h64)
                    + f64::from(bias_ih[row] + bias_hh[row])
            };
            let (next_h, next_c): (Vec<f64>, Vec<f64>) = (0..hidden)
                .map(|j| {
                    let c = sigmoid(z(1, j)) * c64[j] + sigmoid(z(0, j)) * z(2, j).tanh();
                    (sigmoid(z(3, j)) * c.tanh(), c)
                })
                .unzip();
            expected
                .row_mut(t)
                .assign(&ndarray::Array1::from(next_h.clone()));
            (h64, c64) = (next_h, next_c);
        }
        let mut buffers = split.buffers(steps);
        assert!(!duet::active());
        let (first, second) = output.view_mut().split_at(Axis(1), split.at());
        split.run_chunk(
            Chunk {
                x: x.view(),
                reverse: false,
                t0: 0,
                seq_len: steps,
            },
            &mut h,
            &mut c,
            &mut buffers,
            [Some(first), Some(second)],
            [None, None],
        );
        let worst = |found: &[f32], expected: &[f64]| {
            found
                .iter()
                .zip(expected)
                .map(|(&a, b)| (f64::from(a) - b).abs())
                .fold(0.0, f64::max)
        };
        let last = expected.slice(s![steps - 1, ..]).to_vec();
        assert!(worst(&h, &last) < 1e-5, "h");
        assert!(worst(&c, &c64) < 1e-5, "c");
        assert!(worst(output.as_slice().unwrap(), expected.as_slice().unwrap()) < 1e-5);
    }
}
