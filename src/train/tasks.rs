//! The built-in tasks: synthetic sequence problems that need no download and test what a
//! recurrent cell is for, remembering across many steps.
//!
//! - [`Task::Adding`], the adding problem (Hochreiter & Schmidhuber 1997, experiment 4, in
//!   the form of Le, Jaitly & Hinton 2015): each step is a pair (value, marker), values
//!   uniform in `[0, 1)`, exactly two markers set, one in each half of the sequence; the
//!   target is the sum of the two marked values, read from the last step. Predicting the
//!   mean, 1, scores an MSE of `1/6 ≈ 0.167` (the variance of a sum of two uniforms); a model
//!   that learned the task scores far below.
//! - [`Task::Parity`], running parity of bit sequences of random lengths: at every step the
//!   target class is the parity of the bits so far. Sequences are padded to the longest and
//!   the loss and accuracy count only each sequence's own steps (its `lengths`). Guessing
//!   scores `ln 2 ≈ 0.693` and 50% accuracy.
//!
//! Every batch is a pure function of `(seed, step)`: [`train_rng`] derives a generator for
//! each step, so a resumed run sees exactly the batches the uninterrupted run would have, and
//! [`eval_rng`] one for held-out batches that no training step ever sees.

use lstm::{Error, Float, Result};
use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A built-in task and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// The adding problem over sequences of `seq_len` steps (at least 2).
    Adding {
        /// Steps per sequence.
        seq_len: usize,
    },
    /// Running parity over sequences of 1 to `max_len` bits.
    Parity {
        /// The longest sequence; each batch is padded to it.
        max_len: usize,
    },
}

/// What a model should produce for a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Target<F> {
    /// One value per sequence, predicted from the last step's output: `(batch, 1)`.
    LastValue(Array2<F>),
    /// One class per step, `(seq_len, batch)`, of which each sequence's first `lengths[b]`
    /// steps count.
    StepClasses {
        /// The class of every step (0 at padding).
        classes: Array2<usize>,
        /// Steps of each sequence.
        lengths: Vec<usize>,
    },
    /// A data set's labels ([`Dataset`](super::Dataset)), one per row of the head's output.
    Rows {
        /// The labels.
        labels: Labels<F>,
        /// Per row, whether it counts in the loss (per-step objectives with lengths or a
        /// mask); `None` when every row counts.
        counted: Option<Vec<bool>>,
        /// Valid steps of each sequence, passed to the layer.
        lengths: Option<Vec<usize>>,
        /// `(batch, seq_len)` Keras mask, passed to the layer.
        mask: Option<Array2<bool>>,
    },
}

/// Labels of the head's output rows: one row per sequence, or one per step (time-major:
/// row `t · batch + b` is step `t` of sequence `b`).
#[derive(Clone, Debug, PartialEq)]
pub enum Labels<F> {
    /// A class per row (cross-entropy).
    Classes(Vec<usize>),
    /// Values per row, `(rows, outputs)` (mean squared error).
    Values(Array2<F>),
}

/// Inputs and targets of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<F> {
    /// Time-major inputs, `(seq_len, batch, input_size)`, zero at padding.
    pub input: Array3<F>,
    /// What the model should produce.
    pub target: Target<F>,
}

impl Task {
    /// The adding problem at `seq_len` steps.
    pub fn adding(seq_len: usize) -> Self {
        Task::Adding { seq_len }
    }

    /// Running parity up to `max_len` bits.
    pub fn parity(max_len: usize) -> Self {
        Task::Parity { max_len }
    }

