//! [`Lstm`]: the full recurrent layer PyTorch's `nn.LSTM` and Keras' `LSTM`, `RNN(cell)` and
//! `Bidirectional` offer, for any cell: stacked layers with dropout between them, both
//! directions with a merge mode, LSTMP projection, lengths and masks, `go_backwards`, initial
//! and carried (stateful) states, constants, both layouts, and backpropagation through all of
//! it.
//!
//! This module holds the layer's weights and orchestrates; the time loop of each (layer,
//! direction) and its reverse are `recurrence/`.
//!
//! - `config.rs`: [`LstmConfig`], every option with PyTorch's defaults (its checks in
//!   `config/validate.rs`); `call.rs`: what a call takes ([`Call`](call::Call)) and returns.
//! - `prepare.rs`: a call checked and put in the shape the time loop reads; `forward.rs`: the
//!   passes through the layers, inference and training; `tape.rs`: what training records;
//!   `backward.rs`: backpropagation through the layers; `batch_split.rs`: large training calls
//!   run as two halves of the batch, one per core.
//! - `stepper.rs`: a unidirectional stack advanced one step at a time ([`Stepper`](stepper::Stepper)).
//! - `bidirectional.rs`: merge modes; `dropout.rs`: dropout between layers; `init.rs`: the
//!   projection's and the biases' initialisation; `initializers.rs`: Keras', Flax's and
//!   PyTorch's weight initializers.
//! - `penalties.rs`: Keras' regularizers and constraints applied to the layer;
//!   `gradcheck.rs`: finite-difference checks of any layer.

mod backward;
mod batch_split;
pub(crate) mod bidirectional;
pub(crate) mod call;
pub(crate) mod config;
mod dropout;
mod forward;
pub(crate) mod gradcheck;
#[cfg(test)]
mod heads_tests;
mod init;
pub(crate) mod initializers;
pub(crate) mod penalties;
mod prepare;
#[cfg(test)]
mod record_tests;
pub(crate) mod states;
#[cfg(test)]
mod states_tests;
pub(crate) mod stepper;
pub(crate) mod tape;

