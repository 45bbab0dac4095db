//! [`Lstm`]: the full recurrent layer PyTorch's `nn.LSTM` and Keras' `LSTM`, `RNN(cell)` and
//! `Bidirectional` offer, for any [`Cell`]: stacked layers with dropout between them, both
//! directions with a merge mode, LSTMP projection, lengths and masks, `go_backwards`, initial
//! and carried (stateful) states, constants, both layouts, and backpropagation through all of
//! it.
//!
//! This module orchestrates; the work lives elsewhere. Per (layer, direction) the time loop is
//! `layer.rs` and its reverse `bptt.rs`; masks and lengths are `mask.rs`, merging is
//! `bidirectional.rs`, inter-layer dropout `dropout.rs`.
//!
//! Inference (`forward`) keeps no per-step activations. A unidirectional stack runs its layers
//! in lockstep, chunk by chunk, so its memory does not grow with the sequence length beyond
//! the output itself (nothing at all with `return_sequences = false`). A bidirectional layer
//! needs its input whole: each layer's merged output is materialised for the next one.
//! Training (`forward_train`) records a [`Tape`]: per (layer, direction) the cell's cache, the
//! recurrent inputs and cell states of every step, plus each layer's input (the caller's own
//! array for the first layer, borrowed, where it can be read as it is). For the standard cell
//! that is the minimal set PyTorch keeps too: the four gates, `c` and `h` of every step.

use std::borrow::Cow;

use ndarray::{
    Array2, Array3, ArrayD, ArrayView, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMutD, Axis,
    CowArray, Dimension, Ix2, Ix3, s,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bidirectional::{merge, merge_backward};
use crate::bptt::{InputGrads, Seeds};
use crate::call::{Call, LstmGradients, LstmOutput, Output, OutputGrad};
use crate::dropout::Dropout;
use crate::error::{Error, Result, expect_shape};
use crate::layer::{Direction, DirectionTape, Setup, check_weights, chunk_steps};
use crate::mask::Validity;
use crate::masks::{InRecurrence, RecurrentMasks};
use num_traits::Zero;

use crate::{Cell, Float, Gradients, Init, LstmConfig, MergeMode, Parameters, duet};

/// A recurrent layer of any cell: `num_layers` stacked layers, each in one or two directions,
/// as configured by an [`LstmConfig`].
///
/// Holds one cell per (layer, direction) and, with `proj_size`, one projection `weight_hr`
/// each; its tensors are named as in PyTorch's `state_dict` (see [`Parameters`]).
///
/// ```
/// use lstm_runtime::ndarray::Array3;
/// use lstm_runtime::zoo::Peephole;
/// use lstm_runtime::{Call, Lstm, LstmConfig};
///
/// let config = LstmConfig::new(3, 8).with_num_layers(2).with_bidirectional(true);
/// let mut layer = Lstm::<Peephole<f32>>::new(config, &mut rand::rng())?;
/// let input = Array3::<f32>::zeros((5, 4, 3)); // (seq_len, batch, input_size)
/// let lengths = [5, 3, 1, 0];
/// let out = layer.forward(input.view(), Call::new().with_lengths(&lengths))?;
/// assert_eq!(out.output.shape(), &[5, 4, 16]);
/// assert_eq!(out.h_n.unwrap().dim(), (4, 4, 8));
/// # Ok::<(), lstm_runtime::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Lstm<C: Cell> {
    config: LstmConfig,
    /// One per (layer, direction), index `layer · num_directions + direction`.
    cells: Vec<C>,
    /// The LSTMP projection of each (layer, direction), `(proj_size, hidden_size)`.
    weight_hr: Vec<Option<Array2<C::Elem>>>,
    /// The carried `(h, c)` of a stateful layer.
    state: Option<StatePair<C::Elem>>,
    /// Draws each call's dropout seed.
    rng: ChaCha8Rng,
}

/// The gradient of one direction's output, time-major: the caller's own array where it can
/// be read in place, else computed (split from a merge, or the layer above's input gradient).
enum DOutput<'g, F> {
    /// `(seq_len, batch, features)`.
    Sequence(CowArray<'g, F, Ix3>),
    /// `(batch, features)`.
    Last(CowArray<'g, F, Ix2>),
}

/// `(h, c)` of every layer and direction: `(num_layers · num_directions, batch, ·)` each.
type StatePair<F> = (Array3<F>, Array3<F>);

/// What [`Lstm::forward_train`] records for [`Lstm::backward`]: per (layer, direction) the
/// cell's cache, recurrent inputs and cell states of every step, each layer's input and
/// dropout mask, and the call's lengths or mask and constants. Opaque; pass it back to the
/// layer that made it, with the same weights.
///
/// The tape borrows the call's input for `'i` instead of copying it when the first layer can
/// read it as it is (time-major in standard layout, not reversed by `go_backwards`, no
/// padding to zero), so the input must outlive the tape, as a training step's batch does.
#[derive(Clone, Debug)]
pub struct Tape<'i, F> {
    seq_len: usize,
    batch: usize,
    validity: Validity,
    layers: Vec<LayerTape<'i, F>>,
    constants: Option<Array2<F>>,
    /// The call's training mode: zoneout's expectation applies when off.
    training: bool,
    /// The masks of the regularisers inside the recurrence the call applied.
    masks: Option<RecurrentMasks<F>>,
}

