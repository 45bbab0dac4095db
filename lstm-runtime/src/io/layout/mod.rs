//! Weights in the layouts people have on disk, mapped to PyTorch's `nn.LSTM` names and
//! layout, which every loader of the crate reads ([`lstm_from_pytorch`](crate::io::lstm_from_pytorch)).
//!
//! A [`SourceLayout`] says how a file is laid out: a framework's own names (PyTorch's
//! `state_dict` with an optional prefix, Keras 3 or Keras 2 weight paths or the variables of
//! Keras 3's `.keras` and `.weights.h5` files, Flax's LSTM cells)
//! or one of the two generic layouts of hand-written cells ([`Combined`], [`PerGate`]), where
//! the user names the keys, the gate order, the column order and the orientation.
//! [`SourceLayout::to_pytorch`] maps the tensors; `lstm convert` is this plus reading and
//! writing files. Mapping only moves values (transposes, splits, reorders), so it is exact.

mod flax;
mod gates;
mod generic;
mod keras_saved;
mod names;

pub use flax::flax_to_pytorch;
pub use gates::{Columns, GateOrder};
pub use generic::{Combined, PerGate};
pub use keras_saved::{CELL_VARIABLES, is_keras_saved_variable, keras_saved_variables};
pub use names::{
    keras_layer_of, keras_weight_paths, pytorch_or_keras, pytorch_state_dict,
    strip_keras2_suffixes, without_keras_layers,
};

use crate::error::Result;
use crate::io::keras::keras_to_pytorch;
use crate::io::tensor::TensorMap;

/// How the tensors of a weights file are named and laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceLayout {
    /// PyTorch's `state_dict` of an `nn.LSTM` or `nn.LSTMCell`; with a prefix, the keys of
    /// that submodule of a whole model (`encoder.lstm`).
    Pytorch {
        /// The submodule's key prefix, with or without the final `.`.
        prefix: Option<String>,
    },
    /// Keras weight paths (Keras 3's `lstm/lstm_cell/kernel`, Keras 2's with `:0`), or the
    /// variables of Keras 3's own files (`layers/lstm/cell/vars/0`, [`keras_saved_variables`]).
    Keras,
    /// Flax `OptimizedLSTMCell`/`LSTMCell` parameters, flattened with `/`.
    Flax,
    /// One matrix holding every gate's rows.
    Combined(Combined),
    /// One tensor per gate.
    PerGate(PerGate),
}

impl SourceLayout {
    /// The tensors of `map` under PyTorch's names and in its layout.
    ///
    /// # Errors
    ///
    /// What the layout's mapping reports: a missing, unexpected, misshapen or mistyped tensor,
    /// by name ([`pytorch_state_dict`], [`keras_to_pytorch`], [`flax_to_pytorch`],
    /// [`Combined::to_pytorch`], [`PerGate::to_pytorch`]).
    pub fn to_pytorch(&self, map: &TensorMap) -> Result<TensorMap> {
        match self {
            SourceLayout::Pytorch { prefix } => pytorch_state_dict(map, prefix.as_deref()),
            SourceLayout::Keras => keras_to_pytorch(&keras_weight_paths(map)?),
            SourceLayout::Flax => flax_to_pytorch(map),
            SourceLayout::Combined(layout) => layout.to_pytorch(map),
            SourceLayout::PerGate(layout) => layout.to_pytorch(map),
        }
    }
}
