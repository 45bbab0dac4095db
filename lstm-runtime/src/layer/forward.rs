//! The passes of a call through the layers. Inference (`forward`) keeps no per-step
//! activations: a unidirectional stack runs its layers in lockstep, chunk by chunk, so its
//! memory does not grow with the sequence length beyond the output itself (nothing at all
//! with `return_sequences = false`); a bidirectional layer needs its input whole, so each
//! layer's merged output is materialised for the next one. Training (`forward_train`) runs
//! layer after layer and records a [`Tape`]: per (layer, direction) the cell's cache, the
//! recurrent inputs and cell states of every step, plus each layer's input (the caller's own
//! array for the first layer, borrowed, where it can be read as it is). For the standard cell
//! that is the minimal set PyTorch keeps too: the four gates, `c` and `h` of every step.

use std::borrow::Cow;

use ndarray::{Array3, ArrayView, Axis, CowArray, Dimension, Ix3, s};

use super::batch_split::both;
use super::bidirectional::{MergeMode, merge};
use super::call::{Call, LstmOutput, Output};
use super::dropout::Dropout;
use super::prepare::Prepared;
use super::tape::{LayerTape, Tape};
use super::{Lstm, dim2, dim3, states};
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::parallel::helper_thread;
use crate::params::name::ParamName;
use crate::recurrence::Record;
use crate::recurrence::mask::Validity;
use crate::recurrence::pass::{Pass, chunk_steps, zeros_by_both};

/// What the layers produce, time-major, before the config shapes it into an [`LstmOutput`].
pub(super) struct Produced<F> {
    pub(super) output: Output<F>,
    pub(super) output_reverse: Option<Output<F>>,
    pub(super) h_n: Array3<F>,
    pub(super) c_n: Array3<F>,
    /// The recorded values, named as [`LstmOutput::records`], time-major.
    pub(super) records: Vec<(String, Array3<F>)>,
}

/// A run's recorded values named as [`LstmOutput::records`] names them.
fn named<F>(
    recorded: Vec<(&'static str, Array3<F>)>,
    layer: usize,
    direction: Direction,
) -> impl Iterator<Item = (String, Array3<F>)> {
    let suffix = ParamName::suffix(layer, direction);
    recorded
        .into_iter()
        .map(move |(name, values)| (format!("{name}{suffix}"), values))
}

/// A training pass's outputs and its tape.
type Recorded<'i, F> = (Produced<F>, Tape<'i, F>);

/// A layer's merged output, and the reverse direction's apart under [`MergeMode::None`].
type Merged<F> = (Output<F>, Option<Output<F>>);

impl<C: Cell> Lstm<C> {
    /// Runs the layer in inference mode: no per-step activations are kept. `input` is
    /// `(seq_len, batch, input_size)`, or `(batch, seq_len, input_size)` with `batch_first`,
    /// of any memory layout. Takes `&mut self` only to carry states (stateful) and draw
    /// dropout seeds (`call.training`).
    ///
    /// Zero-length sequences (length 0, or a mask without a valid step) are allowed: their
    /// outputs are zero (under a Keras mask with the repeat policy, the repeated "previous
    /// output" is the initial zeros too) and their final state is the initial state.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidValue`] naming `input` if it is not 3-dimensional, or `lengths` if a
    ///   length exceeds `seq_len`.
    /// - [`Error::ShapeMismatch`] naming `input` (feature size), `lengths` (count), `mask`,
    ///   `h0`, `c0`, `constants`, or a weight whose shape no longer fits the config.
    /// - [`Error::Config`] naming `mask` (given with `lengths`) or `constants` (missing for a
    ///   cell that reads them, or given to one that does not).
    ///
    /// [`Error::InvalidValue`]: crate::error::Error::InvalidValue
    /// [`Error::ShapeMismatch`]: crate::error::Error::ShapeMismatch
    /// [`Error::Config`]: crate::error::Error::Config
    pub fn forward<D: Dimension>(
        &mut self,
        input: ArrayView<'_, C::Elem, D>,
        call: Call<'_, C::Elem>,
    ) -> Result<LstmOutput<C::Elem>> {
        let prepared = self.prepare(input, &call)?;
        let (seq_len, batch, _) = prepared.input.dim();
        Self::check_inference_memory(&self.config, seq_len, batch)?;
        let produced = if self.config.bidirectional {
            self.run_layers(&prepared, Record::Nothing)?
        } else {
            self.run_lockstep(&prepared)?
        };
        Ok(self.finish(produced))
    }

