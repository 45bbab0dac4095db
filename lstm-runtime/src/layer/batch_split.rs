//! Training calls split by batch rows between the cores. Rows never read each other anywhere
//! in a layer (every product, step, mask and merge is per row), so a large training call runs
//! as two calls of half the batch at once, each on its own share of the threads from its first
//! projection to its last step, and their outputs, then their gradients, are joined; backward
//! sums the two halves' weight gradients once per call. Splitting each time step instead (the
//! recurrent product by panels, the elementwise step by rows) hands work between the cores
//! twice per step, and the reverse loop's weight-gradient products alternate with those
//! hand-overs; split by rows, the halves never wait for each other until the end. Inference
//! stays whole: there, per step, the split step keeps pace with two halves (the README's
//! Performance section).
//!
//! The between-layer dropout of a training call draws one mask for the whole batch, so such
//! calls run whole; every other mask is drawn for the whole call first and cut by rows, so a
//! split call computes what the whole one does, up to the order of floating-point sums.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use ndarray::{ArrayView3, ArrayViewD, Axis, CowArray, Ix3, RemoveAxis, concatenate, s};

use super::Lstm;
use super::bidirectional::MergeMode;
use super::call::{LstmGradients, Output, OutputGrad};
use super::forward::Produced;
use super::prepare::Prepared;
use crate::cell::Cell;
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::parallel::threads::{num_threads, with_threads};

/// Multiply-adds of a call's recurrent products (over every layer and direction) from which
/// it splits: below, starting a thread costs more than the halves save.
const SPLIT_MIN_WORK: usize = 1 << 24;

/// Batch rows from which a training call splits: below, the halves' thinner products lose
/// what the split saves (measured at hidden 256 and 512: the README's Performance section).
const SPLIT_MIN_BATCH: usize = 64;

impl<C: Cell> Lstm<C> {
    /// The row at which the training call `prepared` splits, if it does: two threads or more,
    /// a batch of at least [`SPLIT_MIN_BATCH`] rows, enough work, and no between-layer dropout.
    pub(super) fn split_point(&self, prepared: &Prepared<'_, '_, C::Elem>) -> Option<usize> {
        let (seq_len, batch, _) = prepared.input.dim();
        let config = &self.config;
        let work = seq_len
            .saturating_mul(batch)
            .saturating_mul(C::SPEC.num_gates() * config.hidden_size)
            .saturating_mul(config.output_size())
            .saturating_mul(config.num_layers * config.num_directions());
        let applies = num_threads() >= 2
            && batch >= SPLIT_MIN_BATCH
            && work >= SPLIT_MIN_WORK
            && prepared.dropout_seed.is_none();
        applies.then_some(batch / 2)
    }

