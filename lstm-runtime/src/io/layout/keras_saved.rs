//! Keras 3's own weight files (`.weights.h5`, and `model.weights.h5` inside a `.keras`
//! archive) do not store a weight under its path (`lstm/lstm_cell/kernel`): Keras'
//! `saving_lib` walks the model's attributes and numbers each layer's variables, so the
//! kernel of an `LSTM` is the dataset `layers/lstm/cell/vars/0`. [`keras_saved_variables`]
//! renames those datasets to paths [`keras_to_pytorch`](crate::io::keras_to_pytorch) reads.
//!
//! The walk names what it passes (checked against files Keras 3.15 writes):
//!
//! - `layers/{layer}`: a layer of the model, named after its class (`lstm`, `lstm_1`, …,
//!   `bidirectional`), numbered in the model's order, whatever names the user gave them;
//! - `cell`: the `LSTMCell` of an `LSTM`; `forward_layer`, `backward_layer`: the two `LSTM`s
//!   of a `Bidirectional`;
//! - `vars/{k}`: the `k`-th variable the cell created: `kernel`, `recurrent_kernel`, then
//!   `bias` when the layer has one ([`CELL_VARIABLES`]).
//!
//! A compiled model's file also holds the optimizer's state (`optimizer/vars/{k}`): training
//! state, not weights, left out. Every other variable is an LSTM cell's or an error naming
//! it: a `Dense` head's `layers/dense/vars/0` has no place in an `nn.LSTM` (leave such layers
//! out first, [`without_keras_layers`](super::without_keras_layers)).

use crate::error::{Error, Result};
use crate::io::tensor::TensorMap;

/// The variables an `LSTMCell` creates, in the order its `build` creates them: the order
/// `vars/{k}` numbers them in.
pub const CELL_VARIABLES: [&str; 3] = ["kernel", "recurrent_kernel", "bias"];

/// The top-level group of a Keras file that holds the optimizer's state, not weights.
const OPTIMIZER: &str = "optimizer";

/// Whether `key` is a variable as Keras 3's saving code stores it (`…/vars/{k}`).
pub fn is_keras_saved_variable(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    parts.len() >= 2 && parts[parts.len() - 2] == "vars"
}

/// Keras weights with the variables of Keras 3's own files (`layers/lstm/cell/vars/0`)
/// renamed to weight paths (`lstm/cell/kernel`; `bidirectional/forward_layer/cell/kernel`),
/// the optimizer's state (`optimizer/…`) left out and every other key kept as it is.
///
/// # Errors
///
/// [`Error::UnexpectedTensor`] naming a variable that is not an LSTM cell's: one of a layer
/// without a cell (a `Dense` head: `layers/dense/vars/0`), past the three an `LSTMCell`
/// has (a custom cell's), or outside `layers/`.
pub fn keras_saved_variables(map: &TensorMap) -> Result<TensorMap> {
    let mut out = TensorMap::with_source(map.source());
    for (key, tensor) in map.iter() {
        if !is_keras_saved_variable(key) {
            out.insert(key, tensor.clone());
            continue;
        }
        if key.split('/').next() == Some(OPTIMIZER) {
            continue;
        }
        out.insert(weight_path(key, map.source())?, tensor.clone());
    }
    Ok(out)
}

/// The weight path of the saved variable `key` (`layers/lstm/cell/vars/1` →
/// `lstm/cell/recurrent_kernel`).
fn weight_path(key: &str, source: &str) -> Result<String> {
    let unexpected = |reason: String| Error::UnexpectedTensor {
        name: key.into(),
        source_name: source.into(),
        reason,
    };
    let parts: Vec<&str> = key.split('/').collect();
    // `is_keras_saved_variable` checked that the last two parts are `vars` and an index.
    let (index, owners) = (parts[parts.len() - 1], &parts[..parts.len() - 2]);
    let Some((&"layers", owners)) = owners.split_first() else {
        return Err(unexpected(
            "a Keras file's weights are under `layers/`; this variable is not a layer's".into(),
        ));
    };
    if owners.last() != Some(&"cell") {
        let layer = owners.first().copied().unwrap_or_default();
        return Err(unexpected(format!(
            "layer `{layer}` has no recurrent cell (`layers/{layer}/…/cell/vars/…`); an \
             `nn.LSTM` holds `LSTM` and `Bidirectional(LSTM)` layers: leave it out with \
             `lstm convert … --ignore-layer {layer}` (`without_keras_layers`)"
        )));
    }
    let tensor = index
        .parse::<usize>()
        .ok()
        .and_then(|index| CELL_VARIABLES.get(index))
        .ok_or_else(|| {
            unexpected(format!(
                "an `LSTMCell` has variables 0 to 2 ({}); this one is not among them (a \
                 custom cell's parameter has no name in the file)",
                CELL_VARIABLES.join(", ")
            ))
        })?;
    Ok(format!("{}/{tensor}", owners.join("/")))
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;

    use super::*;
    use crate::io::tensor::Tensor;

    fn saved(keys: &[&str]) -> TensorMap {
        let mut map = TensorMap::with_source("`model.weights.h5`");
        for key in keys {
            map.insert(*key, Tensor::F32(ArrayD::zeros(vec![1])));
        }
        map
    }

    #[test]
    fn saved_variables_become_weight_paths() {
        let map = saved(&[
            "layers/lstm/cell/vars/0",
            "layers/lstm/cell/vars/1",
            "layers/lstm/cell/vars/2",
            "layers/bidirectional_1/backward_layer/cell/vars/0",
            "optimizer/vars/0",
            "optimizer/vars/25",
        ]);
        let names: Vec<String> = keras_saved_variables(&map)
            .unwrap()
            .names()
            .map(String::from)
            .collect();
        assert_eq!(
            names,
            [
                "bidirectional_1/backward_layer/cell/kernel",
                "lstm/cell/bias",
                "lstm/cell/kernel",
                "lstm/cell/recurrent_kernel",
            ]
        );
    }

    #[test]
    fn variables_of_other_layers_are_named() {
        for (key, says) in [
            ("layers/dense/vars/0", "layer `dense` has no recurrent cell"),
            ("layers/lstm/cell/vars/3", "variables 0 to 2"),
            ("vars/0", "not a layer's"),
        ] {
            let err = keras_saved_variables(&saved(&[key])).unwrap_err();
            assert!(
                matches!(&err, Error::UnexpectedTensor { name, .. } if name == key),
                "{err}"
            );
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
