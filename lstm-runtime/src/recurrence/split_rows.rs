//! The cell's elementwise step on both cores, split by batch rows: rows are independent in every
//! generated step (each row reads and writes only its own rows of the per-row buffers), so a step
//! over many rows runs as two halves on two threads. The GEMMs around it already use every core;
//! without this, the step is the single-threaded part of each time step.
//!
//! Per-row buffers are split by rows; shared inputs (the biases) are passed whole; the
//! backward step's accumulators shared by all rows (bias and spec-parameter gradients) get a
//! second copy for the second half, added into the first when the pass ends.
//!
//! Around the forward step, each thread also copies its rows of the new `h` to the layer's
//! output and, in a training pass, its rows of the step's tape ([`TapeRows`]), and where
//! streaming all of `W_hh` on each core costs less than a second hand-over, computes its rows
//! of the recurrent product first ([`takes_product`]): the step's one hand-over then serves
//! the product, the step, the output and the tape, and no thread reads the other's `zh`.
//!
//! With the product taken by rows, a row's steps never read another row's values, so where
//! nothing between two steps needs the whole batch (an inference chunk with every row valid
//! and no regulariser or projection between the steps), each thread runs its rows through all
//! of the chunk's steps without a hand-over at all ([`chunk`]), and where the input
//! projection sums in the same order for any rows, projects its own rows of each step just
//! before it ([`ChunkZx::PerStep`]), so that they are still in its cache when the step reads
//! them.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
use num_traits::Zero;

use crate::cell::{BackwardIo, Cell, CellDims, StepIo};
use crate::direction::Direction;
use crate::isa::{self, Isa};
use crate::parallel::helper_thread;
use crate::parallel::threads::num_threads;

/// Gate values (rows × gates · hidden) below which a step runs on the calling thread: handing
/// half of a smaller step to another thread costs more than it saves.
const PARALLEL_MIN_VALUES: usize = 1 << 14;

/// Where a step of `rows` rows with `gate_rows` gate values per row splits, if it does.
pub(crate) fn split_point(rows: usize, gate_rows: usize) -> Option<usize> {
    (rows >= 2 && rows * gate_rows >= PARALLEL_MIN_VALUES && num_threads() > 1).then_some(rows / 2)
}

/// A per-row buffer of `rows` rows split after row `at`; an empty buffer (an input the cell
/// does not read) stays empty on both sides.
fn rows_of<T>(values: &[T], rows: usize, at: usize) -> (&[T], &[T]) {
    values.split_at(values.len() / rows * at)
}

/// As [`rows_of`], mutably.
fn rows_of_mut<T>(values: &mut [T], rows: usize, at: usize) -> (&mut [T], &mut [T]) {
    let per_row = values.len() / rows;
    values.split_at_mut(per_row * at)
}

/// Weight values (`W_hh`) up to which a step split by rows also splits its recurrent product
/// by rows ([`takes_product`]) at the kernels of `level`: each thread then streams all of
/// `W_hh` at every step. With the AVX2 kernels that pays while `W_hh` stays in the core's L2
/// cache (1 MB at hidden 256), not beyond; the AVX-512 kernels prefetch the next panels into
/// L2 as they go, so that streaming `W_hh` from L3 costs less than the second hand-over and
/// reading the other core's `zh`, up to 2²¹ weights (hidden 724).
fn row_product_max_weights(level: Isa) -> usize {
    match level {
        Isa::Avx512 => 1 << 21,
        Isa::Avx2 | Isa::Baseline => 1 << 18,
    }
}

/// Whether a step of `rows` rows split at `at` computes its recurrent product by rows too, each
/// thread its own rows' `zh` just before stepping them ([`step`] with a [`RowProduct`]): one
/// hand-over per step instead of two, and each thread's `zh` stays in its own cache. Only
/// with a helper thread running (`parallel/helper_thread.rs`), for a packed product
/// (`linalg/packed.rs`) of at most [`row_product_max_weights`] weights, and with two rows or
/// more per half: a lone row is the only block whose sums may run in another order than the
/// same rows' in a larger block, so every value is then the product over all rows'.
pub(crate) fn takes_product(rows: usize, at: usize, packed: bool, weights: usize) -> bool {
    packed
        && helper_thread::active()
        && weights <= row_product_max_weights(isa::active())
        && at >= 2
        && rows - at >= 2
}

