//! Weights files chosen by extension: safetensors, numpy `.npz`, HDF5 (Keras 3's
//! `.weights.h5`) and Keras 3's `.keras` archives, read into a [`TensorMap`] under the names
//! the file gives its tensors (an HDF5 dataset's path, `layers/lstm/cell/vars/0`). Each
//! format has one codec (`safetensors.rs`, `npy.rs`, `hdf5.rs`, `keras_archive.rs`) and
//! this module only dispatches to it. Which layout the names follow is the business of
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
/// its format, [`Error::DtypeMismatch`] naming a tensor of an unsupported element type,
/// [`Error::Allocation`] for a size the file claims that cannot be allocated.
pub fn read_weights(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    match WeightsFormat::of(path) {
        WeightsFormat::Safetensors => TensorMap::read_safetensors(path),
        WeightsFormat::Npz => TensorMap::read_npz(path),
        WeightsFormat::KerasHdf5 => TensorMap::read_hdf5(path),
        WeightsFormat::KerasArchive => TensorMap::read_keras_archive(path),
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
