//! Weights and arrays in and out: the file formats (safetensors, numpy `.npy` and `.npz`;
//! HDF5 and Keras 3's `.keras` archives, read only), the two layouts trained models arrive
//! in (PyTorch's `nn.LSTM` `state_dict`, Keras 3's `LSTM`/`Bidirectional` weights), and
//! training checkpoints (`checkpoint.rs`, safetensors with the optimizer's state and the
//! run's metadata).
//!
//! Everything meets in [`TensorMap`], named [`Tensor`]s of any element type. A file is read
//! into one, converted between layouts if it is Keras' ([`keras_to_pytorch`]), and loaded
//! into a model by PyTorch name ([`lstm_from_pytorch`], [`load_parameters`],
//! [`cell_from_pytorch`]); export runs the other way ([`TensorMap::from_parameters`],
//! [`pytorch_to_keras`]). [`PytorchLayout`] reads a layer's configuration (layers,
//! directions, bias, projection) off the names and shapes.
//! Every function reports bad files through [`Error`](crate::error::Error), naming the file,
//! the tensor and the expected and found shapes or types.

mod atomic;
pub mod checkpoint;
mod hdf5;
mod keras;
mod keras_archive;
mod layer;
pub mod layout;
mod npy;
mod pytorch;
mod safetensors;
mod tensor;
mod weights_file;
mod zip_member;

pub use atomic::{is_temporary, write_atomically, write_atomically_with};
pub use keras::{keras_layer_names, keras_to_pytorch, keras_to_pytorch_ordered, pytorch_to_keras};
pub use layer::{lstm_from_keras, lstm_from_pytorch, lstm_from_pytorch_with};
pub use npy::{read_npy, read_npy_bytes, write_npy};
pub use pytorch::{PytorchLayout, cell_from_pytorch, cell_to_pytorch, load_parameters};
pub use tensor::{Dtype, Tensor, TensorMap};
pub use weights_file::{WeightsFormat, read_weights, write_weights};

pub use crate::params::name::ParamName;
