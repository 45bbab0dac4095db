//! Lengths and masks: which (step, batch row) pairs of a padded batch are real, and what a
//! layer does at the others.
//!
//! Both ecosystems' conventions reduce to one [`Validity`] per call, read step by step by the
//! time loop (`forward.rs`) and its reverse (`backward.rs`):
//!
//! - PyTorch's packed sequences become [`Validity::Lengths`]: row `b` is valid at steps
//!   `t < lengths[b]`. Invalid steps output zeros and leave the state alone, so `h_n`/`c_n`
//!   are the states at each sequence's last valid step. Walking `t = T−1..0` with the same
//!   validity runs each sequence's valid part backwards (PyTorch's reverse direction).
//! - Keras' boolean masks become [`Validity::Mask`]: at a masked step the state is carried
//!   unchanged and the output repeats the previous output, or is zero (`zero_output_for_mask`),
//!   see [`InvalidOutput`]. Holes may be anywhere.
//!
//! `go_backwards` reverses a layer's input once, before anything runs
//! ([`Validity::reverse_time`]): each sequence's valid part under lengths (padding stays at the
//! end), the whole padded sequence and its mask otherwise.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut3, Axis};

use crate::error::{Error, Result, expect_shape};
use crate::float::Float;

/// Which steps of which batch rows are real.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Validity {
    /// Every step of every row.
    All,
    /// PyTorch lengths: row `b` is valid at `t < lengths[b]`.
    Lengths(Vec<usize>),
    /// Keras mask, `(batch, seq_len)`: row `b` is valid at `t` where `mask[[b, t]]`.
    Mask(Array2<bool>),
}

/// What a layer outputs at an invalid step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InvalidOutput {
    /// Zeros (PyTorch past a sequence's length; Keras `zero_output_for_mask=True`).
    Zero,
    /// The row's previous output, zeros before its first valid step (Keras' default). The
    /// carried state at an invalid step is the state of the row's last valid step, which is
    /// exactly that output.
    RepeatPrevious,
}

impl Validity {
    /// The validity of a call with `lengths` or `mask` (not both) over a batch of
    /// `(seq_len, batch)`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `lengths` (one per batch row) or `mask`
    /// (`(batch, seq_len)`); [`Error::InvalidValue`] naming `lengths` if one exceeds
    /// `seq_len`; [`Error::Config`] naming `mask` if both are given.
    pub(crate) fn of_call(
        lengths: Option<&[usize]>,
        mask: Option<ArrayView2<'_, bool>>,
        seq_len: usize,
        batch: usize,
    ) -> Result<Self> {
        match (lengths, mask) {
            (Some(_), Some(_)) => Err(Error::Config {
                option: "mask".into(),
                reason: "give `lengths` (PyTorch semantics) or `mask` (Keras semantics), \
                         not both"
                    .into(),
            }),
            (Some(lengths), None) => {
                expect_shape("lengths", &[batch], &[lengths.len()])?;
                if let Some((row, &length)) =
                    lengths.iter().enumerate().find(|(_, l)| **l > seq_len)
                {
                    return Err(Error::invalid_value(
                        "lengths",
                        format!(
                            "row {row} has length {length}, longer than the input's seq_len \
                             {seq_len}"
                        ),
                    ));
                }
                Ok(Validity::Lengths(lengths.to_vec()))
            }
            (None, Some(mask)) => {
                expect_shape("mask", &[batch, seq_len], mask.shape())?;
                Ok(Validity::Mask(mask.to_owned()))
            }
            (None, None) => Ok(Validity::All),
        }
    }

    /// What invalid steps output: zeros under lengths, the Keras choice under a mask.
    pub(crate) fn invalid_output(&self, zero_output_for_mask: bool) -> InvalidOutput {
        match self {
            Validity::Mask(_) if !zero_output_for_mask => InvalidOutput::RepeatPrevious,
            _ => InvalidOutput::Zero,
        }
    }

    /// Whether row `row` is valid at step `t`.
    pub(crate) fn is_valid(&self, t: usize, row: usize) -> bool {
        match self {
            Validity::All => true,
            Validity::Lengths(lengths) => t < lengths[row],
            Validity::Mask(mask) => mask[[row, t]],
        }
    }

    /// Fills `valid[b]` for every row at step `t`; returns whether all rows are valid, so
    /// the common unmasked step skips every per-row fix-up.
    pub(crate) fn fill_step(&self, t: usize, valid: &mut [bool]) -> bool {
        match self {
            Validity::All => {
                valid.fill(true);
                true
            }
            _ => {
                let mut all = true;
                for (row, slot) in valid.iter_mut().enumerate() {
                    *slot = self.is_valid(t, row);
                    all &= *slot;
                }
                all
            }
        }
    }

    /// Whether row `row` has any valid step among the first `seq_len`.
    pub(crate) fn any_valid(&self, row: usize, seq_len: usize) -> bool {
        (0..seq_len).any(|t| self.is_valid(t, row))
    }

