//! Data-parallel training: what every rank of a distributed run does besides what one process
//! does, independent of the message-passing library underneath.
//!
//! Every rank holds the whole model. At each step every rank draws the step's whole global
//! batch (a function of the seed and the step, as in one process: drawing is cheap next to
//! the forward and backward passes; a data run's batch is a function of the seed and the
//! epoch's shuffle), keeps its own contiguous [`shard_range`] of it, and
//! computes the loss and gradients of that shard scaled by the shard's [`ShardShare`] of the
//! batch. The scaled gradients, the loss and the accuracy go into one flat buffer
//! ([`FlatStep`]) and one all-reduce sums it over the ranks ([`FlatStep::sum_over`]); the sum is
//! the whole batch's mean loss and gradient. Every rank then adds the weight penalties,
//! clips, and steps Adam on the same numbers, so the weights stay bit-identical on every rank
//! without ever being sent.
//!
//! [`Collective`] is the little this needs from a communicator; `mpi_world.rs` (feature
//! `mpi`) implements it over MPI.

use std::any::Any;
use std::ops::Range;

use lstm::ndarray::{ArrayD, Axis, IxDyn};
use lstm::{Float, Gradients};

use super::model::ShardShare;
use super::tasks::{Batch, Target};

/// Why a distributed step or run failed.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// The runtime rejected something on this rank: a config, a checkpoint, a diverged
    /// gradient.
    #[error(transparent)]
    Runtime(#[from] lstm::Error),
    /// A collective operation failed or was given what it cannot carry.
    #[error("{operation} across the ranks failed: {reason}")]
    Collective {
        /// The operation (`all-reduce`, `broadcast`).
        operation: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The global batch has fewer sequences than there are ranks.
    #[error(
        "batch_size {batch_size} is smaller than the {ranks} ranks; every rank needs at least \
         one sequence of each step's batch"
    )]
    BatchTooSmall {
        /// The global batch size.
        batch_size: usize,
        /// Ranks in the run.
        ranks: usize,
    },
    /// A trainer made for one number of ranks was stepped with another.
    #[error("the trainer was made for {expected} ranks but the communicator has {found}")]
    RankCount {
        /// Ranks the trainer was made for.
        expected: usize,
        /// Ranks of the communicator it was stepped with.
        found: usize,
    },
    /// Rank 0 could not start the run (its own error is on its standard error).
    #[error("rank 0 could not start the run: {0}")]
    RootFailed(String),
}

/// What data-parallel training needs from a communicator of `size` ranks.
pub trait Collective {
    /// This process' rank, `0..size`.
    fn rank(&self) -> usize;

    /// Ranks in the run.
    fn size(&self) -> usize;

    /// Replaces `values` on every rank by their element-wise sum over all ranks, the same
    /// sum on every rank.
    ///
    /// # Errors
    ///
    /// [`DistributedError::Collective`] if the operation fails.
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), DistributedError>;

    /// As [`Collective::sum_f32`], for `f64`.
    ///
    /// # Errors
    ///
    /// As [`Collective::sum_f32`].
    fn sum_f64(&self, values: &mut [f64]) -> Result<(), DistributedError>;

    /// Replaces `bytes` on every rank by rank 0's.
    ///
    /// # Errors
    ///
    /// [`DistributedError::Collective`] if the operation fails.
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), DistributedError>;
}

/// The sequences of a global batch of `batch_size` that rank `rank` of `ranks` trains on:
/// contiguous, in rank order, the first `batch_size % ranks` ranks one sequence more.
pub fn shard_range(batch_size: usize, ranks: usize, rank: usize) -> Range<usize> {
    let ranks = ranks.max(1);
    let (base, extra) = (batch_size / ranks, batch_size % ranks);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    start..(start + len).min(batch_size)
}

