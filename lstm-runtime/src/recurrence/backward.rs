//! Backpropagation through time for one (layer, direction): the reverse of the time loop in
//! `forward.rs`, over what its [`DirectionTape`] recorded.
//!
//! The reverse loop does only per-step work: add the step's output gradient to `dL/dh`, run
//! the cell's generated backward step (`dL/dh`, `dL/dc` → `dL/dzx`, `dL/dzh`, `dL/dc_prev`),
//! and one GEMM `dL/dh_prev = dL/dzh · W_hh` (plus the part through the cell's own use of
//! `h_prev`). Rows whose step was masked pass their gradients straight to the previous state,
//! as their state was carried. `dL/dzx` and `dL/dzh` are collected for a chunk of steps
//! ([`GRAD_CHUNK_ROWS`] rows or more), written over the steps' spent cache where it has room
//! (every zoo cell: the standard one caches exactly its four gates), else in chunk buffers;
//! the weight gradients then run batched over the chunk:
//! `dW_ih += dZxᵀ · X`, `dX = dZx · W_ih`, `dW_hh += dZhᵀ · H_prev`, `dW_hr += dH_outᵀ ·
//! H_cell`, and at the end, for a constant input, `dW_c = dconstantᵀ · constants`,
//! `d constants = dconstant · W_c`. A chunk is as good as the whole sequence for the GEMM's
//! speed, and `dL/dz` of every step would take as much memory as the tape's gates.
//!
//! The regularisers inside the recurrence (`regularization/`) reverse as they act: input dropout
//! multiplies `X` in `dW_ih` and `dX` by its mask; recurrent dropout multiplies `dL/dh_prev` (the
//! tape holds the dropped `h_prev`, so `dW_hh` needs nothing more); weight drop runs `dL/dh_prev`
//! through the masked `weight_hh` and masks `dW_hh`; zoneout splits each state's gradient into the
//! part that reaches the cell's new state, `(1 − d) ⊙ g`, and the part carried straight to the
//! previous state, `d ⊙ g`.

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Order, s};
use num_traits::{One, Zero};

use super::mask::InvalidOutput;
use super::pass::{DirectionTape, Pass, flat, flat_mut, standard};
use super::split_rows::{self, SecondHalf};
use crate::cell::{BackwardIo, Cell};
use crate::direction::Direction;
use crate::error::Result;
use crate::float::Float;
use crate::linalg::heads::{self, Blocks};
use crate::linalg::prefetch::prefetch;
use crate::linalg::{self, step::StepRhs};
use crate::parallel::helper_thread;
use crate::regularization::in_recurrence::mask_rows;

/// The gradients of one direction's parameters and initial state.
pub(crate) struct DirectionGradients<C: Cell> {
    /// Gradients of the cell's tensors, in the cell's own layout and names.
    pub(crate) cell: C,
    /// `dL/dW_hr`, `(proj_size, hidden_size)`, for a projected layer.
    pub(crate) weight_hr: Option<Array2<C::Elem>>,
    /// `dL/dh0`: `(batch, recurrent_size)`.
    pub(crate) h0: Array2<C::Elem>,
    /// `dL/dc0` of every carried state, packed: `(batch, states · hidden_size)`.
    pub(crate) c0: Array2<C::Elem>,
}

/// What flows into one direction's backward pass besides its tape.
pub(crate) struct Seeds<'a, F> {
    /// The layer input the forward pass read: `(T, batch, input_size)`, of any layout.
    pub(crate) input: ArrayView3<'a, F>,
    /// `dL/d output` at every step by time, `(T, batch, recurrent_size)`; `None` when the
    /// outputs were not used (a last layer returning only its last output).
    pub(crate) d_output: Option<ArrayView3<'a, F>>,
    /// `dL/dh_n`: `(batch, recurrent_size)`.
    pub(crate) dh_n: ArrayView2<'a, F>,
    /// `dL/dc_n` of every carried state, packed: `(batch, states · hidden_size)`.
    pub(crate) dc_n: ArrayView2<'a, F>,
    /// The call's constant input `(batch, constant_size)` for a cell that reads one.
    pub(crate) constants: Option<ArrayView2<'a, F>>,
}

