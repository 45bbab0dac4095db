//! Flax's LSTM cells (`flax.linen.OptimizedLSTMCell` and `LSTMCell`), whose parameters are
//! eight dense layers: `ii`, `if`, `ig`, `io` over the input (kernel only) and `hi`, `hf`,
//! `hg`, `ho` over the hidden state (kernel and bias), kernels stored `(in, out)`.
//!
//! The keys are the parameter tree flattened with `/`
//! (`flax.traverse_util.flatten_dict(params, sep="/")`): `params/RNN_0/cell/hi/kernel`. What
//! precedes `ii/kernel` names a cell; several cells are stacked layers in the natural order of
//! those names (`RNN_0`, `RNN_1`, …, `RNN_10`).

use std::collections::BTreeSet;

use ndarray::{ArrayD, ArrayView2, Axis, concatenate};

use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::io::keras::natural_order;
use crate::io::tensor::{Tensor, TensorMap, dtype_mismatch};
use crate::params::name::ParamName;

/// Flax's gate letters in PyTorch's order (Flax computes i, f, g, o as PyTorch does).
const GATES: [&str; 4] = ["i", "f", "g", "o"];

/// PyTorch-named weights from a Flax LSTM cell's flattened parameters: kernels transposed
/// and stacked by gate, the hidden side's biases as `bias_hh`, zeros as `bias_ih`.
///
/// # Errors
///
/// - [`Error::MissingTensor`] when no key ends with `ii/kernel`, or a cell lacks one of its
///   eight kernels or four biases.
/// - [`Error::UnexpectedTensor`] naming a key that is no Flax LSTM parameter.
/// - [`Error::ShapeMismatch`], [`Error::DtypeMismatch`] naming a misshapen or non-float one.
pub fn flax_to_pytorch(map: &TensorMap) -> Result<TensorMap> {
    let mut cells: Vec<String> = map
        .names()
        .filter_map(|key| key.strip_suffix("ii/kernel"))
        .map(String::from)
        .collect();
    if cells.is_empty() {
        return Err(Error::MissingTensor {
            name: "…/ii/kernel (a Flax LSTM cell's input kernel)".into(),
            source_name: map.source().into(),
        });
    }
    cells.sort_by(|a, b| natural_order(a, b));
    let mut used = BTreeSet::new();
    let mut out = TensorMap::with_source(map.source());
    for (layer, prefix) in cells.iter().enumerate() {
        let name = |param: &str| ParamName::new(param, layer, Direction::Forward).to_string();
        let mut kernels = |side: &str| -> Result<Tensor> {
            let mut blocks = Vec::new();
            for gate in GATES {
                let key = format!("{prefix}{side}{gate}/kernel");
                blocks.push(map.require(&key)?.clone());
                used.insert(key);
            }
            stack_transposed(prefix, side, &blocks)
        };
        let weight_ih = kernels("i")?;
        let weight_hh = kernels("h")?;
        let hidden = weight_hh.shape()[1];
        let mut biases = Vec::new();
        for gate in GATES {
            let key = format!("{prefix}h{gate}/bias");
            let bias = map.require(&key)?;
            if bias.shape() != [hidden] {
                return Err(Error::shape_mismatch(&key, &[hidden], bias.shape()));
            }
            biases.push(bias.clone());
            used.insert(key);
        }
        let bias_hh = concat_vectors(&biases)?;
        let bias_ih = match &bias_hh {
            Tensor::F32(values) => Tensor::F32(ArrayD::zeros(values.raw_dim())),
            Tensor::F64(values) => Tensor::F64(ArrayD::zeros(values.raw_dim())),
            other => {
                return Err(dtype_mismatch(
                    &name("bias_hh"),
                    "f32 or f64",
                    other.dtype(),
                ));
            }
        };
        out.insert(name("weight_ih"), weight_ih);
        out.insert(name("weight_hh"), weight_hh);
        out.insert(name("bias_ih"), bias_ih);
        out.insert(name("bias_hh"), bias_hh);
    }
    if let Some(extra) = map.names().find(|key| !used.contains(*key)) {
        return Err(Error::UnexpectedTensor {
            name: extra.into(),
            source_name: map.source().into(),
            reason: "not a parameter of a Flax LSTM cell (`ii/kernel` … `ho/bias`)".into(),
        });
    }
    Ok(out)
}