    /// Backward through a call recorded by rows: the caller's gradients checked whole, cut at
    /// `at`, each half's backward on its own threads, then the halves' gradients joined (the
    /// parameters' summed).
    pub(super) fn backward_by_rows(
        &self,
        (seq_len, batch, at): (usize, usize, usize),
        halves: [super::tape::Tape<'_, C::Elem>; 2],
        grad: OutputGrad<'_, C::Elem>,
    ) -> Result<LstmGradients<C::Elem>> {
        self.check_output_grad(&grad, seq_len, batch)?;
        let sequence_axis = if self.config.batch_first { 0 } else { 1 };
        let output_axis = if self.config.return_sequences {
            sequence_axis
        } else {
            0
        };
        let cut_states = |rows: Range<usize>| -> Vec<(&str, ArrayView3<'_, C::Elem>)> {
            grad.states
                .iter()
                .map(|(name, g)| (*name, g.slice(s![.., rows.clone(), ..])))
                .collect()
        };
        let states = [cut_states(0..at), cut_states(at..batch)];
        let cut = |rows: Range<usize>, states| OutputGrad {
            output: grad.output.as_ref().map(|g| rows_of(g, output_axis, &rows)),
            output_reverse: grad
                .output_reverse
                .as_ref()
                .map(|g| rows_of(g, output_axis, &rows)),
            h_n: grad.h_n.map(|g| g.slice_move(s![.., rows.clone(), ..])),
            c_n: grad.c_n.map(|g| g.slice_move(s![.., rows.clone(), ..])),
            states,
        };
        let [first, second] = halves;
        let (grad_first, grad_second) = (cut(0..at, &states[0]), cut(at..batch, &states[1]));
        let (a, b) = both(
            || self.backward(first, grad_first),
            || self.backward(second, grad_second),
        );
        let (mut a, b) = (a?, b?);
        for (name, values) in a.params.iter_mut() {
            if let Some(other) = b.params.get(name) {
                *values += other;
            }
        }
        Ok(LstmGradients {
            params: a.params,
            input: join(a.input, b.input, sequence_axis),
            h0: join(a.h0, b.h0, 1),
            c0: join(a.c0, b.c0, 1),
            states: a
                .states
                .into_iter()
                .filter_map(|(name, first)| {
                    let second = b.states.get(&name)?.clone();
                    Some((name, join(first, second, 1)))
                })
                .collect(),
            constants: match (a.constants, b.constants) {
                (Some(a), Some(b)) => Some(join(a, b, 0)),
                _ => None,
            },
        })
    }

    /// Checks the caller's output and state gradients against what a call of `seq_len` steps
    /// and `batch` rows returned, before they are cut by rows.
    fn check_output_grad(
        &self,
        grad: &OutputGrad<'_, C::Elem>,
        seq_len: usize,
        batch: usize,
    ) -> Result<()> {
        let config = &self.config;
        let split_none = config.bidirectional && config.merge_mode == MergeMode::None;
        let width = if split_none {
            config.output_size()
        } else {
            config.merged_size()
        };
        let output_shape = match (config.return_sequences, config.batch_first) {
            (false, _) => vec![batch, width],
            (true, true) => vec![batch, seq_len, width],
            (true, false) => vec![seq_len, batch, width],
        };
        if let Some(output) = &grad.output {
            expect_shape("grad output", &output_shape, output.shape())?;
        }
        match (&grad.output_reverse, split_none) {
            (Some(reverse), true) => {
                expect_shape("grad output_reverse", &output_shape, reverse.shape())?;
            }
            (Some(_), false) => {
                return Err(Error::Config {
                    option: "output_reverse".into(),
                    reason: "only merge_mode none returns the reverse output apart".into(),
                });
            }
            (None, _) => {}
        }
        let states = config.num_layers * config.num_directions();
        if let Some(h_n) = &grad.h_n {
            expect_shape(
                "grad h_n",
                &[states, batch, config.output_size()],
                h_n.shape(),
            )?;
        }
        if let Some(c_n) = &grad.c_n {
            expect_shape(
                "grad c_n",
                &[states, batch, config.hidden_size],
                c_n.shape(),
            )?;
        }
        for (name, value) in grad.states {
            let what = format!("grad {name}_n");
            if !C::SPEC.states.contains(name) {
                return Err(super::states::unknown(C::SPEC, name, &what));
            }
            expect_shape(&what, &[states, batch, config.hidden_size], value.shape())?;
        }
        Ok(())
    }
}

impl<'i, 'c, F: Float> Prepared<'i, 'c, F> {
    /// The call's rows `..at` and `at..`, for training passes: the tape borrows the caller's
    /// own input for `'i` as the whole call's does, or the half copies the input it reads.
    pub(super) fn halves(&self, at: usize) -> [Prepared<'i, 'c, F>; 2] {
        let batch = self.input.len_of(Axis(1));
        [0..at, at..batch].map(|rows| {
            let borrowed = self
                .borrowed
                .map(|input| input.slice_move(s![.., rows.clone(), ..]));
            let input: CowArray<'i, F, Ix3> = match borrowed {
                Some(view) => CowArray::from(view),
                None => CowArray::from(self.input.slice(s![.., rows.clone(), ..]).to_owned()),
            };
            Prepared {
                input,
                borrowed,
                validity: self.validity.rows(rows.clone()),
                h0: self.h0.slice(s![.., rows.clone(), ..]).to_owned(),
                c0: self.c0.slice(s![.., rows.clone(), ..]).to_owned(),
                constants: self
                    .constants
                    .map(|constants| constants.slice_move(s![rows.clone(), ..])),
                dropout_seed: self.dropout_seed,
                mode: self.mode,
                masks: self
                    .masks
                    .as_ref()
                    .map(|masks| std::borrow::Cow::Owned(masks.rows(rows.clone()))),
                record: self.record.clone(),
            }
        })
    }
}

impl<F: Float> Produced<F> {
    /// The outputs and final states of two calls over consecutive rows, as one call's.
    pub(super) fn join(first: Self, second: Self) -> Self {
        let output = |a: Output<F>, b: Output<F>| match (a, b) {
            (Output::Sequence(a), Output::Sequence(b)) => Output::Sequence(join(a, b, 1)),
            (Output::Last(a), Output::Last(b)) => Output::Last(join(a, b, 0)),
            // Both halves run one config: the same kind of output.
            _ => unreachable!("the halves of a call return the same kind of output"),
        };
        Produced {
            output: output(first.output, second.output),
            output_reverse: match (first.output_reverse, second.output_reverse) {
                (Some(a), Some(b)) => Some(output(a, b)),
                _ => None,
            },
            h_n: join(first.h_n, second.h_n, 1),
            c_n: join(first.c_n, second.c_n, 1),
            // Training calls, the only ones split, record nothing.
            records: Vec::new(),
        }
    }
}

