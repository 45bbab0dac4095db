//! Keras 3's `.keras` files: a zip archive holding `config.json`, `metadata.json` and the
//! weights as `model.weights.h5`, the same HDF5 file `model.save_weights` writes. Reading
//! one is taking that member out (bounded by [`read_member`]) and reading it as HDF5
//! ([`TensorMap::from_hdf5_bytes`]); what its paths mean is the Keras layout's business
//! ([`keras_saved_variables`](crate::io::layout::keras_saved_variables)).

use std::io::Cursor;
use std::path::Path;

use super::tensor::TensorMap;
use super::zip_member::read_member;
use crate::error::{Error, Result};

/// What [`Error::Format`] calls `.keras` files.
const KERAS_ARCHIVE: &str = "Keras archive (.keras)";

/// The archive member holding the weights, as Keras 3's `saving_lib` names it.
const WEIGHTS_MEMBER: &str = "model.weights.h5";

impl TensorMap {
    /// Every dataset of the weights (`model.weights.h5`) of the Keras 3 archive `path`,
    /// under its HDF5 path (`layers/lstm/cell/vars/0`, see [`TensorMap::from_hdf5_bytes`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read; as [`TensorMap::from_keras_archive_bytes`].
    pub fn read_keras_archive(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        Self::from_keras_archive_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of a `.keras` archive; `path` names it in errors and becomes the
    /// map's source.
    ///
    /// # Errors
    ///
    /// [`Error::Format`] naming `path` if the bytes are not a zip archive, hold no
    /// `model.weights.h5` (listing what they hold), or that member is not a valid HDF5
    /// file; [`Error::Allocation`] if the member claims more than can be allocated;
    /// [`Error::DtypeMismatch`] naming a dataset of an unsupported element type.
    pub fn from_keras_archive_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        let format_error = |reason: String| Error::Format {
            path: path.into(),
            format: KERAS_ARCHIVE.into(),
            reason,
        };
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|err| format_error(err.to_string()))?;
        let Some(index) = archive.index_for_name(WEIGHTS_MEMBER) else {
            let members: Vec<&str> = archive.file_names().collect();
            return Err(format_error(format!(
                "no `{WEIGHTS_MEMBER}` member (Keras 3 keeps the weights there); it holds \
                 {members:?}"
            )));
        };
        let mut member = archive
            .by_index(index)
            .map_err(|err| format_error(err.to_string()))?;
        let weights = read_member(&mut member, path, KERAS_ARCHIVE, bytes.len() as u64)?;
        drop(member);
        let member_path = format!("{path}:{WEIGHTS_MEMBER}");
        let mut map = Self::from_hdf5_bytes(weights, &member_path)?;
        map.set_source(format!("`{member_path}`"));
        Ok(map)
    }
}
