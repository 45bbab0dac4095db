//! A data set of one's own: arrays read from an `.npz` file (or windows cut from one column
//! of a CSV file), the objective their labels choose, and batches in the layout the model
//! trains on.
//!
//! The arrays and their contract (`lstm train --data`):
//!
//! | name | shape, dtype | meaning |
//! |---|---|---|
//! | `x` | `(N, T, I)` f32 or f64 | N sequences of T steps of I features, batch-major |
//! | `y` | int `(N,)` | one class per sequence: sequence classification |
//! | `y` | float `(N, O)` | O values per sequence: sequence regression |
//! | `y` | int `(N, T)` | one class per step: per-step classification |
//! | `y` | float `(N, T, O)` | O values per step: per-step regression |
//! | `lengths` | int `(N,)`, optional | valid steps of each sequence (PyTorch packing) |
//! | `mask` | bool `(N, T)`, optional | `true` at real steps (Keras masking); not with `lengths` |
//!
//! A sequence's label is predicted from its last valid step; per-step losses count valid
//! steps only. Classes are `0..C`, with `C` one more than the largest label.

use std::path::Path;

use lstm::io::{Tensor, TensorMap};
use lstm::ndarray::{Array1, Array2, Array3, ArrayD, Axis, Ix2, Ix3};
use lstm::{Error, Float, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::tasks::{Batch, Labels, Target};

/// What the labels ask of the model, as `y`'s dtype and shape choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// One class per sequence, cross-entropy.
    SequenceClassification {
        /// Number of classes.
        classes: usize,
    },
    /// Values per sequence, mean squared error.
    SequenceRegression {
        /// Values per sequence.
        outputs: usize,
    },
    /// One class per step, cross-entropy over valid steps.
    StepClassification {
        /// Number of classes.
        classes: usize,
    },
    /// Values per step, mean squared error over valid steps.
    StepRegression {
        /// Values per step.
        outputs: usize,
    },
}

impl Objective {
    /// The head's width: classes or values.
    pub fn output_size(self) -> usize {
        match self {
            Objective::SequenceClassification { classes }
            | Objective::StepClassification { classes } => classes,
            Objective::SequenceRegression { outputs } | Objective::StepRegression { outputs } => {
                outputs
            }
        }
    }

    /// Whether the model predicts at every step (else from each sequence's last valid step).
    pub fn per_step(self) -> bool {
        matches!(
            self,
            Objective::StepClassification { .. } | Objective::StepRegression { .. }
        )
    }

    /// Whether the labels are classes.
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            Objective::SequenceClassification { .. } | Objective::StepClassification { .. }
        )
    }

    /// The name in reports and checkpoints: `sequence_classification`, ….
    pub fn name(self) -> &'static str {
        match self {
            Objective::SequenceClassification { .. } => "sequence_classification",
            Objective::SequenceRegression { .. } => "sequence_regression",
            Objective::StepClassification { .. } => "step_classification",
            Objective::StepRegression { .. } => "step_regression",
        }
    }
}

/// The labels of a whole data set, batch-major.
#[derive(Clone, Debug, PartialEq)]
pub enum DataLabels {
    /// `(N,)` classes.
    SequenceClasses(Vec<usize>),
    /// `(N, O)` values.
    SequenceValues(Array2<f64>),
    /// `(N, T)` classes.
    StepClasses(Array2<usize>),
    /// `(N, T, O)` values.
    StepValues(Array3<f64>),
}

/// Sequences, their labels (absent when only predicting) and their valid steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<F> {
    /// `(N, T, I)` inputs, batch-major.
    pub x: Array3<F>,
    /// The labels, if the data has `y`.
    pub labels: Option<DataLabels>,
    /// Valid steps per sequence.
    pub lengths: Option<Vec<usize>>,
    /// `(N, T)`, `true` at real steps.
    pub mask: Option<Array2<bool>>,
}

impl<F: Float> Dataset<F> {
    /// Reads `x`, `y`, `lengths` and `mask` from an `.npz` file (see the module
    /// documentation); `y` is required when `with_labels`.
    ///
    /// # Errors
    ///
    /// What reading the file reports; [`Error::MissingTensor`] for a missing `x` (or `y`);
    /// [`Error::ShapeMismatch`], [`Error::DtypeMismatch`] or [`Error::InvalidValue`] naming
    /// the array that breaks the contract.
    pub fn read_npz(path: &Path, with_labels: bool) -> Result<Self> {
        let map = TensorMap::read_npz(path)?;
        Self::from_tensors(&map, with_labels)
    }

