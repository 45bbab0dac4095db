//! The batch-1 time loop on two threads: the steps of one batch row split by hidden units
//! between the caller's thread and the helper (`parallel/helper_thread.rs`).
//!
//! At batch 1 a step is a matrix-vector product `zh = h_prev · W_hhᵀ` and the cell's
//! elementwise step over one row. The row split of `split_rows.rs` has nothing to split, and
//! handing half of the product's columns to the other core each step costs a round trip
//! between the cores, after which one core runs the whole elementwise step while the other
//! waits.
//!
//! For a cell whose units do not read each other
//! ([`CellSpec::unit_local`](crate::cell::CellSpec::unit_local)), the units `a..b`
//! of a step are a step of a cell of `b − a` units, given the columns of `zx`, `zh`, the
//! biases and the per-unit parameters that belong to them. So each of the two threads owns
//! half of the units for a whole chunk of steps (`side.rs`): the rows of `W_ih` and `W_hh` that
//! feed them (packed once per call), its own input projection, product, elementwise step
//! (`step.rs`), and its half of `c`, which never leaves its core. The only value that crosses
//! is `h`: each step needs all of `h_prev`. A step waits (spinning, or computing pieces of
//! later rows of its projection) until the other thread has written its half of `h_prev`,
//! then multiplies all of it over the full depth of its rows of `W_hh`: each value is then
//! summed in the order of the step that is not split, so one thread, two threads and a
//! [`Stepper`](crate::Stepper) agree bit for bit (a product over its own half first, while
//! the other half is on its way, would sum in another order).
//!
//! `h` alternates between two buffers: step `i` reads buffer `i % 2` and writes its half of
//! the other. A thread writes only after its wait, when the other has finished step `i − 1`
//! (the last step that read the buffer now written), and the other reads this thread's half
//! of the buffer only after waiting for this thread in turn. Each side's part of each buffer,
//! like its `c` and the second side's output rows, sits on cache lines of its own: a line
//! holding values of both threads would cross between the cores at every write.
//!
//! The second half's steps are claimed one at a time (`handoff.rs`): the helper runs them,
//! but when the caller needs one that nobody has claimed (the system has not given the helper
//! a core), it runs it itself, so a chunk never waits for a thread that is not running.

mod handoff;
mod side;
mod step;

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2, ArrayViewMut3};
use num_traits::Zero;

use self::handoff::{Claimed, Ended, Other, Progress, SharedH};
pub(crate) use self::side::SplitBuffers;
use self::side::{Lines, Side, SideBuffers, Workspace};
use self::step::{Piece, SideWork};
use super::Record;
use crate::cell::Cell;
use crate::direction::Direction;
use crate::isa;
use crate::linalg::step::PackedRows;
use crate::parallel::helper_thread;

/// Hidden units below which a step is not split: each side's elementwise step would be a few
/// vector lanes.
const MIN_UNITS: usize = 16;

/// Chunks run split by units so far, in this process (`__private::unit_split_chunks`).
pub(crate) static CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// A cell's batch-1 steps split by units between two threads, set up for one call.
pub(crate) struct UnitSplit<C: Cell> {
    /// The cell's hidden units.
    hidden: usize,
    sides: [Side<C>; 2],
    /// The pieces of the projection, for the level active when the call began.
    piece: Piece,
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
    /// The order of the walk over the chunk's steps.
    pub(crate) direction: Direction,
    /// Time index of the chunk's first row.
    pub(crate) t0: usize,
    pub(crate) seq_len: usize,
}

impl<C: Cell> UnitSplit<C> {
    /// Whether a cell of this type, with `input_size` inputs and `hidden` units, splits at
    /// all: its only carried state besides `h` must be `c` (whose columns then split as
    /// `h`'s do), and its input projection no deeper than one pass of the packed kernels,
    /// whose sums then follow the order of the projection that is not split
    /// (`linalg/ordered.rs`).
    pub(crate) fn applies(input_size: usize, hidden: usize) -> bool {
        let spec = C::SPEC;
        spec.unit_local
            && spec.states == ["c"]
            && spec.cache.per_row == 0
            && spec.scratch.per_row == 0
            && hidden >= MIN_UNITS
            && input_size <= PackedRows::<C::Elem>::IN_ORDER_DEPTH
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
        let side = |units: Range<usize>| {
            Side::new(cell, dims, units, weight_hh, bias_ih, bias_hh, constant)
        };
        Some(UnitSplit {
            hidden,
            sides: [side(0..half)?, side(half..hidden)?],
            piece: Piece::at(isa::active()),
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
                    h_prev: vec![C::Elem::zero(); self.hidden],
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
    /// and `record` keeps what backward reads of a training pass.
    pub(crate) fn run_chunk(
        &self,
        chunk: Chunk<'_, C::Elem>,
        h: &mut [C::Elem],
        c: &mut [C::Elem],
        buffers: &mut SplitBuffers<C::Elem>,
        output: [Option<ArrayViewMut2<'_, C::Elem>>; 2],
        record: Record<[SideTape<'_, C::Elem>; 2]>,
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
        let [record0, record1] = match record {
            Record::Tape([first, second]) => [Record::Tape(first), Record::Tape(second)],
            Record::Nothing => [Record::Nothing, Record::Nothing],
        };
        let n1 = self.hidden - at;
        let [c_a, c_b] = &mut buffers0.c;
        let mut first = SideWork {
            c: [c_a.get_mut(), c_b.get_mut()],
            buffers: &mut buffers0.step,
            output: output0,
            record: record0,
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
            record: record1,
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
        helper_thread::join(
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
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Axis, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::cell::CellDims;
    use crate::zoo::Lstm;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Without a helper thread the caller claims every step of the second side itself: the chunk
    /// still comes out as the standard LSTM's steps, computed here in `f64` one unit at a time.
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
        assert!(!helper_thread::active());
        let (first, second) = output.view_mut().split_at(Axis(1), split.at());
        split.run_chunk(
            Chunk {
                x: x.view(),
                direction: Direction::Forward,
                t0: 0,
                seq_len: steps,
            },
            &mut h,
            &mut c,
            &mut buffers,
            [Some(first), Some(second)],
            Record::Nothing,
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
