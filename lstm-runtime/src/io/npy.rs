//! numpy's `.npy` (one array: inputs, lengths, masks, outputs) and `.npz` (a zip of named
//! `.npy` files, what `np.savez` writes: Keras weights) over the `ndarray-npy` crate.
//!
//! A file's element type is only known once its header is read, so reading tries each
//! [`Dtype`](super::Dtype) in turn; the first whose descriptor matches wins.
//!
//! A header is a claim that the data has to back: before `ndarray-npy` allocates the array a
//! header describes, [`check_npy_claims`] checks the header's length and the array's byte
//! count against the bytes that follow, so a 460-byte file claiming 30 GB is a format error
//! naming the shape, not an abort. `.npz` members are read through the `zip` crate one at a
//! time, each bounded by [`read_member`].

use std::fs::File;
use std::io::{BufWriter, Cursor};
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{NpzWriter, ReadNpyError, ReadNpyExt, ReadableElement, WriteNpyExt};

use super::tensor::{Tensor, TensorMap, dtype_mismatch};
use super::zip_member::read_member;
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
/// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is truncated (its header
/// claims more data than the file holds) or not a `.npy` file, [`Error::DtypeMismatch`] for
/// an element type other than f32, f64, i32, i64 or bool (the message names the file).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
    read_npy_bytes(&bytes, &path.display().to_string())
}

/// Parses the bytes of a `.npy` file; `path` names it in errors.
///
/// # Errors
///
/// As [`read_npy`], without the I/O.
pub fn read_npy_bytes(bytes: &[u8], path: &str) -> Result<Tensor> {
    npy_from_bytes(bytes, path, path, NPY)
}

/// Parses the bytes of a `.npy` file or `.npz` member; `what` names the array in a dtype
/// error, `path` and `format` the file in a format error.
fn npy_from_bytes(bytes: &[u8], what: &str, path: &str, format: &str) -> Result<Tensor> {
    check_npy_claims(bytes).map_err(|reason| Error::Format {
        path: path.into(),
        format: format.into(),
        reason,
    })?;
    read_any(what, path, format, |probe| match probe {
        Probe::F32 => npy_as(bytes).map(Tensor::F32),
        Probe::F64 => npy_as(bytes).map(Tensor::F64),
        Probe::I32 => npy_as(bytes).map(Tensor::I32),
        Probe::I64 => npy_as(bytes).map(Tensor::I64),
        Probe::Bool => npy_as(bytes).map(Tensor::Bool),
    })
}

/// `Ok` unless the header of the `.npy` file `bytes` claims more than `bytes` holds: a header
/// longer than the file, or an array of more bytes than follow the header. Files whose
/// header does not parse pass, for `ndarray-npy` to describe what is wrong with them.
fn check_npy_claims(bytes: &[u8]) -> std::result::Result<(), String> {
    // The prelude: magic (6 bytes), version (2), header length (2 bytes in version 1, 4 in
    // versions 2 and 3). `ndarray-npy` allocates the header length before reading it.
    let (Some(&major), true) = (bytes.get(6), bytes.starts_with(b"\x93NUMPY")) else {
        return Ok(());
    };
    let (length_bytes, start) = if major == 1 { (2, 10) } else { (4, 12) };
    let Some(length) = bytes.get(8..8 + length_bytes) else {
        return Ok(());
    };
    let header_len = length
        .iter()
        .rev()
        .fold(0usize, |total, &byte| (total << 8) | usize::from(byte));
    let available = bytes.len().saturating_sub(start);
    if header_len > available {
        return Err(format!(
            "the header claims {header_len} bytes but the file has {available} after its prelude"
        ));
    }
    let text = &bytes[start..start + header_len];
    let deepest = nesting_depth(text);
    if deepest > MAX_HEADER_NESTING {
        return Err(format!(
            "the header nests brackets {deepest} deep; a header of an array of numbers is a \
             dict holding a shape tuple ({MAX_HEADER_NESTING} deep)"
        ));
    }
    let mut reader = Cursor::new(bytes);
    let Ok(header) = Header::from_reader(&mut reader) else {
        return Ok(());
    };
    let data = bytes.len() as u128 - u128::from(reader.position());
    let descriptor = header.type_descriptor.to_string();
    let needed = crate::alloc::product(&header.shape).saturating_mul(item_size(&descriptor));
    if needed > data {
        return Err(format!(
            "the header claims shape {:?} of {descriptor} ({}), but the file holds {} of data",
            header.shape,
            crate::alloc::human_bytes(needed),
            crate::alloc::human_bytes(data)
        ));
    }
    Ok(())
}

