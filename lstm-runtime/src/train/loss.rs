//! Losses: a scalar from predictions and targets, and its gradient with respect to the
//! predictions, which is where backpropagation starts. Each function returns
//! `(loss, dL/d prediction)`; both reduce by the mean, as PyTorch's default
//! `reduction="mean"`.
//!
//! - [`mse`]: mean squared error (PyTorch `MSELoss`), for regression heads.
//! - [`cross_entropy`]: softmax cross-entropy from logits with integer class targets
//!   (PyTorch `CrossEntropyLoss`), optionally masked; [`sequence_cross_entropy`] applies it to
//!   every step of time-major sequences of different lengths, averaging over the valid steps
//!   only.
//! - [`accuracy`] and [`sequence_accuracy`]: the fraction of valid positions whose largest
//!   logit is the target.

use ndarray::{
    Array, Array2, Array3, ArrayView, ArrayView2, ArrayView3, Axis, CowArray, Dimension, Ix2,
    Order, Zip,
};

use crate::error::{Error, Result, expect_shape};
use crate::float::Float;

/// Mean squared error `mean((prediction - target)²)` and its gradient
/// `2 (prediction - target) / n` with respect to `prediction`.
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `target` if it is not shaped like `prediction`.
/// - [`Error::InvalidValue`] naming `prediction` if it is empty (the mean of nothing).
pub fn mse<F: Float, D: Dimension>(
    prediction: ArrayView<'_, F, D>,
    target: ArrayView<'_, F, D>,
) -> Result<(F, Array<F, D>)> {
    expect_shape("target", prediction.shape(), target.shape())?;
    if prediction.is_empty() {
        return Err(Error::invalid_value(
            "prediction",
            "is empty; a mean needs at least one element",
        ));
    }
    let count = F::of(prediction.len() as f64);
    let difference = &prediction - &target;
    let loss = difference.iter().map(|&d| d * d).sum::<F>() / count;
    let two = F::of(2.0);
    let grad = difference.mapv(|d| two * d / count);
    Ok((loss, grad))
}

/// Softmax cross-entropy of `logits: (rows, classes)` against class indices `targets`
/// (`rows` of them), averaged over the rows where `mask` is `true` (every row when `mask` is
/// `None`). Returns the loss and `dL/d logits = (softmax - one_hot) / valid_rows` on valid
/// rows, zeros on masked rows.
///
/// The log-softmax subtracts each row's maximum first, so large logits do not overflow.
/// Targets on masked rows are not read (padding may hold anything).
///
/// # Errors
///
/// - [`Error::ShapeMismatch`] naming `targets` or `mask` if its length is not `rows`.
/// - [`Error::InvalidValue`] naming `targets` if a valid row's class is `>= classes`, or
///   naming `mask` if no row is valid.
pub fn cross_entropy<F: Float>(
    logits: ArrayView2<'_, F>,
    targets: &[usize],
    mask: Option<&[bool]>,
) -> Result<(F, Array2<F>)> {
    let (rows, classes) = logits.dim();
    let valid = valid_rows(rows, classes, targets, mask)?;
    let count = F::of(valid.iter().filter(|&&v| v).count() as f64);
    let mut grad = Array2::zeros((rows, classes));
    let mut total = F::zero();
    for (row, (logits_row, mut grad_row)) in
        logits.rows().into_iter().zip(grad.rows_mut()).enumerate()
    {
        if !valid[row] {
            continue;
        }
        let max = logits_row
            .iter()
            .fold(F::neg_infinity(), |max, &logit| max.max(logit));
        let sum_exp = logits_row
            .iter()
            .map(|&logit| (logit - max).exp())
            .sum::<F>();
        let log_sum_exp = max + sum_exp.ln();
        total += log_sum_exp - logits_row[targets[row]];
        Zip::from(&mut grad_row)
            .and(&logits_row)
            .for_each(|g, &logit| *g = (logit - log_sum_exp).exp() / count);
        grad_row[targets[row]] -= F::one() / count;
    }
    Ok((total / count, grad))
}