/// One layer's part of a [`Tape`].
#[derive(Clone, Debug)]
struct LayerTape<'i, F> {
    /// The layer's input, time-major: `(seq_len · batch, input features)`. The first layer
    /// borrows the caller's input when it is time-major in standard layout and has no
    /// padding (which training zeroes in a copy).
    input: CowArray<'i, F, Ix2>,
    /// The dropout multipliers that made `input` from the layer below's output.
    dropout: Option<Array3<F>>,
    /// Forward, then reverse.
    directions: Vec<DirectionTape<F>>,
    /// Both directions' outputs, kept for [`MergeMode::Mul`]'s gradient.
    merge_operands: Option<(ArrayD<F>, ArrayD<F>)>,
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
        layers + masks
    }

    /// Whether the tape stores nothing (an empty sequence or batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A call's inputs, checked and put in the shape the time loop reads: the input borrowed for
/// `'i`, the call's other arrays for `'c`.
struct Prepared<'i, 'c, F: Clone> {
    /// Time-major, standard layout, reversed when `go_backwards`.
    input: CowArray<'i, F, Ix3>,
    /// `input` when it is the caller's own array (not copied to reverse or lay it out).
    borrowed: Option<ArrayView3<'i, F>>,
    /// Of the (reversed) input.
    validity: Validity,
    h0: Array3<F>,
    c0: Array3<F>,
    constants: Option<ArrayView2<'c, F>>,
    /// Seeds the between-layer dropout masks when that dropout applies to this call.
    dropout_seed: Option<u64>,
    /// Training mode.
    training: bool,
    /// The masks of the regularisers inside the recurrence: injected, or drawn for a
    /// training call of a layer that has any.
    masks: Option<Cow<'c, RecurrentMasks<F>>>,
}

/// What the layers produce, time-major, before the config shapes it into an [`LstmOutput`].
struct Produced<F> {
    output: Output<F>,
    output_reverse: Option<Output<F>>,
    h_n: Array3<F>,
    c_n: Array3<F>,
}

impl<C: Cell> Lstm<C> {
    /// A layer with freshly initialised cells (each cell's own init, PyTorch's uniform
    /// `±1/√hidden_size` by default) and projections (uniform `±1/√hidden_size`, as PyTorch),
    /// then the biases the config's [`LstmConfig::unit_forget_bias`] or
    /// [`LstmConfig::chrono_t_max`] ask for.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the option the config or the cell type rejects (see
    /// [`LstmConfig::validate_for`]).
    pub fn new<R: Rng + ?Sized>(config: LstmConfig, rng: &mut R) -> Result<Self> {
        config.validate_for::<C>()?;
        let directions = config.num_directions();
        let mut cells = Vec::new();
        let mut weight_hr = Vec::new();
        for layer in 0..config.num_layers {
            for _ in 0..directions {
                cells.push(C::init(config.cell_dims(layer), rng));
                weight_hr.push((config.proj_size > 0).then(|| {
                    let mut values = vec![C::Elem::zero(); config.proj_size * config.hidden_size];
                    Init::Default.fill(&mut values, config.hidden_size, rng);
                    Array2::from_shape_vec((config.proj_size, config.hidden_size), values)
                        // proj_size · hidden_size values: infallible.
                        .expect("one value per element")
                }));
            }
        }
        crate::bias_init::init_long_memory(&mut cells, &config, rng);
        Ok(Self::assemble(config, cells, weight_hr))
    }

