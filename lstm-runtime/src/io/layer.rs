//! Whole layers from weight files: an [`Lstm`] built from PyTorch- or Keras-named weights,
//! its configuration read off the names and shapes ([`PytorchLayout`]) or checked against a
//! given [`LstmConfig`]. Export needs nothing of its own: [`TensorMap::from_parameters`]
//! writes PyTorch's names, and [`super::pytorch_to_keras`] turns them into Keras'.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::keras::keras_to_pytorch;
use super::pytorch::{PytorchLayout, check_cell_parameters, load_parameters};
use super::tensor::TensorMap;
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::layer::Lstm;
use crate::layer::config::LstmConfig;

impl PytorchLayout {
    /// A config with this layout and PyTorch's defaults for everything else (time-major,
    /// outputs of every step, final states returned).
    pub fn config(&self) -> LstmConfig {
        LstmConfig::new(self.input_size, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_bidirectional(self.bidirectional)
            .with_bias(self.bias)
            .with_proj_size(self.proj_size)
            .with_heads(self.heads)
            .with_constant_size(self.constant_size)
    }

    /// `Ok` if `config` describes a layer of this layout.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first option (`num_layers`, `proj_size`, …) on which the
    /// config and the weights disagree.
    pub fn check(&self, config: &LstmConfig) -> Result<()> {
        let options = [
            ("input_size", self.input_size, config.input_size),
            ("hidden_size", self.hidden_size, config.hidden_size),
            ("num_layers", self.num_layers, config.num_layers),
            (
                "bidirectional",
                usize::from(self.bidirectional),
                usize::from(config.bidirectional),
            ),
            ("bias", usize::from(self.bias), usize::from(config.bias)),
            ("proj_size", self.proj_size, config.proj_size),
            ("heads", self.heads, config.heads),
            ("constant_size", self.constant_size, config.constant_size),
        ];
        for (option, weights, asked) in options {
            if weights != asked {
                let show = |value: usize| match option {
                    "bidirectional" | "bias" => (value == 1).to_string(),
                    _ => value.to_string(),
                };
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!(
                        "the config asks for {}, the weights have {}",
                        show(asked),
                        show(weights)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A layer of the cell `C` with PyTorch-named weights (an `nn.LSTM` `state_dict` saved as
/// safetensors, extended by the cell's parameters), its configuration read off the weights
/// with PyTorch's defaults for the rest ([`PytorchLayout::config`]).
///
/// # Errors
///
/// As [`lstm_from_pytorch_with`].
pub fn lstm_from_pytorch<C: Cell>(weights: &TensorMap) -> Result<Lstm<C>> {
    let layout = PytorchLayout::infer(weights, C::SPEC)?;
    lstm_from_pytorch_with(weights, layout.config())
}

/// A layer of the cell `C` with `config` and PyTorch-named weights.
///
/// # Errors
///
/// - [`Error::Config`] naming the option on which `config` and the weights disagree, or
///   that `config` or `C` rejects.
/// - [`Error::MissingCellParameter`] if a parameter of `C` is absent (the weights belong to
///   another cell).
/// - [`Error::MissingTensor`], [`Error::UnexpectedTensor`], [`Error::ShapeMismatch`] (with
///   expected and found shapes), [`Error::DtypeMismatch`] naming the offending tensor.
pub fn lstm_from_pytorch_with<C: Cell>(weights: &TensorMap, config: LstmConfig) -> Result<Lstm<C>> {
    let layout = PytorchLayout::infer(weights, C::SPEC)?;
    layout.check(&config)?;
    let directions = (0..config.num_layers).flat_map(|layer| {
        Direction::BOTH[..config.num_directions()]
            .iter()
            .map(move |&direction| (layer, direction))
    });
    check_cell_parameters(weights, C::SPEC, directions)?;
    // The initial values are all overwritten; a fixed seed keeps construction deterministic.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Lstm::new(config, &mut rng)?;
    load_parameters(&mut layer, weights)?;
    Ok(layer)
}

/// A layer of the cell `C` with Keras-named weights (see [`super::keras_to_pytorch`] for
/// the key scheme), its configuration read off the weights, batch-major as Keras is
/// (`batch_first`), PyTorch's defaults for the rest.
///
/// # Errors
///
/// As [`super::keras_to_pytorch`] and [`lstm_from_pytorch_with`].
pub fn lstm_from_keras<C: Cell>(weights: &TensorMap) -> Result<Lstm<C>> {
    let pytorch = keras_to_pytorch(weights)?;
    let layout = PytorchLayout::infer(&pytorch, C::SPEC)?;
    lstm_from_pytorch_with(&pytorch, layout.config().with_batch_first(true))
}