/// Where one direction's backward pass adds input gradients (`+=`: both directions of a
/// layer read the same input).
pub(crate) struct InputGrads<'a, F> {
    /// `dL/d input`: `(T · batch, input_size)`.
    pub(crate) input: ArrayViewMut2<'a, F>,
    /// `dL/d constants`: `(batch, constant_size)`, for a cell that reads a constant input.
    pub(crate) constants: Option<ArrayViewMut2<'a, F>>,
}

/// Rows (steps × batch) of `dL/dz` the reverse loop collects before it runs the weight- and
/// input-gradient products over them: enough rows for the products to run at the GEMM's full
/// speed (measured at hidden 512: the README's Performance section); for a cell whose `dL/dz`
/// does not fit in its spent cache, a small fraction of what keeping `dL/dz` of every step
/// would take.
const GRAD_CHUNK_ROWS: usize = 1024;

/// `dL/dz` of one chunk of steps, by time, and what its products read.
///
/// A step's cache is spent once its backward step has run, so where a cache row has room for
/// the row's `dL/dz` (the standard cell caches exactly its four gates) `dL/dz` is moved into
/// the tape's cache, and the chunk buffers hold one step only.
struct GradChunk<F> {
    /// Steps per chunk (the last one walked, the sequence's first, may be shorter).
    steps: usize,
    /// Whether `dL/dz` of the chunk's steps lives in the tape's cache: row `r` of the cache
    /// holds `dL/dzx` in its first `gates · hidden` values, then `dL/dzh` if apart.
    in_tape: bool,
    /// `dL/dzx`: `(steps · batch, gates · hidden)`, or `(batch, ·)` when `in_tape`.
    dzx: Array2<F>,
    /// `dL/dzh` for a cell whose recurrent pre-activation gradient differs from `dzx`, shaped
    /// as `dzx`; else `(0, gates · hidden)`.
    dzh: Array2<F>,
    /// `dL/d output` of a projected layer (`(steps · batch, proj_size)`), else empty.
    dh_out: Array2<F>,
    /// The chunk's input under input dropout, then `dL/d(dropped input)`; else empty.
    x_dropped: Array2<F>,
}

/// Per-step buffers of the reverse loop, allocated once per call.
struct BackwardBuffers<F> {
    /// `dL/dh` of the state after the current step (`(batch, recurrent_size)`).
    dh: Array2<F>,
    /// `dL/dc` of the carried states after the current step (`(batch, states · hidden)`).
    dc: Array2<F>,
    /// `dh` with masked rows zeroed and zoneout's share split off: the step's seed, where it
    /// differs from `dh` (`Pass::seeds_are_state`).
    dh_seed: Array2<F>,
    /// `dc` likewise.
    dc_seed: Array2<F>,
    /// `dL/dh` of the cell's output before projection, `(batch, hidden_size)`; `(0, 0)`
    /// without projection.
    dh_cell: Array2<F>,
    /// `dL/dc_prev` from the cell.
    dc_prev: Array2<F>,
    /// `dL/dh_prev` through the cell's own use of `h_prev`, or `(0, 0)`.
    dh_direct: Array2<F>,
    /// `dL/dh_prev` in total.
    dh_prev: Array2<F>,
    /// The cell's backward working memory.
    scratch: Array2<F>,
    /// Accumulated bias gradients, gate-stacked.
    dbias_ih: Vec<F>,
    dbias_hh: Vec<F>,
    /// Accumulated `dL/d(constant projection)`: `(batch, gates · hidden)`, or `(0, 0)`.
    dconstant: Array2<F>,
    /// Under zoneout of `h`: `d ⊙ dL/dh`, carried to `h_prev`; else `(0, 0)`.
    carry_h: Array2<F>,
    /// Under zoneout of `c`: `d ⊙ dL/dc`, carried to `c_prev`; else `(0, 0)`.
    carry_c: Array2<F>,
    /// Which rows the current step was valid for.
    valid: Vec<bool>,
}

