//! The safetensors format (what `safetensors.torch.save_file` and
//! `safetensors.numpy.save_file` write): a JSON header of names, dtypes, shapes, offsets and
//! string metadata, then little-endian row-major data.
//!
//! The one codec of the crate: weight files read and written as a [`TensorMap`], and
//! training checkpoints (`checkpoint.rs`), which add metadata, both go through [`parse`] and
//! [`serialize`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ::safetensors::tensor::TensorView;
use ::safetensors::{Dtype as StDtype, SafeTensorError, SafeTensors};
use ndarray::{ArrayD, IxDyn};
use sha2::{Digest, Sha256};

use super::tensor::{Tensor, TensorMap, dtype_mismatch};
use crate::error::{Error, Result};

/// What [`Error::Format`] calls this format.
const FORMAT: &str = "safetensors file";

/// A safetensors file's bytes, checked and parsed, but its tensors not yet decoded.
pub(crate) struct Parsed<'b> {
    file: SafeTensors<'b>,
    metadata: HashMap<String, String>,
}

/// Parses the bytes of a safetensors file; errors are [`Error::Format`]s naming `path` and
/// calling the format `format`.
///
/// # Errors
///
/// [`Error::Format`] if the bytes are truncated or not safetensors.
pub(crate) fn parse<'b>(bytes: &'b [u8], path: &str, format: &str) -> Result<Parsed<'b>> {
    let format_error = |err: SafeTensorError| Error::Format {
        path: path.into(),
        format: format.into(),
        reason: err.to_string(),
    };
    let file = SafeTensors::deserialize(bytes).map_err(format_error)?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(format_error)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok(Parsed { file, metadata })
}

impl Parsed<'_> {
    /// The file's string metadata (empty when it has none).
    pub(crate) fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The [`digest`] of every tensor of the file, by name, computed from the stored bytes.
    pub(crate) fn digests(&self) -> BTreeMap<String, String> {
        self.file
            .iter()
            .map(|(name, view)| {
                (
                    name.to_string(),
                    digest(view.dtype(), view.shape(), view.data()),
                )
            })
            .collect()
    }

    /// Every tensor of the file, decoded, from `source` (as error messages name it).
    ///
    /// # Errors
    ///
    /// [`Error::DtypeMismatch`] naming a tensor of a type other than f32, f64, i32, i64 or
    /// bool.
    pub(crate) fn tensors(&self, source: String) -> Result<TensorMap> {
        let mut map = TensorMap::with_source(source);
        for (name, view) in self.file.iter() {
            map.insert(name, tensor_of(name, &view)?);
        }
        Ok(map)
    }
}

/// The bytes of a safetensors file holding `tensors` and `metadata`.
///
/// # Errors
///
/// What the `safetensors` crate reports: a header larger than it accepts, or two tensors of
/// one name.
pub(crate) fn serialize<'t>(
    tensors: impl IntoIterator<Item = (&'t str, &'t Tensor)>,
    metadata: Option<HashMap<String, String>>,
) -> std::result::Result<Vec<u8>, SafeTensorError> {
    let data: Vec<(&str, Vec<u8>, StDtype, Vec<usize>)> = tensors
        .into_iter()
        .map(|(name, tensor)| {
            let (dtype, bytes) = bytes_of(tensor);
            (name, bytes, dtype, tensor.shape().to_vec())
        })
        .collect();
    let views = data.iter().map(|(name, bytes, dtype, shape)| {
        // The byte count is element count × element size by construction in `bytes_of`.
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .expect("bytes_of writes exactly the elements of the shape");
        (*name, view)
    });
    ::safetensors::serialize(views, metadata)
}

impl TensorMap {
    /// Reads every tensor of a safetensors file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is truncated or not
    /// safetensors, [`Error::DtypeMismatch`] naming a tensor of a type other than f32, f64,
    /// i32, i64 or bool.
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        Self::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of a safetensors file; `path` names it in errors and becomes the
    /// map's source.
    ///
    /// # Errors
    ///
    /// As [`TensorMap::read_safetensors`], without the I/O.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        parse(bytes, path, FORMAT)?.tensors(format!("`{path}`"))
    }

    /// The bytes of a safetensors file holding every tensor.
    pub fn to_safetensors_bytes(&self) -> Vec<u8> {
        // Fails only for a header larger than 100 MB, which names of a few hundred tensors
        // cannot reach, or for two tensors of one name, which a map cannot hold.
        serialize(self.iter(), None).expect("the header of a tensor map serializes")
    }

    /// Writes every tensor to a safetensors file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_safetensors_bytes())
            .map_err(|err| Error::io("write", path, &err))
    }
}

