//! Keras' layout, converted to and from PyTorch's.
//!
//! A Keras 3 `LSTM` holds `kernel` `(input, gates·hidden)`, `recurrent_kernel`
//! `(hidden, gates·hidden)` and one `bias` `(gates·hidden,)`, gate order i, f, c, o — the
//! same order as PyTorch's i, f, g, o, so converting is transposing the kernels and splitting
//! the bias: on import `bias_ih = bias` and `bias_hh = 0`, on export `bias = bias_ih +
//! bias_hh` (the sum is all either framework ever uses).
//!
//! # Key scheme
//!
//! Keys are Keras 3 weight paths, as `{w.path: w.numpy() for w in model.weights}` gives them:
//!
//! | Keras | PyTorch |
//! |---|---|
//! | `lstm/lstm_cell/kernel` | `weight_ih_l0` |
//! | `lstm_1/lstm_cell/recurrent_kernel` | `weight_hh_l1` |
//! | `bidirectional/forward_lstm/lstm_cell/bias` | `bias_ih_l0` (and `bias_hh_l0` = 0) |
//! | `bidirectional/backward_lstm/lstm_cell/kernel` | `weight_ih_l0_reverse` |
//! | `lstm/lstm_cell/forget_bias` (a custom cell's parameter) | `forget_bias_l0` |
//!
//! The last path component is the tensor. A component starting with `forward_` or
//! `backward_` marks a direction of a `Bidirectional`, and what precedes it names the layer;
//! otherwise the layer is named by what precedes the tensor, without a final `…cell`
//! component (`lstm/lstm_cell` is layer `lstm`). A bare `kernel` is a single layer. Layers
//! are numbered in the natural order of their names, which for Keras' automatic names
//! (`lstm`, `lstm_1`, …, `lstm_10`) is the order they were created in; for other names,
//! [`keras_to_pytorch_ordered`] takes the order explicitly.
//!
//! Export ([`pytorch_to_keras`]) writes the names Keras gives a fresh model's layers:
//! `lstm{_k}/lstm_cell/…`, or `bidirectional{_k}/{forward,backward}_lstm{_k}/lstm_cell/…`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use ndarray::ArrayD;

use super::tensor::{Tensor, TensorMap, dtype_mismatch};
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::io::layout::keras_layer_of;
use crate::params::name::ParamName;

/// Keras' input kernel.
const KERNEL: &str = "kernel";
/// Keras' recurrent kernel.
const RECURRENT_KERNEL: &str = "recurrent_kernel";
/// Keras' one bias.
const BIAS: &str = "bias";

/// Where a Keras weight belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KerasPath {
    /// The layer's name: `lstm`, `bidirectional_1`, `` for a bare tensor name.
    layer: String,
    /// `Some(Forward)` for `forward_…`, `Some(Reverse)` for `backward_…`, `None` outside a
    /// `Bidirectional`.
    direction: Option<Direction>,
    /// The tensor: `kernel`, `recurrent_kernel`, `bias`, or a custom parameter.
    tensor: String,
}

impl KerasPath {
    fn parse(key: &str) -> Self {
        let parts: Vec<&str> = key.split('/').collect();
        let (tensor, owners) = parts
            .split_last()
            // `split` yields at least one part, even for an empty key.
            .expect("split yields at least one part");
        let marker = owners
            .iter()
            .position(|part| part.starts_with("forward_") || part.starts_with("backward_"));
        let (layer, direction) = match marker {
            Some(index) if owners[index].starts_with("backward_") => {
                (&owners[..index], Some(Direction::Reverse))
            }
            Some(index) => (&owners[..index], Some(Direction::Forward)),
            None => match owners.split_last() {
                Some((last, rest)) if last.ends_with("cell") => (rest, None),
                _ => (owners, None),
            },
        };
        KerasPath {
            layer: layer.join("/"),
            direction,
            tensor: (*tensor).to_string(),
        }
    }
}

