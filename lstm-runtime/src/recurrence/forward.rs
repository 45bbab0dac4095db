//! The forward time loop of one (layer, direction): chunk by chunk, the input projection
//! `zx = x · W_ihᵀ` of the chunk's steps as one product, then step by step the recurrent product
//! `zh = h_prev · W_hhᵀ`, the cell's fused step, the LSTMP projection, zoneout, and the
//! settling of masked rows (which keep their state). A training pass records what backward
//! reads ([`Record::Tape`]).
//!
//! The regularisers inside the recurrence act at three points: the input before the
//! projection (input dropout, one elementwise pass per chunk before the GEMM), `h_prev` before
//! the recurrent GEMM (recurrent dropout; weight drop multiplies by a masked copy of
//! `weight_hh` made once per call), and the state after the step (zoneout).
//!
//! Where each step would split by rows with each thread's own rows of the recurrent product,
//! an inference chunk with nothing between its steps runs each half of the rows through all of
//! its steps on one thread (`split_rows::chunk`); at the AVX-512 level that thread also
//! projects its rows of each step, just before the step, instead of the chunk's projection.
//!
//! At batch 1, with two threads, a cell whose units do not read each other runs each chunk
//! split by units instead (`split_units/`): each thread projects, multiplies and steps half
//! of the units, and only `h` crosses between the cores.

use std::ops::Range;

use ndarray::{
    ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, CowArray, Ix2, Order, Zip, s,
};
use num_traits::{One, Zero};

use super::Record;
use super::mask::InvalidOutput;
use super::pass::{DirectionTape, Pass, Run, State, StepBuffers, chunk_steps, flat, flat_mut};
use super::split_rows::{self, ChunkZx, RowProduct, StepKind, TapeRows};
use super::split_units::{Chunk, SideTape, SplitBuffers, UnitSplit};
use crate::cell::{Cell, StepIo};
use crate::direction::Direction;
use crate::error::Result;
use crate::linalg::ordered::{self, FewRows};
use crate::linalg::prefetch::prefetch;
use crate::linalg::step::StepRhs;
use crate::linalg::{self, heads};
use crate::parallel::helper_thread;
use crate::regularization::in_recurrence::mask_rows;

