//! HDF5 files, as h5py and Keras write them, read into a [`TensorMap`]: every dataset under
//! its path from the root group, `/`-separated, without the leading `/`
//! (`layers/lstm/cell/vars/0`). This is the format alone; what Keras' paths mean is
//! [`keras_saved_variables`](crate::io::layout::keras_saved_variables)'s business.
//!
//! The decoding is the pure-Rust `hdf5-reader` crate's (chosen over `hdf5-pure`, `rust-hdf5`
//! and the C library's bindings, see the README): old- and new-style groups, compact,
//! contiguous and chunked (deflate, shuffle) datasets, either byte order. A file is hostile
//! until read: the crate bounds what one object header or chunk may allocate, this module
//! bounds what one dataset may decode to by what the file's bytes can hold, and walks each
//! group once and at most [`MAX_DEPTH`] deep, so a link back to an ancestor ends the walk
//! with an error instead of looping.

use std::collections::BTreeSet;
use std::path::Path;

use hdf5_reader::group::Group;
use hdf5_reader::{Dataset, Datatype, Hdf5File, OpenOptions};
use ndarray::ArrayD;

use super::tensor::{Tensor, TensorMap};
use crate::error::{Error, Result};

/// What [`Error::Format`] calls HDF5 files.
const HDF5: &str = "HDF5 file";

/// How deep groups may nest: far deeper than any weights file (Keras nests five levels),
/// shallow enough that a crafted file cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The largest ratio of decoded to stored bytes: deflate's (1032:1). A dataset claiming to
/// decode to more than the whole file times this is a lie.
const MAX_DECODE_RATIO: usize = 1032;

/// The element types reading accepts, for messages.
const ACCEPTED: &str = "f32, f64, i32 or i64";

impl TensorMap {
    /// Every dataset of the HDF5 file `path` (a Keras `.weights.h5`), under its path from the
    /// root group.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read; as [`TensorMap::from_hdf5_bytes`].
    pub fn read_hdf5(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        Self::from_hdf5_bytes(bytes, &path.display().to_string())
    }

    /// Parses the bytes of an HDF5 file; `path` names it in errors and becomes the map's
    /// source.
    ///
    /// # Errors
    ///
    /// - [`Error::Format`] naming `path` (and the group or dataset) if the bytes are not a
    ///   valid HDF5 file, are truncated, nest groups deeper than 64 levels or in a cycle,
    ///   or a dataset claims more data than the file can hold.
    /// - [`Error::DtypeMismatch`] naming a dataset whose elements are not f32, f64, i32 or
    ///   i64 (strings, compounds, integers of other widths).
    /// - [`Error::Allocation`] naming a dataset too large for the machine.
    pub fn from_hdf5_bytes(bytes: Vec<u8>, path: &str) -> Result<Self> {
        let budget = bytes
            .len()
            .saturating_mul(MAX_DECODE_RATIO)
            .saturating_add(4096);
        let options = OpenOptions::default()
            .with_max_read_bytes(budget)
            .with_max_chunk_bytes(budget);
        let file = Hdf5File::from_vec_with_options(bytes, options)
            .map_err(|err| format_error(path, err.to_string()))?;
        let root = file
            .root_group()
            .map_err(|err| format_error(path, format!("the root group: {err}")))?;
        let mut walk = Walk {
            path,
            budget,
            map: TensorMap::with_source(format!("`{path}`")),
            visited: BTreeSet::new(),
        };
        walk.group(&root, "", 0)?;
        Ok(walk.map)
    }
}

/// An [`Error::Format`] for the HDF5 file `path`.
fn format_error(path: &str, reason: String) -> Error {
    Error::Format {
        path: path.into(),
        format: HDF5.into(),
        reason,
    }
}

/// The state of one walk over a file's groups.
struct Walk<'p> {
    /// The file, for messages.
    path: &'p str,
    /// The most bytes one dataset may decode to: what the file's bytes can hold.
    budget: usize,
    /// The datasets read so far.
    map: TensorMap,
    /// The object addresses of the groups entered: a group reached twice is a cycle (or a
    /// hard link, which weights files do not use).
    visited: BTreeSet<u64>,
}