impl<C: Cell> Pass<'_, C> {
    /// Backpropagates through the steps recorded in `tape`, adding input gradients to
    /// `grads_in` and returning the direction's own.
    pub(crate) fn backward(
        &self,
        tape: &mut DirectionTape<C::Elem>,
        seeds: Seeds<'_, C::Elem>,
        mut grads_in: InputGrads<'_, C::Elem>,
    ) -> Result<DirectionGradients<C>> {
        let batch = seeds.dh_n.nrows();
        let seq_len = tape.seq_len;
        let gate_rows = self.gate_rows();
        let shared = C::SPEC.shared_preactivation_grad;
        let mut chunk = self.grad_chunk(seq_len, batch);
        let mut grads = C::zeros(self.dims);
        let mut d_weight_hr = self.weight_hr.map(|w| Array2::zeros(w.raw_dim()));
        let mut second_half = SecondHalf::<C>::new(self.dims, gate_rows);
        let mut buffers = self.backward_buffers(&seeds);
        let first_valid = self.first_valid_steps(seq_len, batch);
        if batch * self.dims.hidden_size != 0 {
            let recurrent = match self.blocks() {
                Some(blocks) => Recurrent::Blocks(blocks),
                None => Recurrent::Dense(StepRhs::plain(self.weight_hh())),
            };
            // A helper for the reverse loop only where its steps split (each split costs a
            // round trip between the cores); the chunks' products get one in any case.
            let step_splits = match &recurrent {
                Recurrent::Dense(rhs) => rhs.splits(batch, self.weight_hh()),
                Recurrent::Blocks(_) => true,
            } || split_rows::split_point(batch, gate_rows).is_some();
            let worth_it = self.helper_worth_it(seq_len, batch);
            helper_thread::with_helper(worth_it && step_splits, || -> Result<()> {
                for s in (0..seq_len).rev() {
                    let t = self.direction.time_of(s, seq_len);
                    // The chunk holds steps `first..first + steps` by time; the walk enters
                    // it at its last step in walk order and flushes it at its first.
                    let walked = seq_len - 1 - s;
                    let steps = chunk.steps.min(seq_len - (walked - walked % chunk.steps));
                    let first = match self.direction {
                        Direction::Forward => t + walked % chunk.steps + 1 - steps,
                        Direction::Reverse => t - walked % chunk.steps,
                    };
                    let local = (t - first) * batch..(t - first + 1) * batch;
                    let dz_rows = if chunk.in_tape {
                        0..batch
                    } else {
                        local.clone()
                    };
                    let all_valid = self.validity.fill_step(t, &mut buffers.valid);
                    self.seed_step(s, t, &seeds, &first_valid, &mut buffers, all_valid);
                    if let Some(weight_hr) = self.weight_hr {
                        chunk
                            .dh_out
                            .slice_mut(s![local.clone(), ..])
                            .assign(&buffers.dh_seed);
                        linalg::matmul_nn(
                            C::Elem::one(),
                            buffers.dh_seed.view(),
                            weight_hr.view(),
                            C::Elem::zero(),
                            buffers.dh_cell.view_mut(),
                        )?;
                    }
                    let step_len = batch * gate_rows;
                    let at = dz_rows.start * gate_rows;
                    let dzh_t: &mut [C::Elem] = if shared {
                        &mut []
                    } else {
                        &mut flat_mut(&mut chunk.dzh)[at..at + step_len]
                    };
                    let dzx_t = &mut flat_mut(&mut chunk.dzx)[at..at + step_len];
                    let grads_pair = (&mut grads, &mut second_half);
                    self.cell_backward(tape, s, t, &mut buffers, dzx_t, dzh_t, grads_pair);
                    if !all_valid {
                        zero_invalid_rows(&mut chunk.dzx, dz_rows.clone(), &buffers.valid);
                        if !shared {
                            zero_invalid_rows(&mut chunk.dzh, dz_rows.clone(), &buffers.valid);
                        }
                    }
                    let dz_hh = if shared { &chunk.dzx } else { &chunk.dzh };
                    let (dz_hh, dh_prev) =
                        (dz_hh.slice(s![dz_rows, ..]), buffers.dh_prev.view_mut());
                    // The step's cache is spent: its rows take the step's `dL/dz`, half of
                    // them on each thread of the product where it splits.
                    let spent = chunk
                        .in_tape
                        .then(|| tape.cache.slice_mut(s![t * batch..(t + 1) * batch, ..]));
                    let (top, bottom) = spent_halves(spent, &chunk, gate_rows);
                    match &recurrent {
                        Recurrent::Dense(rhs) => {
                            // Back and forth over the weights, one step each way
                            // (`StepRhs::product_walking`).
                            let backwards = t % 2 == 1;
                            rhs.product_beside(
                                self.weight_hh(),
                                dz_hh,
                                dh_prev,
                                backwards,
                                top,
                                bottom,
                            )?
                        }
                        Recurrent::Blocks(blocks) => {
                            heads::backward(*blocks, self.weight_hh(), dz_hh, dh_prev)?;
                            top();
                            bottom();
                        }
                    }
                    prefetch(flat(&buffers.dh_prev));
                    if C::SPEC.reads_h_prev {
                        buffers.dh_prev += &buffers.dh_direct;
                    }
                    if let Some(mask) = self.reg.recurrent {
                        buffers.dh_prev *= &mask;
                    }
                    if self.reg.zoneout_h.is_on() {
                        buffers.dh_prev += &buffers.carry_h;
                    }
                    if self.reg.zoneout_c.is_on() {
                        buffers.dc_prev += &buffers.carry_c;
                    }
                    if !all_valid {
                        for (row, _) in buffers.valid.iter().enumerate().filter(|(_, v)| !**v) {
                            buffers.dh_prev.row_mut(row).assign(&buffers.dh.row(row));
                            buffers.dc_prev.row_mut(row).assign(&buffers.dc.row(row));
                        }
                    }
                    std::mem::swap(&mut buffers.dh, &mut buffers.dh_prev);
                    std::mem::swap(&mut buffers.dc, &mut buffers.dc_prev);
                    if (walked + 1) % chunk.steps == 0 || s == 0 {
                        let rows = first * batch..(first + steps) * batch;
                        let into = (&mut grads, d_weight_hr.as_mut(), &mut grads_in.input);
                        helper_thread::with_helper(worth_it, || {
                            self.flush_chunk(&mut chunk, rows, tape, &seeds, into)
                        })?;
                    }
                }
                Ok(())
            })?;
        }
        second_half.add_into(&mut grads, &mut buffers.dbias_ih, &mut buffers.dbias_hh);
        let weights = grads.weights_mut();
        if let Some(mask) = self.reg.weight_hh {
            *weights.weight_hh *= &mask;
        }
        if let Some(bias) = weights.bias_ih {
            bias.assign(&ArrayView1::from(&buffers.dbias_ih));
        }
        if let Some(bias) = weights.bias_hh {
            bias.assign(&ArrayView1::from(&buffers.dbias_hh));
        }
        if let (Some(weight), Some(constants)) = (weights.weight_constant, seeds.constants) {
            linalg::matmul_tn(
                C::Elem::one(),
                buffers.dconstant.view(),
                constants,
                C::Elem::zero(),
                weight.view_mut(),
            )?;
        }
        if let (Some(weight), Some(d_constants)) = (
            self.cell.weights().weight_constant,
            grads_in.constants.as_mut(),
        ) {
            linalg::matmul_nn(
                C::Elem::one(),
                buffers.dconstant.view(),
                weight.view(),
                C::Elem::one(),
                d_constants.view_mut(),
            )?;
        }
        Ok(DirectionGradients {
            cell: grads,
            weight_hr: d_weight_hr,
            h0: buffers.dh,
            c0: buffers.dc,
        })
    }

    /// The buffers of one chunk of the reverse loop, for chunks of at least
    /// [`GRAD_CHUNK_ROWS`] rows (whole steps, at most the sequence).
    fn grad_chunk(&self, seq_len: usize, batch: usize) -> GradChunk<C::Elem> {
        let steps = GRAD_CHUNK_ROWS
            .div_ceil(batch.max(1))
            .clamp(1, seq_len.max(1));
        let rows = steps * batch;
        let gate_rows = self.gate_rows();
        let shared = C::SPEC.shared_preactivation_grad;
        let dz_per_row = if shared { gate_rows } else { 2 * gate_rows };
        let in_tape = C::SPEC.cache.len(self.dims.hidden_size) >= dz_per_row;
        let dz_rows = if in_tape { batch } else { rows };
        GradChunk {
            steps,
            in_tape,
            dzx: Array2::zeros((dz_rows, gate_rows)),
            dzh: Array2::zeros((if shared { 0 } else { dz_rows }, gate_rows)),
            dh_out: Array2::zeros((
                if self.weight_hr.is_some() { rows } else { 0 },
                self.dims.recurrent_size,
            )),
            x_dropped: Array2::zeros(match self.reg.input {
                Some(mask) => (rows, mask.ncols()),
                None => (0, 0),
            }),
        }
    }

    /// The products of one chunk of steps, `rows` of the sequence by time (`rows.len()` of
    /// the chunk's first rows hold its values): adds `dZxᵀ · X` to `dW_ih`, `dZhᵀ · H_prev` to
    /// `dW_hh` (masked once at the end under weight drop), `dH_outᵀ · H_cell` to `dW_hr`, and
    /// `dZx · W_ih` to the input gradient.
    #[allow(clippy::type_complexity)]
    fn flush_chunk(
        &self,
        chunk: &mut GradChunk<C::Elem>,
        rows: std::ops::Range<usize>,
        tape: &DirectionTape<C::Elem>,
        seeds: &Seeds<'_, C::Elem>,
        (grads, weight_hr, d_input): (
            &mut C,
            Option<&mut Array2<C::Elem>>,
            &mut ArrayViewMut2<'_, C::Elem>,
        ),
    ) -> Result<()> {
        let one = C::Elem::one();
        let len = rows.len();
        let gate_rows = self.gate_rows();
        let cache = tape.cache.slice(s![rows.clone(), ..]);
        let dzx = if chunk.in_tape {
            cache.slice_move(s![.., ..gate_rows])
        } else {
            chunk.dzx.slice(s![..len, ..])
        };
        let dz_hh = match (C::SPEC.shared_preactivation_grad, chunk.in_tape) {
            (true, _) => dzx,
            (false, true) => cache.slice_move(s![.., gate_rows..2 * gate_rows]),
            (false, false) => chunk.dzh.slice(s![..len, ..]),
        };
        // `rows` are whole steps; half of a call split by rows reads its rows of the caller's
        // input, whose steps are not contiguous: those are copied.
        let (_, batch, features) = seeds.input.dim();
        let steps = rows.start / batch.max(1)..rows.end / batch.max(1);
        let steps = seeds.input.slice(s![steps, .., ..]);
        let input = steps
            .to_shape(((len, features), Order::RowMajor))
            // `len` is the steps' rows: the same element count.
            .expect("a chunk's steps hold its rows");
        let input = match self.reg.input {
            Some(mask) => {
                let mut dropped = chunk.x_dropped.slice_mut(s![..len, ..]);
                mask_rows(input.view(), mask, dropped.view_mut(), |out, x| *out = x);
                chunk.x_dropped.slice(s![..len, ..])
            }
            None => input.view(),
        };
        let weights = grads.weights_mut();
        linalg::matmul_tn(one, dzx, input, one, weights.weight_ih.view_mut())?;
        let h_prev = tape.h_prev.slice(s![rows.clone(), ..]);
        match self.blocks() {
            Some(blocks) => {
                heads::weight_gradient(blocks, dz_hh, h_prev, weights.weight_hh.view_mut())?
            }
            None => linalg::matmul_tn(one, dz_hh, h_prev, one, weights.weight_hh.view_mut())?,
        }
        if let Some(grad) = weight_hr {
            let dh_out = chunk.dh_out.slice(s![..len, ..]);
            let h_cell = tape.h_cell.slice(s![rows.clone(), ..]);
            linalg::matmul_tn(one, dh_out, h_cell, one, grad.view_mut())?;
        }
        let weight_ih = self.cell.weights().weight_ih.view();
        let d_input = d_input.slice_mut(s![rows, ..]);
        match self.reg.input {
            Some(mask) => {
                let mut d_dropped = chunk.x_dropped.slice_mut(s![..len, ..]);
                linalg::matmul_nn(one, dzx, weight_ih, C::Elem::zero(), d_dropped.view_mut())?;
                // Both directions add into the same input gradient.
                mask_rows(d_dropped.view(), mask, d_input, |out, x| *out += x);
            }
            None => linalg::matmul_nn(one, dzx, weight_ih, one, d_input)?,
        }
        Ok(())
    }

    /// The buffers of the reverse loop; `dh`, `dc` start as the final states' gradients.
    fn backward_buffers(&self, seeds: &Seeds<'_, C::Elem>) -> BackwardBuffers<C::Elem> {
        let batch = seeds.dh_n.nrows();
        let hidden = self.dims.hidden_size;
        let recurrent = self.dims.recurrent_size;
        let gate_rows = self.gate_rows();
        let zeros = |rows: usize, cols: usize| Array2::zeros((rows, cols));
        let if_rows = |flag: bool| if flag { batch } else { 0 };
        BackwardBuffers {
            dh: standard(seeds.dh_n),
            dc: standard(seeds.dc_n),
            dh_seed: zeros(batch, recurrent),
            dc_seed: zeros(batch, C::SPEC.state_width(hidden)),
            dh_cell: zeros(if_rows(self.weight_hr.is_some()), hidden),
            dc_prev: zeros(batch, C::SPEC.state_width(hidden)),
            dh_direct: zeros(if_rows(C::SPEC.reads_h_prev), hidden),
            dh_prev: zeros(batch, recurrent),
            scratch: zeros(batch, C::SPEC.backward_scratch.len(hidden)),
            dbias_ih: vec![C::Elem::zero(); gate_rows],
            dbias_hh: vec![C::Elem::zero(); gate_rows],
            dconstant: zeros(
                if_rows(C::SPEC.constant.is_some()),
                if C::SPEC.constant.is_some() {
                    gate_rows
                } else {
                    0
                },
            ),
            carry_h: zeros(if_rows(self.reg.zoneout_h.is_on()), recurrent),
            carry_c: zeros(if_rows(self.reg.zoneout_c.is_on()), hidden),
            valid: vec![true; batch],
        }
    }

    /// For each row, the first position in the walk at which it is valid (`seq_len` if
    /// never): under Keras' repeat policy a masked step's output is the carried `h` from then
    /// on, and zeros before.
    fn first_valid_steps(&self, seq_len: usize, batch: usize) -> Vec<usize> {
        (0..batch)
            .map(|row| {
                (0..seq_len)
                    .find(|&s| {
                        let t = self.direction.time_of(s, seq_len);
                        self.validity.is_valid(t, row)
                    })
                    .unwrap_or(seq_len)
            })
            .collect()
    }

    /// Adds step `t`'s output gradient to `dh` (for every row whose output was its `h`: valid
    /// rows, and masked rows repeating a carried output), then, unless the step reads `dh`
    /// and `dc` as they are ([`Self::seeds_are_state`]), copies them into the step's seeds
    /// with masked rows zeroed and zoneout's share split off.
    fn seed_step(
        &self,
        s: usize,
        t: usize,
        seeds: &Seeds<'_, C::Elem>,
        first_valid: &[usize],
        buffers: &mut BackwardBuffers<C::Elem>,
        all_valid: bool,
    ) {
        let repeat = self.invalid_output == InvalidOutput::RepeatPrevious;
        if let Some(d_output) = seeds.d_output {
            let d_output = d_output.index_axis(Axis(0), t);
            if all_valid {
                buffers.dh += &d_output;
            } else {
                for (row, mut dh) in buffers.dh.axis_iter_mut(Axis(0)).enumerate() {
                    if buffers.valid[row] || (repeat && s >= first_valid[row]) {
                        dh += &d_output.row(row);
                    }
                }
            }
        }
        if self.seeds_are_state(all_valid) {
            // The step reads `dh` and `dc` as they are.
            return;
        }
        buffers.dh_seed.assign(&buffers.dh);
        buffers.dc_seed.assign(&buffers.dc);
        if !all_valid {
            for (row, _) in buffers.valid.iter().enumerate().filter(|(_, v)| !**v) {
                buffers.dh_seed.row_mut(row).fill(C::Elem::zero());
                buffers.dc_seed.row_mut(row).fill(C::Elem::zero());
            }
        }
        self.reg
            .zoneout_h
            .split(t, buffers.dh_seed.view_mut(), buffers.carry_h.view_mut());
        self.reg
            .zoneout_c
            .split(t, buffers.dc_seed.view_mut(), buffers.carry_c.view_mut());
    }

    /// Whether a step's seeds are `dh` and `dc` as they are: every row valid, no zoneout to
    /// split them, no projection to read `dh` from its own seed.
    fn seeds_are_state(&self, all_valid: bool) -> bool {
        all_valid
            && self.weight_hr.is_none()
            && !self.reg.zoneout_h.is_on()
            && !self.reg.zoneout_c.is_on()
    }

    /// The cell's generated backward step for walk position `s` (time `t`).
    #[allow(clippy::too_many_arguments)]
    fn cell_backward(
        &self,
        tape: &DirectionTape<C::Elem>,
        s: usize,
        t: usize,
        buffers: &mut BackwardBuffers<C::Elem>,
        dzx_t: &mut [C::Elem],
        dzh_t: &mut [C::Elem],
        (grads, second_half): (&mut C, &mut SecondHalf<C>),
    ) {
        let batch = buffers.dh.nrows();
        let hidden = self.dims.hidden_size;
        let state_len = batch * C::SPEC.state_width(hidden);
        let c_states = flat(&tape.c_states);
        let cache_len = batch * C::SPEC.cache.len(hidden);
        let h_prev: &[C::Elem] = if C::SPEC.reads_h_prev {
            let len = batch * self.dims.recurrent_size;
            &flat(&tape.h_prev)[t * len..(t + 1) * len]
        } else {
            &[]
        };
        let all_valid = buffers.valid.iter().all(|v| *v);
        let (dh, dc) = if self.seeds_are_state(all_valid) {
            (flat(&buffers.dh), flat(&buffers.dc))
        } else if self.weight_hr.is_some() {
            (flat(&buffers.dh_cell), flat(&buffers.dc_seed))
        } else {
            (flat(&buffers.dh_seed), flat(&buffers.dc_seed))
        };
        let io = BackwardIo {
            rows: batch,
            dh,
            dc,
            c_prev: &c_states[s * state_len..(s + 1) * state_len],
            c: if self.reg.zoneout_c.is_on() {
                &flat(&tape.c_cell)[t * state_len..(t + 1) * state_len]
            } else {
                &c_states[(s + 1) * state_len..(s + 2) * state_len]
            },
            h_prev,
            bias_ih: &self.biases.ih,
            bias_hh: &self.biases.hh,
            constant: flat(&self.constant),
            cache: &flat(&tape.cache)[t * cache_len..(t + 1) * cache_len],
            dzx: dzx_t,
            dzh: dzh_t,
            dc_prev: flat_mut(&mut buffers.dc_prev),
            dh_prev: flat_mut(&mut buffers.dh_direct),
            dconstant: flat_mut(&mut buffers.dconstant),
            dbias_ih: &mut buffers.dbias_ih,
            dbias_hh: &mut buffers.dbias_hh,
            scratch: flat_mut(&mut buffers.scratch),
        };
        if all_valid {
            split_rows::step_backward(self.cell, io, self.gate_rows(), grads, second_half);
        } else {
            split_rows::step_backward_valid(self.cell, io, &buffers.valid, grads);
        }
    }
}