    /// The data set of arrays read elsewhere (see [`Dataset::read_npz`]).
    ///
    /// # Errors
    ///
    /// As [`Dataset::read_npz`], without the I/O.
    pub fn from_tensors(map: &TensorMap, with_labels: bool) -> Result<Self> {
        let x = map
            .require("x")?
            .to_float::<F>("x")?
            .into_dimensionality::<Ix3>()
            .map_err(|_| {
                Error::shape_mismatch("x", &[0, 0, 0], map.require("x").map_or(&[], |x| x.shape()))
            })?;
        let (n, t, _) = x.dim();
        if n == 0 || t == 0 {
            return Err(Error::invalid_value(
                "x",
                format!(
                    "shape {:?}; expected at least one sequence of one step",
                    x.shape()
                ),
            ));
        }
        let labels = match map.get("y") {
            Some(y) if with_labels => Some(labels_of(y, n, t)?),
            Some(_) => None,
            None if with_labels => {
                return Err(Error::MissingTensor {
                    name: "y".into(),
                    source_name: map.source().into(),
                });
            }
            None => None,
        };
        let lengths = match map.get("lengths") {
            Some(lengths) => {
                let lengths = lengths.to_lengths("lengths")?;
                if lengths.shape() != [n] {
                    return Err(Error::shape_mismatch("lengths", &[n], lengths.shape()));
                }
                if let Some((row, &length)) = lengths.iter().enumerate().find(|(_, l)| **l > t) {
                    return Err(Error::invalid_value(
                        "lengths",
                        format!("sequence {row} has length {length}, past the {t} steps of x"),
                    ));
                }
                Some(lengths.iter().copied().collect())
            }
            None => None,
        };
        let mask = match map.get("mask") {
            Some(_) if lengths.is_some() => {
                return Err(Error::invalid_value(
                    "mask",
                    "given with lengths; give one of them",
                ));
            }
            Some(mask) => {
                let mask = mask.as_mask("mask")?;
                if mask.shape() != [n, t] {
                    return Err(Error::shape_mismatch("mask", &[n, t], mask.shape()));
                }
                Some(
                    mask.to_owned()
                        .into_dimensionality::<Ix2>()
                        .map_err(|_| Error::shape_mismatch("mask", &[n, t], mask.shape()))?,
                )
            }
            None => None,
        };
        Ok(Dataset {
            x,
            labels,
            lengths,
            mask,
        })
    }

    /// Sequences in the data set.
    pub fn len(&self) -> usize {
        self.x.dim().0
    }

    /// Whether it has no sequences (never, for a data set read through this module).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Steps per sequence, `T`.
    pub fn seq_len(&self) -> usize {
        self.x.dim().1
    }

    /// Features per step, `I`.
    pub fn input_size(&self) -> usize {
        self.x.dim().2
    }

    /// The objective the labels choose, or `None` without labels.
    pub fn objective(&self) -> Option<Objective> {
        Some(match self.labels.as_ref()? {
            DataLabels::SequenceClasses(classes) => Objective::SequenceClassification {
                classes: classes.iter().max().map_or(1, |max| max + 1),
            },
            DataLabels::SequenceValues(values) => Objective::SequenceRegression {
                outputs: values.ncols(),
            },
            DataLabels::StepClasses(classes) => Objective::StepClassification {
                classes: classes.iter().max().map_or(1, |max| max + 1),
            },
            DataLabels::StepValues(values) => Objective::StepRegression {
                outputs: values.dim().2,
            },
        })
    }