    /// The validity of the time-reversed input ([`Validity::reverse_time`]): lengths are
    /// unchanged (the valid part stays in front), a mask is reversed along time.
    pub(crate) fn reversed(&self) -> Self {
        match self {
            Validity::Mask(mask) => {
                let mut reversed = mask.clone();
                reversed.invert_axis(Axis(1));
                Validity::Mask(reversed.as_standard_layout().into_owned())
            }
            other => other.clone(),
        }
    }

    /// The validity of batch rows `rows` alone.
    pub(crate) fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        match self {
            Validity::All => Validity::All,
            Validity::Lengths(lengths) => Validity::Lengths(lengths[rows].to_vec()),
            Validity::Mask(mask) => Validity::Mask(mask.slice(ndarray::s![rows, ..]).to_owned()),
        }
    }

    /// The step of `x` that lands at step `t` of row `row` when reversing: within the valid
    /// part under lengths (the rest stays where it is), across all steps otherwise.
    fn reversed_step(&self, t: usize, row: usize, seq_len: usize) -> usize {
        match self {
            Validity::Lengths(lengths) if t < lengths[row] => lengths[row] - 1 - t,
            Validity::Lengths(_) => t,
            _ => seq_len - 1 - t,
        }
    }

    /// `x: (seq_len, batch, features)` reversed in time per row (Keras `go_backwards`): each
    /// sequence's valid part under lengths, everything otherwise. Its own inverse.
    pub(crate) fn reverse_time<F: Float>(&self, x: ArrayView3<'_, F>) -> Array3<F> {
        let (seq_len, batch, _) = x.dim();
        let mut reversed = Array3::zeros(x.raw_dim());
        for t in 0..seq_len {
            for row in 0..batch {
                let source = self.reversed_step(t, row, seq_len);
                reversed
                    .index_axis_mut(Axis(0), t)
                    .row_mut(row)
                    .assign(&x.index_axis(Axis(0), source).row(row));
            }
        }
        reversed
    }

    /// Zeros every invalid step of `x: (seq_len, batch, features)`: padding never reaches a
    /// product, so even non-finite padding values cannot leak into outputs or gradients.
    pub(crate) fn zero_invalid<F: Float>(&self, mut x: ArrayViewMut3<'_, F>) {
        if *self == Validity::All {
            return;
        }
        for (t, mut step) in x.axis_iter_mut(Axis(0)).enumerate() {
            for (row, mut values) in step.axis_iter_mut(Axis(0)).enumerate() {
                if !self.is_valid(t, row) {
                    values.fill(F::zero());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn lengths_and_masks_give_per_row_validity() {
        let lengths = Validity::of_call(Some(&[2, 0]), None, 3, 2).unwrap();
        assert!(lengths.is_valid(1, 0) && !lengths.is_valid(2, 0) && !lengths.is_valid(0, 1));
        let mask = array![[true, false, true], [false, false, false]];
        let masked = Validity::of_call(None, Some(mask.view()), 3, 2).unwrap();
        let mut valid = [false; 2];
        assert!(!masked.fill_step(2, &mut valid));
        assert_eq!(valid, [true, false]);
        assert!(masked.any_valid(0, 3) && !masked.any_valid(1, 3));
        assert_eq!(lengths.invalid_output(false), InvalidOutput::Zero);
        assert_eq!(masked.invalid_output(false), InvalidOutput::RepeatPrevious);
        assert_eq!(masked.invalid_output(true), InvalidOutput::Zero);
    }

    #[test]
    fn reversal_keeps_padding_in_place_under_lengths() {
        let x = Array3::from_shape_fn((4, 2, 1), |(t, b, _)| (10 * b + t) as f64);
        let lengths = Validity::Lengths(vec![3, 4]);
        let reversed = lengths.reverse_time(x.view());
        let row = |a: &Array3<f64>, b: usize| -> Vec<f64> {
            a.index_axis(Axis(1), b).iter().copied().collect()
        };
        assert_eq!(row(&reversed, 0), vec![2.0, 1.0, 0.0, 3.0]);
        assert_eq!(row(&reversed, 1), vec![13.0, 12.0, 11.0, 10.0]);
        assert_eq!(lengths.reverse_time(reversed.view()), x);
        let all = Validity::All.reverse_time(x.view());
        assert_eq!(row(&all, 0), vec![3.0, 2.0, 1.0, 0.0]);
        let mask = Validity::Mask(array![[true, false], [false, false]]).reversed();
        assert_eq!(mask, Validity::Mask(array![[false, true], [false, false]]));
    }

    #[test]
    fn bad_lengths_and_masks_are_errors() {
        assert!(matches!(
            Validity::of_call(Some(&[1]), None, 3, 2),
            Err(Error::ShapeMismatch { what, .. }) if what == "lengths"
        ));
        assert!(matches!(
            Validity::of_call(Some(&[1, 4]), None, 3, 2),
            Err(Error::InvalidValue { what, .. }) if what == "lengths"
        ));
        let mask = Array2::from_elem((3, 2), true);
        assert!(matches!(
            Validity::of_call(None, Some(mask.view()), 3, 2),
            Err(Error::ShapeMismatch { what, .. }) if what == "mask"
        ));
        assert!(matches!(
            Validity::of_call(Some(&[1, 1]), Some(mask.view()), 3, 2),
            Err(Error::Config { option, .. }) if option == "mask"
        ));
    }
}