/// What a step writes besides the state: nothing (inference), the training cache, or the
/// recorded gates, each a per-row buffer.
pub(crate) enum StepKind<'b, F> {
    /// [`Cell::step`]: the new state only.
    Inference,
    /// [`Cell::step_train`], writing the step's cache for the backward pass.
    Train(&'b mut [F]),
    /// [`Cell::step_record`], writing the values a call records (`Call::record`).
    Record(&'b mut [F]),
}

impl<F> StepKind<'_, F> {
    /// The rows `..at` and `at..` of a step of `rows` rows.
    fn halves(&mut self, rows: usize, at: usize) -> (StepKind<'_, F>, StepKind<'_, F>) {
        match self {
            StepKind::Inference => (StepKind::Inference, StepKind::Inference),
            StepKind::Train(buffer) => {
                let (first, second) = rows_of_mut(buffer, rows, at);
                (StepKind::Train(first), StepKind::Train(second))
            }
            StepKind::Record(buffer) => {
                let (first, second) = rows_of_mut(buffer, rows, at);
                (StepKind::Record(first), StepKind::Record(second))
            }
        }
    }

    /// Runs `cell`'s step of this kind over `io`.
    fn run<C: Cell<Elem = F>>(self, cell: &C, io: StepIo<'_, F>) {
        match self {
            StepKind::Inference => cell.step(io),
            StepKind::Train(cache) => cell.step_train(io, cache),
            StepKind::Record(record) => cell.step_record(io, record),
        }
    }
}

/// A step's recurrent product left to the threads that step its rows ([`takes_product`]).
pub(crate) struct RowProduct<'a, F> {
    /// Receives the product, `rows × gate_rows`.
    pub(crate) zh: &'a mut [F],
    /// Computes the rows given (indices into the step's rows) into their rows of `zh`.
    pub(crate) product: &'a (dyn Fn(Range<usize>, &mut [F]) + Sync),
}

/// The rows of a training pass's tape that the threads stepping a step's rows fill, each its
/// own rows, so that the copies do not run on one thread while the other waits.
pub(crate) struct TapeRows<'a, F> {
    /// The step's recurrent input `h_prev` `(rows, recurrent_size)`, as the product reads it.
    pub(crate) h_in: ArrayView2<'a, F>,
    /// Receives `h_in`.
    pub(crate) h_prev: ArrayViewMut2<'a, F>,
    /// Receives the step's new carried states `(rows, states · hidden)`, where nothing changes
    /// them after the step (no masked row, no zoneout of `c`).
    pub(crate) c: Option<ArrayViewMut2<'a, F>>,
}

impl<'a, F> TapeRows<'a, F> {
    /// The rows `..at` and `at..`.
    fn halves(self, at: usize) -> (Self, Self) {
        let (h_in, h_in2) = self.h_in.split_at(Axis(0), at);
        let (h_prev, h_prev2) = self.h_prev.split_at(Axis(0), at);
        let (c, c2) = self.c.map(|c| c.split_at(Axis(0), at)).unzip();
        (
            TapeRows { h_in, h_prev, c },
            TapeRows {
                h_in: h_in2,
                h_prev: h_prev2,
                c: c2,
            },
        )
    }
}

/// Runs `cell`'s step of `kind` over `io`, in two halves of rows (`..at`, `at..`) on two
/// threads when `at` is given ([`split_point`]). With `product`, each thread first computes
/// its rows' `zh` (`io.zh` is then ignored). With `output` `(rows, hidden)`, each thread
/// copies its rows' new `h` there; with `tape`, its rows of the step's tape.
pub(crate) fn step<'a, C: Cell>(
    cell: &C,
    io: StepIo<'a, C::Elem>,
    at: Option<usize>,
    mut kind: StepKind<'_, C::Elem>,
    output: Option<ArrayViewMut2<'_, C::Elem>>,
    product: Option<RowProduct<'a, C::Elem>>,
    tape: Option<TapeRows<'_, C::Elem>>,
) {
    let rows = io.rows;
    let Some(at) = at else {
        half(cell, 0..rows, io, product, kind, output, tape);
        return;
    };
    let (first, second) = halves(io, at);
    let (kind, kind2) = kind.halves(rows, at);
    let (output, output2) = output.map(|output| output.split_at(Axis(0), at)).unzip();
    let (tape, tape2) = tape.map(|tape| tape.halves(at)).unzip();
    let (product, product2) = product
        .map(|RowProduct { zh, product }| {
            let (zh, zh2) = rows_of_mut(zh, rows, at);
            (RowProduct { zh, product }, RowProduct { zh: zh2, product })
        })
        .unzip();
    helper_thread::fork(
        || half(cell, 0..at, first, product, kind, output, tape),
        || half(cell, at..rows, second, product2, kind2, output2, tape2),
    );
}