impl Walk<'_> {
    /// Reads every dataset under `group`, whose path is `prefix` (`""` for the root, else
    /// ending in `/`), `depth` levels below the root.
    fn group(&mut self, group: &Group, prefix: &str, depth: usize) -> Result<()> {
        let shown = if prefix.is_empty() { "/" } else { prefix };
        if depth > MAX_DEPTH {
            return Err(format_error(
                self.path,
                format!("group `{shown}` nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        if !self.visited.insert(group.address()) {
            return Err(format_error(
                self.path,
                format!("group `{shown}` is reached twice (a cycle of links)"),
            ));
        }
        let (groups, datasets) = group
            .members()
            .map_err(|err| format_error(self.path, format!("group `{shown}`: {err}")))?;
        for dataset in &datasets {
            let name = format!("{prefix}{}", dataset.name());
            let tensor = self.dataset(dataset, &name)?;
            self.map.insert(name, tensor);
        }
        for child in &groups {
            self.group(child, &format!("{prefix}{}/", child.name()), depth + 1)?;
        }
        Ok(())
    }

    /// The values of `dataset`, called `name` in messages.
    fn dataset(&self, dataset: &Dataset, name: &str) -> Result<Tensor> {
        let elements = dataset
            .num_elements()
            .map_err(|err| format_error(self.path, format!("dataset `{name}`: {err}")))?;
        let (element_size, read): (usize, fn(&Dataset) -> hdf5_reader::error::Result<Tensor>) =
            match dataset.dtype() {
                Datatype::FloatingPoint { size: 4, .. } => (4, |d| read_as(d, Tensor::F32)),
                Datatype::FloatingPoint { size: 8, .. } => (8, |d| read_as(d, Tensor::F64)),
                Datatype::FixedPoint {
                    size: 4,
                    signed: true,
                    ..
                } => (4, |d| read_as(d, Tensor::I32)),
                Datatype::FixedPoint {
                    size: 8,
                    signed: true,
                    ..
                } => (8, |d| read_as(d, Tensor::I64)),
                other => {
                    return Err(Error::DtypeMismatch {
                        what: format!("{name} (in `{}`)", self.path),
                        expected: ACCEPTED.into(),
                        found: describe(other),
                    });
                }
            };
        // A claim the file cannot back is refused before anything, even a probe of the
        // allocator, is sized by it.
        let claimed = u128::from(elements) * element_size as u128;
        if claimed > self.budget as u128 {
            return Err(format_error(
                self.path,
                format!(
                    "dataset `{name}` claims {elements} elements ({claimed} bytes), more \
                     than the file's bytes can hold"
                ),
            ));
        }
        crate::alloc::check_allocation(
            &format!("dataset `{name}` of `{}`", self.path),
            u128::from(elements),
            element_size,
        )?;
        read(dataset).map_err(|err| format_error(self.path, format!("dataset `{name}`: {err}")))
    }
}

/// The whole of `dataset` as `T`, wrapped into a [`Tensor`] by `wrap`.
fn read_as<T: hdf5_reader::H5Type>(
    dataset: &Dataset,
    wrap: fn(ArrayD<T>) -> Tensor,
) -> hdf5_reader::error::Result<Tensor> {
    dataset.read_array::<T>().map(wrap)
}

/// An HDF5 element type as messages show it (`u8`, `string`, `compound`).
fn describe(datatype: &Datatype) -> String {
    match datatype {
        Datatype::FixedPoint { size, signed, .. } => {
            format!(
                "{}{}",
                if *signed { "i" } else { "u" },
                u32::from(*size) * 8
            )
        }
        Datatype::FloatingPoint { size, .. } => format!("f{}", u32::from(*size) * 8),
        Datatype::String { .. } | Datatype::VarLen { .. } => {
            "a string or variable-length type".into()
        }
        Datatype::Compound { .. } => "a compound type".into(),
        other => format!("{other:?}"),
    }
}