/// The [`digest`] a tensor has once stored.
pub(crate) fn digest_of(tensor: &Tensor) -> String {
    let (dtype, bytes) = bytes_of(tensor);
    digest(dtype, tensor.shape(), &bytes)
}

/// SHA-256, in hex, over a stored tensor's dtype, shape and bytes: a flipped bit in any of
/// them changes it.
fn digest(dtype: StDtype, shape: &[usize], data: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{dtype:?}").as_bytes());
    hasher.update((shape.len() as u64).to_le_bytes());
    for &dim in shape {
        hasher.update((dim as u64).to_le_bytes());
    }
    hasher.update(data);
    hex(&hasher.finalize())
}

/// Lower-case hexadecimal digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One stored tensor as a [`Tensor`].
fn tensor_of(name: &str, view: &TensorView<'_>) -> Result<Tensor> {
    let shape = view.shape();
    let data = view.data();
    Ok(match view.dtype() {
        StDtype::F32 => Tensor::F32(shaped(shape, le_values(data, f32::from_le_bytes))),
        StDtype::F64 => Tensor::F64(shaped(shape, le_values(data, f64::from_le_bytes))),
        StDtype::I32 => Tensor::I32(shaped(shape, le_values(data, i32::from_le_bytes))),
        StDtype::I64 => Tensor::I64(shaped(shape, le_values(data, i64::from_le_bytes))),
        StDtype::BOOL => Tensor::Bool(shaped(shape, data.iter().map(|&b| b != 0).collect())),
        other => {
            return Err(dtype_mismatch(
                name,
                "f32, f64, i32, i64 or bool",
                format!("{other:?}"),
            ));
        }
    })
}

/// Row-major `values` as an array of `shape`.
fn shaped<T>(shape: &[usize], values: Vec<T>) -> ArrayD<T> {
    // The library checked that the data's length matches dtype and shape.
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("safetensors checked the length")
}

/// Little-endian values of `N` bytes each.
fn le_values<T, const N: usize>(data: &[u8], from_le: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|chunk| {
            let mut bytes = [0; N];
            bytes.copy_from_slice(chunk);
            from_le(bytes)
        })
        .collect()
}

/// A tensor's safetensors dtype and little-endian bytes, in row-major order.
fn bytes_of(tensor: &Tensor) -> (StDtype, Vec<u8>) {
    match tensor {
        Tensor::F32(values) => (
            StDtype::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Tensor::F64(values) => (
            StDtype::F64,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Tensor::I32(values) => (
            StDtype::I32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Tensor::I64(values) => (
            StDtype::I64,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Tensor::Bool(values) => (StDtype::BOOL, values.iter().map(|&v| u8::from(v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, array};

    use super::*;

    fn sample() -> TensorMap {
        let mut map = TensorMap::new();
        map.insert(
            "weight",
            Tensor::F64(array![[1.0, 2.0], [3.0, 4.5]].into_dyn()),
        );
        map.insert("single", Tensor::F32(array![0.25f32, -1.0].into_dyn()));
        map.insert("lengths", Tensor::I64(array![3i64, 1].into_dyn()));
        map.insert("small", Tensor::I32(ArrayD::from_elem(IxDyn(&[1]), 7)));
        map.insert("mask", Tensor::Bool(array![[true, false]].into_dyn()));
        map
    }

    #[test]
    fn round_trips_every_dtype() {
        let map = sample();
        let read = TensorMap::from_safetensors_bytes(&map.to_safetensors_bytes(), "x").unwrap();
        assert_eq!(read.source(), "`x`");
        assert_eq!(read.len(), map.len());
        for (name, tensor) in map.iter() {
            assert_eq!(read.get(name), Some(tensor), "{name}");
        }
    }

    #[test]
    fn truncated_and_foreign_files_are_format_errors() {
        let bytes = sample().to_safetensors_bytes();
        for cut in [0, 4, 8, 20, bytes.len() - 1] {
            let err = TensorMap::from_safetensors_bytes(&bytes[..cut], "w.safetensors");
            assert!(
                matches!(&err, Err(Error::Format { path, .. }) if path == "w.safetensors"),
                "cut at {cut}: {err:?}"
            );
        }
        let err = TensorMap::from_safetensors_bytes(b"\x93NUMPY not safetensors", "x.npy");
        assert!(matches!(err, Err(Error::Format { .. })));
    }

    #[test]
    fn unsupported_dtypes_are_named() {
        let data = [0u8; 4];
        let view = TensorView::new(StDtype::F16, vec![2], &data).unwrap();
        let bytes = ::safetensors::serialize([("half", view)], None).unwrap();
        let err = TensorMap::from_safetensors_bytes(&bytes, "h").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`half` has dtype F16; expected f32, f64, i32, i64 or bool"
        );
    }
}