/// One thread's share of [`step`]: the rows `rows` of the step (`io` holds just those).
fn half<'a, C: Cell>(
    cell: &C,
    rows: Range<usize>,
    mut io: StepIo<'a, C::Elem>,
    product: Option<RowProduct<'a, C::Elem>>,
    kind: StepKind<'_, C::Elem>,
    output: Option<ArrayViewMut2<'_, C::Elem>>,
    tape: Option<TapeRows<'_, C::Elem>>,
) {
    let c_tape = match tape {
        Some(TapeRows {
            h_in,
            mut h_prev,
            c,
        }) => {
            h_prev.assign(&h_in);
            c
        }
        None => None,
    };
    if let Some(RowProduct { zh, product }) = product {
        product(rows, zh);
        io.zh = zh;
    }
    let h = std::mem::take(&mut io.h);
    let c = std::mem::take(&mut io.c);
    kind.run(
        cell,
        StepIo {
            h: &mut *h,
            c: &mut *c,
            ..io
        },
    );
    copy_rows(output, h);
    copy_rows(c_tape, c);
}

/// Chunks whose steps ran by rows with one hand-over for the whole chunk ([`chunk`]), so far
/// in this process (`__private::row_split_chunks`).
pub(crate) static CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// Writes the rows `rows` (of the batch) of step `t`'s input projection into `zx`:
/// `project(t, rows, zx)`.
pub(crate) type ProjectRows<'a, F> = dyn Fn(usize, Range<usize>, &mut [F]) + Sync + 'a;

/// Where the steps of a chunk find their input projection `zx`.
pub(crate) enum ChunkZx<'a, F> {
    /// Projected before the chunk: `(steps, rows, gate_rows)` by time.
    Projected(&'a [F]),
    /// Projected by each thread for its own rows just before each step, by `project`, into
    /// `scratch` `(rows, gate_rows)`.
    PerStep {
        project: &'a ProjectRows<'a, F>,
        scratch: &'a mut [F],
    },
}