    /// The task's name on the command line and in reports: `adding` or `parity`.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Adding { .. } => "adding",
            Task::Parity { .. } => "parity",
        }
    }

    /// Steps of every batch (padded length for parity).
    pub fn seq_len(&self) -> usize {
        match *self {
            Task::Adding { seq_len } => seq_len,
            Task::Parity { max_len } => max_len,
        }
    }

    /// Features per input step: (value, marker) for adding, the bit for parity.
    pub fn input_size(&self) -> usize {
        match self {
            Task::Adding { .. } => 2,
            Task::Parity { .. } => 1,
        }
    }

    /// Outputs of the model's head: one value for adding, two class logits for parity.
    pub fn output_size(&self) -> usize {
        match self {
            Task::Adding { .. } => 1,
            Task::Parity { .. } => 2,
        }
    }

    /// The loss of the best input-blind guess (see the module documentation): what a model
    /// must beat to have learned anything.
    pub fn baseline_loss(&self) -> f64 {
        match self {
            Task::Adding { .. } => 1.0 / 6.0,
            Task::Parity { .. } => std::f64::consts::LN_2,
        }
    }

    /// Whether the task is a classification, with an accuracy to report.
    pub fn has_accuracy(&self) -> bool {
        matches!(self, Task::Parity { .. })
    }

    /// `Ok` if the size can make a batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming `seq_len` (adding, below 2: one marker goes in each
    /// half) or `max_len` (parity, 0).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Task::Adding { seq_len } if seq_len < 2 => Err(Error::invalid_value(
                "seq_len",
                format!("{seq_len}; the adding problem needs at least 2 steps, one per marker"),
            )),
            Task::Parity { max_len: 0 } => Err(Error::invalid_value(
                "max_len",
                "0; parity needs sequences of at least 1 bit",
            )),
            _ => Ok(()),
        }
    }

    /// A batch of `batch_size` sequences drawn from `rng`.
    ///
    /// # Errors
    ///
    /// As [`Task::validate`].
    pub fn batch<F: Float, R: Rng + ?Sized>(
        &self,
        batch_size: usize,
        rng: &mut R,
    ) -> Result<Batch<F>> {
        self.validate()?;
        Ok(match *self {
            Task::Adding { seq_len } => adding_batch(seq_len, batch_size, rng),
            Task::Parity { max_len } => parity_batch(max_len, batch_size, rng),
        })
    }
}

/// The adding problem: markers at one uniform position in `[0, seq_len/2)` and one in
/// `[seq_len/2, seq_len)`.
fn adding_batch<F: Float, R: Rng + ?Sized>(
    seq_len: usize,
    batch_size: usize,
    rng: &mut R,
) -> Batch<F> {
    let mut input = Array3::zeros((seq_len, batch_size, 2));
    let mut target = Array2::zeros((batch_size, 1));
    let half = seq_len / 2;
    for b in 0..batch_size {
        for t in 0..seq_len {
            input[[t, b, 0]] = F::of(rng.random::<f64>());
        }
        let first = rng.random_range(0..half);
        let second = rng.random_range(half..seq_len);
        input[[first, b, 1]] = F::one();
        input[[second, b, 1]] = F::one();
        target[[b, 0]] = input[[first, b, 0]] + input[[second, b, 0]];
    }
    Batch {
        input,
        target: Target::LastValue(target),
    }
}

/// Running parity: lengths uniform in `1..=max_len`, bits fair coins.
fn parity_batch<F: Float, R: Rng + ?Sized>(
    max_len: usize,
    batch_size: usize,
    rng: &mut R,
) -> Batch<F> {
    let mut input = Array3::zeros((max_len, batch_size, 1));
    let mut classes = Array2::zeros((max_len, batch_size));
    let mut lengths = Vec::with_capacity(batch_size);
    for b in 0..batch_size {
        let length = rng.random_range(1..=max_len);
        let mut parity = 0;
        for t in 0..length {
            let bit = usize::from(rng.random::<bool>());
            parity ^= bit;
            input[[t, b, 0]] = F::of(bit as f64);
            classes[[t, b]] = parity;
        }
        lengths.push(length);
    }
    Batch {
        input,
        target: Target::StepClasses { classes, lengths },
    }
}

/// Domain tags that keep training and evaluation streams apart.
const TRAIN_DOMAIN: u64 = 0x7472_6169_6e00_0000; // "train"
const EVAL_DOMAIN: u64 = 0x6576_616c_0000_0000; // "eval"