use ndarray::{Array2, Array3, ArrayView, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMutD, Ix2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use self::call::Mode;
use self::config::LstmConfig;
use crate::alloc;
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::params::Parameters;
use crate::params::name::ParamName;
use crate::recurrence::mask::Validity;
use crate::recurrence::pass::{Pass, Setup, check_weights};
use crate::regularization::in_recurrence::InRecurrence;
use crate::regularization::masks::RecurrentMasks;

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

/// `(h, c)` of every layer and direction: `(num_layers · num_directions, batch, ·)` each.
type StatePair<F> = (Array3<F>, Array3<F>);

impl<C: Cell> Lstm<C> {
    /// A layer with freshly initialised cells (each cell's own init, PyTorch's uniform
    /// `±1/√hidden_size` by default) and projections (uniform `±1/√hidden_size`, as PyTorch),
    /// then the config's [`LstmConfig::init`], then the biases the config's
    /// [`LstmConfig::unit_forget_bias`] or
    /// [`LstmConfig::chrono_t_max`] ask for.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the option the config or the cell type rejects (see
    /// [`LstmConfig::validate_for`]); [`Error::Allocation`] naming the sizes if the weights
    /// cannot be allocated.
    pub fn new<R: Rng + ?Sized>(config: LstmConfig, rng: &mut R) -> Result<Self> {
        config.validate_for::<C>()?;
        Self::check_weight_memory(&config)?;
        let directions = config.num_directions();
        let mut cells = Vec::new();
        let mut weight_hr = Vec::new();
        for layer in 0..config.num_layers {
            for _ in 0..directions {
                cells.push(C::init(config.cell_dims(layer), rng));
                weight_hr.push(init::projection(&config, rng));
            }
        }
        init::init_weights(&mut cells, &config.init, config.heads, rng);
        init::init_long_memory(&mut cells, &config, rng);
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
            let (layer_index, direction) = layer.position(index);
            check_weights(
                &layer.cells[index],
                layer.weight_hr[index].as_ref(),
                layer.config.cell_dims(layer_index),
                &ParamName::suffix(layer_index, direction),
            )?;
        }
        Ok(layer)
    }

    /// `Ok` if the weights of a layer of `config` can be allocated.
    ///
    /// # Errors
    ///
    /// [`Error::Allocation`] naming the layer's sizes.
    pub fn check_weight_memory(config: &LstmConfig) -> Result<()> {
        let what = format!(
            "the weights of {} layer(s) of cell `{}` with input_size {} and hidden_size {}",
            config.num_layers,
            C::SPEC.name,
            config.input_size,
            config.hidden_size
        );
        let elements = alloc::weight_elements(config, C::SPEC.gates.len());
        alloc::check_allocation(&what, elements, std::mem::size_of::<C::Elem>())
    }

    /// `Ok` if a training call over `(seq_len, batch)` (forward, its tape, backward) can
    /// allocate what it keeps; [`Lstm::forward_train`] checks this itself, and a caller that
    /// builds its inputs can check first.
    ///
    /// # Errors
    ///
    /// [`Error::Allocation`] naming the sizes.
    pub fn check_training_memory(config: &LstmConfig, seq_len: usize, batch: usize) -> Result<()> {
        let what = format!(
            "a training pass of batch {batch}, seq_len {seq_len}, input_size {} and \
             hidden_size {} ({} layer(s))",
            config.input_size, config.hidden_size, config.num_layers
        );
        let elements = alloc::activation_elements(config, C::SPEC.gates.len(), seq_len, batch);
        alloc::check_allocation(&what, elements, std::mem::size_of::<C::Elem>())
    }

    /// `Ok` if an inference call over `(seq_len, batch)` can allocate its output;
    /// [`Lstm::forward`] checks this itself.
    ///
    /// # Errors
    ///
    /// [`Error::Allocation`] naming the sizes.
    pub fn check_inference_memory(config: &LstmConfig, seq_len: usize, batch: usize) -> Result<()> {
        let what = format!(
            "the output of batch {batch}, seq_len {seq_len} and hidden_size {}",
            config.hidden_size
        );
        let elements = alloc::output_elements(config, seq_len, batch);
        alloc::check_allocation(&what, elements, std::mem::size_of::<C::Elem>())
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

    /// The cell of `layer` in `direction`.
    pub fn cell(&self, layer: usize, direction: Direction) -> Option<&C> {
        let index = self.index(layer, direction)?;
        self.cells.get(index)
    }

    /// The cell of `layer` and direction, mutably (to load or update weights; its shapes must
    /// stay those of [`LstmConfig::cell_dims`], which every call checks).
    pub fn cell_mut(&mut self, layer: usize, direction: Direction) -> Option<&mut C> {
        let index = self.index(layer, direction)?;
        self.cells.get_mut(index)
    }

    /// The LSTMP projection `(proj_size, hidden_size)` of `layer` and direction.
    pub fn weight_hr(&self, layer: usize, direction: Direction) -> Option<&Array2<C::Elem>> {
        let index = self.index(layer, direction)?;
        self.weight_hr.get(index)?.as_ref()
    }

    /// The LSTMP projection of `layer` and direction, mutably.
    pub fn weight_hr_mut(
        &mut self,
        layer: usize,
        direction: Direction,
    ) -> Option<&mut Array2<C::Elem>> {
        let index = self.index(layer, direction)?;
        self.weight_hr.get_mut(index)?.as_mut()
    }

    /// The states a stateful layer carries into its next call: `(h, c)`, `h` shaped as `h_n`
    /// and `c` packing every state the cell carries besides `h` (`(layers·dirs, batch,
    /// states · hidden)`, [`CellSpec::states`](crate::CellSpec::states): for an LSTM exactly
    /// `c_n`); `None` before the first call, after [`Lstm::reset_states`], or when not
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

    /// Draws the masks of the regularisers inside the recurrence (input and recurrent
    /// dropout, weight drop, zoneout) for a `(seq_len, batch)` call, from the layer's
    /// generator exactly as the next training call would: a clone of the layer that calls
    /// `forward_train` instead applies these masks. Inject them with
    /// [`Call::with_masks`](call::Call::with_masks) (the masks of a config without these
    /// regularisers are all `None`).
    pub fn sample_masks(&mut self, seq_len: usize, batch: usize) -> RecurrentMasks<C::Elem> {
        let seed = self.rng.random::<u64>();
        self.draw_masks(seq_len, batch, seed)
    }

    /// The masks of the regularisers inside the recurrence for a `(seq_len, batch)` call
    /// seeded with `seed`.
    fn draw_masks(&self, seq_len: usize, batch: usize, seed: u64) -> RecurrentMasks<C::Elem> {
        let shapes = self.config.mask_shapes(C::SPEC.num_gates(), seq_len, batch);
        RecurrentMasks::draw(&self.config.recurrent_rates(), &shapes, seed)
    }

    /// Index of (layer, direction) in `cells`, if it exists.
    fn index(&self, layer: usize, direction: Direction) -> Option<usize> {
        let directions = self.config.num_directions();
        (layer < self.config.num_layers && direction.index() < directions)
            .then(|| layer * directions + direction.index())
    }

    /// (layer, direction) of index `index` in `cells`.
    fn position(&self, index: usize) -> (usize, Direction) {
        let directions = self.config.num_directions();
        (index / directions, Direction::at(index % directions))
    }

    /// (layer, direction) set up for a call.
    fn pass<'a>(
        &'a self,
        layer: usize,
        direction: Direction,
        validity: &'a Validity,
        constants: Option<ArrayView2<'a, C::Elem>>,
        regularization: InRecurrence<'a, C::Elem>,
    ) -> Result<Pass<'a, C>> {
        let index = layer * self.config.num_directions() + direction.index();
        Pass::new(
            &self.cells[index],
            self.weight_hr[index].as_ref(),
            &ParamName::suffix(layer, direction),
            Setup {
                dims: self.config.cell_dims(layer),
                validity,
                invalid_output: validity.invalid_output(self.config.zero_output_for_mask),
                direction,
                constants,
                regularization,
            },
        )
    }

    /// What (layer, direction) `index` applies of the regularisers inside the recurrence in
    /// a call of `mode` with `masks` (checked against the config, or drawn).
    fn regularization<'a>(
        &self,
        masks: Option<&'a RecurrentMasks<C::Elem>>,
        mode: Mode,
        index: usize,
    ) -> InRecurrence<'a, C::Elem> {
        match mode {
            Mode::Training => InRecurrence::training(masks.map(|masks| &masks.directions[index])),
            Mode::Inference => {
                InRecurrence::inference(self.config.zoneout_c, self.config.zoneout_h)
            }
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
            let (layer, direction) = self.position(index);
            let suffix = ParamName::suffix(layer, direction);
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
            let direction = Direction::at(index % directions);
            let suffix = ParamName::suffix(index / directions, direction);
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

/// A view checked (by the caller) to be 3-dimensional.
fn dim3<F>(view: ArrayViewD<'_, F>) -> ArrayView3<'_, F> {
    view.into_dimensionality()
        .expect("the caller checked the shape")
}

/// A view checked (by the caller) to be 2-dimensional.
fn dim2<F>(view: ArrayViewD<'_, F>) -> ArrayView<'_, F, Ix2> {
    view.into_dimensionality()
        .expect("the caller checked the shape")
}