/// Orders names naturally: digit runs compare as numbers (`lstm_2` < `lstm_10`).
pub(crate) fn natural_order(left: &str, right: &str) -> Ordering {
    let mut left = left.chars().peekable();
    let mut right = right.chars().peekable();
    loop {
        match (left.peek().copied(), right.peek().copied()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(a), Some(b)) if a.is_ascii_digit() && b.is_ascii_digit() => {
                let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut digits = String::new();
                    while let Some(c) = chars.next_if(char::is_ascii_digit) {
                        digits.push(c);
                    }
                    digits
                };
                let (a, b) = (number(&mut left), number(&mut right));
                let (a_trimmed, b_trimmed) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
                let by_value = a_trimmed
                    .len()
                    .cmp(&b_trimmed.len())
                    .then_with(|| a_trimmed.cmp(b_trimmed))
                    .then_with(|| a.len().cmp(&b.len()));
                if by_value != Ordering::Equal {
                    return by_value;
                }
            }
            (Some(a), Some(b)) => {
                if a != b {
                    return a.cmp(&b);
                }
                left.next();
                right.next();
            }
        }
    }
}

/// The layer names of Keras-named weights, in natural order (the order
/// [`keras_to_pytorch`] numbers them in).
pub fn keras_layer_names(keras: &TensorMap) -> Vec<String> {
    let names: BTreeSet<String> = keras
        .names()
        .map(|key| KerasPath::parse(key).layer)
        .collect();
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort_by(|a, b| natural_order(a, b));
    names
}

/// Converts Keras-named weights to PyTorch's names and layout, numbering the layers in the
/// natural order of their names (see the module docs).
///
/// # Errors
///
/// As [`keras_to_pytorch_ordered`].
pub fn keras_to_pytorch(keras: &TensorMap) -> Result<TensorMap> {
    let layers = keras_layer_names(keras);
    let layers: Vec<&str> = layers.iter().map(String::as_str).collect();
    keras_to_pytorch_ordered(keras, &layers)
}

/// Converts Keras-named weights to PyTorch's names and layout; `layers` gives the layer names
/// (`lstm`, `bidirectional_1`, see the module docs) from the input up.
///
/// # Errors
///
/// - [`Error::UnexpectedTensor`] for a weight of a layer not in `layers`.
/// - [`Error::MissingTensor`] for a layer without `kernel` or `recurrent_kernel`, or a
///   `Bidirectional` without one of its directions.
/// - [`Error::Config`] if some layers are bidirectional and others are not.
/// - [`Error::ShapeMismatch`] for a kernel that is not a matrix or a bias that is not a
///   vector; [`Error::DtypeMismatch`] for a kernel or bias that is not f32 or f64.
pub fn keras_to_pytorch_ordered(keras: &TensorMap, layers: &[&str]) -> Result<TensorMap> {
    let mut pytorch = TensorMap::with_source(format!("{} (converted from Keras)", keras.source()));
    // Per layer and direction, the tensors seen, to check completeness afterwards.
    let mut seen: BTreeMap<(usize, Option<Direction>), Vec<String>> = BTreeMap::new();
    for (key, tensor) in keras.iter() {
        let path = KerasPath::parse(key);
        let layer = layers
            .iter()
            .position(|name| *name == path.layer)
            .ok_or_else(|| Error::UnexpectedTensor {
                name: key.into(),
                source_name: keras.source().into(),
                reason: format!("its layer `{}` is not among {layers:?}", path.layer),
            })?;
        let direction = path.direction.unwrap_or_default();
        let name = |param: &str| ParamName::new(param, layer, direction).to_string();
        match path.tensor.as_str() {
            KERNEL => pytorch.insert(name("weight_ih"), transposed(key, tensor)?),
            RECURRENT_KERNEL => pytorch.insert(name("weight_hh"), transposed(key, tensor)?),
            BIAS => {
                if tensor.shape().len() != 1 {
                    return Err(Error::ShapeMismatch {
                        what: key.into(),
                        expected: vec![tensor.shape().iter().product()],
                        found: tensor.shape().to_vec(),
                    });
                }
                pytorch.insert(name("bias_hh"), zeros_like(key, tensor)?);
                pytorch.insert(name("bias_ih"), tensor.clone());
            }
            param => pytorch.insert(name(param), tensor.clone()),
        }
        seen.entry((layer, path.direction))
            .or_default()
            .push(path.tensor);
    }
    check_complete(keras, layers, &seen)?;
    Ok(pytorch)
}

