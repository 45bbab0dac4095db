//! One thread's share of a split: its units, the rows of the weights that feed them (packed
//! once per call), a cell of its units holding their spec parameters, and its workspaces, on
//! cache lines of their own.

use std::ops::Range;

use ndarray::ArrayView2;
use num_traits::Zero;

use crate::cell::{Cell, CellDims, ParamShape};
use crate::linalg::step::PackedRows;

/// What one thread needs for its units.
pub(super) struct Side<C: Cell> {
    pub(super) units: Range<usize>,
    /// A cell of `units.len()` units, holding the spec parameters of these units.
    pub(super) cell: C,
    /// The rows of `W_ih` that feed these units' gates (gate after gate), packed.
    pub(super) input: PackedRows<C::Elem>,
    /// The rows of `W_hh` likewise, packed over their full depth: the product with all of
    /// `h_prev` is then, value for value, the step's product over all units.
    pub(super) recurrent: PackedRows<C::Elem>,
    pub(super) bias_ih: Vec<C::Elem>,
    pub(super) bias_hh: Vec<C::Elem>,
    /// The constant input's projection for these units, or empty.
    pub(super) constant: Vec<C::Elem>,
}

/// Bytes of memory the values that one thread writes keep to themselves: two cache lines,
/// as the adjacent-line prefetcher moves lines in pairs.
const OWN_BYTES: usize = 128;

/// The per-call workspace of a split: each side's, and the two `h` buffers.
pub(crate) struct SplitBuffers<F> {
    pub(super) sides: [SideBuffers<F>; 2],
    /// `h` buffer `which`, side `s`'s units: `h[which][s]`.
    pub(super) h: [[Lines<F>; 2]; 2],
}

/// One side's per-call workspace.
pub(super) struct SideBuffers<F> {
    pub(super) step: Workspace<F>,
    /// This side's units of the two `c` buffers (see `h` in [`SplitBuffers`]).
    pub(super) c: [Lines<F>; 2],
    /// The second side's `h` of the chunk's steps, `(chunk steps, units)`, copied to the
    /// output after the chunk; empty for the first side, which writes the output directly.
    pub(super) output: Lines<F>,
}

/// What one side's step computes in.
pub(super) struct Workspace<F> {
    /// The chunk's input projection for this side's units: `(chunk steps, gates · units)`.
    pub(super) zx: Vec<F>,
    /// `h_prev · W_hhᵀ` for this side's units: `gates · units`.
    pub(super) zh: Vec<F>,
    /// All of `h_prev`, gathered from the two sides' parts for the product.
    pub(super) h_prev: Vec<F>,
    pub(super) scratch: Vec<F>,
    /// The training step's cache for this side's units, before it goes to the tape.
    pub(super) cache: Vec<F>,
}

/// `len` values on cache lines of their own ([`OWN_BYTES`] on either side).
///
/// Each thread writes its units of `h`, `c` and the output at every step; where the two
/// threads' values share a line, every write first pulls the line from the other core.
pub(super) struct Lines<F> {
    pub(super) values: Vec<F>,
    pub(super) start: usize,
    pub(super) len: usize,
}

impl<F: Zero + Clone> Lines<F> {
    pub(super) fn new(len: usize) -> Self {
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

    pub(super) fn get(&self) -> &[F] {
        &self.values[self.start..self.start + self.len]
    }

    pub(super) fn get_mut(&mut self) -> &mut [F] {
        &mut self.values[self.start..self.start + self.len]
    }
}

impl<C: Cell> Side<C> {
    /// The side of `units`.
    pub(super) fn new(
        cell: &C,
        dims: CellDims,
        units: Range<usize>,
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
        let recurrent = PackedRows::new(weight_hh, &rows);
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
            recurrent: recurrent?,
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