    /// A layer from given cells, for weight import: `cells` and `weight_hr` in PyTorch's order
    /// (layer-major, forward before reverse), `weight_hr` `Some` exactly when `proj_size > 0`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a config the cell type rejects, or naming `cells` / `weight_hr`
    /// if their number is not `num_layers · num_directions` or `weight_hr` is given without
    /// `proj_size`; [`Error::ShapeMismatch`] naming the first tensor (`weight_ih_l1_reverse`)
    /// whose shape does not fit the config.
    pub fn from_cells(
        config: LstmConfig,
        cells: Vec<C>,
        weight_hr: Vec<Option<Array2<C::Elem>>>,
    ) -> Result<Self> {
        config.validate_for::<C>()?;
        let expected = config.num_layers * config.num_directions();
        for (option, found) in [("cells", cells.len()), ("weight_hr", weight_hr.len())] {
            if found != expected {
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!(
                        "expected one per layer and direction ({expected}), found {found}"
                    ),
                });
            }
        }
        if config.proj_size == 0 && weight_hr.iter().any(Option::is_some) {
            return Err(Error::Config {
                option: "weight_hr".into(),
                reason: "a projection is given but proj_size is 0".into(),
            });
        }
        let layer = Self::assemble(config, cells, weight_hr);
        for index in 0..expected {
            let (layer_index, reverse) = layer.position(index);
            check_weights(
                &layer.cells[index],
                layer.weight_hr[index].as_ref(),
                layer.config.cell_dims(layer_index),
                &LstmConfig::weight_suffix(layer_index, reverse),
            )?;
        }
        Ok(layer)
    }

    fn assemble(
        config: LstmConfig,
        cells: Vec<C>,
        weight_hr: Vec<Option<Array2<C::Elem>>>,
    ) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Lstm {
            config,
            cells,
            weight_hr,
            state: None,
            rng,
        }
    }

    /// The config.
    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    /// The cell of `layer` in the forward (`reverse = false`) or reverse direction.
    pub fn cell(&self, layer: usize, reverse: bool) -> Option<&C> {
        let index = self.index(layer, reverse)?;
        self.cells.get(index)
    }

    /// The cell of `layer` and direction, mutably (to load or update weights; its shapes must
    /// stay those of [`LstmConfig::cell_dims`], which every call checks).
    pub fn cell_mut(&mut self, layer: usize, reverse: bool) -> Option<&mut C> {
        let index = self.index(layer, reverse)?;
        self.cells.get_mut(index)
    }

    /// The LSTMP projection `(proj_size, hidden_size)` of `layer` and direction.
    pub fn weight_hr(&self, layer: usize, reverse: bool) -> Option<&Array2<C::Elem>> {
        let index = self.index(layer, reverse)?;
        self.weight_hr.get(index)?.as_ref()
    }

    /// The LSTMP projection of `layer` and direction, mutably.
    pub fn weight_hr_mut(&mut self, layer: usize, reverse: bool) -> Option<&mut Array2<C::Elem>> {
        let index = self.index(layer, reverse)?;
        self.weight_hr.get_mut(index)?.as_mut()
    }

    /// The states a stateful layer carries into its next call: `(h, c)` shaped as `h_n`,
    /// `c_n`; `None` before the first call, after [`Lstm::reset_states`], or when not
    /// stateful.
    #[allow(clippy::type_complexity)] // A pair of borrowed arrays, as PyTorch's `(h_n, c_n)`.
    pub fn states(&self) -> Option<(&Array3<C::Elem>, &Array3<C::Elem>)> {
        self.state.as_ref().map(|(h, c)| (h, c))
    }

    /// Restarts the generator every training call draws its masks from, as if the layer had
    /// been made with [`LstmConfig::seed`] `seed` (the config keeps its value). A training
    /// loop that reseeds before each step from `(seed, step)` gets masks that depend only on
    /// the step, so a run resumed from a checkpoint draws what the uninterrupted run drew.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Forgets the carried states of a stateful layer: the next call starts from zeros (Keras
    /// `reset_states`).
    pub fn reset_states(&mut self) {
        self.state = None;
    }

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
    pub fn forward<D: Dimension>(
        &mut self,
        input: ArrayView<'_, C::Elem, D>,
        call: Call<'_, C::Elem>,
    ) -> Result<LstmOutput<C::Elem>> {
        let prepared = self.prepare(input, &call)?;
        let produced = if self.config.bidirectional {
            self.run_layers(&prepared, None)?
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
        let prepared = self.prepare(input, &call)?;
        let mut layers = Vec::new();
        let produced = self.run_layers(&prepared, Some(&mut layers))?;
        let (seq_len, batch, _) = prepared.input.dim();
        let tape = Tape {
            seq_len,
            batch,
            validity: prepared.validity,
            layers,
            constants: prepared.constants.map(|c| c.to_owned()),
            training: prepared.training,
            masks: prepared.masks.map(Cow::into_owned),
        };
        Ok((self.finish(produced), tape))
    }

    /// Backpropagation through time: the gradients of a loss with respect to every
    /// parameter, the input, the initial states and the constants, given the loss's gradient
    /// with respect to what [`Lstm::forward_train`] returned (absent parts count as zero).
    ///
    /// Gradients of `h_n`/`c_n` are accepted even when `return_state` is off (they are the
    /// gradients of the states the layer reached).
    ///
    /// Consumes the tape, as PyTorch frees a graph's saved tensors in its backward pass: a
    /// step's cached gate values are spent once its backward step has run, and their memory
    /// takes that step's pre-activation gradients for the batched weight products. To run
    /// backward twice, clone the tape first.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `grad output`, `grad output_reverse`, `grad h_n` or
    /// `grad c_n` if shaped unlike what the call returned; [`Error::Config`] naming `tape` if
    /// the tape comes from a layer of another shape, or `output_reverse` if given without
    /// [`MergeMode::None`].
    pub fn backward(
        &self,
        mut tape: Tape<'_, C::Elem>,
        grad: OutputGrad<'_, C::Elem>,
    ) -> Result<LstmGradients<C::Elem>> {
        self.check_tape(&tape)?;
        let (seq_len, batch) = (tape.seq_len, tape.batch);
        let directions = self.config.num_directions();
        let states = self.config.num_layers * directions;
        let width = self.config.output_size();
        let hidden = self.config.hidden_size;
        let dh_n = grad_or_zeros("grad h_n", grad.h_n, (states, batch, width))?;
        let dc_n = grad_or_zeros("grad c_n", grad.c_n, (states, batch, hidden))?;
        let mut d_directions = self.top_gradients(&tape, &grad)?;
        let mut params = Gradients::new();
        let mut h0 = Array3::zeros((states, batch, width));
        let mut c0 = Array3::zeros((states, batch, hidden));
        let mut d_constants = tape.constants.as_ref().map(|c| Array2::zeros(c.raw_dim()));
        let mut d_input = None;
        for layer in (0..self.config.num_layers).rev() {
            let layer_tape = &mut tape.layers[layer];
            let mut d_layer_input = Array2::zeros(layer_tape.input.raw_dim());
            for (direction_index, d_output) in d_directions.iter().enumerate() {
                let reverse = direction_index == 1;
                let index = layer * directions + direction_index;
                let direction = self.direction(
                    layer,
                    reverse,
                    &tape.validity,
                    tape.constants.as_ref().map(|c| c.view()),
                    self.regularization(tape.masks.as_ref(), tape.training, index),
                )?;
                let mut dh_final = dh_n.index_axis(Axis(0), index).to_owned();
                let d_sequence = match d_output {
                    DOutput::Sequence(d_sequence) => Some(d_sequence.view()),
                    DOutput::Last(d_last) => {
                        // The last valid output is the final `h` of a row with a valid step.
                        for (row, mut dh) in dh_final.axis_iter_mut(Axis(0)).enumerate() {
                            if tape.validity.any_valid(row, seq_len) {
                                dh += &d_last.row(row);
                            }
                        }
                        None
                    }
                };
                let grads = direction.backward(
                    &mut layer_tape.directions[direction_index],
                    Seeds {
                        input: layer_tape.input.view(),
                        d_output: d_sequence,
                        dh_n: dh_final.view(),
                        dc_n: dc_n.index_axis(Axis(0), index),
                        constants: tape.constants.as_ref().map(|c| c.view()),
                    },
                    InputGrads {
                        input: d_layer_input.view_mut(),
                        constants: d_constants.as_mut().map(|c| c.view_mut()),
                    },
                )?;
                let suffix = LstmConfig::weight_suffix(layer, reverse);
                grads.cell.visit(&mut |name, values| {
                    params.insert(format!("{name}{suffix}"), values.to_owned());
                });
                if let Some(weight_hr) = grads.weight_hr {
                    params.insert(format!("weight_hr{suffix}"), weight_hr.into_dyn());
                }
                h0.index_axis_mut(Axis(0), index).assign(&grads.h0);
                c0.index_axis_mut(Axis(0), index).assign(&grads.c0);
            }
            let features = d_layer_input.ncols();
            let mut d_layer_input = d_layer_input
                .into_shape_with_order((seq_len, batch, features))
                // (seq_len · batch, features) elements in standard layout: infallible.
                .expect("the layer input gradient has seq_len · batch rows");
            if layer == 0 {
                d_input = Some(d_layer_input);
            } else {
                if let Some(mask) = &layer_tape.dropout {
                    d_layer_input *= mask;
                }
                d_directions = self.split_merged(
                    DOutput::Sequence(CowArray::from(d_layer_input)),
                    &tape.layers[layer - 1],
                );
            }
        }
        // `num_layers ≥ 1` is validated, and the loop ends with layer 0.
        let mut d_input = d_input.expect("layer 0 sets the input gradient");
        if self.config.go_backwards {
            d_input = tape.validity.reverse_time(d_input.view());
        }
        Ok(LstmGradients {
            params,
            input: self.to_caller_layout(d_input),
            h0,
            c0,
            constants: d_constants,
        })
    }

    /// Checks the call and puts its inputs in the shape the time loop reads.
    fn prepare<'i, 'c, D: Dimension>(
        &mut self,
        input: ArrayView<'i, C::Elem, D>,
        call: &Call<'c, C::Elem>,
    ) -> Result<Prepared<'i, 'c, C::Elem>> {
        self.config.validate_for::<C>()?;
        if input.ndim() != 3 {
            return Err(Error::invalid_value(
                "input",
                format!(
                    "expected 3 dimensions ({}), found {} (shape {:?})",
                    if self.config.batch_first {
                        "batch, seq_len, input_size"
                    } else {
                        "seq_len, batch, input_size"
                    },
                    input.ndim(),
                    input.shape()
                ),
            ));
        }
        let caller_shape = input.shape().to_vec();
        let input = input
            .into_dimensionality::<Ix3>()
            // Three dimensions, checked above: infallible.
            .expect("a 3-dimensional input");
        let input = if self.config.batch_first {
            input.permuted_axes([1, 0, 2])
        } else {
            input
        };
        let (seq_len, batch, features) = input.dim();
        if features != self.config.input_size {
            let mut expected = caller_shape.clone();
            expected[2] = self.config.input_size;
            return Err(Error::shape_mismatch("input", &expected, &caller_shape));
        }
        let validity = Validity::of_call(call.lengths, call.mask, seq_len, batch)?;
        let (input, borrowed, validity) = if self.config.go_backwards {
            let reversed = validity.reverse_time(input);
            (CowArray::from(reversed), None, validity.reversed())
        } else if input.is_standard_layout() {
            (CowArray::from(input), Some(input), validity)
        } else {
            (
                CowArray::from(input.as_standard_layout().into_owned()),
                None,
                validity,
            )
        };
        let (h0, c0) = self.initial_state(call, batch)?;
        let constants = self.constants(call, batch)?;
        if let Some(masks) = call.masks {
            if !call.training {
                return Err(Error::Config {
                    option: "masks".into(),
                    reason: "masks apply to training calls; this call has training off".into(),
                });
            }
            masks.check::<C>(&self.config, seq_len, batch)?;
        }
        let between = call.training && self.config.dropout > 0.0 && self.config.num_layers > 1;
        let draw_masks =
            call.training && self.config.regularizes_recurrence() && call.masks.is_none();
        // One seed per call for everything it draws, as `sample_masks` draws it.
        let call_seed = (between || draw_masks).then(|| self.rng.random::<u64>());
        let masks = match (call.masks, call_seed) {
            (Some(masks), _) => Some(Cow::Borrowed(masks)),
            (None, Some(seed)) if draw_masks => Some(Cow::Owned(RecurrentMasks::draw(
                &self.config,
                C::SPEC.num_gates(),
                seq_len,
                batch,
                seed,
            ))),
            _ => None,
        };
        let dropout_seed = call_seed.filter(|_| between);
        Ok(Prepared {
            input,
            borrowed,
            validity,
            h0,
            c0,
            constants,
            dropout_seed,
            training: call.training,
            masks,
        })
    }

    /// `(h0, c0)` of a call: given, carried (stateful), or zeros.
    pub(crate) fn initial_state(
        &self,
        call: &Call<'_, C::Elem>,
        batch: usize,
    ) -> Result<StatePair<C::Elem>> {
        let states = self.config.num_layers * self.config.num_directions();
        let h_shape = [states, batch, self.config.output_size()];
        let c_shape = [states, batch, self.config.hidden_size];
        let mut h0 = Array3::zeros(h_shape);
        let mut c0 = Array3::zeros(c_shape);
        if let Some((h, c)) = call.initial_state {
            expect_shape("h0", &h_shape, h.shape())?;
            expect_shape("c0", &c_shape, c.shape())?;
            h0.assign(&h);
            c0.assign(&c);
        } else if let (true, Some((h, c))) = (self.config.stateful, &self.state) {
            expect_shape(
                "h0 (carried by the stateful layer; reset_states() clears it)",
                &h_shape,
                h.shape(),
            )?;
            h0.assign(h);
            c0.assign(c);
        }
        Ok((h0, c0))
    }

    /// The call's constants, checked against the cell and the config.
    fn constants<'a>(
        &self,
        call: &Call<'a, C::Elem>,
        batch: usize,
    ) -> Result<Option<ArrayView2<'a, C::Elem>>> {
        match (C::SPEC.constant, call.constants) {
            (Some(_), Some(constants)) => {
                expect_shape(
                    "constants",
                    &[batch, self.config.constant_size],
                    constants.shape(),
                )?;
                Ok(Some(constants))
            }
            (Some(name), None) => Err(Error::Config {
                option: "constants".into(),
                reason: format!(
                    "cell `{}` reads the constant input `{name}`; pass `constants` of shape \
                     (batch, {})",
                    C::SPEC.name,
                    self.config.constant_size
                ),
            }),
            (None, Some(_)) => Err(Error::Config {
                option: "constants".into(),
                reason: format!(
                    "cell `{}` declares no constant input; pass none",
                    C::SPEC.name
                ),
            }),
            (None, None) => Ok(None),
        }
    }

    /// Index of (layer, direction) in `cells`, if it exists.
    fn index(&self, layer: usize, reverse: bool) -> Option<usize> {
        let directions = self.config.num_directions();
        (layer < self.config.num_layers && (!reverse || directions == 2))
            .then(|| layer * directions + usize::from(reverse))
    }

    /// (layer, reverse) of index `index` in `cells`.
    fn position(&self, index: usize) -> (usize, bool) {
        let directions = self.config.num_directions();
        (index / directions, index % directions == 1)
    }

    /// (layer, direction) set up for a call.
    fn direction<'a>(
        &'a self,
        layer: usize,
        reverse: bool,
        validity: &'a Validity,
        constants: Option<ArrayView2<'a, C::Elem>>,
        regularization: InRecurrence<'a, C::Elem>,
    ) -> Result<Direction<'a, C>> {
        let index = layer * self.config.num_directions() + usize::from(reverse);
        Direction::new(
            &self.cells[index],
            self.weight_hr[index].as_ref(),
            &LstmConfig::weight_suffix(layer, reverse),
            Setup {
                dims: self.config.cell_dims(layer),
                validity,
                invalid_output: validity.invalid_output(self.config.zero_output_for_mask),
                reverse,
                constants,
                regularization,
            },
        )
    }

    /// What (layer, direction) `index` applies of the regularisers inside the recurrence in
    /// a call with `masks` (checked against the config) and training mode `training`.
    fn regularization<'a>(
        &self,
        masks: Option<&'a RecurrentMasks<C::Elem>>,
        training: bool,
        index: usize,
    ) -> InRecurrence<'a, C::Elem> {
        InRecurrence::of(
            &self.config,
            masks.map(|masks| &masks.directions[index]),
            training,
        )
    }

    /// Draws the masks of the regularisers inside the recurrence (input and recurrent
    /// dropout, weight drop, zoneout) for a `(seq_len, batch)` call, from the layer's
    /// generator exactly as the next training call would: a clone of the layer that calls
    /// `forward_train` instead applies these masks. Inject them with [`Call::with_masks`]
    /// (the masks of a config without these regularisers are all `None`).
    pub fn sample_masks(&mut self, seq_len: usize, batch: usize) -> RecurrentMasks<C::Elem> {
        let seed = self.rng.random::<u64>();
        RecurrentMasks::draw(&self.config, C::SPEC.num_gates(), seq_len, batch, seed)
    }

    /// Inference through a unidirectional stack: every layer advances chunk by chunk, the
    /// output of one chunk of layer `k` feeding the same chunk of layer `k + 1`, so nothing
    /// but the returned output grows with the sequence.
    fn run_lockstep(&self, prepared: &Prepared<'_, '_, C::Elem>) -> Result<Produced<C::Elem>> {
        let (seq_len, batch, _) = prepared.input.dim();
        let layers = self.config.num_layers;
        let width = self.config.output_size();
        let directions = (0..layers)
            .map(|layer| {
                self.direction(
                    layer,
                    false,
                    &prepared.validity,
                    prepared.constants,
                    self.regularization(prepared.masks.as_deref(), prepared.training, layer),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut runs: Vec<_> = directions
            .iter()
            .enumerate()
            .map(|(layer, direction)| {
                direction.start(
                    prepared.h0.index_axis(Axis(0), layer),
                    prepared.c0.index_axis(Axis(0), layer),
                    seq_len,
                )
            })
            .collect();
        let steps_per_chunk = chunk_steps(batch);
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
            .then(|| Array3::zeros((seq_len, batch, width)));
        let worth_it = directions
            .iter()
            .any(|direction| direction.duet_worth_it(seq_len, batch));
        duet::with_duet(worth_it, || {
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
                        None,
                    )?;
                    if let (Some(next_input), Some(Some(dropout))) =
                        (above.first_mut(), dropouts.get_mut(layer))
                    {
                        dropout.apply(next_input.slice_mut(s![..steps, .., ..]));
                    }
                }
            }
            Ok(())
        })?;
        let mut h_n = Array3::zeros((layers, batch, width));
        let mut c_n = Array3::zeros((layers, batch, self.config.hidden_size));
        for (layer, run) in runs.iter().enumerate() {
            h_n.index_axis_mut(Axis(0), layer).assign(&run.state.h);
            c_n.index_axis_mut(Axis(0), layer).assign(&run.state.c);
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
        })
    }

    /// Layer after layer, each direction over the whole sequence: inference through
    /// bidirectional stacks, and every training pass (recording into `tape`).
    fn run_layers<'i>(
        &self,
        prepared: &Prepared<'i, '_, C::Elem>,
        mut tape: Option<&mut Vec<LayerTape<'i, C::Elem>>>,
    ) -> Result<Produced<C::Elem>> {
        let (seq_len, batch, _) = prepared.input.dim();
        let layers = self.config.num_layers;
        let directions = self.config.num_directions();
        let width = self.config.output_size();
        let mut h_n = Array3::zeros((layers * directions, batch, width));
        let mut c_n = Array3::zeros((layers * directions, batch, self.config.hidden_size));
        // Training multiplies by the input in `dW_ih = dZxᵀ · X`: padding must be zero, in a
        // copy. Without padding the tape borrows the caller's array.
        let tape_borrows = prepared
            .borrowed
            .filter(|_| tape.is_some() && prepared.validity == Validity::All);
        let mut layer_input: CowArray<'_, C::Elem, Ix3> = match (&tape, tape_borrows) {
            (Some(_), None) => {
                let mut input = prepared.input.to_owned();
                prepared.validity.zero_invalid(input.view_mut());
                CowArray::from(input)
            }
            _ => CowArray::from(prepared.input.view()),
        };
        let mut input_dropout = None;
        let mut produced = None;
        for layer in 0..layers {
            let last_layer = layer + 1 == layers;
            let keep_sequence = !last_layer || self.config.return_sequences;
            let mut outputs = Vec::new();
            let mut direction_tapes = Vec::new();
            for direction_index in 0..directions {
                let reverse = direction_index == 1;
                let index = layer * directions + direction_index;
                let direction = self.direction(
                    layer,
                    reverse,
                    &prepared.validity,
                    prepared.constants,
                    self.regularization(prepared.masks.as_deref(), prepared.training, index),
                )?;
                let c0 = prepared.c0.index_axis(Axis(0), index);
                let mut run = direction.start(prepared.h0.index_axis(Axis(0), index), c0, seq_len);
                let mut sequence = keep_sequence.then(|| Array3::zeros((seq_len, batch, width)));
                let mut direction_tape = tape.is_some().then(|| direction.tape(seq_len, c0));
                direction.run_sequence(
                    layer_input.view(),
                    &mut run,
                    sequence.as_mut().map(|sequence| sequence.view_mut()),
                    direction_tape.as_mut(),
                )?;
                outputs.push(match sequence {
                    Some(sequence) => Output::Sequence(sequence),
                    None => Output::Last(run.last_output()),
                });
                h_n.index_axis_mut(Axis(0), index).assign(&run.state.h);
                c_n.index_axis_mut(Axis(0), index).assign(&run.state.c);
                direction_tapes.extend(direction_tape);
            }
            let keep_operands = tape.is_some() && self.config.merge_mode == MergeMode::Mul;
            let (merged, output_reverse, merge_operands) =
                self.merge_outputs(outputs, keep_operands);
            if let Some(tape) = tape.as_deref_mut() {
                let rows = (seq_len * batch, layer_input.len_of(Axis(2)));
                // Standard layout, same element count: infallible.
                let fits = "the layer input has seq_len · batch rows";
                let input = match tape_borrows.filter(|_| layer == 0) {
                    Some(caller) => CowArray::from(caller.into_shape_with_order(rows).expect(fits)),
                    None => {
                        // The next layer reads the merged output, so the tape can take this
                        // input (moved: owned unless borrowed above).
                        let input = std::mem::replace(
                            &mut layer_input,
                            CowArray::from(Array3::zeros((0, 0, 0))),
                        )
                        .into_owned();
                        let input = if input.is_standard_layout() {
                            input
                        } else {
                            input.as_standard_layout().into_owned()
                        };
                        CowArray::from(input.into_shape_with_order(rows).expect(fits))
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
                        input_dropout = tape.is_some().then_some(mask);
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
        })
    }

    /// A layer's output from its directions' outputs: the merge, the reverse output kept apart
    /// under [`MergeMode::None`], and (if asked) the operands `Mul`'s gradient needs.
    #[allow(clippy::type_complexity)]
    fn merge_outputs(
        &self,
        mut outputs: Vec<Output<C::Elem>>,
        keep_operands: bool,
    ) -> (
        Output<C::Elem>,
        Option<Output<C::Elem>>,
        Option<(ArrayD<C::Elem>, ArrayD<C::Elem>)>,
    ) {
        let reverse = if outputs.len() == 2 {
            outputs.pop()
        } else {
            None
        };
        let forward = outputs.pop().expect("every layer has a forward direction");
        let Some(reverse) = reverse else {
            return (forward, None, None);
        };
        let mode = self.config.merge_mode;
        if mode == MergeMode::None {
            return (forward, Some(reverse), None);
        }
        let operands =
            keep_operands.then(|| (forward.view().to_owned(), reverse.view().to_owned()));
        // Both directions of a layer return the same shape: sequences, or last outputs.
        let merged = match (&forward, reverse.view()) {
            (Output::Sequence(f), r) => Output::Sequence(merge(mode, f.view(), dim3(r))),
            (Output::Last(f), r) => Output::Last(merge(mode, f.view(), dim2(r))),
        };
        (merged, None, operands)
    }

    /// The per-direction gradients of a layer's outputs from the gradient of its merged
    /// output.
    fn split_merged<'g>(
        &self,
        d_merged: DOutput<'g, C::Elem>,
        layer: &LayerTape<'_, C::Elem>,
    ) -> Vec<DOutput<'g, C::Elem>> {
        if self.config.num_directions() == 1 {
            return vec![d_merged];
        }
        let mode = self.config.merge_mode;
        let operands = layer.merge_operands.as_ref();
        match d_merged {
            DOutput::Sequence(d) => {
                let operands = operands.map(|(f, r)| (dim3(f.view()), dim3(r.view())));
                let (df, dr) = merge_backward(mode, d.view(), operands);
                vec![DOutput::Sequence(df.into()), DOutput::Sequence(dr.into())]
            }
            DOutput::Last(d) => {
                let operands = operands.map(|(f, r)| (dim2(f.view()), dim2(r.view())));
                let (df, dr) = merge_backward(mode, d.view(), operands);
                vec![DOutput::Last(df.into()), DOutput::Last(dr.into())]
            }
        }
    }

    /// The gradients of the last layer's direction outputs, time-major, from the caller's.
    fn top_gradients<'g>(
        &self,
        tape: &Tape<'_, C::Elem>,
        grad: &OutputGrad<'g, C::Elem>,
    ) -> Result<Vec<DOutput<'g, C::Elem>>> {
        let split_none = self.config.bidirectional && self.config.merge_mode == MergeMode::None;
        let width = if split_none {
            self.config.output_size()
        } else {
            self.config.merged_size()
        };
        let d_output = self.caller_gradient("grad output", grad.output.clone(), tape, width)?;
        if split_none {
            let d_reverse = self.caller_gradient(
                "grad output_reverse",
                grad.output_reverse.clone(),
                tape,
                width,
            )?;
            return Ok(vec![d_output, d_reverse]);
        }
        if grad.output_reverse.is_some() {
            return Err(Error::Config {
                option: "output_reverse".into(),
                reason: "only merge_mode none returns the reverse output apart".into(),
            });
        }
        Ok(self.split_merged(d_output, &tape.layers[self.config.num_layers - 1]))
    }

    /// A caller's output gradient checked against the output's shape, time-major (a view of
    /// the caller's array, permuted when `batch_first`); zeros when absent.
    fn caller_gradient<'g>(
        &self,
        what: &str,
        grad: Option<ArrayViewD<'g, C::Elem>>,
        tape: &Tape<'_, C::Elem>,
        width: usize,
    ) -> Result<DOutput<'g, C::Elem>> {
        let (seq_len, batch) = (tape.seq_len, tape.batch);
        if !self.config.return_sequences {
            let shape = [batch, width];
            return Ok(DOutput::Last(match grad {
                Some(grad) => {
                    expect_shape(what, &shape, grad.shape())?;
                    dim2(grad).into()
                }
                None => Array2::zeros(shape).into(),
            }));
        }
        let Some(grad) = grad else {
            return Ok(DOutput::Sequence(
                Array3::zeros((seq_len, batch, width)).into(),
            ));
        };
        let expected = if self.config.batch_first {
            [batch, seq_len, width]
        } else {
            [seq_len, batch, width]
        };
        expect_shape(what, &expected, grad.shape())?;
        let grad = dim3(grad);
        Ok(DOutput::Sequence(if self.config.batch_first {
            grad.permuted_axes([1, 0, 2]).into()
        } else {
            grad.into()
        }))
    }

    /// Checks that `tape` was recorded by a layer of this one's shape: backward slices it by
    /// this layer's sizes.
    fn check_tape(&self, tape: &Tape<'_, C::Elem>) -> Result<()> {
        let directions = self.config.num_directions();
        let rows = tape.seq_len * tape.batch;
        let hidden = self.config.hidden_size;
        let projected_rows = if self.config.proj_size > 0 { rows } else { 0 };
        let zoned_rows = if self.config.zoneout_c > 0.0 { rows } else { 0 };
        let fits = |layer: usize, layer_tape: &LayerTape<'_, C::Elem>| {
            layer_tape.input.dim() == (rows, self.config.layer_input_size(layer))
                && layer_tape.directions.len() == directions
                && layer_tape.directions.iter().all(|d| {
                    d.seq_len == tape.seq_len
                        && d.cache.dim() == (rows, C::SPEC.cache.len(hidden))
                        && d.h_prev.dim() == (rows, self.config.output_size())
                        && d.h_cell.dim() == (projected_rows, hidden)
                        && d.c_states.dim() == (rows + tape.batch, hidden)
                        && d.c_cell.dim() == (zoned_rows, hidden)
                })
        };
        if tape.layers.len() != self.config.num_layers
            || !tape.layers.iter().enumerate().all(|(l, t)| fits(l, t))
        {
            return Err(Error::Config {
                option: "tape".into(),
                reason: format!(
                    "recorded by a layer of another shape; expected {} layers of {} \
                     directions",
                    self.config.num_layers, directions
                ),
            });
        }
        Ok(())
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
        LstmOutput {
            output: layout(produced.output),
            output_reverse: produced.output_reverse.map(layout),
            h_n: return_state.then_some(produced.h_n),
            c_n: return_state.then_some(produced.c_n),
        }
    }

    /// A time-major sequence in the caller's layout.
    fn to_caller_layout(&self, sequence: Array3<C::Elem>) -> Array3<C::Elem> {
        if self.config.batch_first {
            sequence
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        } else {
            sequence
        }
    }
}

