//! [`Tensor`], one array of any element type a weights, input or mask file holds, and
//! [`TensorMap`], tensors by name: what the file formats read and write, and what the
//! PyTorch and Keras layouts convert between.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{ArrayD, ArrayViewD};

use crate::error::{Error, Result};
use crate::float::Float;
use crate::params::{Gradients, Parameters};

/// The element types the file formats exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `float32` (numpy `<f4`, safetensors `F32`).
    F32,
    /// `float64` (numpy `<f8`, safetensors `F64`).
    F64,
    /// `int32` (numpy `<i4`, safetensors `I32`).
    I32,
    /// `int64` (numpy `<i8`, safetensors `I64`): sequence lengths.
    I64,
    /// `bool` (numpy `|b1`, safetensors `BOOL`): masks.
    Bool,
}

impl Dtype {
    /// The name numpy-style messages use: `f32`, `f64`, `i32`, `i64`, `bool`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::I32 => "i32",
            Dtype::I64 => "i64",
            Dtype::Bool => "bool",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One n-dimensional array of any [`Dtype`].
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// `float32` values.
    F32(ArrayD<f32>),
    /// `float64` values.
    F64(ArrayD<f64>),
    /// `int32` values.
    I32(ArrayD<i32>),
    /// `int64` values.
    I64(ArrayD<i64>),
    /// Booleans.
    Bool(ArrayD<bool>),
}

impl Tensor {
    /// A tensor of the floating-point type `F` (`f32` or `f64`).
    pub fn from_float<F: Float>(values: ArrayD<F>) -> Self {
        // `Float` is sealed to f32 and f64, and both round-trip through f64 exactly.
        match F::DTYPE {
            "f32" => Tensor::F32(values.mapv(|v| v.to_f64_lossy() as f32)),
            _ => Tensor::F64(values.mapv(Float::to_f64_lossy)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Tensor::F32(_) => Dtype::F32,
            Tensor::F64(_) => Dtype::F64,
            Tensor::I32(_) => Dtype::I32,
            Tensor::I64(_) => Dtype::I64,
            Tensor::Bool(_) => Dtype::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(values) => values.shape(),
            Tensor::F64(values) => values.shape(),
            Tensor::I32(values) => values.shape(),
            Tensor::I64(values) => values.shape(),
            Tensor::Bool(values) => values.shape(),
        }
    }

    /// The values as the floating-point type `F`, converting between `f32` and `f64` (a
    /// float32 PyTorch model runs in f64 exactly; f64 weights are rounded to run in f32).
    ///
    /// # Errors
    ///
    /// [`Error::DtypeMismatch`] naming `what` if the tensor holds integers or booleans.
    pub fn to_float<F: Float>(&self, what: &str) -> Result<ArrayD<F>> {
        match self {
            Tensor::F32(values) => Ok(values.mapv(|v| F::of(f64::from(v)))),
            Tensor::F64(values) => Ok(values.mapv(F::of)),
            other => Err(dtype_mismatch(what, "f32 or f64", other.dtype())),
        }
    }

    /// The values as sequence lengths (`int64`, or `int32`).
    ///
    /// # Errors
    ///
    /// [`Error::DtypeMismatch`] naming `what` for any other element type, and
    /// [`Error::InvalidValue`] for a negative value.
    pub fn to_lengths(&self, what: &str) -> Result<ArrayD<usize>> {
        let convert = |v: i64| {
            usize::try_from(v).map_err(|_| {
                Error::invalid_value(what, format!("a length is {v}; expected lengths >= 0"))
            })
        };
        match self {
            Tensor::I64(values) => values
                .iter()
                .map(|&v| convert(v))
                .collect::<Result<Vec<_>>>(),
            Tensor::I32(values) => values
                .iter()
                .map(|&v| convert(i64::from(v)))
                .collect::<Result<Vec<_>>>(),
            other => return Err(dtype_mismatch(what, "i64", other.dtype())),
        }
        .map(|lengths| {
            ArrayD::from_shape_vec(self.shape(), lengths)
                // One value per element of the source array, in its logical order.
                .expect("as many lengths as elements")
        })
    }

    /// The values as a boolean mask, borrowed.
    ///
    /// # Errors
    ///
    /// [`Error::DtypeMismatch`] naming `what` for any other element type.
    pub fn as_mask(&self, what: &str) -> Result<ArrayViewD<'_, bool>> {
        match self {
            Tensor::Bool(values) => Ok(values.view()),
            other => Err(dtype_mismatch(what, "bool", other.dtype())),
        }
    }
}

