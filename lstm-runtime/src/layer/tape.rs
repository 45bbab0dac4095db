//! [`Tape`]: what a training pass ([`Lstm::forward_train`](super::Lstm::forward_train))
//! records for backward: per layer its input and dropout mask, per (layer, direction) the
//! time loop's own tape, and the call's validity, constants, mode and masks.

use ndarray::{Array2, Array3, ArrayD, CowArray, Ix3};

use super::call::Mode;
use crate::float::Float;
use crate::recurrence::mask::Validity;
use crate::recurrence::pass::DirectionTape;
use crate::regularization::masks::RecurrentMasks;

/// What [`Lstm::forward_train`](super::Lstm::forward_train) records for
/// [`Lstm::backward`](super::Lstm::backward): per (layer, direction) the
/// cell's cache, recurrent inputs and cell states of every step, each layer's input and
/// dropout mask, and the call's lengths or mask and constants. Opaque; pass it back to the
/// layer that made it, with the same weights.
///
/// The tape borrows the call's input for `'i` instead of copying it when the first layer can
/// read it as it is (time-major in standard layout, not reversed by `go_backwards`, no
/// padding to zero), so the input must outlive the tape, as a training step's batch does.
#[derive(Clone, Debug)]
pub struct Tape<'i, F> {
    pub(super) seq_len: usize,
    pub(super) batch: usize,
    pub(super) validity: Validity,
    pub(super) layers: Vec<LayerTape<'i, F>>,
    pub(super) constants: Option<Array2<F>>,
    /// The call's mode: zoneout's expectation applies in inference.
    pub(super) mode: Mode,
    /// The masks of the regularisers inside the recurrence the call applied.
    pub(super) masks: Option<RecurrentMasks<F>>,
    /// For a call that ran by rows (`batch_split.rs`), the row where it split and the tapes of
    /// its two halves; the fields above then hold nothing but the call's size.
    pub(super) halves: Option<(usize, Box<[Tape<'i, F>; 2]>)>,
}

/// One layer's part of a [`Tape`].
#[derive(Clone, Debug)]
pub(super) struct LayerTape<'i, F> {
    /// The layer's input, time-major: `(seq_len, batch, input features)`. The first layer
    /// borrows the caller's input (or its rows, for half of a split call) when it is
    /// time-major and has no padding (which training zeroes in a copy).
    pub(super) input: CowArray<'i, F, Ix3>,
    /// The dropout multipliers that made `input` from the layer below's output.
    pub(super) dropout: Option<Array3<F>>,
    /// Forward, then reverse.
    pub(super) directions: Vec<DirectionTape<F>>,
    /// Both directions' outputs, kept for
    /// [`MergeMode::Mul`](super::bidirectional::MergeMode::Mul)'s gradient.
    pub(super) merge_operands: Option<(ArrayD<F>, ArrayD<F>)>,
}

impl<F: Float> Tape<'_, F> {
    /// Steps of the recorded call.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Batch rows of the recorded call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Values stored, a measure of the tape's memory.
    pub fn len(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|layer| {
                let directions: usize = layer
                    .directions
                    .iter()
                    .map(|d| {
                        d.cache.len()
                            + d.h_prev.len()
                            + d.h_cell.len()
                            + d.c_states.len()
                            + d.c_cell.len()
                    })
                    .sum();
                let operands = layer
                    .merge_operands
                    .as_ref()
                    .map_or(0, |(a, b)| a.len() + b.len());
                layer.input.len()
                    + layer.dropout.as_ref().map_or(0, |m| m.len())
                    + directions
                    + operands
            })
            .sum();
        let len2 = |a: &Option<Array2<F>>| a.as_ref().map_or(0, |a| a.len());
        let len3 = |a: &Option<Array3<F>>| a.as_ref().map_or(0, |a| a.len());
        let masks: usize = self
            .masks
            .iter()
            .flat_map(|m| &m.directions)
            .map(|m| {
                len2(&m.input)
                    + len2(&m.recurrent)
                    + len2(&m.weight_hh)
                    + len3(&m.zoneout_c)
                    + len3(&m.zoneout_h)
            })
            .sum();
        let halves: usize = self
            .halves
            .iter()
            .flat_map(|(_, halves)| halves.iter())
            .map(Tape::len)
            .sum();
        layers + masks + halves
    }

    /// Whether the tape stores nothing (an empty sequence or batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
