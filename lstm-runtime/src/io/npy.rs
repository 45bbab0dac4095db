//! numpy's `.npy` (one array: inputs, lengths, masks, outputs) and `.npz` (a zip of named
//! `.npy` files, what `np.savez` writes: Keras weights) over the `ndarray-npy` crate.
//!
//! A file's element type is only known once its header is read, so reading tries each
//! [`Dtype`](super::Dtype) in turn; the first whose descriptor matches wins.

use std::fs::File;
use std::io::{BufWriter, Cursor, Read, Seek};
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{
    NpzReader, NpzWriter, ReadNpyError, ReadNpyExt, ReadNpzError, ReadableElement, WriteNpyExt,
};

use super::tensor::{Tensor, TensorMap, dtype_mismatch};
use crate::error::{Error, Result};

/// What [`Error::Format`] calls `.npy` files.
const NPY: &str = "npy file";
/// What [`Error::Format`] calls `.npz` files.
const NPZ: &str = "npz archive";
/// The element types reading accepts, for messages.
const ACCEPTED: &str = "f32, f64, i32, i64 or bool";

/// Why one attempt to read an array failed.
enum Attempt {
    /// The file holds another element type: try the next.
    OtherDtype(String),
    /// The file is broken, whatever the element type.
    Failed(String),
}

impl From<ReadNpyError> for Attempt {
    fn from(err: ReadNpyError) -> Self {
        match err {
            ReadNpyError::WrongDescriptor(descriptor) => {
                Attempt::OtherDtype(descriptor.to_string())
            }
            other => Attempt::Failed(other.to_string()),
        }
    }
}

impl From<ReadNpzError> for Attempt {
    fn from(err: ReadNpzError) -> Self {
        match err {
            ReadNpzError::Npy(err) => err.into(),
            other => Attempt::Failed(other.to_string()),
        }
    }
}

/// The element types reading tries, in order.
#[derive(Clone, Copy, Debug)]
enum Probe {
    F32,
    F64,
    I32,
    I64,
    Bool,
}

/// Reads an array as the first element type `read_as` accepts.
///
/// `read_as` reads the array as the type it is given; `what` names the array in a dtype
/// error, `path` and `format` the file in a format error.
fn read_any(
    what: &str,
    path: &str,
    format: &str,
    mut read_as: impl FnMut(Probe) -> std::result::Result<Tensor, Attempt>,
) -> Result<Tensor> {
    let mut descriptor = String::new();
    for probe in [Probe::F32, Probe::F64, Probe::I32, Probe::I64, Probe::Bool] {
        match read_as(probe) {
            Ok(tensor) => return Ok(tensor),
            Err(Attempt::OtherDtype(found)) => descriptor = found,
            Err(Attempt::Failed(reason)) => {
                return Err(Error::Format {
                    path: path.into(),
                    format: format.into(),
                    reason,
                });
            }
        }
    }
    Err(dtype_mismatch(what, ACCEPTED, descriptor))
}

/// Reads an array of type `T` from `.npy` bytes.
fn npy_as<T: ReadableElement>(bytes: &[u8]) -> std::result::Result<ArrayD<T>, Attempt> {
    Ok(ArrayD::<T>::read_npy(bytes)?)
}

/// Reads one `.npy` file, of any accepted element type.
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is truncated or not a
/// `.npy` file, [`Error::DtypeMismatch`] for an element type other than f32, f64, i32, i64
/// or bool (the message names the file).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
    let name = path.display().to_string();
    read_any(&name, &name, NPY, |probe| match probe {
        Probe::F32 => npy_as(&bytes).map(Tensor::F32),
        Probe::F64 => npy_as(&bytes).map(Tensor::F64),
        Probe::I32 => npy_as(&bytes).map(Tensor::I32),
        Probe::I64 => npy_as(&bytes).map(Tensor::I64),
        Probe::Bool => npy_as(&bytes).map(Tensor::Bool),
    })
}

/// Writes one tensor as a `.npy` file (little-endian, C order).
///
/// # Errors
///
/// [`Error::Io`] if the file cannot be written.
pub fn write_npy(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    let file = File::create(path).map_err(|err| Error::io("create", path, &err))?;
    let writer = BufWriter::new(file);
    let written = match tensor {
        Tensor::F32(values) => values.write_npy(writer),
        Tensor::F64(values) => values.write_npy(writer),
        Tensor::I32(values) => values.write_npy(writer),
        Tensor::I64(values) => values.write_npy(writer),
        Tensor::Bool(values) => values.write_npy(writer),
    };
    written.map_err(|err| Error::Io {
        action: "write".into(),
        path: path.display().to_string(),
        kind: std::io::ErrorKind::Other,
        message: err.to_string(),
    })
}

/// Reads an array of type `T` from an archive.
fn npz_as<T: ReadableElement, R: Read + Seek>(
    archive: &mut NpzReader<R>,
    name: &str,
) -> std::result::Result<ArrayD<T>, Attempt> {
    Ok(archive.by_name(name)?)
}

impl TensorMap {
    /// Reads every array of an `.npz` archive (`np.savez`, `np.savez_compressed`), named as
    /// numpy names them (the keyword of `np.savez`, without `.npy`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is truncated or not
    /// an archive of `.npy` files, [`Error::DtypeMismatch`] naming an array of another element
    /// type than f32, f64, i32, i64 or bool.
    pub fn read_npz(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        let display = path.display().to_string();
        let format_error = |reason: String| Error::Format {
            path: display.clone(),
            format: NPZ.into(),
            reason,
        };
        let mut archive =
            NpzReader::new(Cursor::new(bytes)).map_err(|err| format_error(err.to_string()))?;
        let names = archive
            .names()
            .map_err(|err| format_error(err.to_string()))?;
        let mut map = TensorMap::with_source(format!("`{display}`"));
        for name in names {
            let tensor = read_any(&name, &display, NPZ, |probe| match probe {
                Probe::F32 => npz_as(&mut archive, &name).map(Tensor::F32),
                Probe::F64 => npz_as(&mut archive, &name).map(Tensor::F64),
                Probe::I32 => npz_as(&mut archive, &name).map(Tensor::I32),
                Probe::I64 => npz_as(&mut archive, &name).map(Tensor::I64),
                Probe::Bool => npz_as(&mut archive, &name).map(Tensor::Bool),
            })?;
            map.insert(name, tensor);
        }
        Ok(map)
    }

    /// Writes every tensor into an uncompressed `.npz` archive (as `np.savez` does), one
    /// `{name}.npy` entry each.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be written.
    pub fn write_npz(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io_error = |message: String| Error::Io {
            action: "write".into(),
            path: path.display().to_string(),
            kind: std::io::ErrorKind::Other,
            message,
        };
        let file = File::create(path).map_err(|err| Error::io("create", path, &err))?;
        let mut archive = NpzWriter::new(BufWriter::new(file));
        for (name, tensor) in self.iter() {
            let added = match tensor {
                Tensor::F32(values) => archive.add_array(name, values),
                Tensor::F64(values) => archive.add_array(name, values),
                Tensor::I32(values) => archive.add_array(name, values),
                Tensor::I64(values) => archive.add_array(name, values),
                Tensor::Bool(values) => archive.add_array(name, values),
            };
            added.map_err(|err| io_error(err.to_string()))?;
        }
        archive.finish().map_err(|err| io_error(err.to_string()))?;
        Ok(())
    }
}