/// [`cross_entropy`] at every step of time-major sequences: `logits: (seq_len, batch,
/// classes)`, `targets: (seq_len, batch)`. With `lengths` (one per batch column, as PyTorch's
/// `pack_padded_sequence`), step `t` of sequence `b` counts only if `t < lengths[b]`, and the
/// mean runs over the counted steps; without, every step counts.
///
/// Returns the loss and `dL/d logits`, `(seq_len, batch, classes)`, zero on padding.
///
/// # Errors
///
/// As [`cross_entropy`], and [`Error::ShapeMismatch`] naming `targets` or `lengths`, or
/// [`Error::InvalidValue`] naming `lengths` if a length exceeds `seq_len`.
pub fn sequence_cross_entropy<F: Float>(
    logits: ArrayView3<'_, F>,
    targets: ArrayView2<'_, usize>,
    lengths: Option<&[usize]>,
) -> Result<(F, Array3<F>)> {
    let (seq_len, batch, classes) = logits.dim();
    let rows = flatten_sequences(&logits, targets, lengths)?;
    let (loss, grad) = cross_entropy(rows.logits.view(), &rows.targets, rows.mask.as_deref())?;
    let grad = grad
        .into_shape_with_order((seq_len, batch, classes))
        // `grad` has `seq_len · batch` rows of `classes` values in standard layout.
        .expect("(seq_len · batch, classes) reshapes to (seq_len, batch, classes)");
    Ok((loss, grad))
}

/// The fraction of rows where `mask` is `true` (all rows without a mask) whose largest logit
/// (the first, on ties) is at the target class.
///
/// # Errors
///
/// As [`cross_entropy`].
pub fn accuracy<F: Float>(
    logits: ArrayView2<'_, F>,
    targets: &[usize],
    mask: Option<&[bool]>,
) -> Result<f64> {
    let (rows, classes) = logits.dim();
    let valid = valid_rows(rows, classes, targets, mask)?;
    let mut correct = 0usize;
    let mut counted = 0usize;
    for (row, logits_row) in logits.rows().into_iter().enumerate() {
        if valid[row] {
            counted += 1;
            correct += usize::from(argmax(logits_row.iter().copied()) == targets[row]);
        }
    }
    Ok(correct as f64 / counted as f64)
}

/// [`accuracy`] over the valid steps of time-major sequences, as
/// [`sequence_cross_entropy`] counts them.
///
/// # Errors
///
/// As [`sequence_cross_entropy`].
pub fn sequence_accuracy<F: Float>(
    logits: ArrayView3<'_, F>,
    targets: ArrayView2<'_, usize>,
    lengths: Option<&[usize]>,
) -> Result<f64> {
    let rows = flatten_sequences(&logits, targets, lengths)?;
    accuracy(rows.logits.view(), &rows.targets, rows.mask.as_deref())
}

/// Time-major sequences as rows: logits `(seq_len · batch, classes)`, targets and the
/// validity mask (`None` without lengths) in the same row order.
fn flatten_sequences<'a, F: Float>(
    logits: &'a ArrayView3<'_, F>,
    targets: ArrayView2<'_, usize>,
    lengths: Option<&[usize]>,
) -> Result<Rows<'a, F>> {
    let (seq_len, batch, classes) = logits.dim();
    expect_shape("targets", &[seq_len, batch], targets.shape())?;
    let mask = lengths
        .map(|lengths| length_mask(seq_len, batch, lengths))
        .transpose()?;
    let flat_logits = logits
        .to_shape(((seq_len * batch, classes), Order::RowMajor))
        // Same element count; `to_shape` copies when the layout needs it: infallible.
        .expect("(seq_len, batch, classes) reshapes to (seq_len · batch, classes)");
    let flat_targets = targets.iter().copied().collect();
    Ok(Rows {
        logits: flat_logits,
        targets: flat_targets,
        mask,
    })
}

/// Time-major sequences flattened into rows, step-major: row `t · batch + b` is step `t` of
/// sequence `b`.
struct Rows<'a, F> {
    /// `(seq_len · batch, classes)`.
    logits: CowArray<'a, F, Ix2>,
    /// One class per row.
    targets: Vec<usize>,
    /// Which rows are inside their sequence; `None` when all are.
    mask: Option<Vec<bool>>,
}

/// Which of the `seq_len · batch` time-major positions are inside their sequence.
fn length_mask(seq_len: usize, batch: usize, lengths: &[usize]) -> Result<Vec<bool>> {
    expect_shape("lengths", &[batch], &[lengths.len()])?;
    if let Some((column, &length)) = lengths.iter().enumerate().find(|&(_, &l)| l > seq_len) {
        return Err(Error::invalid_value(
            "lengths",
            format!("sequence {column} has length {length}, longer than seq_len {seq_len}"),
        ));
    }
    let mut mask = Array2::from_elem((seq_len, batch), false);
    for (mut column, &length) in mask.axis_iter_mut(Axis(1)).zip(lengths) {
        column
            .iter_mut()
            .take(length)
            .for_each(|valid| *valid = true);
    }
    Ok(mask.into_iter().collect())
}