/// How the reverse loop multiplies by `W_hh`: packed once for a dense recurrence, block by
/// block for a block-diagonal one.
enum Recurrent {
    Dense(StepRhs),
    Blocks(Blocks),
}

/// The copies of a step's `dL/dz` (`chunk.dzx`, and `chunk.dzh` unless they are shared) into
/// its spent cache rows `spent`, as two closures over the two halves of the rows; two no-ops
/// without `spent`.
fn spent_halves<'a, F: Float>(
    spent: Option<ArrayViewMut2<'a, F>>,
    chunk: &'a GradChunk<F>,
    gate_rows: usize,
) -> (impl FnOnce() + 'a, impl FnOnce() + Send + 'a) {
    let (first, second) = spent
        .map(|spent| {
            let at = spent.nrows() / 2;
            let (top, bottom) = spent.split_at(Axis(0), at);
            ((top, 0..at), (bottom, at..chunk.dzx.nrows()))
        })
        .unzip();
    let copy = move |half: Option<(ArrayViewMut2<'a, F>, std::ops::Range<usize>)>| {
        let Some((mut cache, rows)) = half else {
            return;
        };
        cache
            .slice_mut(s![.., ..gate_rows])
            .assign(&chunk.dzx.slice(s![rows.clone(), ..]));
        // `dzh` has no rows where it is shared with `dzx`.
        if chunk.dzh.nrows() > 0 {
            cache
                .slice_mut(s![.., gate_rows..2 * gate_rows])
                .assign(&chunk.dzh.slice(s![rows, ..]));
        }
    };
    (move || copy(first), move || copy(second))
}

/// Zeros the rows of `rows` (one step's block) whose step was masked.
fn zero_invalid_rows<F: Float>(
    values: &mut Array2<F>,
    rows: std::ops::Range<usize>,
    valid: &[bool],
) {
    let mut block = values.slice_mut(s![rows, ..]);
    for (row, _) in valid.iter().enumerate().filter(|(_, v)| !**v) {
        block.row_mut(row).fill(F::zero());
    }
}