/// `a` then `b` along `axis`.
fn join<F: Float, D: RemoveAxis>(
    a: ndarray::Array<F, D>,
    b: ndarray::Array<F, D>,
    axis: usize,
) -> ndarray::Array<F, D> {
    // The halves of one call agree on every other axis.
    concatenate(Axis(axis), &[a.view(), b.view()]).expect("the halves agree but on the rows")
}

/// `rows` of a caller's gradient along its batch `axis`.
fn rows_of<'a, F>(grad: &ArrayViewD<'a, F>, axis: usize, rows: &Range<usize>) -> ArrayViewD<'a, F> {
    let mut view = grad.clone();
    view.slice_axis_inplace(Axis(axis), rows.clone().into());
    view
}

/// Runs `first` and `second` at once, `second` on a thread of its own, each allowed half of
/// [`num_threads`]; both on this thread, one after the other, if no thread can be started.
pub(super) fn both<A: Send, B: Send>(
    first: impl FnOnce() -> A + Send,
    second: impl FnOnce() -> B + Send,
) -> (A, B) {
    let threads = num_threads();
    let (first_threads, second_threads) = (threads / 2, threads - threads / 2);
    let second = Mutex::new(Some(second));
    let take = || {
        second
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("the second half runs once")
    };
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("lstm-rows".into())
            .spawn_scoped(scope, || with_threads(second_threads, take()));
        match spawned {
            Ok(handle) => {
                let a = with_threads(first_threads, first);
                let b = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (a, b)
            }
            // No thread to be had (a resource limit): one half after the other.
            Err(_) => (first(), take()()),
        }
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array, Array3, ArrayD, Dimension, IxDyn, ShapeBuilder};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::layer::call::{Call, LstmOutput};
    use crate::layer::config::LstmConfig;
    use crate::zoo;

    type Layer = Lstm<zoo::Lstm<f64>>;

    fn random<Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<f64, Sh::Dim>
    where
        Sh::Dim: Dimension,
    {
        Array::from_shape_simple_fn(shape, || rng.random_range(-1.0..1.0))
    }

    /// What one training step of `layer` gives on `threads` threads: the output, every
    /// gradient, and whether the call ran by rows.
    struct Step {
        output: LstmOutput<f64>,
        grads: LstmGradients<f64>,
        by_rows: bool,
    }

    fn step(layer: &Layer, input: &Array3<f64>, lengths: &[usize], threads: usize) -> Step {
        let config = layer.config().clone();
        let mut layer = layer.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let batch = if config.batch_first {
            input.dim().0
        } else {
            input.dim().1
        };
        let states = config.num_layers * config.num_directions();
        let h0 = random(&mut rng, (states, batch, config.output_size()));
        let c0 = random(&mut rng, (states, batch, config.hidden_size));
        let call = Call::new()
            .with_lengths(lengths)
            .with_initial_state(h0.view(), c0.view())
            .with_training(true);
        with_threads(threads, || {
            let (output, tape) = layer.forward_train(input.view(), call).unwrap();
            let by_rows = tape.halves.is_some();
            let d_output: ArrayD<f64> = random(&mut rng, IxDyn(output.output.shape()));
            let d_reverse = output
                .output_reverse
                .as_ref()
                .map(|reverse| random(&mut rng, IxDyn(reverse.shape())));
            let d_h: Array3<f64> = random(&mut rng, (states, batch, config.output_size()));
            let d_c: Array3<f64> = random(&mut rng, (states, batch, config.hidden_size));
            let grad = OutputGrad {
                output: Some(d_output.view()),
                output_reverse: d_reverse.as_ref().map(|d| d.view()),
                h_n: Some(d_h.view()),
                c_n: Some(d_c.view()),
                states: &[],
            };
            let grads = layer.backward(tape, grad).unwrap();
            Step {
                output,
                grads,
                by_rows,
            }
        })
    }

    fn assert_close<D: Dimension>(what: &str, a: &Array<f64, D>, b: &Array<f64, D>) {
        assert_eq!(a.shape(), b.shape(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f64::max);
        assert!(worst < 1e-12, "{what}: off by {worst:e}");
    }

    /// Runs `config` whole on one thread and by rows on two, and compares everything.
    fn compare(config: LstmConfig, batch: usize, seq_len: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let layer = Layer::new(config.clone(), &mut rng).unwrap();
        let shape = if config.batch_first {
            (batch, seq_len, config.input_size)
        } else {
            (seq_len, batch, config.input_size)
        };
        let input = random(&mut rng, shape);
        let lengths: Vec<usize> = (0..batch).map(|row| (row * 7) % (seq_len + 1)).collect();
        let whole = step(&layer, &input, &lengths, 1);
        let split = step(&layer, &input, &lengths, 2);
        assert!(
            !whole.by_rows && split.by_rows,
            "the two-thread call runs by rows"
        );
        assert_close(
            "output",
            &whole.output.output.view().to_owned(),
            &split.output.output.view().to_owned(),
        );
        if let (Some(a), Some(b)) = (&whole.output.output_reverse, &split.output.output_reverse) {
            assert_close("output_reverse", &a.view().to_owned(), &b.view().to_owned());
        }
        assert_close(
            "h_n",
            whole.output.h_n.as_ref().unwrap(),
            split.output.h_n.as_ref().unwrap(),
        );
        assert_close(
            "c_n",
            whole.output.c_n.as_ref().unwrap(),
            split.output.c_n.as_ref().unwrap(),
        );
        assert_close("grad input", &whole.grads.input, &split.grads.input);
        assert_close("grad h0", &whole.grads.h0, &split.grads.h0);
        assert_close("grad c0", &whole.grads.c0, &split.grads.c0);
        assert_eq!(whole.grads.params.len(), split.grads.params.len());
        for (name, values) in whole.grads.params.iter() {
            assert_close(name, values, split.grads.params.get(name).unwrap());
        }
    }

    #[test]
    fn a_call_split_by_rows_computes_what_the_whole_call_does() {
        let config = LstmConfig::new(8, 32).with_return_state(true);
        compare(config, 64, 64);
    }

    #[test]
    fn a_split_bidirectional_stack_with_masks_and_uneven_halves_matches_the_whole() {
        let config = LstmConfig::new(8, 32)
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_merge_mode(MergeMode::Mul)
            .with_batch_first(true)
            .with_go_backwards(true)
            .with_return_state(true)
            .with_recurrent_dropout(0.25)
            .with_input_dropout(0.1)
            .with_zoneout(0.1, 0.2)
            .with_weight_drop(0.2)
            .with_seed(3);
        compare(config, 65, 40);
        let last_only = LstmConfig::new(8, 32)
            .with_proj_size(16)
            .with_return_sequences(false)
            .with_return_state(true);
        compare(last_only, 66, 128);
        let apart = LstmConfig::new(8, 32)
            .with_bidirectional(true)
            .with_merge_mode(MergeMode::None)
            .with_return_state(true);
        compare(apart, 64, 64);
    }

    #[test]
    fn between_layer_dropout_keeps_a_call_whole() {
        let config = LstmConfig::new(8, 32).with_num_layers(2).with_dropout(0.5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut layer = Layer::new(config, &mut rng).unwrap();
        let input: Array3<f64> = random(&mut rng, (64, 64, 8));
        let (_, tape) = with_threads(2, || {
            layer
                .forward_train(input.view(), Call::new().with_training(true))
                .unwrap()
        });
        assert!(tape.halves.is_none());
    }

    #[test]
    fn a_wrong_gradient_is_an_error_before_the_split() {
        let config = LstmConfig::new(8, 32);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut layer = Layer::new(config, &mut rng).unwrap();
        let input: Array3<f64> = random(&mut rng, (64, 64, 8));
        let d_h: Array3<f64> = Array3::zeros((1, 63, 32));
        let error = with_threads(2, || {
            let (_, tape) = layer.forward_train(input.view(), Call::new()).unwrap();
            assert!(tape.halves.is_some());
            let grad = OutputGrad {
                output: None,
                output_reverse: None,
                h_n: Some(d_h.view()),
                c_n: None,
                states: &[],
            };
            layer.backward(tape, grad).unwrap_err()
        });
        assert!(error.to_string().contains("grad h_n"), "{error}");
    }

    #[test]
    fn both_runs_each_half_with_its_share_of_the_threads() {
        assert_eq!(with_threads(2, || both(num_threads, num_threads)), (1, 1));
        assert_eq!(with_threads(5, || both(num_threads, num_threads)), (2, 3));
    }
}
