//! Bidirectional layers: how the forward and reverse directions' outputs merge
//! ([`MergeMode`], Keras `Bidirectional(merge_mode=…)`), and the gradient of each merge.
//!
//! The two directions themselves are two runs of the same time loop (`recurrence/`), the
//! reverse one walking `t = T−1..0`; outputs are aligned by time index either way, so merging
//! is elementwise (or a concatenation) along the last, feature axis. Works for sequences
//! `(T, B, F)` and last outputs `(B, F)` alike.

use ndarray::{Array, ArrayView, Axis, Dimension, Slice};

use crate::float::Float;

/// How a bidirectional layer combines its two directions' outputs (Keras `merge_mode`).
///
/// PyTorch always concatenates; Keras' `Bidirectional` defaults to concatenation too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MergeMode {
    /// `[forward, reverse]` along the feature axis: twice the features (Keras `"concat"`,
    /// PyTorch's only mode).
    #[default]
    Concat,
    /// `forward + reverse` (Keras `"sum"`).
    Sum,
    /// `forward ⊙ reverse` (Keras `"mul"`).
    Mul,
    /// `(forward + reverse) / 2` (Keras `"ave"`).
    Ave,
    /// No merge: the forward direction's outputs in `output`, the reverse direction's in
    /// `output_reverse` (Keras `merge_mode=None`). Only for a single layer: a stack needs one
    /// merged input for its next layer.
    None,
}

impl MergeMode {
    /// Every mode, in the order Keras documents them (`None` last).
    pub const ALL: [MergeMode; 5] = [
        MergeMode::Concat,
        MergeMode::Sum,
        MergeMode::Mul,
        MergeMode::Ave,
        MergeMode::None,
    ];

    /// Keras' name of the mode (`"concat"`, …, `"none"` for Python's `None`).
    pub fn keras_name(self) -> &'static str {
        match self {
            MergeMode::Concat => "concat",
            MergeMode::Sum => "sum",
            MergeMode::Mul => "mul",
            MergeMode::Ave => "ave",
            MergeMode::None => "none",
        }
    }
}

/// The merged output of `forward` and `reverse` (same shape); `MergeMode::None` is not a
/// merge, its callers keep the two apart.
pub(crate) fn merge<F: Float, D: Dimension>(
    mode: MergeMode,
    forward: ArrayView<'_, F, D>,
    reverse: ArrayView<'_, F, D>,
) -> Array<F, D> {
    match mode {
        MergeMode::Concat => {
            // Built in standard layout (the next layer's projection reads it as rows).
            let features = Axis(forward.ndim() - 1);
            let width = forward.len_of(features);
            let mut shape = forward.raw_dim();
            shape[forward.ndim() - 1] = 2 * width;
            let mut merged = Array::zeros(shape);
            merged
                .slice_axis_mut(features, Slice::from(..width))
                .assign(&forward);
            merged
                .slice_axis_mut(features, Slice::from(width..))
                .assign(&reverse);
            merged
        }
        MergeMode::Sum => &forward + &reverse,
        MergeMode::Mul => &forward * &reverse,
        MergeMode::Ave => (&forward + &reverse).mapv(|v| v * F::of(0.5)),
        MergeMode::None => forward.to_owned(),
    }
}

/// The gradients of the two merged outputs given the merged output's gradient `d_merged`.
/// `operands` are the forward and reverse outputs, needed by `Mul` only.
pub(crate) fn merge_backward<F: Float, D: Dimension>(
    mode: MergeMode,
    d_merged: ArrayView<'_, F, D>,
    operands: Option<(ArrayView<'_, F, D>, ArrayView<'_, F, D>)>,
) -> (Array<F, D>, Array<F, D>) {
    match mode {
        MergeMode::Concat => {
            let features = Axis(d_merged.ndim() - 1);
            let half = d_merged.len_of(features) / 2;
            (
                d_merged
                    .slice_axis(features, Slice::from(..half))
                    .to_owned(),
                d_merged
                    .slice_axis(features, Slice::from(half..))
                    .to_owned(),
            )
        }
        MergeMode::Sum | MergeMode::None => (d_merged.to_owned(), d_merged.to_owned()),
        MergeMode::Ave => {
            let half = d_merged.mapv(|v| v * F::of(0.5));
            (half.clone(), half)
        }
        MergeMode::Mul => {
            // The tape keeps both operands for `Mul`: the only mode whose gradient reads them.
            let (forward, reverse) = operands.expect("the tape keeps Mul's operands");
            (&d_merged * &reverse, &d_merged * &forward)
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn every_mode_merges_and_splits() {
        let forward = array![[1.0, 2.0], [3.0, 4.0]];
        let reverse = array![[10.0, 20.0], [30.0, 40.0]];
        let merged = |mode| merge(mode, forward.view(), reverse.view());
        let concat = merged(MergeMode::Concat);
        assert_eq!(
            concat,
            array![[1.0, 2.0, 10.0, 20.0], [3.0, 4.0, 30.0, 40.0]]
        );
        assert!(concat.is_standard_layout());
        assert_eq!(merged(MergeMode::Sum), array![[11.0, 22.0], [33.0, 44.0]]);
        assert_eq!(merged(MergeMode::Mul), array![[10.0, 40.0], [90.0, 160.0]]);
        assert_eq!(merged(MergeMode::Ave), array![[5.5, 11.0], [16.5, 22.0]]);
        let d = array![[1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0]];
        let (df, dr) = merge_backward(MergeMode::Concat, d.view(), None);
        assert_eq!(
            (df, dr),
            (
                array![[1.0, 1.0], [3.0, 3.0]],
                array![[2.0, 2.0], [4.0, 4.0]]
            )
        );
        let ones = Array::ones((2, 2));
        let (df, dr) = merge_backward(
            MergeMode::Mul,
            ones.view(),
            Some((forward.view(), reverse.view())),
        );
        assert_eq!((df, dr), (reverse.clone(), forward.clone()));
    }
}