/// The four `(in, H)` kernels of one side as one `(4H, in)` matrix, gate blocks i, f, g, o.
fn stack_transposed(prefix: &str, side: &str, blocks: &[Tensor]) -> Result<Tensor> {
    fn stack<T: Clone>(what: &str, blocks: &[&ArrayD<T>]) -> Result<ArrayD<T>> {
        let first = blocks[0].shape().to_vec();
        let mut views: Vec<ArrayView2<'_, T>> = Vec::new();
        for (block, gate) in blocks.iter().zip(GATES) {
            let view = block
                .view()
                .into_dimensionality()
                .ok()
                .filter(|view: &ArrayView2<'_, T>| view.shape() == first.as_slice())
                .ok_or_else(|| {
                    Error::shape_mismatch(format!("{what}{gate}/kernel"), &first, block.shape())
                })?;
            views.push(view.reversed_axes());
        }
        Ok(concatenate(Axis(0), &views)
            .expect("transposed blocks of one shape concatenate")
            .as_standard_layout()
            .into_owned()
            .into_dyn())
    }
    let what = format!("{prefix}{side}");
    match &blocks[0] {
        Tensor::F32(_) => {
            let arrays = floats(&what, blocks, |t| match t {
                Tensor::F32(v) => Some(v),
                _ => None,
            })?;
            Ok(Tensor::F32(stack(&what, &arrays)?))
        }
        Tensor::F64(_) => {
            let arrays = floats(&what, blocks, |t| match t {
                Tensor::F64(v) => Some(v),
                _ => None,
            })?;
            Ok(Tensor::F64(stack(&what, &arrays)?))
        }
        other => Err(dtype_mismatch(
            &format!("{what}i/kernel"),
            "f32 or f64",
            other.dtype(),
        )),
    }
}

/// The arrays of `blocks`, all of the first one's float type.
fn floats<'t, T>(
    what: &str,
    blocks: &'t [Tensor],
    as_type: impl Fn(&'t Tensor) -> Option<&'t ArrayD<T>>,
) -> Result<Vec<&'t ArrayD<T>>> {
    blocks
        .iter()
        .zip(GATES)
        .map(|(block, gate)| {
            as_type(block).ok_or_else(|| {
                dtype_mismatch(
                    &format!("{what}{gate}/kernel"),
                    blocks[0].dtype().name(),
                    block.dtype(),
                )
            })
        })
        .collect()
}

/// Vectors of one float type, one after another.
fn concat_vectors(parts: &[Tensor]) -> Result<Tensor> {
    let mut f32s = Vec::new();
    let mut f64s = Vec::new();
    for part in parts {
        match part {
            Tensor::F32(values) => f32s.extend(values.iter().copied()),
            Tensor::F64(values) => f64s.extend(values.iter().copied()),
            other => return Err(dtype_mismatch("bias", "f32 or f64", other.dtype())),
        }
    }
    match (f32s.is_empty(), f64s.is_empty()) {
        (false, true) => Ok(Tensor::F32(
            ArrayD::from_shape_vec(vec![f32s.len()], f32s).expect("1-D"),
        )),
        (true, false) => Ok(Tensor::F64(
            ArrayD::from_shape_vec(vec![f64s.len()], f64s).expect("1-D"),
        )),
        _ => Err(dtype_mismatch(
            "bias",
            parts[0].dtype().name(),
            "a mix of f32 and f64",
        )),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::*;

    fn flax_cell(map: &mut TensorMap, prefix: &str, input: usize, hidden: usize) {
        for (n, gate) in GATES.iter().enumerate() {
            let kernel =
                Array2::from_shape_fn((input, hidden), |(r, c)| (n * 100 + r * 10 + c) as f32);
            map.insert(
                format!("{prefix}i{gate}/kernel"),
                Tensor::F32(kernel.into_dyn()),
            );
            let kernel = Array2::from_elem((hidden, hidden), -(n as f32));
            map.insert(
                format!("{prefix}h{gate}/kernel"),
                Tensor::F32(kernel.into_dyn()),
            );
            let bias = Array1::from_elem(hidden, n as f32 + 0.5);
            map.insert(
                format!("{prefix}h{gate}/bias"),
                Tensor::F32(bias.into_dyn()),
            );
        }
    }

    #[test]
    fn kernels_are_transposed_and_stacked_by_gate() {
        let mut map = TensorMap::new();
        flax_cell(&mut map, "params/RNN_1/cell/", 3, 2);
        flax_cell(&mut map, "params/RNN_0/cell/", 3, 2);
        let out = flax_to_pytorch(&map).unwrap();
        let weight_ih = out.float::<f32>("weight_ih_l0").unwrap();
        assert_eq!(weight_ih.shape(), [8, 3]);
        // Row 5 is gate g (n = 2), unit 1; column 2 is input 2: kernel[2, 1].
        assert_eq!(weight_ih[[5, 2]], 200.0 + 20.0 + 1.0);
        let bias_hh = out.float::<f32>("bias_hh_l1").unwrap();
        assert_eq!(bias_hh[[7]], 3.5);
        assert_eq!(out.float::<f32>("bias_ih_l0").unwrap().sum(), 0.0);
    }

    #[test]
    fn missing_and_stray_parameters_are_named() {
        let mut map = TensorMap::with_source("`flax.npz`");
        flax_cell(&mut map, "", 3, 2);
        map.remove("hg/bias");
        let err = flax_to_pytorch(&map).unwrap_err();
        assert!(
            matches!(&err, Error::MissingTensor { name, .. } if name == "hg/bias"),
            "{err}"
        );
        flax_cell(&mut map, "", 3, 2);
        map.insert(
            "dense/kernel",
            Tensor::F32(Array2::zeros((2, 2)).into_dyn()),
        );
        let err = flax_to_pytorch(&map).unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedTensor { name, .. } if name == "dense/kernel"),
            "{err}"
        );
    }
}