impl<C: Cell> Parameters<C::Elem> for Lstm<C> {
    /// Every tensor in PyTorch's `state_dict` order: per layer and direction `weight_ih`,
    /// `weight_hh`, `bias_ih`, `bias_hh`, the spec's parameters, `weight_{constant}`, then
    /// `weight_hr`, each with the suffix `_l{layer}` and `_reverse` for the reverse direction.
    fn visit_parameters(&self, visitor: &mut dyn FnMut(&str, ArrayViewD<'_, C::Elem>)) {
        for (index, cell) in self.cells.iter().enumerate() {
            let (layer, reverse) = self.position(index);
            let suffix = LstmConfig::weight_suffix(layer, reverse);
            cell.visit(&mut |name, values| visitor(&format!("{name}{suffix}"), values));
            if let Some(weight_hr) = &self.weight_hr[index] {
                visitor(&format!("weight_hr{suffix}"), weight_hr.view().into_dyn());
            }
        }
    }

    fn visit_parameters_mut(&mut self, visitor: &mut dyn FnMut(&str, ArrayViewMutD<'_, C::Elem>)) {
        let directions = self.config.num_directions();
        for (index, (cell, weight_hr)) in self.cells.iter_mut().zip(&mut self.weight_hr).enumerate()
        {
            let suffix = LstmConfig::weight_suffix(index / directions, index % directions == 1);
            cell.visit_mut(&mut |name, values| visitor(&format!("{name}{suffix}"), values));
            if let Some(weight_hr) = weight_hr {
                visitor(
                    &format!("weight_hr{suffix}"),
                    weight_hr.view_mut().into_dyn(),
                );
            }
        }
    }
}

/// A gradient given for a state, checked, or zeros.
fn grad_or_zeros<F: Float>(
    what: &str,
    grad: Option<ndarray::ArrayView3<'_, F>>,
    shape: (usize, usize, usize),
) -> Result<Array3<F>> {
    let mut values = Array3::zeros(shape);
    if let Some(grad) = grad {
        expect_shape(what, values.shape(), grad.shape())?;
        values.assign(&grad);
    }
    Ok(values)
}

/// A view checked (by the caller) to be 3-dimensional.
fn dim3<F>(view: ArrayViewD<'_, F>) -> ndarray::ArrayView3<'_, F> {
    view.into_dimensionality()
        .expect("the caller checked the shape")
}

/// A view checked (by the caller) to be 2-dimensional.
fn dim2<F>(view: ArrayViewD<'_, F>) -> ndarray::ArrayView<'_, F, Ix2> {
    view.into_dimensionality()
        .expect("the caller checked the shape")
}