    /// The sequences at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        Dataset {
            x: self.x.select(Axis(0), rows),
            labels: self.labels.as_ref().map(|labels| match labels {
                DataLabels::SequenceClasses(classes) => {
                    DataLabels::SequenceClasses(rows.iter().map(|&row| classes[row]).collect())
                }
                DataLabels::SequenceValues(values) => {
                    DataLabels::SequenceValues(values.select(Axis(0), rows))
                }
                DataLabels::StepClasses(classes) => {
                    DataLabels::StepClasses(classes.select(Axis(0), rows))
                }
                DataLabels::StepValues(values) => {
                    DataLabels::StepValues(values.select(Axis(0), rows))
                }
            }),
            lengths: self
                .lengths
                .as_ref()
                .map(|lengths| rows.iter().map(|&row| lengths[row]).collect()),
            mask: self.mask.as_ref().map(|mask| mask.select(Axis(0), rows)),
        }
    }

    /// Splits off the last `fraction` of the sequences, in an order shuffled by `seed`, as a
    /// validation set: `(training, validation)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `val_fraction` if it is not in (0, 1) or leaves either
    /// part empty.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let n = self.len();
        let val = (fraction * n as f64).round() as usize;
        if !(fraction > 0.0 && fraction < 1.0) || val == 0 || val >= n {
            return Err(Error::invalid_value(
                "val_fraction",
                format!(
                    "{fraction} of {n} sequences; expected a fraction in (0, 1) that leaves at \
                     least one sequence on each side"
                ),
            ));
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (train, validation) = order.split_at(n - val);
        Ok((self.select(train), self.select(validation)))
    }

    /// The batch of the sequences at `rows`: time-major inputs and targets for `objective`
    /// (which the labels must fit; without labels, targets of zeros for prediction).
    pub fn batch(&self, rows: &[usize], objective: Objective) -> Batch<F> {
        let part = self.select(rows);
        let input = part
            .x
            .view()
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let (t, b, _) = input.dim();
        let counted = part.counted_steps();
        let labels = match (&part.labels, objective) {
            (Some(DataLabels::SequenceClasses(classes)), _) => Labels::Classes(classes.clone()),
            (Some(DataLabels::SequenceValues(values)), _) => Labels::Values(values.mapv(F::of)),
            // Rows of the head's output are time-major: row t·B + b is step t of sequence b.
            (Some(DataLabels::StepClasses(classes)), _) => {
                Labels::Classes(classes.t().iter().copied().collect())
            }
            (Some(DataLabels::StepValues(values)), _) => {
                let outputs = values.dim().2;
                let time_major = values.view().permuted_axes([1, 0, 2]);
                let rows: Vec<F> = time_major.iter().map(|&v| F::of(v)).collect();
                Labels::Values(
                    Array2::from_shape_vec((t * b, outputs), rows)
                        // `t · b · outputs` values, read in logical order.
                        .expect("one value per step and output"),
                )
            }
            (None, objective) => {
                let rows = if objective.per_step() { t * b } else { b };
                if objective.is_classification() {
                    Labels::Classes(vec![0; rows])
                } else {
                    Labels::Values(Array2::zeros((rows, objective.output_size())))
                }
            }
        };
        let counted = objective
            .per_step()
            .then(|| counted.map(|valid| valid.t().iter().copied().collect()))
            .flatten();
        Batch {
            input,
            target: Target::Rows {
                labels,
                counted,
                lengths: part.lengths,
                mask: part.mask,
            },
        }
    }

    /// `(N, T)`, `true` at the steps that count: within `lengths`, or where `mask` is set;
    /// `None` when every step counts.
    fn counted_steps(&self) -> Option<Array2<bool>> {
        let (n, t, _) = self.x.dim();
        if let Some(lengths) = &self.lengths {
            return Some(Array2::from_shape_fn((n, t), |(row, step)| {
                step < lengths[row]
            }));
        }
        self.mask.clone()
    }
}

/// The labels `y` of `n` sequences of `t` steps, with the objective its dtype and shape
/// choose.
fn labels_of(y: &Tensor, n: usize, t: usize) -> Result<DataLabels> {
    let shape = y.shape().to_vec();
    let integer = matches!(y, Tensor::I32(_) | Tensor::I64(_));
    let float = matches!(y, Tensor::F32(_) | Tensor::F64(_));
    let reject = || {
        Err(Error::invalid_value(
            "y",
            format!(
                "{} of shape {shape:?}; expected int ({n},) or ({n}, {t}) for classification, \
                 float ({n}, O) or ({n}, {t}, O) for regression",
                y.dtype().name()
            ),
        ))
    };
    match shape.as_slice() {
        [rows] if integer && *rows == n => {
            let classes = y.to_lengths("y")?;
            Ok(DataLabels::SequenceClasses(
                classes.iter().copied().collect(),
            ))
        }
        [rows, steps] if integer && *rows == n && *steps == t => {
            let classes: ArrayD<usize> = y.to_lengths("y")?;
            Ok(DataLabels::StepClasses(
                classes
                    .into_dimensionality()
                    .map_err(|_| Error::shape_mismatch("y", &[n, t], &shape))?,
            ))
        }
        [rows, outputs] if float && *rows == n && *outputs > 0 => Ok(DataLabels::SequenceValues(
            y.to_float::<f64>("y")?
                .into_dimensionality()
                .map_err(|_| Error::shape_mismatch("y", &[n, *outputs], &shape))?,
        )),
        [rows, steps, outputs] if float && *rows == n && *steps == t && *outputs > 0 => {
            Ok(DataLabels::StepValues(
                y.to_float::<f64>("y")?
                    .into_dimensionality()
                    .map_err(|_| Error::shape_mismatch("y", &[n, t, *outputs], &shape))?,
            ))
        }
        _ => reject(),
    }
}