/// What the steps of a chunk read and write, for [`chunk`]: the whole batch's buffers.
pub(crate) struct ChunkIo<'a, F> {
    /// Batch rows.
    pub(crate) rows: usize,
    /// The chunk's input projection.
    pub(crate) zx: ChunkZx<'a, F>,
    /// As [`StepIo::bias_ih`].
    pub(crate) bias_ih: &'a [F],
    /// As [`StepIo::bias_hh`].
    pub(crate) bias_hh: &'a [F],
    /// As [`StepIo::constant`].
    pub(crate) constant: &'a [F],
    /// The hidden state before the chunk `(rows, hidden)`, and a second buffer of that shape:
    /// the steps alternate between the two, the first step reading the first.
    pub(crate) h: [&'a mut [F]; 2],
    /// The carried states before the chunk `(rows, states · hidden)`, and a second buffer, as
    /// `h`.
    pub(crate) c: [&'a mut [F]; 2],
    /// The recurrent product of a step, `(rows, gate_rows)`.
    pub(crate) zh: &'a mut [F],
    /// As [`StepIo::scratch`].
    pub(crate) scratch: &'a mut [F],
}

impl<'a, F> ChunkIo<'a, F> {
    /// The rows `..at` and `at..` of every per-row buffer; the biases and a projection made
    /// before the chunk (whose steps each hold all rows) whole in both.
    fn halves(self, at: usize) -> (Self, Self) {
        let rows = self.rows;
        let (constant, constant2) = rows_of(self.constant, rows, at);
        let [h, h_next] = self.h.map(|h| rows_of_mut(h, rows, at));
        let [c, c_next] = self.c.map(|c| rows_of_mut(c, rows, at));
        let (zh, zh2) = rows_of_mut(self.zh, rows, at);
        let (scratch, scratch2) = rows_of_mut(self.scratch, rows, at);
        let (zx, zx2) = match self.zx {
            ChunkZx::Projected(zx) => (ChunkZx::Projected(zx), ChunkZx::Projected(zx)),
            ChunkZx::PerStep { project, scratch } => {
                let (first, second) = rows_of_mut(scratch, rows, at);
                (
                    ChunkZx::PerStep {
                        project,
                        scratch: first,
                    },
                    ChunkZx::PerStep {
                        project,
                        scratch: second,
                    },
                )
            }
        };
        let first = ChunkIo {
            rows: at,
            zx,
            constant,
            h: [h.0, h_next.0],
            c: [c.0, c_next.0],
            zh,
            scratch,
            ..self
        };
        let second = ChunkIo {
            rows: rows - at,
            zx: zx2,
            constant: constant2,
            h: [h.1, h_next.1],
            c: [c.1, c_next.1],
            zh: zh2,
            scratch: scratch2,
            bias_ih: first.bias_ih,
            bias_hh: first.bias_hh,
        };
        (first, second)
    }
}

/// Runs the inference steps of a chunk, the rows `..at` on this thread and `at..` on the
/// helper, each thread from the chunk's first step to its last without waiting for the other:
/// a row's step reads only that row's state, and with `product` (its rows' `h_prev · W_hhᵀ`
/// into their rows of `zh`) each thread computes its own rows' recurrent product, so nothing
/// crosses between the cores until the chunk ends. The steps run in `direction`'s order over
/// the chunk's `steps` time indices; each step's new `h` is copied to its index of `output`
/// `(steps, rows, hidden)` if given. Every row must be valid at every step. Each row computes
/// what the steps split one at a time compute ([`step`]), in the same order; the new state
/// ends in the first buffers of `io.h` and `io.c` after an even number of steps, in the
/// second after an odd one.
pub(crate) fn chunk<C: Cell>(
    cell: &C,
    io: ChunkIo<'_, C::Elem>,
    at: usize,
    (steps, direction): (usize, Direction),
    output: Option<ArrayViewMut3<'_, C::Elem>>,
    product: &(impl Fn(&[C::Elem], &mut [C::Elem]) + Sync),
) {
    let rows = io.rows;
    let gate_rows = io.zh.len() / rows.max(1);
    let (first, second) = io.halves(at);
    let (output, output2) = output.map(|output| output.split_at(Axis(1), at)).unzip();
    // One thread's rows from `start` on; a projection made before the chunk whole (each
    // step's rows lie together, so a half's rows are not one slice of it).
    let half = |start: usize,
                io: ChunkIo<'_, C::Elem>,
                mut output: Option<ArrayViewMut3<'_, C::Elem>>| {
        let ChunkIo {
            rows: n,
            mut zx,
            bias_ih,
            bias_hh,
            constant,
            h: [mut h, mut h_next],
            c: [mut c, mut c_next],
            zh,
            scratch,
            ..
        } = io;
        for k in 0..steps {
            let t = direction.time_of(k, steps);
            let zx_t: &[C::Elem] = match &mut zx {
                ChunkZx::Projected(zx) => &zx[(t * rows + start) * gate_rows..][..n * gate_rows],
                ChunkZx::PerStep { project, scratch } => {
                    project(t, start..start + n, scratch);
                    scratch
                }
            };
            product(h, zh);
            let step = StepIo {
                rows: n,
                zx: zx_t,
                zh,
                bias_ih,
                bias_hh,
                constant,
                c_prev: c,
                h_prev: if C::SPEC.reads_h_prev { h } else { &[] },
                h: h_next,
                c: c_next,
                scratch,
            };
            cell.step(step);
            copy_rows(
                output
                    .as_mut()
                    .map(|output| output.index_axis_mut(Axis(0), t)),
                h_next,
            );
            std::mem::swap(&mut h, &mut h_next);
            std::mem::swap(&mut c, &mut c_next);
        }
    };
    helper_thread::fork(|| half(0, first, output), || half(at, second, output2));
    CHUNKS.fetch_add(1, Ordering::Relaxed);
}

/// Copies `values`, row-major with the rows and width of `to`, into `to` if given.
fn copy_rows<F: Copy>(to: Option<ArrayViewMut2<'_, F>>, values: &[F]) {
    if let Some(mut to) = to {
        if let Some(to) = to.as_slice_mut() {
            to.copy_from_slice(values);
            return;
        }
        let width = to.ncols();
        for (row, mut out) in to.rows_mut().into_iter().enumerate() {
            out.assign(&ArrayView1::from(&values[row * width..(row + 1) * width]));
        }
    }
}