/// The seed of rank `rank`'s dropout and zoneout masks at a step whose masks one process
/// would seed with `seed`: rank 0 keeps it (one rank trains as one process does), the others
/// get their own streams, so no two shards share a mask.
pub fn mask_seed(seed: u64, rank: usize) -> u64 {
    // An odd constant (2^64 / golden ratio) spreads consecutive ranks over the seeds.
    seed.wrapping_add((rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The sequences `range` of `batch` as a batch of their own, and their [`ShardShare`] of it.
///
/// # Errors
///
/// [`lstm::Error::InvalidValue`] naming `shard` if `range` is empty or past the batch, or the
/// batch is a data set's (its targets rows, sharded by the data run instead).
pub fn shard<F: Float>(
    batch: &Batch<F>,
    range: Range<usize>,
) -> Result<(Batch<F>, ShardShare), lstm::Error> {
    let sequences = batch.input.len_of(Axis(1));
    if range.is_empty() || range.end > sequences {
        return Err(lstm::Error::invalid_value(
            "shard",
            format!("sequences {range:?} of a batch of {sequences}"),
        ));
    }
    let input = batch
        .input
        .slice_axis(Axis(1), (range.start..range.end).into())
        .to_owned();
    let sequence_share = range.len() as f64 / sequences as f64;
    let (target, loss_share) = match &batch.target {
        Target::LastValue(values) => (
            Target::LastValue(
                values
                    .slice_axis(Axis(0), (range.start..range.end).into())
                    .to_owned(),
            ),
            sequence_share,
        ),
        Target::StepClasses { classes, lengths } => {
            let total: usize = lengths.iter().sum();
            let own = &lengths[range.clone()];
            let counted: usize = own.iter().sum();
            let share = if total == 0 {
                sequence_share
            } else {
                counted as f64 / total as f64
            };
            (
                Target::StepClasses {
                    classes: classes
                        .slice_axis(Axis(1), (range.start..range.end).into())
                        .to_owned(),
                    lengths: own.to_vec(),
                },
                share,
            )
        }
        Target::Rows { .. } => {
            return Err(lstm::Error::invalid_value(
                "shard",
                "a data set's batch; data runs shard their epochs' batches themselves",
            ));
        }
    };
    Ok((
        Batch { input, target },
        ShardShare {
            loss: loss_share,
            sequences: sequence_share,
        },
    ))
}

/// A step's gradients, loss and accuracy in one flat buffer, the one thing a step sends:
/// the gradients in name order, then the loss, then the accuracy (0 without one).
#[derive(Clone, Debug, PartialEq)]
pub struct FlatStep<F> {
    /// The values.
    pub values: Vec<F>,
    /// Each gradient's name and shape, in the buffer's order.
    layout: Vec<(String, Vec<usize>)>,
}

impl<F: Float> FlatStep<F> {
    /// `grads`, `loss` and `accuracy` in one buffer.
    pub fn pack(grads: Gradients<F>, loss: f64, accuracy: Option<f64>) -> Self {
        let count: usize = grads.iter().map(|(_, values)| values.len()).sum();
        let mut values = Vec::with_capacity(count + 2);
        let mut layout = Vec::with_capacity(grads.len());
        for (name, tensor) in grads.iter() {
            values.extend(tensor.iter().copied());
            layout.push((name.to_string(), tensor.shape().to_vec()));
        }
        values.push(F::of(loss));
        values.push(F::of(accuracy.unwrap_or(0.0)));
        FlatStep { values, layout }
    }

    /// Replaces the values by their sum over the ranks of `collective`, in their own element
    /// type: the step's one all-reduce.
    ///
    /// # Errors
    ///
    /// As [`Collective::sum_f32`].
    pub fn sum_over(&mut self, collective: &dyn Collective) -> Result<(), DistributedError> {
        let values: &mut dyn Any = &mut self.values;
        if let Some(values) = values.downcast_mut::<Vec<f32>>() {
            collective.sum_f32(values)
        } else if let Some(values) = values.downcast_mut::<Vec<f64>>() {
            collective.sum_f64(values)
        } else {
            // `Float` is sealed to `f32` and `f64`.
            Err(DistributedError::Collective {
                operation: "all-reduce",
                reason: format!("no reduction for elements of type {}", F::DTYPE),
            })
        }
    }

    /// The gradients, the loss and the accuracy back (`has_accuracy` says whether there is
    /// one).
    pub fn unpack(self, has_accuracy: bool) -> (Gradients<F>, f64, Option<f64>) {
        let FlatStep { values, layout } = self;
        let mut grads = Gradients::new();
        let mut offset = 0;
        for (name, shape) in layout {
            let len: usize = shape.iter().product();
            let tensor =
                ArrayD::from_shape_vec(IxDyn(&shape), values[offset..offset + len].to_vec())
                    // The length is the product of the shape, by construction in `pack`.
                    .expect("a packed gradient fills its shape");
            grads.insert(name, tensor);
            offset += len;
        }
        let loss = values[offset].to_f64_lossy();
        let accuracy = has_accuracy.then(|| values[offset + 1].to_f64_lossy());
        (grads, loss, accuracy)
    }
}

#[cfg(test)]
mod tests {
    use lstm::ndarray::{Array2, Array3, array};

    use super::*;

    #[test]
    fn shards_cover_the_batch_in_order_without_overlap() {
        for batch in 1..20 {
            for ranks in 1..=batch.min(6) {
                let ranges: Vec<_> = (0..ranks).map(|r| shard_range(batch, ranks, r)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[ranks - 1].end, batch);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                let sizes: Vec<usize> = ranges.iter().map(Range::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(
                    *min >= 1 && max - min <= 1,
                    "{batch} over {ranks}: {sizes:?}"
                );
            }
        }
        assert_eq!(shard_range(10, 3, 0), 0..4);
        assert_eq!(shard_range(10, 3, 2), 7..10);
    }

    #[test]
    fn mask_seeds_differ_by_rank_and_rank_0_keeps_the_seed() {
        assert_eq!(mask_seed(42, 0), 42);
        assert_ne!(mask_seed(42, 1), mask_seed(42, 2));
        assert_ne!(mask_seed(42, 1), 42);
    }

    #[test]
    fn parity_shards_weigh_by_their_counted_steps() {
        let batch = Batch {
            input: Array3::<f64>::zeros((3, 3, 1)),
            target: Target::StepClasses {
                classes: Array2::zeros((3, 3)),
                lengths: vec![3, 1, 2],
            },
        };
        let (first, share) = shard(&batch, 0..1).unwrap();
        assert_eq!(share.loss, 0.5);
        assert!((share.sequences - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(first.input.dim(), (3, 1, 1));
        let (rest, share) = shard(&batch, 1..3).unwrap();
        assert_eq!(share.loss, 0.5);
        let Target::StepClasses { lengths, classes } = rest.target else {
            panic!("parity shards keep their classes");
        };
        assert_eq!((lengths, classes.dim()), (vec![1, 2], (3, 2)));
        assert!(shard(&batch, 2..4).is_err());
        assert!(shard(&batch, 1..1).is_err());
    }

    #[test]
    fn adding_shards_are_slices_of_the_batch() {
        let batch = Batch {
            input: Array3::from_shape_fn((2, 4, 2), |(t, b, i)| (t * 100 + b * 10 + i) as f32),
            target: Target::LastValue(array![[0.0f32], [1.0], [2.0], [3.0]]),
        };
        let (part, share) = shard(&batch, 1..3).unwrap();
        assert_eq!(share.loss, 0.5);
        assert_eq!(part.input[[1, 0, 1]], 111.0);
        assert_eq!(part.target, Target::LastValue(array![[1.0f32], [2.0]]));
    }

    #[test]
    fn a_flat_step_unpacks_to_what_was_packed() {
        let mut grads = Gradients::new();
        grads.insert("b", array![[1.0f64, 2.0], [3.0, 4.0]].into_dyn());
        grads.insert("a", array![5.0f64].into_dyn());
        let flat = FlatStep::pack(grads.clone(), 0.25, Some(0.5));
        // Name order, then the loss and the accuracy.
        assert_eq!(flat.values, [5.0, 1.0, 2.0, 3.0, 4.0, 0.25, 0.5]);
        let (back, loss, accuracy) = flat.clone().unpack(true);
        assert_eq!((loss, accuracy), (0.25, Some(0.5)));
        assert_eq!(back, grads);
        assert_eq!(flat.unpack(false).2, None);
    }
}