/// Every layer has both kernels in every direction, and all layers agree on being
/// bidirectional.
fn check_complete(
    keras: &TensorMap,
    layers: &[&str],
    seen: &BTreeMap<(usize, Option<Direction>), Vec<String>>,
) -> Result<()> {
    let bidirectional = seen.keys().any(|(_, direction)| direction.is_some());
    let directions: &[Option<Direction>] = if bidirectional {
        &[Some(Direction::Forward), Some(Direction::Reverse)]
    } else {
        &[None]
    };
    for (index, layer) in layers.iter().enumerate() {
        if bidirectional && seen.contains_key(&(index, None)) {
            return Err(Error::Config {
                option: "bidirectional".into(),
                reason: format!(
                    "layer `{layer}` is not a `Bidirectional` but others are; a layer's \
                     directions must all have `forward_`/`backward_` paths or none"
                ),
            });
        }
        for &direction in directions {
            let tensors = seen.get(&(index, direction));
            let has = |name: &str| tensors.is_some_and(|names| names.iter().any(|n| n == name));
            if has(KERNEL) && !has(RECURRENT_KERNEL) && direction.is_none() {
                // A `Dense` (or any layer with one kernel): not an LSTM layer at all.
                let shown = keras
                    .names()
                    .find(|key| KerasPath::parse(key).layer == *layer)
                    .and_then(keras_layer_of)
                    .unwrap_or(layer);
                return Err(Error::UnexpectedTensor {
                    name: format!("{layer}/{KERNEL}"),
                    source_name: keras.source().into(),
                    reason: format!(
                        "layer `{shown}` has a `kernel` and no `recurrent_kernel`: it is not an \
                         LSTM layer; leave it out with `lstm convert … --ignore-layer {shown}` \
                         (`without_keras_layers`)"
                    ),
                });
            }
            for required in [KERNEL, RECURRENT_KERNEL] {
                if !tensors.is_some_and(|names| names.iter().any(|name| name == required)) {
                    let owner = match direction {
                        None => layer.to_string(),
                        Some(Direction::Forward) => format!("{layer}/forward_…"),
                        Some(Direction::Reverse) => format!("{layer}/backward_…"),
                    };
                    return Err(Error::MissingTensor {
                        name: format!("{owner}/{required}"),
                        source_name: keras.source().into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Converts PyTorch-named weights to Keras' names and layout (see the module docs).
///
/// # Errors
///
/// - [`Error::UnexpectedTensor`] for a name not of PyTorch's form.
/// - [`Error::Config`] for a projection (`weight_hr_l{k}`): Keras' `LSTM` has none.
/// - [`Error::MissingTensor`] if only one of `bias_ih`/`bias_hh` is present.
/// - [`Error::ShapeMismatch`], [`Error::DtypeMismatch`] for weights that are not f32/f64
///   matrices, or biases that differ in shape or type.
pub fn pytorch_to_keras(pytorch: &TensorMap) -> Result<TensorMap> {
    let mut names = Vec::new();
    for key in pytorch.names() {
        let name = ParamName::parse(key).ok_or_else(|| Error::UnexpectedTensor {
            name: key.into(),
            source_name: pytorch.source().into(),
            reason: "not a PyTorch LSTM name `{param}_l{layer}[_reverse]`".into(),
        })?;
        names.push((key, name));
    }
    let bidirectional = names
        .iter()
        .any(|(_, name)| name.direction == Direction::Reverse);
    let mut keras = TensorMap::with_source(format!("{} (converted to Keras)", pytorch.source()));
    for (key, name) in &names {
        let prefix = keras_prefix(name.layer, bidirectional.then_some(name.direction));
        let tensor = pytorch.require(key)?;
        match name.param.as_str() {
            "weight_ih" => keras.insert(format!("{prefix}/{KERNEL}"), transposed(key, tensor)?),
            "weight_hh" => keras.insert(
                format!("{prefix}/{RECURRENT_KERNEL}"),
                transposed(key, tensor)?,
            ),
            "bias_ih" => {
                let other = ParamName::new("bias_hh", name.layer, name.direction).to_string();
                let sum = sum(key, tensor, &other, pytorch.require(&other)?)?;
                keras.insert(format!("{prefix}/{BIAS}"), sum);
            }
            "bias_hh" => {
                // Summed into the Keras bias with `bias_ih`, which must exist too.
                pytorch
                    .require(&ParamName::new("bias_ih", name.layer, name.direction).to_string())?;
            }
            "weight_hr" => {
                return Err(Error::Config {
                    option: "proj_size".into(),
                    reason: format!(
                        "Keras' LSTM has no projection, so `{key}` has no Keras equivalent"
                    ),
                });
            }
            param => keras.insert(format!("{prefix}/{param}"), tensor.clone()),
        }
    }
    Ok(keras)
}

/// The path Keras gives a fresh model's layer `layer`, in `direction` of a `Bidirectional`
/// (`None` for a unidirectional model).
fn keras_prefix(layer: usize, direction: Option<Direction>) -> String {
    let suffix = if layer == 0 {
        String::new()
    } else {
        format!("_{layer}")
    };
    match direction {
        Some(direction) => {
            let direction = match direction {
                Direction::Forward => "forward",
                Direction::Reverse => "backward",
            };
            format!("bidirectional{suffix}/{direction}_lstm{suffix}/lstm_cell")
        }
        None => format!("lstm{suffix}/lstm_cell"),
    }
}

/// A float matrix, transposed (into standard layout).
fn transposed(what: &str, tensor: &Tensor) -> Result<Tensor> {
    fn transpose<T: Clone>(what: &str, values: &ArrayD<T>) -> Result<ArrayD<T>> {
        if values.ndim() != 2 {
            return Err(Error::ShapeMismatch {
                what: what.into(),
                // The rank is what is wrong; the sizes are not known here.
                expected: vec![0, 0],
                found: values.shape().to_vec(),
            });
        }
        Ok(values.t().as_standard_layout().into_owned())
    }
    match tensor {
        Tensor::F32(values) => Ok(Tensor::F32(transpose(what, values)?)),
        Tensor::F64(values) => Ok(Tensor::F64(transpose(what, values)?)),
        other => Err(dtype_mismatch(what, "f32 or f64", other.dtype())),
    }
}

/// Zeros of a float tensor's shape and type.
fn zeros_like(what: &str, tensor: &Tensor) -> Result<Tensor> {
    match tensor {
        Tensor::F32(values) => Ok(Tensor::F32(ArrayD::zeros(values.raw_dim()))),
        Tensor::F64(values) => Ok(Tensor::F64(ArrayD::zeros(values.raw_dim()))),
        other => Err(dtype_mismatch(what, "f32 or f64", other.dtype())),
    }
}

/// The elementwise sum of two float tensors of one shape and type.
fn sum(what: &str, left: &Tensor, other: &str, right: &Tensor) -> Result<Tensor> {
    if left.shape() != right.shape() {
        return Err(Error::shape_mismatch(other, left.shape(), right.shape()));
    }
    match (left, right) {
        (Tensor::F32(a), Tensor::F32(b)) => Ok(Tensor::F32(a + b)),
        (Tensor::F64(a), Tensor::F64(b)) => Ok(Tensor::F64(a + b)),
        (Tensor::F32(_) | Tensor::F64(_), mismatched) => Err(dtype_mismatch(
            other,
            left.dtype().name(),
            mismatched.dtype(),
        )),
        (mismatched, _) => Err(dtype_mismatch(what, "f32 or f64", mismatched.dtype())),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    #[test]
    fn paths_name_layer_direction_and_tensor() {
        let parse = KerasPath::parse;
        assert_eq!(
            parse("lstm/lstm_cell/kernel"),
            KerasPath {
                layer: "lstm".into(),
                direction: None,
                tensor: "kernel".into()
            }
        );
        let path = parse("bidirectional_1/backward_lstm_3/lstm_cell/bias");
        assert_eq!(
            (path.layer.as_str(), path.direction),
            ("bidirectional_1", Some(Direction::Reverse))
        );
        let path = parse("recurrent_kernel");
        assert_eq!(
            (path.layer.as_str(), path.tensor.as_str()),
            ("", "recurrent_kernel")
        );
    }

    #[test]
    fn natural_order_sorts_keras_counters_numerically() {
        let mut names = vec!["lstm_10", "lstm_2", "lstm", "lstm_1", "lstm_02"];
        names.sort_by(|a, b| natural_order(a, b));
        assert_eq!(names, ["lstm", "lstm_1", "lstm_2", "lstm_02", "lstm_10"]);
    }

    fn keras_layer(map: &mut TensorMap, prefix: &str, fill: f64) {
        let kernel = Array2::from_shape_fn((2, 8), |(i, j)| fill + (i * 8 + j) as f64);
        map.insert(format!("{prefix}/kernel"), Tensor::F64(kernel.into_dyn()));
        let recurrent = Array2::from_elem((2, 8), fill);
        map.insert(
            format!("{prefix}/recurrent_kernel"),
            Tensor::F64(recurrent.into_dyn()),
        );
        let bias = ndarray::Array1::from_elem(8, fill);
        map.insert(format!("{prefix}/bias"), Tensor::F64(bias.into_dyn()));
    }

    #[test]
    fn stacked_layers_convert_both_ways() {
        let mut keras = TensorMap::new();
        keras_layer(&mut keras, "lstm/lstm_cell", 1.0);
        keras_layer(&mut keras, "lstm_1/lstm_cell", 2.0);
        let pytorch = keras_to_pytorch(&keras).unwrap();
        let names: Vec<&str> = pytorch.names().collect();
        assert_eq!(
            names,
            [
                "bias_hh_l0",
                "bias_hh_l1",
                "bias_ih_l0",
                "bias_ih_l1",
                "weight_hh_l0",
                "weight_hh_l1",
                "weight_ih_l0",
                "weight_ih_l1"
            ]
        );
        let weight_ih = pytorch.float::<f64>("weight_ih_l1").unwrap();
        assert_eq!(weight_ih.shape(), &[8, 2]);
        assert_eq!(weight_ih[[3, 1]], 2.0 + 11.0);
        assert_eq!(pytorch.float::<f64>("bias_hh_l0").unwrap().sum(), 0.0);
        assert_eq!(
            pytorch_to_keras(&pytorch)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            keras.into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn export_sums_the_biases_and_refuses_projections() {
        let mut pytorch = TensorMap::new();
        pytorch.insert(
            "weight_ih_l0",
            Tensor::F32(Array2::zeros((4, 3)).into_dyn()),
        );
        pytorch.insert(
            "weight_hh_l0",
            Tensor::F32(Array2::zeros((4, 1)).into_dyn()),
        );
        pytorch.insert(
            "bias_ih_l0",
            Tensor::F32(array![1.0f32, 2.0, 3.0, 4.0].into_dyn()),
        );
        pytorch.insert(
            "bias_hh_l0",
            Tensor::F32(array![0.5f32, 0.5, 0.5, 0.5].into_dyn()),
        );
        let keras = pytorch_to_keras(&pytorch).unwrap();
        assert_eq!(
            keras.get("lstm/lstm_cell/bias"),
            Some(&Tensor::F32(array![1.5f32, 2.5, 3.5, 4.5].into_dyn()))
        );
        assert_eq!(keras.get("lstm/lstm_cell/kernel").unwrap().shape(), &[3, 4]);
        pytorch.insert(
            "weight_hr_l0",
            Tensor::F32(Array2::zeros((1, 1)).into_dyn()),
        );
        assert!(matches!(
            pytorch_to_keras(&pytorch),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn incomplete_or_foreign_weights_are_errors() {
        let mut keras = TensorMap::with_source("`k.npz`");
        keras_layer(&mut keras, "bidirectional/forward_lstm/lstm_cell", 1.0);
        let err = keras_to_pytorch(&keras).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no tensor `bidirectional/backward_…/kernel` in `k.npz`"
        );
        let err = keras_to_pytorch_ordered(&keras, &["other"]).unwrap_err();
        assert!(matches!(err, Error::UnexpectedTensor { .. }), "{err}");
        keras.insert(
            "lstm/lstm_cell/kernel",
            Tensor::I64(ArrayD::zeros(vec![2, 8])),
        );
        assert!(matches!(
            keras_to_pytorch(&keras),
            Err(Error::DtypeMismatch { .. })
        ));
    }
}