/// The rows `..at` and `at..` of a step's buffers (the biases, shared by all rows, whole in
/// both).
fn halves<'a, F>(io: StepIo<'a, F>, at: usize) -> (StepIo<'a, F>, StepIo<'a, F>) {
    let rows = io.rows;
    let (zx, zx2) = rows_of(io.zx, rows, at);
    let (zh, zh2) = rows_of(io.zh, rows, at);
    let (constant, constant2) = rows_of(io.constant, rows, at);
    let (c_prev, c_prev2) = rows_of(io.c_prev, rows, at);
    let (h_prev, h_prev2) = rows_of(io.h_prev, rows, at);
    let (h, h2) = rows_of_mut(io.h, rows, at);
    let (c, c2) = rows_of_mut(io.c, rows, at);
    let (scratch, scratch2) = rows_of_mut(io.scratch, rows, at);
    let first = StepIo {
        rows: at,
        zx,
        zh,
        bias_ih: io.bias_ih,
        bias_hh: io.bias_hh,
        constant,
        c_prev,
        h_prev,
        h,
        c,
        scratch,
    };
    let second = StepIo {
        rows: rows - at,
        zx: zx2,
        zh: zh2,
        bias_ih: io.bias_ih,
        bias_hh: io.bias_hh,
        constant: constant2,
        c_prev: c_prev2,
        h_prev: h_prev2,
        h: h2,
        c: c2,
        scratch: scratch2,
    };
    (first, second)
}

/// What the second half of a split backward step accumulates into: bias and spec-parameter
/// gradients, added into the first half's by [`SecondHalf::add_into`].
pub(crate) struct SecondHalf<C: Cell> {
    dims: CellDims,
    /// Made at the first split step, with weight matrices of no columns: only the spec
    /// parameters' gradients are accumulated here.
    grads: Option<C>,
    dbias_ih: Vec<C::Elem>,
    dbias_hh: Vec<C::Elem>,
}

impl<C: Cell> SecondHalf<C> {
    /// Zero accumulators for a cell of `dims` with `gate_rows` gate values per row.
    pub(crate) fn new(dims: CellDims, gate_rows: usize) -> Self {
        SecondHalf {
            dims,
            grads: None,
            dbias_ih: vec![num_traits::Zero::zero(); gate_rows],
            dbias_hh: vec![num_traits::Zero::zero(); gate_rows],
        }
    }

    /// Adds what the second halves accumulated into the first half's accumulators: the spec
    /// parameters' gradients of `grads` and the two bias gradients.
    pub(crate) fn add_into(
        self,
        grads: &mut C,
        dbias_ih: &mut [C::Elem],
        dbias_hh: &mut [C::Elem],
    ) {
        let Some(second) = self.grads else {
            return;
        };
        let mut params = Vec::new();
        second.visit(&mut |name, values| {
            if C::SPEC.params.iter().any(|param| param.name == name) {
                params.push((name.to_string(), values.to_owned()));
            }
        });
        grads.visit_mut(&mut |name, mut values| {
            if let Some((_, second)) = params.iter().find(|(param, _)| param == name) {
                values += second;
            }
        });
        for (total, second) in dbias_ih.iter_mut().zip(&self.dbias_ih) {
            *total += *second;
        }
        for (total, second) in dbias_hh.iter_mut().zip(&self.dbias_hh) {
            *total += *second;
        }
    }
}