/// Windows of one column of a CSV file with a header line: each window of `window`
/// consecutive values is a sequence `(window, 1)`, and its label the value `horizon` steps
/// after its last one (sequence regression).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read; [`Error::InvalidValue`] naming the file if it
/// has no column `column`, a value of it is not a number (naming the line), or it is too
/// short for one window.
pub fn csv_windows<F: Float>(
    path: &Path,
    column: &str,
    window: usize,
    horizon: usize,
) -> Result<Dataset<F>> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::io("read", path, &err))?;
    let what = path.display().to_string();
    let mut lines = text.lines();
    let header = lines
        .next()
        .ok_or_else(|| Error::invalid_value(&what, "the file is empty; expected a header line"))?;
    let index = header
        .split(',')
        .position(|name| name.trim().trim_matches('"') == column)
        .ok_or_else(|| {
            Error::invalid_value(
                &what,
                format!("no column `{column}`; the header is `{header}`"),
            )
        })?;
    let mut series = Vec::new();
    for (line_number, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let field = line
            .split(',')
            .nth(index)
            .map(|field| field.trim().trim_matches('"'));
        let value: f64 = field.and_then(|field| field.parse().ok()).ok_or_else(|| {
            Error::invalid_value(
                &what,
                format!(
                    "line {}: `{}` in column `{column}` is not a number",
                    line_number + 2,
                    field.unwrap_or("")
                ),
            )
        })?;
        series.push(value);
    }
    if window == 0 || horizon == 0 {
        return Err(Error::invalid_value(
            "window",
            "window and horizon must be at least 1",
        ));
    }
    let count = series.len().saturating_sub(window + horizon - 1);
    if count == 0 {
        return Err(Error::invalid_value(
            &what,
            format!(
                "{} values in column `{column}`; a window of {window} and a horizon of {horizon} \
                 need at least {}",
                series.len(),
                window + horizon
            ),
        ));
    }
    let x = Array3::from_shape_fn((count, window, 1), |(start, step, _)| {
        F::of(series[start + step])
    });
    let y = Array1::from_shape_fn(count, |start| series[start + window + horizon - 1]);
    Ok(Dataset {
        x,
        labels: Some(DataLabels::SequenceValues(y.insert_axis(Axis(1)))),
        lengths: None,
        mask: None,
    })
}

#[cfg(test)]
mod tests {
    use lstm::ndarray::{Array, array};

    use super::*;

    fn tensors(y: Tensor) -> TensorMap {
        let mut map = TensorMap::with_source("`test.npz`");
        let x = Array::from_shape_fn((3, 4, 2), |(n, t, i)| (n * 100 + t * 10 + i) as f32);
        map.insert("x", Tensor::F32(x.into_dyn()));
        map.insert("y", y);
        map
    }

    #[test]
    fn the_dtype_and_shape_of_y_choose_the_objective() {
        let cases = [
            (
                Tensor::I64(array![0i64, 2, 1].into_dyn()),
                Objective::SequenceClassification { classes: 3 },
            ),
            (
                Tensor::F32(Array::zeros((3, 2)).into_dyn()),
                Objective::SequenceRegression { outputs: 2 },
            ),
            (
                Tensor::I32(Array::from_elem((3, 4), 4).into_dyn()),
                Objective::StepClassification { classes: 5 },
            ),
            (
                Tensor::F64(Array::zeros((3, 4, 1)).into_dyn()),
                Objective::StepRegression { outputs: 1 },
            ),
        ];
        for (y, objective) in cases {
            let data = Dataset::<f64>::from_tensors(&tensors(y), true).unwrap();
            assert_eq!(data.objective(), Some(objective));
        }
    }

