//! Weights files chosen by extension: safetensors and numpy `.npz`, read into a [`TensorMap`]
//! under the names the file gives its tensors. Keras' own HDF5 files (`.weights.h5`, Keras
//! 2's `.h5`, `.keras` archives) are recognised and refused with a message saying so, until
//! a reader for them lands. Which layout the names follow is the business of
//! [`super::layout`].

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::tensor::TensorMap;

/// The file formats weights are read from and written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightsFormat {
    /// safetensors (`.safetensors`, and any extension not listed here).
    Safetensors,
    /// numpy `.npz` archive.
    Npz,
    /// HDF5 as Keras writes it (`.h5`, `.weights.h5`).
    KerasHdf5,
    /// A Keras 3 `.keras` archive (a zip holding `model.weights.h5`).
    KerasArchive,
}

impl WeightsFormat {
    /// The format of `path`, by its extension.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("npz") => WeightsFormat::Npz,
            Some("h5" | "hdf5") => WeightsFormat::KerasHdf5,
            Some("keras") => WeightsFormat::KerasArchive,
            _ => WeightsFormat::Safetensors,
        }
    }
}

/// Every tensor of the weights file `path`, its format chosen by extension
/// ([`WeightsFormat::of`]).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is not a valid file of
/// its format or a Keras HDF5 file (not read yet), [`Error::DtypeMismatch`] naming a tensor
/// of an unsupported element type.
pub fn read_weights(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    match WeightsFormat::of(path) {
        WeightsFormat::Safetensors => TensorMap::read_safetensors(path),
        WeightsFormat::Npz => TensorMap::read_npz(path),
        WeightsFormat::KerasHdf5 | WeightsFormat::KerasArchive => Err(Error::Format {
            path: path.display().to_string(),
            format: "weights file".into(),
            reason: "Keras HDF5 files are not supported yet".into(),
        }),
    }
}

/// Writes `map` to `path` as safetensors, or as `.npz` by extension.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be written; [`Error::Format`] for a Keras HDF5 or
/// `.keras` path, which are read only.
pub fn write_weights(map: &TensorMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    match WeightsFormat::of(path) {
        WeightsFormat::Safetensors => map.write_safetensors(path),
        WeightsFormat::Npz => map.write_npz(path),
        WeightsFormat::KerasHdf5 | WeightsFormat::KerasArchive => Err(Error::Format {
            path: path.display().to_string(),
            format: "output".into(),
            reason: "HDF5 and .keras files are read, not written; write .npz or .safetensors \
                     (Keras loads them with `layer.set_weights` or by path)"
                .into(),
        }),
    }
}