    /// Runs the layer as [`Lstm::forward`] does, recording what [`Lstm::backward`] needs.
    ///
    /// # Errors
    ///
    /// As [`Lstm::forward`].
    #[allow(clippy::type_complexity)] // PyTorch's pair: the output, and the tape.
    pub fn forward_train<'i, D: Dimension>(
        &mut self,
        input: ArrayView<'i, C::Elem, D>,
        call: Call<'_, C::Elem>,
    ) -> Result<(LstmOutput<C::Elem>, Tape<'i, C::Elem>)> {
        if call.record.is_some_and(|names| !names.is_empty()) {
            return Err(Error::Config {
                option: "record".into(),
                reason: "recording is for inference calls (`forward`); a training call's tape \
                         keeps what backward needs"
                    .into(),
            });
        }
        let prepared = self.prepare(input, &call)?;
        let (seq_len, batch, _) = prepared.input.dim();
        Self::check_training_memory(&self.config, seq_len, batch)?;
        let (produced, tape) = match self.split_point(&prepared) {
            Some(at) => {
                let [first, second] = prepared.halves(at);
                let (first, second) = both(|| self.record(first), || self.record(second));
                let ((first, first_tape), (second, second_tape)) = (first?, second?);
                let tape = Tape {
                    seq_len,
                    batch,
                    validity: Validity::All,
                    layers: Vec::new(),
                    constants: None,
                    mode: prepared.mode,
                    masks: None,
                    halves: Some((at, Box::new([first_tape, second_tape]))),
                };
                (Produced::join(first, second), tape)
            }
            None => self.record(prepared)?,
        };
        Ok((self.finish(produced), tape))
    }

    /// The training pass of one prepared call (or of half of its rows), and its tape.
    fn record<'i>(&self, prepared: Prepared<'i, '_, C::Elem>) -> Result<Recorded<'i, C::Elem>> {
        let (seq_len, batch, _) = prepared.input.dim();
        let mut layers = Vec::new();
        let produced = self.run_layers(&prepared, Record::Tape(&mut layers))?;
        let tape = Tape {
            seq_len,
            batch,
            validity: prepared.validity,
            layers,
            constants: prepared.constants.map(|c| c.to_owned()),
            mode: prepared.mode,
            masks: prepared.masks.map(Cow::into_owned),
            halves: None,
        };
        Ok((produced, tape))
    }

    /// Inference through a unidirectional stack: every layer advances chunk by chunk, the
    /// output of one chunk of layer `k` feeding the same chunk of layer `k + 1`, so nothing
    /// but the returned output grows with the sequence.
    fn run_lockstep(&self, prepared: &Prepared<'_, '_, C::Elem>) -> Result<Produced<C::Elem>> {
        let (seq_len, batch, _) = prepared.input.dim();
        let layers = self.config.num_layers;
        let directions = (0..layers)
            .map(|layer| {
                self.pass(
                    layer,
                    Direction::Forward,
                    &prepared.validity,
                    prepared.constants,
                    self.regularization(prepared.masks.as_deref(), prepared.mode, layer),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let worth_it = directions
            .iter()
            .any(|direction| direction.helper_worth_it(seq_len, batch));
        // Started before the buffers are allocated, so that both threads zero them.
        helper_thread::with_helper(worth_it, || self.lockstep_with(prepared, &directions))
    }

    /// [`Self::run_lockstep`] over its passes, one per layer, with the helper thread (if any)
    /// already running.
    fn lockstep_with(
        &self,
        prepared: &Prepared<'_, '_, C::Elem>,
        directions: &[Pass<'_, C>],
    ) -> Result<Produced<C::Elem>> {
        let (seq_len, batch, _) = prepared.input.dim();
        let layers = self.config.num_layers;
        let width = self.config.output_size();
        let mut runs: Vec<_> = directions
            .iter()
            .enumerate()
            .map(|(layer, direction)| {
                let mut run = direction.start(
                    prepared.h0.index_axis(Axis(0), layer),
                    prepared.c0.index_axis(Axis(0), layer),
                    seq_len,
                );
                if !prepared.record.is_empty() {
                    run.record(&prepared.record, C::SPEC.record, seq_len);
                }
                run
            })
            .collect();
        let steps_per_chunk = chunk_steps(batch, C::SPEC.num_gates() * self.config.hidden_size);
        let chunk = seq_len.min(steps_per_chunk);
        let mut between: Vec<Array3<C::Elem>> = (1..layers)
            .map(|_| Array3::zeros((chunk, batch, width)))
            .collect();
        let mut dropouts: Vec<Option<Dropout>> = (1..layers)
            .map(|boundary| {
                prepared
                    .dropout_seed
                    .map(|seed| Dropout::new(seed, boundary - 1, self.config.dropout))
            })
            .collect();
        let mut output = self
            .config
            .return_sequences
            .then(|| zeros_by_both((seq_len, batch, width)));
        for t0 in (0..seq_len).step_by(steps_per_chunk) {
            let t1 = (t0 + steps_per_chunk).min(seq_len);
            let steps = t1 - t0;
            for layer in 0..layers {
                let (below, above) = between.split_at_mut(layer);
                let input = match layer {
                    0 => prepared.input.slice(s![t0..t1, .., ..]),
                    _ => below[layer - 1].slice(s![..steps, .., ..]),
                };
                let chunk_output = match above.first_mut() {
                    Some(next_input) => Some(next_input.slice_mut(s![..steps, .., ..])),
                    None => output
                        .as_mut()
                        .map(|output| output.slice_mut(s![t0..t1, .., ..])),
                };
                directions[layer].run_chunk(
                    input,
                    t0,
                    seq_len,
                    &mut runs[layer],
                    chunk_output,
                    Record::Nothing,
                )?;
                if let (Some(next_input), Some(Some(dropout))) =
                    (above.first_mut(), dropouts.get_mut(layer))
                {
                    dropout.apply(next_input.slice_mut(s![..steps, .., ..]));
                }
            }
        }
        let mut h_n = Array3::zeros((layers, batch, width));
        let mut c_n = states::zeros(C::SPEC, layers, batch, self.config.hidden_size);
        let mut records = Vec::new();
        for (layer, run) in runs.iter_mut().enumerate() {
            h_n.index_axis_mut(Axis(0), layer).assign(&run.state.h);
            c_n.index_axis_mut(Axis(0), layer).assign(&run.state.c);
            records.extend(named(run.take_recording(), layer, Direction::Forward));
        }
        let output = match output {
            Some(output) => Output::Sequence(output),
            None => Output::Last(runs[layers - 1].last_output()),
        };
        Ok(Produced {
            output,
            output_reverse: None,
            h_n,
            c_n,
            records,
        })
    }

    /// Layer after layer, each direction over the whole sequence: inference through
    /// bidirectional stacks, and every training pass (recording each layer's tape).
    fn run_layers<'i>(
        &self,
        prepared: &Prepared<'i, '_, C::Elem>,
        mut record: Record<&mut Vec<LayerTape<'i, C::Elem>>>,
    ) -> Result<Produced<C::Elem>> {
        let recording = matches!(record, Record::Tape(_));
        let (seq_len, batch, _) = prepared.input.dim();
        let layers = self.config.num_layers;
        let directions = self.config.num_directions();
        let width = self.config.output_size();
        let mut h_n = Array3::zeros((layers * directions, batch, width));
        let mut c_n = states::zeros(C::SPEC, layers * directions, batch, self.config.hidden_size);
        // Training multiplies by the input in `dW_ih = dZxᵀ · X`: padding must be zero, in a
        // copy. Without padding the tape borrows the caller's array.
        let tape_borrows = prepared
            .borrowed
            .filter(|_| recording && prepared.validity == Validity::All);
        let mut layer_input: CowArray<'_, C::Elem, Ix3> = match (recording, tape_borrows) {
            (true, None) => {
                let mut input = prepared.input.to_owned();
                prepared.validity.zero_invalid(input.view_mut());
                CowArray::from(input)
            }
            _ => CowArray::from(prepared.input.view()),
        };
        let mut input_dropout = None;
        let mut produced = None;
        let mut records = Vec::new();
        for layer in 0..layers {
            let last_layer = layer + 1 == layers;
            let keep_sequence = !last_layer || self.config.return_sequences;
            let mut outputs = Vec::new();
            let mut direction_tapes = Vec::new();
            for direction in &Direction::BOTH[..directions] {
                let index = layer * directions + direction.index();
                let pass = self.pass(
                    layer,
                    *direction,
                    &prepared.validity,
                    prepared.constants,
                    self.regularization(prepared.masks.as_deref(), prepared.mode, index),
                )?;
                let c0 = prepared.c0.index_axis(Axis(0), index);
                // The helper `run_sequence` keeps, started before the buffers are allocated
                // so that both threads zero them.
                let worth_it = pass.helper_worth_it(seq_len, batch);
                let (mut run, sequence, direction_tape) =
                    helper_thread::with_helper(worth_it, || {
                        let mut run =
                            pass.start(prepared.h0.index_axis(Axis(0), index), c0, seq_len);
                        if !recording && !prepared.record.is_empty() {
                            run.record(&prepared.record, C::SPEC.record, seq_len);
                        }
                        let mut sequence =
                            keep_sequence.then(|| zeros_by_both((seq_len, batch, width)));
                        let mut direction_tape = recording.then(|| pass.tape(seq_len, c0));
                        let direction_record = match direction_tape.as_mut() {
                            Some(tape) => Record::Tape(tape),
                            None => Record::Nothing,
                        };
                        pass.run_sequence(
                            layer_input.view(),
                            &mut run,
                            sequence.as_mut().map(|sequence| sequence.view_mut()),
                            direction_record,
                        )
                        .map(|()| (run, sequence, direction_tape))
                    })?;
                outputs.push(match sequence {
                    Some(sequence) => Output::Sequence(sequence),
                    None => Output::Last(run.last_output()),
                });
                h_n.index_axis_mut(Axis(0), index).assign(&run.state.h);
                c_n.index_axis_mut(Axis(0), index).assign(&run.state.c);
                records.extend(named(run.take_recording(), layer, *direction));
                direction_tapes.extend(direction_tape);
            }
            // `Mul`'s gradient is the only one that reads the merged outputs.
            let merge_operands = match outputs.as_slice() {
                [forward, reverse] if recording && self.config.merge_mode == MergeMode::Mul => {
                    Some((forward.view().to_owned(), reverse.view().to_owned()))
                }
                _ => None,
            };
            let (merged, output_reverse) = self.merge_outputs(outputs);
            if let Record::Tape(tape) = record.reborrow() {
                let input = match tape_borrows.filter(|_| layer == 0) {
                    Some(caller) => CowArray::from(caller),
                    None => {
                        // The next layer reads the merged output, so the tape can take this
                        // input (moved: owned unless borrowed above).
                        let input = std::mem::replace(
                            &mut layer_input,
                            CowArray::from(Array3::zeros((0, 0, 0))),
                        )
                        .into_owned();
                        CowArray::from(if input.is_standard_layout() {
                            input
                        } else {
                            input.as_standard_layout().into_owned()
                        })
                    }
                };
                tape.push(LayerTape {
                    input,
                    dropout: input_dropout.take(),
                    directions: direction_tapes,
                    merge_operands,
                });
            }
            match merged {
                Output::Sequence(mut next) if !last_layer => {
                    if let Some(seed) = prepared.dropout_seed {
                        let mask = Dropout::new(seed, layer, self.config.dropout).mask(next.dim());
                        next *= &mask;
                        input_dropout = recording.then_some(mask);
                    }
                    layer_input = CowArray::from(next);
                }
                output => produced = Some((output, output_reverse)),
            }
        }
        // `num_layers ≥ 1` is validated, and the last layer always produces the output.
        let (output, output_reverse) = produced.expect("the last layer produces the output");
        Ok(Produced {
            output,
            output_reverse,
            h_n,
            c_n,
            records,
        })
    }

    /// A layer's output from its directions' outputs: the merge, and the reverse output kept
    /// apart under [`MergeMode::None`].
    fn merge_outputs(&self, mut outputs: Vec<Output<C::Elem>>) -> Merged<C::Elem> {
        let reverse = if outputs.len() == 2 {
            outputs.pop()
        } else {
            None
        };
        let forward = outputs.pop().expect("every layer has a forward direction");
        let Some(reverse) = reverse else {
            return (forward, None);
        };
        let mode = self.config.merge_mode;
        if mode == MergeMode::None {
            return (forward, Some(reverse));
        }
        // Both directions of a layer return the same shape: sequences, or last outputs.
        let merged = match (&forward, reverse.view()) {
            (Output::Sequence(f), r) => Output::Sequence(merge(mode, f.view(), dim3(r))),
            (Output::Last(f), r) => Output::Last(merge(mode, f.view(), dim2(r))),
        };
        (merged, None)
    }

    /// Shapes what the layers produced as the config asks, and carries the states of a
    /// stateful layer.
    fn finish(&mut self, produced: Produced<C::Elem>) -> LstmOutput<C::Elem> {
        if self.config.stateful {
            self.state = Some((produced.h_n.clone(), produced.c_n.clone()));
        }
        let layout = |output: Output<C::Elem>| match output {
            Output::Sequence(sequence) => Output::Sequence(self.to_caller_layout(sequence)),
            last => last,
        };
        let return_state = self.config.return_state;
        let hidden = self.config.hidden_size;
        let (c_n, extra_states) = if return_state {
            (
                states::block(C::SPEC, &produced.c_n, "c", hidden),
                states::extras(C::SPEC, &produced.c_n, hidden),
            )
        } else {
            (None, Default::default())
        };
        LstmOutput {
            output: layout(produced.output),
            output_reverse: produced.output_reverse.map(layout),
            h_n: return_state.then_some(produced.h_n),
            c_n,
            states: extra_states,
            records: produced
                .records
                .into_iter()
                .map(|(name, values)| (name, self.to_caller_layout(values)))
                .collect(),
        }
    }
}