/// A [`Error::DtypeMismatch`] for `what`.
pub(crate) fn dtype_mismatch(what: &str, expected: &str, found: impl fmt::Display) -> Error {
    Error::DtypeMismatch {
        what: what.into(),
        expected: expected.into(),
        found: found.to_string(),
    }
}

/// Tensors by name, with the name of where they came from for error messages.
///
/// The reading functions ([`TensorMap::read_safetensors`], [`TensorMap::read_npz`]) set the
/// source to the file's path, so a missing or misshapen tensor is reported with its file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorMap {
    tensors: BTreeMap<String, Tensor>,
    source: String,
}

impl Default for TensorMap {
    fn default() -> Self {
        TensorMap::new()
    }
}

impl TensorMap {
    /// No tensors; the source reads as "the tensors".
    pub fn new() -> Self {
        TensorMap::with_source("the tensors")
    }

    /// No tensors, from `source` (a file's path, "the Keras weights").
    pub fn with_source(source: impl Into<String>) -> Self {
        TensorMap {
            tensors: BTreeMap::new(),
            source: source.into(),
        }
    }

    /// Where the tensors came from, as error messages name it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Sets where the tensors came from.
    pub fn set_source(&mut self, source: impl Into<String>) {
        self.source = source.into();
    }

    /// Adds or replaces the tensor `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// The tensor `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The tensor `name`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`] naming `name` and the source.
    pub fn require(&self, name: &str) -> Result<&Tensor> {
        self.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.into(),
            source_name: self.source.clone(),
        })
    }

    /// The tensor `name` as the floating-point type `F`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`] if absent, [`Error::DtypeMismatch`] if not floating-point.
    pub fn float<F: Float>(&self, name: &str) -> Result<ArrayD<F>> {
        self.require(name)?.to_float(name)
    }

    /// Removes and returns the tensor `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// Whether a tensor is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Every name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Every tensor with its name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors
            .iter()
            .map(|(name, tensor)| (name.as_str(), tensor))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Every tensor of `model`, under its parameter names (PyTorch's for the layers).
    pub fn from_parameters<F: Float>(model: &impl Parameters<F>) -> Self {
        let mut map = TensorMap::new();
        model.visit_parameters(&mut |name, values| {
            map.insert(name, Tensor::from_float(values.to_owned()));
        });
        map
    }

    /// Every gradient of `grads`, under its name.
    pub fn from_gradients<F: Float>(grads: &Gradients<F>) -> Self {
        let mut map = TensorMap::with_source("the gradients");
        for (name, values) in grads.iter() {
            map.insert(name, Tensor::from_float(values.clone()));
        }
        map
    }
}

impl IntoIterator for TensorMap {
    type Item = (String, Tensor);
    type IntoIter = std::collections::btree_map::IntoIter<String, Tensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.tensors.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;

    #[test]
    fn floats_convert_between_precisions() {
        let tensor = Tensor::from_float(ArrayD::from_elem(IxDyn(&[2]), 0.5f32));
        assert_eq!(tensor.dtype(), Dtype::F32);
        assert_eq!(tensor.to_float::<f64>("w").unwrap()[[1]], 0.5);
        let tensor = Tensor::from_float(ArrayD::from_elem(IxDyn(&[1, 3]), 0.25f64));
        assert_eq!(tensor.dtype(), Dtype::F64);
        assert_eq!(tensor.shape(), &[1, 3]);
    }

    #[test]
    fn wrong_dtypes_are_named() {
        let lengths = Tensor::I64(ArrayD::from_elem(IxDyn(&[2]), 3));
        let err = lengths.to_float::<f32>("weight_ih_l0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`weight_ih_l0` has dtype i64; expected f32 or f64"
        );
        assert!(lengths.as_mask("mask").is_err());
        assert_eq!(lengths.to_lengths("lengths").unwrap()[[0]], 3);
        let negative = Tensor::I32(ArrayD::from_elem(IxDyn(&[1]), -1));
        assert!(matches!(
            negative.to_lengths("lengths"),
            Err(Error::InvalidValue { .. })
        ));
    }

    #[test]
    fn missing_tensors_name_the_source() {
        let map = TensorMap::with_source("`w.safetensors`");
        let err = map.float::<f64>("bias_hh_l0").unwrap_err();
        assert_eq!(
            err,
            Error::MissingTensor {
                name: "bias_hh_l0".into(),
                source_name: "`w.safetensors`".into()
            }
        );
    }
}