/// The generator of training step `step`'s batch in a run seeded with `seed`.
pub fn train_rng(seed: u64, step: u64) -> ChaCha8Rng {
    stream(seed, TRAIN_DOMAIN, step)
}

/// The generator of held-out batch `index` in a run seeded with `seed`; disjoint from every
/// training batch's.
pub fn eval_rng(seed: u64, index: u64) -> ChaCha8Rng {
    stream(seed, EVAL_DOMAIN, index)
}

/// ChaCha keyed by `(seed, domain)`, on stream `index`: independent generators for every
/// triple, without hashing.
fn stream(seed: u64, domain: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_batches_have_one_marker_per_half_and_sum_the_marked_values() {
        let task = Task::adding(10);
        let batch: Batch<f64> = task.batch(64, &mut train_rng(1, 0)).unwrap();
        assert_eq!(batch.input.dim(), (10, 64, 2));
        let Target::LastValue(target) = &batch.target else {
            panic!("adding targets are values");
        };
        for b in 0..64 {
            let markers: Vec<usize> = (0..10).filter(|&t| batch.input[[t, b, 1]] == 1.0).collect();
            assert_eq!(markers.len(), 2);
            assert!(markers[0] < 5 && markers[1] >= 5, "{markers:?}");
            let sum = batch.input[[markers[0], b, 0]] + batch.input[[markers[1], b, 0]];
            assert_eq!(target[[b, 0]], sum);
            assert!((0..10).all(|t| (0.0..1.0).contains(&batch.input[[t, b, 0]])));
        }
    }

    #[test]
    fn parity_targets_are_running_parities_within_each_length() {
        let task = Task::parity(12);
        let batch: Batch<f32> = task.batch(32, &mut train_rng(2, 5)).unwrap();
        let Target::StepClasses { classes, lengths } = &batch.target else {
            panic!("parity targets are classes");
        };
        assert_eq!(classes.dim(), (12, 32));
        for (b, &length) in lengths.iter().enumerate() {
            assert!((1..=12).contains(&length));
            let mut ones = 0;
            for t in 0..12 {
                let bit = batch.input[[t, b, 0]];
                if t < length {
                    ones += bit as usize;
                    assert_eq!(classes[[t, b]], ones % 2);
                } else {
                    assert_eq!((bit, classes[[t, b]]), (0.0, 0));
                }
            }
        }
    }

    #[test]
    fn batches_are_a_function_of_seed_and_step() {
        let task = Task::adding(8);
        let batch = |rng: &mut ChaCha8Rng| task.batch::<f64, _>(4, rng).unwrap();
        assert_eq!(batch(&mut train_rng(3, 7)), batch(&mut train_rng(3, 7)));
        assert_ne!(batch(&mut train_rng(3, 7)), batch(&mut train_rng(3, 8)));
        assert_ne!(batch(&mut train_rng(3, 7)), batch(&mut train_rng(4, 7)));
        assert_ne!(batch(&mut train_rng(3, 7)), batch(&mut eval_rng(3, 7)));
    }

    #[test]
    fn the_adding_baseline_is_the_variance_of_the_target() {
        // Predicting the mean target (1) scores its variance; measured on many sequences.
        let batch: Batch<f64> = Task::adding(4).batch(20_000, &mut eval_rng(0, 0)).unwrap();
        let Target::LastValue(target) = batch.target else {
            panic!("adding targets are values");
        };
        let mse = target.iter().map(|y| (y - 1.0).powi(2)).sum::<f64>() / 20_000.0;
        assert!(
            (mse - Task::adding(4).baseline_loss()).abs() < 0.01,
            "{mse}"
        );
    }

    #[test]
    fn invalid_sizes_are_reported() {
        assert!(matches!(
            Task::adding(1).batch::<f64, _>(1, &mut train_rng(0, 0)),
            Err(Error::InvalidValue { what, .. }) if what == "seq_len"
        ));
        assert!(Task::parity(0).validate().is_err());
        assert!(Task::adding(2).validate().is_ok());
        assert_eq!(Task::adding(50).name(), "adding");
        assert_eq!(Task::parity(20).output_size(), 2);
    }
}