impl<C: Cell> Pass<'_, C> {
    /// Runs every step of `input: (seq_len, batch, input_size)` (time-major, any layout) in
    /// this direction's order, chunk by chunk. Writes each step's output at its time index
    /// into `output: (seq_len, batch, recurrent_size)` if given, and keeps what `record`
    /// asks for.
    pub(crate) fn run_sequence(
        &self,
        input: ArrayView3<'_, C::Elem>,
        run: &mut Run<C::Elem>,
        mut output: Option<ArrayViewMut3<'_, C::Elem>>,
        mut record: Record<&mut DirectionTape<C::Elem>>,
    ) -> Result<()> {
        let seq_len = input.len_of(Axis(0));
        let batch = input.len_of(Axis(1));
        let chunk = chunk_steps(batch, self.gate_rows());
        let mut starts: Vec<usize> = (0..seq_len).step_by(chunk).collect();
        if self.direction == Direction::Reverse {
            starts.reverse();
        }
        helper_thread::with_helper(self.helper_worth_it(seq_len, batch), || {
            for t0 in starts {
                let t1 = (t0 + chunk).min(seq_len);
                let chunk_output = output
                    .as_mut()
                    .map(|output| output.slice_mut(s![t0..t1, .., ..]));
                self.run_chunk(
                    input.slice(s![t0..t1, .., ..]),
                    t0,
                    seq_len,
                    run,
                    chunk_output,
                    record.reborrow(),
                )?;
            }
            Ok(())
        })
    }

    /// Runs the steps `t0 .. t0 + steps` of a `seq_len`-step sequence, given their input
    /// `(steps, batch, input_size)`, in this direction's order; outputs go to `output`
    /// `(steps, batch, recurrent_size)` at the step's offset in the chunk.
    pub(crate) fn run_chunk(
        &self,
        input: ArrayView3<'_, C::Elem>,
        t0: usize,
        seq_len: usize,
        run: &mut Run<C::Elem>,
        mut output: Option<ArrayViewMut3<'_, C::Elem>>,
        mut record: Record<&mut DirectionTape<C::Elem>>,
    ) -> Result<()> {
        let (steps, batch, input_size) = input.dim();
        let step_len = batch * self.gate_rows();
        let rows: CowArray<'_, C::Elem, Ix2> = input
            .to_shape(((steps * batch, input_size), Order::RowMajor))
            // Same element count, and `to_shape` copies when the layout needs it: infallible.
            .expect("(steps, batch, input_size) always reshapes to (steps · batch, input_size)");
        if let (Some(Some(split)), Some(buffers)) = (self.units.get(), run.units.as_mut())
            && helper_thread::active()
        {
            let x = rows.as_standard_layout();
            let chunk = Chunk {
                x: x.view(),
                direction: self.direction,
                t0,
                seq_len,
            };
            self.run_chunk_by_units(split, chunk, &mut run.state, buffers, output, record);
            return Ok(());
        }
        // Input dropout: the same mask at every step, applied once before the projection.
        let rows = match self.reg.input {
            Some(mask) => {
                let dropped = run.x_dropped.slice_mut(s![..steps * batch, ..]);
                mask_rows(rows.view(), mask, dropped, |out, x| *out = x);
                run.x_dropped.slice(s![..steps * batch, ..])
            }
            None => rows.view(),
        };
        let weight_ih = self.cell.weights().weight_ih.view();
        let (input_size, gate_rows) = (weight_ih.ncols(), weight_ih.nrows());
        let split = self.chunk_split((t0, steps, batch), &mut run.buffers, &record);
        if let Some(at) = split
            && let Some(packed) = self.projection_by_steps(weight_ih)
        {
            // Each thread projects its own rows of a step just before the step (the packed
            // kernels sum each value in the same order for any rows).
            let x = rows.as_standard_layout();
            let project = |t: usize, rows: Range<usize>, zx: &mut [C::Elem]| {
                let x = x.slice(s![t * batch + rows.start..t * batch + rows.end, ..]);
                let zx = ArrayViewMut2::from_shape((rows.len(), gate_rows), zx)
                    .expect("a thread's rows of zx are rows × gate rows");
                packed
                    .product_here(weight_ih, x, zx)
                    .expect("the layer's own input projection has the layer's shapes");
            };
            let zx = ChunkZx::PerStep {
                project: &project,
                scratch: &mut flat_mut(&mut run.zx)[..step_len],
            };
            self.run_chunk_by_rows((zx, steps), at, &mut run.state, &mut run.buffers, output);
            return Ok(());
        }
        let few_rows = ordered::needs_few_rows::<C::Elem>(steps * batch, gate_rows, input_size)
            .then(|| self.weight_ih_few.get_or_init(|| FewRows::new(weight_ih)));
        ordered::project(
            rows,
            weight_ih,
            few_rows,
            run.zx.slice_mut(s![..steps * batch, ..]),
        )?;
        let zx = flat(&run.zx);
        if let Some(at) = split {
            let zx = (ChunkZx::Projected(&zx[..steps * step_len]), steps);
            self.run_chunk_by_rows(zx, at, &mut run.state, &mut run.buffers, output);
            return Ok(());
        }
        for k in 0..steps {
            let k = self.direction.time_of(k, steps);
            let t = t0 + k;
            let zx_t = &zx[k * step_len..(k + 1) * step_len];
            let written = self.step(
                t,
                seq_len,
                zx_t,
                &mut run.state,
                &mut run.buffers,
                output
                    .as_mut()
                    .map(|output| output.index_axis_mut(Axis(0), k)),
                record.reborrow(),
            )?;
            if let Some(output) = output.as_mut()
                && !written
            {
                self.write_output(
                    &run.state,
                    &run.buffers.valid,
                    output.index_axis_mut(Axis(0), k),
                );
            }
        }
        Ok(())
    }

    /// Where the inference steps `t0 .. t0 + steps` of `batch` rows split by rows with one
    /// hand-over for the chunk ([`split_rows::chunk`]), if they do: where each step would
    /// split by rows with each thread's rows of the recurrent product
    /// ([`split_rows::takes_product`]), and nothing between the steps needs the whole batch
    /// (every row valid at every step, no recurrent dropout, zoneout or projection of `h`,
    /// nothing recorded). Fills the step buffers' validity as it looks.
    fn chunk_split(
        &self,
        (t0, steps, batch): (usize, usize, usize),
        buffers: &mut StepBuffers<C::Elem>,
        record: &Record<&mut DirectionTape<C::Elem>>,
    ) -> Option<usize> {
        let plain = matches!(record, Record::Nothing)
            && buffers.recording.is_none()
            && self.nothing_between_steps()
            && self.blocks().is_none()
            && !buffers.h_cell.is_empty();
        if !plain {
            return None;
        }
        let (rhs, weights) = (self.dense_rhs(), self.weight_hh().len());
        split_rows::split_point(batch, self.gate_rows())
            .filter(|&at| split_rows::takes_product(batch, at, rhs.is_packed(), weights))
            .filter(|_| (t0..t0 + steps).all(|t| self.validity.fill_step(t, &mut buffers.valid)))
    }

    /// `W_ih` packed for the step kernels, where a chunk split by rows projects each step's
    /// rows on the thread that steps them ([`ChunkZx::PerStep`]): where those kernels sum
    /// each value in index order for any rows, as [`ordered::project`] does, so that the
    /// values are the ones a projection of the whole chunk would give (f32 at the AVX-512
    /// level).
    fn projection_by_steps(&self, weight_ih: ArrayView2<'_, C::Elem>) -> Option<&StepRhs> {
        if !ordered::packs_every_row::<C::Elem>() {
            return None;
        }
        match self.weight_ih_few.get_or_init(|| FewRows::new(weight_ih)) {
            FewRows::Packed(packed) if packed.sums_in_order() => Some(packed),
            // Laid out at another level, active earlier in the call.
            _ => None,
        }
    }

    /// The chunk's inference steps over its projection `zx`, the rows `..at` on this thread
    /// and the others on the helper ([`split_rows::chunk`]), where [`Self::chunk_split`] found
    /// them to split.
    fn run_chunk_by_rows(
        &self,
        (zx, steps): (ChunkZx<'_, C::Elem>, usize),
        at: usize,
        state: &mut State<C::Elem>,
        buffers: &mut StepBuffers<C::Elem>,
        output: Option<ArrayViewMut3<'_, C::Elem>>,
    ) {
        let (batch, recurrent) = state.h.dim();
        let gate_rows = self.gate_rows();
        let (weight_hh, rhs) = (self.weight_hh(), self.dense_rhs());
        let product = |h_prev: &[C::Elem], zh: &mut [C::Elem]| {
            let rows = zh.len() / gate_rows;
            let h_prev = ArrayView2::from_shape((rows, recurrent), h_prev)
                .expect("a thread's rows of h are rows × recurrent size");
            let zh = ArrayViewMut2::from_shape((rows, gate_rows), zh)
                .expect("a thread's rows of zh are rows × gate rows");
            rhs.product_here(weight_hh, h_prev, zh)
                .expect("the layer's own step product has the layer's shapes");
        };
        let io = split_rows::ChunkIo {
            rows: batch,
            zx,
            bias_ih: &self.biases.ih,
            bias_hh: &self.biases.hh,
            constant: flat(&self.constant),
            h: [flat_mut(&mut state.h), flat_mut(&mut buffers.h_cell)],
            c: [flat_mut(&mut state.c), flat_mut(&mut buffers.c)],
            zh: flat_mut(&mut buffers.zh),
            scratch: flat_mut(&mut buffers.scratch),
        };
        split_rows::chunk(self.cell, io, at, (steps, self.direction), output, &product);
        if steps % 2 == 1 {
            std::mem::swap(&mut state.h, &mut buffers.h_cell);
            std::mem::swap(&mut state.c, &mut buffers.c);
        }
        if steps > 0 {
            state.seen.fill(true);
        }
    }

    /// [`Pass::run_chunk`] split by units between the two threads (`split_units/`): each
    /// side's share of the outputs and of the tape is a view of its units' columns.
    fn run_chunk_by_units(
        &self,
        split: &UnitSplit<C>,
        chunk: Chunk<'_, C::Elem>,
        state: &mut State<C::Elem>,
        buffers: &mut SplitBuffers<C::Elem>,
        output: Option<ArrayViewMut3<'_, C::Elem>>,
        record: Record<&mut DirectionTape<C::Elem>>,
    ) {
        let at = split.at();
        let steps = chunk.x.nrows();
        let output = match output {
            Some(output) => {
                let (first, second) = output.index_axis_move(Axis(1), 0).split_at(Axis(1), at);
                [Some(first), Some(second)]
            }
            None => [None, None],
        };
        let record = match record {
            Record::Tape(tape) => {
                let (rows, hidden) = (tape.cache.nrows(), self.dims.hidden_size);
                let cache = tape
                    .cache
                    .view_mut()
                    .into_shape_with_order((rows, C::SPEC.cache.per_unit, hidden))
                    .expect("a unit-local cell caches only per-unit values (`UnitSplit::applies`)");
                let (cache, cache2) = cache.split_at(Axis(2), at);
                let (h_prev, h_prev2) = tape.h_prev.view_mut().split_at(Axis(1), at);
                let (c_states, c_states2) = tape.c_states.view_mut().split_at(Axis(1), at);
                Record::Tape([
                    SideTape {
                        cache,
                        h_prev,
                        c_states,
                    },
                    SideTape {
                        cache: cache2,
                        h_prev: h_prev2,
                        c_states: c_states2,
                    },
                ])
            }
            Record::Nothing => Record::Nothing,
        };
        split.run_chunk(
            chunk,
            flat_mut(&mut state.h),
            flat_mut(&mut state.c),
            buffers,
            output,
            record,
        );
        if steps > 0 {
            state.seen.fill(true);
        }
    }

    /// One time step `t`: the recurrent GEMM, the cell's step, the projection, and the
    /// settling of masked rows; `state` becomes the new state. Returns whether the step's
    /// output went to `output` already (where it is the cell's `h` as it is, the threads that
    /// step the rows write it), else the caller writes it.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        t: usize,
        seq_len: usize,
        zx_t: &[C::Elem],
        state: &mut State<C::Elem>,
        buffers: &mut StepBuffers<C::Elem>,
        output: Option<ArrayViewMut2<'_, C::Elem>>,
        mut record: Record<&mut DirectionTape<C::Elem>>,
    ) -> Result<bool> {
        let all_valid = self.validity.fill_step(t, &mut buffers.valid);
        let batch = state.h.nrows();
        if buffers.h_cell.is_empty() {
            // No batch rows or no units: nothing to compute, and generated steps need not
            // handle empty blocks.
            return Ok(false);
        }
        // Recurrent dropout: the step sees `h_prev ⊙ mask`; the carried state is undropped.
        let h_in = match self.reg.recurrent {
            Some(mask) => {
                Zip::from(&mut buffers.h_dropped)
                    .and(&state.h)
                    .and(&mask)
                    .for_each(|dropped, &h, &m| *dropped = h * m);
                &buffers.h_dropped
            }
            None => &state.h,
        };
        let h_prev: &[C::Elem] = if C::SPEC.reads_h_prev {
            flat(h_in)
        } else {
            &[]
        };
        let gate_rows = self.gate_rows();
        let at = split_rows::split_point(batch, gate_rows);
        let weight_hh = self.weight_hh();
        let blocks = self.blocks();
        // The dense product's operand (a block-diagonal recurrence has its own, `heads.rs`).
        let rhs = blocks.is_none().then(|| self.dense_rhs());
        // The recurrent product left to the two threads that step the rows, each its own.
        let by_rows = rhs.filter(|rhs| {
            at.is_some_and(|at| {
                split_rows::takes_product(batch, at, rhs.is_packed(), weight_hh.len())
            })
        });
        if by_rows.is_none() {
            match (rhs, blocks) {
                // Back and forth over the weights, one step each way
                // (`StepRhs::product_walking`).
                (Some(rhs), _) => {
                    rhs.product_walking(weight_hh, h_in.view(), buffers.zh.view_mut(), t % 2 == 1)?
                }
                (None, Some(blocks)) => {
                    heads::forward(blocks, weight_hh, h_in.view(), buffers.zh.view_mut())?
                }
                // `rhs` is missing only where `blocks` is there.
                (None, None) => {}
            }
            prefetch(flat(&buffers.zh));
        }
        let product = by_rows.map(|rhs| {
            move |rows: Range<usize>, zh: &mut [C::Elem]| {
                let zh = ArrayViewMut2::from_shape((rows.len(), gate_rows), zh)
                    .expect("a thread's rows of zh are rows × gate rows");
                rhs.product_here(weight_hh, h_in.slice(s![rows, ..]), zh)
                    .expect("the layer's own step product has the layer's shapes");
            }
        });
        let (zh, row_product) = match &product {
            Some(product) => (
                &[][..],
                Some(RowProduct {
                    zh: flat_mut(&mut buffers.zh),
                    product,
                }),
            ),
            None => (flat(&buffers.zh), None),
        };
        let io = StepIo {
            rows: batch,
            zx: zx_t,
            zh,
            bias_ih: &self.biases.ih,
            bias_hh: &self.biases.hh,
            constant: flat(&self.constant),
            c_prev: flat(&state.c),
            h_prev,
            h: flat_mut(&mut buffers.h_cell),
            c: flat_mut(&mut buffers.c),
            scratch: flat_mut(&mut buffers.scratch),
        };
        // The new `c` is the recorded state as it is unless rows settle or zoneout blends it.
        let c_by_threads = all_valid && !self.reg.zoneout_c.is_on();
        let s = self.direction.time_of(t, seq_len);
        let (kind, tape_rows) = match record.reborrow() {
            Record::Tape(tape) => {
                let DirectionTape {
                    cache,
                    h_prev,
                    c_states,
                    ..
                } = tape;
                let cache_len = C::SPEC.cache.len(self.dims.hidden_size) * batch;
                let rows = TapeRows {
                    h_in: h_in.view(),
                    h_prev: h_prev.slice_mut(s![t * batch..(t + 1) * batch, ..]),
                    c: c_by_threads
                        .then(|| c_states.slice_mut(s![(s + 1) * batch..(s + 2) * batch, ..])),
                };
                let cache = &mut flat_mut(cache)[t * cache_len..(t + 1) * cache_len];
                (StepKind::Train(cache), Some(rows))
            }
            Record::Nothing => match buffers.recording.as_mut() {
                Some(recording) => (StepKind::Record(recording.gates()), None),
                None => (StepKind::Inference, None),
            },
        };
        // Where the cell's `h` is the step's output as it is, the threads that step the rows
        // write them there too.
        let output =
            output.filter(|_| all_valid && self.weight_hr.is_none() && !self.reg.zoneout_h.is_on());
        let written = output.is_some();
        split_rows::step(self.cell, io, at, kind, output, row_product, tape_rows);
        let next_h = match self.weight_hr {
            Some(weight_hr) => {
                linalg::matmul_nt(
                    C::Elem::one(),
                    buffers.h_cell.view(),
                    weight_hr.view(),
                    C::Elem::zero(),
                    buffers.h_proj.view_mut(),
                )?;
                if let Record::Tape(tape) = record.reborrow() {
                    tape.h_cell
                        .slice_mut(s![t * batch..(t + 1) * batch, ..])
                        .assign(&buffers.h_cell);
                }
                &mut buffers.h_proj
            }
            None => &mut buffers.h_cell,
        };
        // Zoneout: some units keep their previous state (in inference, the expectation).
        if self.reg.zoneout_c.is_on() {
            if let Record::Tape(tape) = record.reborrow() {
                tape.c_cell
                    .slice_mut(s![t * batch..(t + 1) * batch, ..])
                    .assign(&buffers.c);
            }
            self.reg
                .zoneout_c
                .blend(t, state.c.view(), buffers.c.view_mut());
        }
        self.reg
            .zoneout_h
            .blend(t, state.h.view(), next_h.view_mut());
        // Rows whose step is masked keep their state: copied, not blended, so whatever the
        // step computed for them is dropped.
        if !all_valid {
            for (row, _) in buffers.valid.iter().enumerate().filter(|(_, v)| !**v) {
                next_h.row_mut(row).assign(&state.h.row(row));
                buffers.c.row_mut(row).assign(&state.c.row(row));
            }
        }
        std::mem::swap(&mut state.h, next_h);
        std::mem::swap(&mut state.c, &mut buffers.c);
        if let Some(recording) = buffers.recording.as_mut() {
            // The cell's own `h` (before any projection): in `h_cell` when projected, else
            // now in the state.
            let h = match self.weight_hr {
                Some(_) => &buffers.h_cell,
                None => &state.h,
            };
            let names = (C::SPEC.record, C::SPEC.states);
            recording.store(t, names, &state.c, h, &buffers.valid);
        }
        for (seen, valid) in state.seen.iter_mut().zip(&buffers.valid) {
            *seen |= *valid;
        }
        if let Record::Tape(tape) = record
            && !c_by_threads
        {
            tape.c_states
                .slice_mut(s![(s + 1) * batch..(s + 2) * batch, ..])
                .assign(&state.c);
        }
        Ok(written)
    }

    /// The step's output `(batch, recurrent_size)`: the new `h` of valid rows; for the others
    /// zeros, or under Keras' repeat policy the carried `h` (the row's last valid output)
    /// once the row has had a valid step.
    fn write_output(
        &self,
        state: &State<C::Elem>,
        valid: &[bool],
        mut output: ArrayViewMut2<'_, C::Elem>,
    ) {
        let repeat = self.invalid_output == InvalidOutput::RepeatPrevious;
        for (row, mut out) in output.axis_iter_mut(Axis(0)).enumerate() {
            if valid[row] || (repeat && state.seen[row]) {
                out.assign(&state.h.row(row));
            } else {
                out.fill(C::Elem::zero());
            }
        }
    }
}