/// Runs `cell`'s backward step over `io`, in two halves on two threads when the step is large
/// enough, the second half accumulating into `second`.
pub(crate) fn step_backward<C: Cell>(
    cell: &C,
    io: BackwardIo<'_, C::Elem>,
    gate_rows: usize,
    grads: &mut C,
    second: &mut SecondHalf<C>,
) {
    let rows = io.rows;
    let Some(at) = split_point(rows, gate_rows) else {
        cell.step_backward(io, grads);
        return;
    };
    let (dh, dh2) = rows_of(io.dh, rows, at);
    let (dc, dc2) = rows_of(io.dc, rows, at);
    let (c_prev, c_prev2) = rows_of(io.c_prev, rows, at);
    let (c, c2) = rows_of(io.c, rows, at);
    let (h_prev, h_prev2) = rows_of(io.h_prev, rows, at);
    let (constant, constant2) = rows_of(io.constant, rows, at);
    let (cache, cache2) = rows_of(io.cache, rows, at);
    let (dzx, dzx2) = rows_of_mut(io.dzx, rows, at);
    let (dzh, dzh2) = rows_of_mut(io.dzh, rows, at);
    let (dc_prev, dc_prev2) = rows_of_mut(io.dc_prev, rows, at);
    let (dh_prev, dh_prev2) = rows_of_mut(io.dh_prev, rows, at);
    let (dconstant, dconstant2) = rows_of_mut(io.dconstant, rows, at);
    let (scratch, scratch2) = rows_of_mut(io.scratch, rows, at);
    let first = BackwardIo {
        rows: at,
        dh,
        dc,
        c_prev,
        c,
        h_prev,
        bias_ih: io.bias_ih,
        bias_hh: io.bias_hh,
        constant,
        cache,
        dzx,
        dzh,
        dc_prev,
        dh_prev,
        dconstant,
        dbias_ih: io.dbias_ih,
        dbias_hh: io.dbias_hh,
        scratch,
    };
    let SecondHalf {
        dims,
        grads: grads2,
        dbias_ih,
        dbias_hh,
    } = second;
    // The backward step writes only the spec parameters' gradients into `grads`; the weight
    // matrices (`gates · hidden` by input and recurrent widths) would be as large as the
    // weights, so they get no columns.
    let grads2 = grads2.get_or_insert_with(|| {
        C::zeros(CellDims {
            input_size: 0,
            recurrent_size: 0,
            constant_size: 0,
            ..*dims
        })
    });
    let second_io = BackwardIo {
        rows: rows - at,
        dh: dh2,
        dc: dc2,
        c_prev: c_prev2,
        c: c2,
        h_prev: h_prev2,
        bias_ih: io.bias_ih,
        bias_hh: io.bias_hh,
        constant: constant2,
        cache: cache2,
        dzx: dzx2,
        dzh: dzh2,
        dc_prev: dc_prev2,
        dh_prev: dh_prev2,
        dconstant: dconstant2,
        dbias_ih,
        dbias_hh,
        scratch: scratch2,
    };
    helper_thread::fork(
        || cell.step_backward(first, grads),
        || cell.step_backward(second_io, grads2),
    );
}