/// Brackets a `.npy` header may nest: the dict, and the shape tuple in it. The header parser
/// (`py_literal`'s grammar) backtracks through nested lists and tuples in time that grows
/// exponentially with their depth, so a small hostile header could keep it busy for minutes;
/// the headers of the element types read here never nest deeper.
const MAX_HEADER_NESTING: usize = 2;

/// How deep the brackets (`(`, `[`, `{`) of a header nest, brackets inside quotes included.
fn nesting_depth(header: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for byte in header {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Bytes per element of a numpy type descriptor (`'<f4'` → 4, `'<U8'` → 32); 1 for one
/// without a size, which no accepted type is.
fn item_size(descriptor: &str) -> u128 {
    let text = descriptor.trim_matches(|c| c == '\'' || c == '"');
    let digits: String = text.chars().skip_while(|c| !c.is_ascii_digit()).collect();
    let size: u128 = digits.parse().unwrap_or(1);
    if text.contains('U') {
        size.saturating_mul(4)
    } else {
        size.max(1)
    }
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

impl TensorMap {
    /// Reads every array of an `.npz` archive (`np.savez`, `np.savez_compressed`), named as
    /// numpy names them (the keyword of `np.savez`, without `.npy`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Format`] if it is truncated (a
    /// member's header claims more data than it holds) or not an archive of `.npy` files,
    /// [`Error::DtypeMismatch`] naming an array of another element type than f32, f64, i32,
    /// i64 or bool.
    pub fn read_npz(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        Self::from_npz_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the bytes of an `.npz` archive; `path` names it in errors and becomes the map's
    /// source.
    ///
    /// # Errors
    ///
    /// As [`TensorMap::read_npz`], without the I/O; [`Error::Allocation`] naming a member
    /// whose declared size cannot be allocated.
    pub fn from_npz_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        let format_error = |reason: String| Error::Format {
            path: path.into(),
            format: NPZ.into(),
            reason,
        };
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|err| format_error(err.to_string()))?;
        let mut map = TensorMap::with_source(format!("`{path}`"));
        for index in 0..archive.len() {
            let mut member = archive
                .by_index(index)
                .map_err(|err| format_error(err.to_string()))?;
            let member_name = member.name().to_string();
            let name = member_name
                .strip_suffix(".npy")
                .unwrap_or(&member_name)
                .to_string();
            let npy = read_member(&mut member, path, NPZ, bytes.len() as u64)?;
            drop(member);
            let tensor = npy_from_bytes(&npy, &name, path, NPZ)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_nesting_brackets_deeply_is_refused_at_once() {
        // Found by the `npy` fuzz target: nested lists in a header kept the header parser
        // backtracking for minutes. Refused before parsing.
        let text = format!("{{'descr': '<f4', 'shape': {}1", "[".repeat(40));
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((text.len() as u16).to_le_bytes());
        bytes.extend(text.as_bytes());
        let err = read_npy_bytes(&bytes, "deep.npy").unwrap_err();
        assert!(err.to_string().contains("nests brackets 41 deep"), "{err}");
        // What numpy writes still reads.
        let mut file = Vec::new();
        ndarray::Array2::<f32>::zeros((2, 3))
            .write_npy(&mut file)
            .unwrap();
        assert!(read_npy_bytes(&file, "plain.npy").is_ok());
    }

    #[test]
    fn a_member_claiming_more_than_its_compressed_bytes_hold_is_refused() {
        // Found by `cargo fuzz run npz`: a 1038-byte archive whose stored member `x.npy`
        // declares 4,244,766,720 bytes from one compressed byte.
        let bytes = include_bytes!("../../../fuzz/found/npz-oom-4244766720.npz");
        let err = TensorMap::from_npz_bytes(bytes, "found.npz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.npy") && err.contains("4244766720"), "{err}");
    }

    #[test]
    fn a_member_claiming_more_compressed_bytes_than_the_archive_holds_is_refused() {
        // Found by `cargo fuzz run npz`: a stored member claiming a 1.9 GB compressed size.
        let bytes = include_bytes!("../../../fuzz/found/npz-oom-probe-1936024615.npz");
        let message = TensorMap::from_npz_bytes(bytes, "probe.npz")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("compressed bytes in an archive of"),
            "{message}"
        );
    }
}