    #[test]
    fn arrays_that_break_the_contract_are_errors_naming_them() {
        let message = |map: &TensorMap| {
            Dataset::<f32>::from_tensors(map, true)
                .unwrap_err()
                .to_string()
        };
        let bool_y = tensors(Tensor::Bool(Array::from_elem(3, true).into_dyn()));
        assert!(message(&bool_y).contains("`y`"), "{}", message(&bool_y));
        let short_y = tensors(Tensor::I64(array![0i64, 1].into_dyn()));
        assert!(
            message(&short_y).contains("expected int (3,)"),
            "{}",
            message(&short_y)
        );
        let mut long = tensors(Tensor::I64(array![0i64, 1, 1].into_dyn()));
        long.insert("lengths", Tensor::I64(array![1i64, 5, 2].into_dyn()));
        assert!(
            message(&long).contains("sequence 1 has length 5, past the 4 steps"),
            "{}",
            message(&long)
        );
        let mut both = tensors(Tensor::I64(array![0i64, 1, 1].into_dyn()));
        both.insert("lengths", Tensor::I64(array![1i64, 2, 2].into_dyn()));
        both.insert(
            "mask",
            Tensor::Bool(Array::from_elem((3, 4), true).into_dyn()),
        );
        assert!(message(&both).contains("`mask`"), "{}", message(&both));
        let mut no_y = tensors(Tensor::I64(array![0i64, 1, 1].into_dyn()));
        no_y.remove("y");
        assert!(
            message(&no_y).contains("no tensor `y`"),
            "{}",
            message(&no_y)
        );
        // Predicting needs no labels, and ignores them.
        let predicting = Dataset::<f32>::from_tensors(&no_y, false).unwrap();
        assert_eq!(predicting.labels, None);
    }

    #[test]
    fn per_step_batches_are_time_major_rows_with_their_valid_steps() {
        let mut map = tensors(Tensor::I64(
            Array::from_shape_fn((3, 4), |(n, t)| (n * 4 + t) as i64).into_dyn(),
        ));
        map.insert("lengths", Tensor::I64(array![4i64, 1, 2].into_dyn()));
        let data = Dataset::<f64>::from_tensors(&map, true).unwrap();
        let objective = data.objective().unwrap();
        let batch = data.batch(&[2, 0], objective);
        // Step t of the batch's sequence b is x[rows[b], t].
        assert_eq!(batch.input.dim(), (4, 2, 2));
        assert_eq!(batch.input[[1, 0, 1]], 211.0);
        assert_eq!(batch.input[[3, 1, 0]], 30.0);
        let Target::Rows {
            labels: Labels::Classes(classes),
            counted: Some(counted),
            lengths: Some(lengths),
            ..
        } = batch.target
        else {
            panic!("per-step classes with lengths");
        };
        // Row t·2 + b: sequence 2 (length 2), then sequence 0 (length 4).
        assert_eq!(classes, [8, 0, 9, 1, 10, 2, 11, 3]);
        assert_eq!(counted, [true, true, true, true, false, true, false, true]);
        assert_eq!(lengths, [2, 4]);
    }

    #[test]
    fn a_split_keeps_every_sequence_once() {
        let x = Array::from_shape_fn((10, 1, 1), |(n, _, _)| n as f32);
        let mut map = TensorMap::new();
        map.insert("x", Tensor::F32(x.into_dyn()));
        map.insert("y", Tensor::I64(Array::from_elem(10, 0i64).into_dyn()));
        let data = Dataset::<f32>::from_tensors(&map, true).unwrap();
        let (train, validation) = data.split(0.3, 5).unwrap();
        assert_eq!((train.len(), validation.len()), (7, 3));
        let mut seen: Vec<f32> = train.x.iter().chain(validation.x.iter()).copied().collect();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, (0..10).map(|n| n as f32).collect::<Vec<_>>());
        assert!(data.split(0.0, 5).is_err());
        assert!(data.split(0.99, 5).is_err());
    }

    #[test]
    fn csv_windows_predict_the_value_after_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.csv");
        std::fs::write(&path, "date,temp\n1,10\n2,11\n3,12.5\n4,13\n5,9\n").unwrap();
        let data = csv_windows::<f64>(&path, "temp", 3, 1).unwrap();
        // Windows [10, 11, 12.5] → 13 and [11, 12.5, 13] → 9.
        assert_eq!(
            data.x,
            array![[[10.0], [11.0], [12.5]], [[11.0], [12.5], [13.0]]]
        );
        assert_eq!(
            data.labels,
            Some(DataLabels::SequenceValues(array![[13.0], [9.0]]))
        );
        let two_ahead = csv_windows::<f64>(&path, "temp", 3, 2).unwrap();
        assert_eq!(
            two_ahead.labels,
            Some(DataLabels::SequenceValues(array![[9.0]]))
        );
        let err = csv_windows::<f64>(&path, "rain", 3, 1).unwrap_err();
        assert!(err.to_string().contains("no column `rain`"), "{err}");
        std::fs::write(&path, "temp\n1\nx\n").unwrap();
        let err = csv_windows::<f64>(&path, "temp", 1, 1).unwrap_err();
        assert!(err.to_string().contains("line 3: `x`"), "{err}");
        let err = csv_windows::<f64>(&path, "temp", 5, 1);
        assert!(err.is_err());
    }
}
