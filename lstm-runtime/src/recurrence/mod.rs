//! The time loops: one cell unrolled over a sequence in one direction, forward and backward.
//!
//! A forward pass is two kinds of work. The input projection `zx = x · W_ihᵀ` does not depend
//! on the recurrence, so it runs as one GEMM per chunk of steps (chunks keep the workspace,
//! and inference memory, independent of the sequence length). Then per step one GEMM for the
//! recurrent projection `zh = h_prev · W_hhᵀ`, the cell's fused elementwise step (which adds
//! the biases and yields `h` and `c`), the projection `h = W_hr · h` of an LSTMP layer, and
//! the settling of rows whose step is masked. Backward runs the same steps in reverse over
//! what a training pass recorded.
//!
//! - `pass.rs`: [`pass::Pass`], one (layer, direction) set up for one call, its state
//!   between chunks and its tape.
//! - `forward.rs`: the forward time loop; `backward.rs`: backpropagation through time.
//! - `mask.rs`: lengths and Keras masks, which steps of which rows are real.
//! - `split_rows.rs`: a step over many rows in two halves on two threads.
//! - `split_units/`: the batch-1 time loop on two threads, each owning half of the units.
//! - `rnn.rs`: [`rnn::Rnn`], one plain direction as a public layer.
//!
//! The layer (`layer/`) stacks passes, merges directions and owns the call; the regularisers
//! the loops apply come from `regularization/`.

pub(crate) mod backward;
mod forward;
pub(crate) mod mask;
pub(crate) mod pass;
pub(crate) mod rnn;
pub(crate) mod split_rows;
pub(crate) mod split_units;

/// What a forward pass keeps of its steps besides their outputs and the final state.
pub(crate) enum Record<T> {
    /// Nothing: an inference pass.
    Nothing,
    /// What backward reads, written into `T` (a tape, or one thread's share of one): a
    /// training pass.
    Tape(T),
}

impl<T> Record<&mut T> {
    /// The same record for a shorter use (one chunk, one step).
    pub(crate) fn reborrow(&mut self) -> Record<&mut T> {
        match self {
            Record::Nothing => Record::Nothing,
            Record::Tape(tape) => Record::Tape(&mut **tape),
        }
    }
}