/// Which rows count, after checking the targets of those that do and that one does.
fn valid_rows(
    rows: usize,
    classes: usize,
    targets: &[usize],
    mask: Option<&[bool]>,
) -> Result<Vec<bool>> {
    expect_shape("targets", &[rows], &[targets.len()])?;
    let valid = match mask {
        Some(mask) => {
            expect_shape("mask", &[rows], &[mask.len()])?;
            mask.to_vec()
        }
        None => vec![true; rows],
    };
    if !valid.contains(&true) {
        return Err(Error::invalid_value(
            "mask",
            "no position is valid; a mean needs at least one",
        ));
    }
    let out_of_range = targets
        .iter()
        .zip(&valid)
        .enumerate()
        .find(|&(_, (&class, &valid))| valid && class >= classes);
    if let Some((row, (class, _))) = out_of_range {
        return Err(Error::invalid_value(
            "targets",
            format!("class {class} at row {row} is out of range for {classes} classes"),
        ));
    }
    Ok(valid)
}

/// Index of the largest value, the first on ties.
fn argmax<F: Float>(values: impl Iterator<Item = F>) -> usize {
    let mut best = (0, F::neg_infinity());
    for (index, value) in values.enumerate() {
        if value > best.1 {
            best = (index, value);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, array};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// `-log(softmax(logits)[target])` straight from the definition, without the max shift.
    fn naive_cross_entropy(logits: &[f64], target: usize) -> f64 {
        let sum: f64 = logits.iter().map(|l| l.exp()).sum();
        -(logits[target].exp() / sum).ln()
    }

    #[test]
    fn mse_matches_the_formula_and_finite_differences() {
        let prediction = array![[0.5f64, -1.0], [2.0, 0.25], [1.0, 3.0]];
        let target = array![[1.0, 0.0], [1.5, 0.25], [-1.0, 2.0]];
        let (loss, grad) = mse(prediction.view(), target.view()).unwrap();
        // (0.25 + 1 + 0.25 + 0 + 4 + 1) / 6
        assert!((loss - 6.5 / 6.0).abs() < 1e-15);
        let eps = 1e-6;
        for index in 0..6 {
            let shifted = |delta: f64| {
                let mut moved = prediction.clone();
                moved.as_slice_mut().unwrap()[index] += delta;
                mse(moved.view(), target.view()).unwrap().0
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!((grad.as_slice().unwrap()[index] - numeric).abs() < 1e-8);
        }
    }

    #[test]
    fn mse_rejects_bad_input() {
        let a = Array1::<f32>::zeros(3);
        let b = Array1::<f32>::zeros(2);
        assert_eq!(
            mse(a.view(), b.view()),
            Err(Error::shape_mismatch("target", &[3], &[2]))
        );
        let empty = Array1::<f32>::zeros(0);
        assert!(matches!(
            mse(empty.view(), empty.view()),
            Err(Error::InvalidValue { what, .. }) if what == "prediction"
        ));
    }

    #[test]
    fn cross_entropy_matches_the_definition_and_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let logits = Array2::from_shape_fn((5, 4), |_| rng.random_range(-3.0..3.0));
        let targets = [0, 3, 1, 1, 2];
        let mask = [true, false, true, true, true];
        let (loss, grad) = cross_entropy(logits.view(), &targets, Some(&mask)).unwrap();
        let expected = [0, 2, 3, 4]
            .iter()
            .map(|&row| naive_cross_entropy(logits.row(row).as_slice().unwrap(), targets[row]))
            .sum::<f64>()
            / 4.0;
        assert!((loss - expected).abs() < 1e-12);
        assert!(grad.row(1).iter().all(|&g| g == 0.0));
        let eps = 1e-6;
        for index in 0..logits.len() {
            let shifted = |delta: f64| {
                let mut moved = logits.clone();
                moved.as_slice_mut().unwrap()[index] += delta;
                cross_entropy(moved.view(), &targets, Some(&mask))
                    .unwrap()
                    .0
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!((grad.as_slice().unwrap()[index] - numeric).abs() < 1e-8);
        }
    }

    #[test]
    fn cross_entropy_is_stable_for_large_logits() {
        // The same logits shifted by 1000: the naive exp overflows, the loss must not change.
        let logits = array![[1.0f64, 2.0, 0.5]];
        let shifted = logits.mapv(|l| l + 1000.0);
        let (small, _) = cross_entropy(logits.view(), &[1], None).unwrap();
        let (large, grad) = cross_entropy(shifted.view(), &[1], None).unwrap();
        assert!((small - naive_cross_entropy(&[1.0, 2.0, 0.5], 1)).abs() < 1e-12);
        assert!((large - small).abs() < 1e-9);
        assert!(grad.iter().all(|g| g.is_finite()));
        let (loss, _) = cross_entropy(array![[1e4f32, -1e4]].view(), &[1], None).unwrap();
        assert_eq!(loss, 2e4);
    }

    #[test]
    fn sequence_cross_entropy_averages_over_valid_steps() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (seq_len, batch, classes) = (4, 3, 5);
        let logits =
            Array3::from_shape_fn((seq_len, batch, classes), |_| rng.random_range(-2.0..2.0));
        let targets = Array2::from_shape_fn((seq_len, batch), |_| rng.random_range(0..classes));
        let lengths = [4, 1, 2];
        let (loss, grad) =
            sequence_cross_entropy(logits.view(), targets.view(), Some(&lengths)).unwrap();
        let mut expected = 0.0;
        for (b, &length) in lengths.iter().enumerate() {
            for t in 0..length {
                let row = logits.slice(ndarray::s![t, b, ..]).to_vec();
                expected += naive_cross_entropy(&row, targets[[t, b]]);
            }
        }
        assert!((loss - expected / 7.0).abs() < 1e-12);
        assert!(
            grad.slice(ndarray::s![1.., 1, ..])
                .iter()
                .all(|&g| g == 0.0)
        );
        assert!(
            grad.slice(ndarray::s![2.., 2, ..])
                .iter()
                .all(|&g| g == 0.0)
        );
        let (unmasked, _) = sequence_cross_entropy(logits.view(), targets.view(), None).unwrap();
        let (full, _) =
            sequence_cross_entropy(logits.view(), targets.view(), Some(&[4, 4, 4])).unwrap();
        assert_eq!(unmasked, full);
    }

    #[test]
    fn accuracy_counts_valid_argmax_hits() {
        let logits = array![[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]];
        assert_eq!(accuracy(logits.view(), &[1, 1, 1, 0], None).unwrap(), 0.75);
        let mask = [true, true, false, false];
        assert_eq!(
            accuracy(logits.view(), &[1, 1, 1, 0], Some(&mask)).unwrap(),
            0.5
        );
        let sequence = logits.into_shape_with_order((2, 2, 2)).unwrap();
        let targets = array![[1, 1], [1, 0]];
        // Time-major: steps 0 and 1 of sequence 0 are rows 0 and 2.
        let value = sequence_accuracy(sequence.view(), targets.view(), Some(&[2, 1])).unwrap();
        assert!((value - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn bad_targets_masks_and_lengths_are_errors() {
        let logits = Array2::<f64>::zeros((2, 3));
        assert_eq!(
            cross_entropy(logits.view(), &[0], None),
            Err(Error::shape_mismatch("targets", &[2], &[1]))
        );
        assert_eq!(
            cross_entropy(logits.view(), &[0, 3], None),
            Err(Error::invalid_value(
                "targets",
                "class 3 at row 1 is out of range for 3 classes"
            ))
        );
        // A padded row may hold any target.
        assert!(cross_entropy(logits.view(), &[0, 99], Some(&[true, false])).is_ok());
        assert!(matches!(
            cross_entropy(logits.view(), &[0, 0], Some(&[false, false])),
            Err(Error::InvalidValue { what, .. }) if what == "mask"
        ));
        let sequence = Array3::<f64>::zeros((2, 2, 3));
        let targets = Array2::zeros((2, 2));
        assert_eq!(
            sequence_cross_entropy(sequence.view(), targets.view(), Some(&[1, 3])),
            Err(Error::invalid_value(
                "lengths",
                "sequence 1 has length 3, longer than seq_len 2"
            ))
        );
        assert_eq!(
            sequence_cross_entropy(sequence.view(), targets.view(), Some(&[1])),
            Err(Error::shape_mismatch("lengths", &[2], &[1]))
        );
    }
}