/// Runs `cell`'s backward step over the rows of `io` that are `valid`, one call per run of
/// consecutive valid rows; the masked rows get zero `dL/dzx`, `dL/dzh` and contribute
/// nothing. Their tape holds the carried state as the step's new state, which is not what the
/// cell computed for them, and a cell dividing by a state (the sLSTM's `c / n`) would turn
/// that into infinities even under a zero seed.
pub(crate) fn step_backward_valid<C: Cell>(
    cell: &C,
    io: BackwardIo<'_, C::Elem>,
    valid: &[bool],
    grads: &mut C,
) {
    let rows = io.rows;
    let span = |len: usize, range: &std::ops::Range<usize>| {
        let per_row = len / rows.max(1);
        per_row * range.start..per_row * range.end
    };
    for (row, _) in valid.iter().enumerate().filter(|(_, v)| !**v) {
        let one = row..row + 1;
        let dzx = span(io.dzx.len(), &one);
        io.dzx[dzx].fill(C::Elem::zero());
        let dzh = span(io.dzh.len(), &one);
        io.dzh[dzh].fill(C::Elem::zero());
    }
    let (dzx_len, dzh_len) = (io.dzx.len(), io.dzh.len());
    let (dc_prev_len, dh_prev_len) = (io.dc_prev.len(), io.dh_prev.len());
    let (dconstant_len, scratch_len) = (io.dconstant.len(), io.scratch.len());
    let mut start = 0;
    while start < rows {
        if !valid[start] {
            start += 1;
            continue;
        }
        let end = (start..rows).find(|&r| !valid[r]).unwrap_or(rows);
        let run = start..end;
        let part = BackwardIo {
            rows: end - start,
            dh: &io.dh[span(io.dh.len(), &run)],
            dc: &io.dc[span(io.dc.len(), &run)],
            c_prev: &io.c_prev[span(io.c_prev.len(), &run)],
            c: &io.c[span(io.c.len(), &run)],
            h_prev: &io.h_prev[span(io.h_prev.len(), &run)],
            bias_ih: io.bias_ih,
            bias_hh: io.bias_hh,
            constant: &io.constant[span(io.constant.len(), &run)],
            cache: &io.cache[span(io.cache.len(), &run)],
            dzx: &mut io.dzx[span(dzx_len, &run)],
            dzh: &mut io.dzh[span(dzh_len, &run)],
            dc_prev: &mut io.dc_prev[span(dc_prev_len, &run)],
            dh_prev: &mut io.dh_prev[span(dh_prev_len, &run)],
            dconstant: &mut io.dconstant[span(dconstant_len, &run)],
            dbias_ih: &mut *io.dbias_ih,
            dbias_hh: &mut *io.dbias_hh,
            scratch: &mut io.scratch[span(scratch_len, &run)],
        };
        cell.step_backward(part, grads);
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, ArrayView, Dimension};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::isa::{self, Isa};
    use crate::layer::call::Call;
    use crate::layer::config::LstmConfig;
    use crate::parallel::threads::with_threads;
    use crate::{Lstm, zoo};

    fn assert_same_bits<D: Dimension>(
        what: &str,
        got: ArrayView<'_, f32, D>,
        want: ArrayView<'_, f32, D>,
    ) {
        assert_eq!(got.shape(), want.shape(), "{what}");
        for (index, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what} at {index}: {a} against {b}"
            );
        }
    }

    /// Runs `config`'s layer over a random `(seq_len, batch, input)` input and initial state
    /// on one thread and on two, asserts that every output has the same bits, and returns the
    /// chunks that ran by rows on two threads.
    fn two_threads_agree_with_one(config: LstmConfig, (seq_len, batch): (usize, usize)) -> usize {
        let layers = config.num_layers * if config.bidirectional { 2 } else { 1 };
        let (input_size, hidden) = (config.input_size, config.hidden_size);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut layer = Lstm::<zoo::Lstm<f32>>::new(config, &mut rng).unwrap();
        let mut random = |shape| Array3::from_shape_fn(shape, |_| rng.random_range(-1.0f32..1.0));
        let input = random((seq_len, batch, input_size));
        let (h0, c0) = (
            random((layers, batch, hidden)),
            random((layers, batch, hidden)),
        );
        let mut run = |threads| {
            with_threads(threads, || {
                let call = Call::new().with_initial_state(h0.view(), c0.view());
                layer.forward(input.view(), call).unwrap()
            })
        };
        let one = run(1);
        let chunks = crate::__private::row_split_chunks;
        let before = chunks();
        let two = run(2);
        let sequence = |out: &crate::LstmOutput<f32>| out.output.sequence().unwrap().to_owned();
        assert_same_bits("output", sequence(&two).view(), sequence(&one).view());
        for (what, got, want) in [("h_n", &two.h_n, &one.h_n), ("c_n", &two.c_n, &one.c_n)] {
            assert_same_bits(
                what,
                got.as_ref().unwrap().view(),
                want.as_ref().unwrap().view(),
            );
        }
        chunks() - before
    }

    /// Whether the packed kernels run here (the rows' products are packed ones).
    fn packed_kernels_run() -> bool {
        let ones = ndarray::Array2::<f32>::ones((1, 1));
        crate::linalg::step::PackedRows::new(ones.view(), &[0]).is_some()
    }

    #[test]
    fn chunks_run_by_rows_compute_what_one_thread_computes() {
        // Both directions, chunks of an even and an odd number of steps (64 steps per chunk at
        // batch 32 and hidden 128, then 3), and a second layer reading the first's output.
        let config = LstmConfig::new(16, 128)
            .with_bidirectional(true)
            .with_num_layers(2);
        let ran = two_threads_agree_with_one(config, (67, 32));
        if packed_kernels_run() {
            // Two chunks per layer and direction.
            assert!(ran >= 8, "{ran} chunks ran by rows");
        }
    }

    #[test]
    fn chunks_run_by_rows_over_more_than_one_depth_range_compute_what_one_thread_computes() {
        // Hidden 512: each product runs over two depth ranges of the kernels, and its rows'
        // sums resume from one range to the next; at the AVX-512 level `W_hh` has few enough
        // weights for the threads to take its product by rows.
        let ran = two_threads_agree_with_one(LstmConfig::new(16, 512), (20, 8));
        if packed_kernels_run() && isa::active() == Isa::Avx512 {
            assert!(ran >= 1, "no chunk ran by rows");
        }
    }
}
