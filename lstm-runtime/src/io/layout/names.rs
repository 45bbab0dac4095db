//! Framework key names that are not yet the ones [`lstm_from_pytorch`](crate::io::lstm_from_pytorch)
//! and [`keras_to_pytorch`] read: a whole model's `state_dict` (`encoder.lstm.weight_ih_l0`,
//! chosen with a prefix), `nn.LSTMCell`'s keys without a layer (`weight_ih`), Keras 2's
//! variable names (`lstm/lstm_cell/kernel:0`) and Keras 3's saved variables
//! (`layers/lstm/cell/vars/0`, renamed in `keras_saved.rs`).
//!
//! Also where a file of unknown layout is told apart ([`pytorch_or_keras`]): by its names, so
//! that one stray tensor (`num_batches_tracked`) is reported by name instead of switching the
//! whole file to another layout.

use crate::error::{Error, Result};
use crate::io::keras::keras_to_pytorch;
use crate::io::layout::keras_saved::keras_saved_variables;
use crate::io::tensor::TensorMap;
use crate::params::name::ParamName;

/// `nn.LSTMCell`'s `state_dict` keys: one cell, no layer suffix.
const CELL_KEYS: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];

/// What TensorFlow appends to a variable's name (Keras 2's `kernel:0`).
const TF_VARIABLE_SUFFIX: &str = ":0";

/// PyTorch-named weights from a `state_dict` of an `nn.LSTM` or `nn.LSTMCell`, or of a whole
/// model when `prefix` selects the LSTM's keys (`encoder.lstm` or `encoder.lstm.`; the other
/// keys are the model's other modules and are left out).
///
/// # Errors
///
/// - [`Error::UnexpectedTensor`] naming the first key that is neither an `nn.LSTM` name
///   (`{param}_l{k}[_reverse]`) nor an `nn.LSTMCell` one, with the prefix to pass when it
///   looks like a submodule's key (`encoder.lstm.weight_ih_l0`).
/// - [`Error::Config`] (`prefix`) when no key starts with `prefix`, listing the top-level
///   modules the file has; or when `nn.LSTM` and `nn.LSTMCell` keys are mixed.
pub fn pytorch_state_dict(map: &TensorMap, prefix: Option<&str>) -> Result<TensorMap> {
    let mut out = TensorMap::with_source(map.source());
    let (selected, prefix) = match prefix {
        Some(prefix) => {
            let prefix = if prefix.is_empty() || prefix.ends_with('.') {
                prefix.to_string()
            } else {
                format!("{prefix}.")
            };
            let selected: Vec<(&str, &str)> = map
                .names()
                .filter_map(|key| key.strip_prefix(&prefix).map(|rest| (key, rest)))
                .collect();
            if selected.is_empty() {
                let mut modules: Vec<&str> = map
                    .names()
                    .map(|key| key.split('.').next().unwrap_or(key))
                    .collect();
                modules.dedup();
                return Err(Error::Config {
                    option: "prefix".into(),
                    reason: format!(
                        "no tensor of {} starts with `{prefix}`; its keys start with {}",
                        map.source(),
                        modules.join(", ")
                    ),
                });
            }
            (selected, prefix)
        }
        None => (map.names().map(|key| (key, key)).collect(), String::new()),
    };
    let mut cell_keys = false;
    let mut layer_keys = false;
    for (key, name) in selected {
        let tensor = map.require(key)?.clone();
        if CELL_KEYS.contains(&name) {
            cell_keys = true;
            out.insert(format!("{name}_l0"), tensor);
        } else if ParamName::parse(name).is_some() && !name.contains('.') {
            layer_keys = true;
            out.insert(name, tensor);
        } else {
            return Err(Error::UnexpectedTensor {
                name: key.into(),
                source_name: map.source().into(),
                reason: not_an_lstm_name(name, &prefix),
            });
        }
        if cell_keys && layer_keys {
            return Err(Error::Config {
                option: "prefix".into(),
                reason: format!(
                    "{} mixes `nn.LSTMCell` keys (`weight_ih`) and `nn.LSTM` keys \
                     (`weight_ih_l0`); select one module with the prefix",
                    map.source()
                ),
            });
        }
    }
    Ok(out)
}

/// Why `name` is no LSTM key, and which prefix selects the LSTM if it is a submodule's.
fn not_an_lstm_name(name: &str, prefix: &str) -> String {
    let expected = "not an `nn.LSTM` name `{param}_l{layer}[_reverse]` nor an `nn.LSTMCell` \
                    one (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`)";
    match name.rsplit_once('.') {
        Some((module, last)) if ParamName::parse(last).is_some() || CELL_KEYS.contains(&last) => {
            format!(
                "{expected}; it belongs to the submodule `{prefix}{module}`, select it with the prefix `{prefix}{module}`"
            )
        }
        _ => expected.into(),
    }
}

/// Keras weights with TensorFlow's `:0` suffix taken off the variable names (Keras 2's
/// `lstm/lstm_cell/kernel:0`, and `.h5` files Keras 2 wrote), so they read as Keras 3 paths.
pub fn strip_keras2_suffixes(map: &TensorMap) -> TensorMap {
    let mut out = TensorMap::with_source(map.source());
    for (key, tensor) in map.iter() {
        let key = key.strip_suffix(TF_VARIABLE_SUFFIX).unwrap_or(key);
        out.insert(key, tensor.clone());
    }
    out
}

/// The layer of a Keras model that the tensor `key` belongs to, by the name the file gives it:
/// `dense` for Keras 3's own files (`layers/dense/vars/0`), Keras 2's `.h5` files
/// (`model_weights/dense/dense/kernel:0`) and weight paths (`dense/kernel`); `None` for the
/// optimizer's state and for bare tensor names.
pub fn keras_layer_of(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    let first = parts.next()?;
    match first {
        "layers" | "model_weights" => parts.next(),
        "optimizer" | "optimizer_weights" => None,
        _ if key.contains('/') => Some(first),
        _ => None,
    }
}

/// Keras weights without the tensors of the model's layers named in `layers`: a `Dense` head,
/// an embedding, anything that is not part of the recurrent stack an `nn.LSTM` holds.
///
/// # Errors
///
/// [`Error::Config`] naming `layers` for a name that no tensor of `map` belongs to,
/// with the layers the file has.
pub fn without_keras_layers(map: &TensorMap, layers: &[String]) -> Result<TensorMap> {
    let mut present: Vec<&str> = map.names().filter_map(keras_layer_of).collect();
    present.sort_unstable();
    present.dedup();
    if let Some(missing) = layers
        .iter()
        .find(|layer| !present.contains(&layer.as_str()))
    {
        return Err(Error::Config {
            option: "layers".into(),
            reason: format!(
                "{} has no layer `{missing}`; its layers are {}",
                map.source(),
                present.join(", ")
            ),
        });
    }
    let mut out = TensorMap::with_source(map.source());
    for (key, tensor) in map.iter() {
        if !keras_layer_of(key).is_some_and(|layer| layers.iter().any(|l| l == layer)) {
            out.insert(key, tensor.clone());
        }
    }
    Ok(out)
}

/// Keras weights under the paths [`keras_to_pytorch`] reads, whichever way the file named
/// them: Keras 3 weight paths as they are, Keras 2's `:0` suffixes taken off
/// ([`strip_keras2_suffixes`]), the variables of Keras 3's own files renamed
/// ([`keras_saved_variables`]).
///
/// # Errors
///
/// As [`keras_saved_variables`].
pub fn keras_weight_paths(map: &TensorMap) -> Result<TensorMap> {
    keras_saved_variables(&strip_keras2_suffixes(map))
}

/// Whether `key` is a Keras weight path or name (`lstm/lstm_cell/kernel`, `kernel:0`, a bare
/// `kernel`), as opposed to a PyTorch key.
fn is_keras_key(key: &str) -> bool {
    let key = key.strip_suffix(TF_VARIABLE_SUFFIX).unwrap_or(key);
    key.contains('/') || ["kernel", "recurrent_kernel", "bias"].contains(&key)
}

/// PyTorch-named weights from a file in either framework's names, told apart by the names:
/// any Keras path makes it a Keras file (converted with [`keras_to_pytorch`], Keras 2's `:0`
/// suffixes taken off), else it is a `state_dict` ([`pytorch_state_dict`], no prefix).
///
/// A tensor that fits neither, in a file that is otherwise one framework's, is reported by
/// name (a stray `num_batches_tracked`), not by what the other framework would miss.
///
/// # Errors
///
/// [`Error::UnexpectedTensor`] naming a tensor that is not of the file's framework; otherwise
/// as [`pytorch_state_dict`] and [`keras_to_pytorch`].
pub fn pytorch_or_keras(map: &TensorMap) -> Result<TensorMap> {
    if !map.names().any(is_keras_key) {
        return pytorch_state_dict(map, None);
    }
    if let Some(stray) = map.names().find(|key| !is_keras_key(key)) {
        return Err(Error::UnexpectedTensor {
            name: stray.into(),
            source_name: map.source().into(),
            reason: "the other tensors are Keras weight paths (`layer/…/kernel`), this is not \
                     one"
            .into(),
        });
    }
    keras_to_pytorch(&keras_weight_paths(map)?)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::*;
    use crate::io::tensor::Tensor;

    fn lstm_tensors(map: &mut TensorMap, prefix: &str, suffix: &str) {
        map.insert(
            format!("{prefix}weight_ih{suffix}"),
            Tensor::F32(Array2::zeros((8, 3)).into_dyn()),
        );
        map.insert(
            format!("{prefix}weight_hh{suffix}"),
            Tensor::F32(Array2::zeros((8, 2)).into_dyn()),
        );
        map.insert(
            format!("{prefix}bias_ih{suffix}"),
            Tensor::F32(Array1::zeros(8).into_dyn()),
        );
        map.insert(
            format!("{prefix}bias_hh{suffix}"),
            Tensor::F32(Array1::zeros(8).into_dyn()),
        );
    }

    #[test]
    fn layers_are_named_and_left_out_in_every_keras_naming() {
        for (key, layer) in [
            ("layers/dense/vars/0", Some("dense")),
            ("model_weights/head/head/kernel:0", Some("head")),
            ("lstm/lstm_cell/kernel", Some("lstm")),
            ("optimizer/vars/3", None),
            ("optimizer_weights/adam/iter:0", None),
            ("kernel", None),
        ] {
            assert_eq!(keras_layer_of(key), layer, "{key}");
        }
        let mut map = TensorMap::with_source("`model.h5`");
        for key in [
            "model_weights/head/head/kernel:0",
            "model_weights/head/head/bias:0",
            "model_weights/lstm/lstm/lstm_cell/kernel:0",
        ] {
            map.insert(key, Tensor::F32(Array1::zeros(2).into_dyn()));
        }
        let kept: Vec<String> = without_keras_layers(&map, &["head".into()])
            .unwrap()
            .names()
            .map(String::from)
            .collect();
        assert_eq!(kept, ["model_weights/lstm/lstm/lstm_cell/kernel:0"]);
        let err = without_keras_layers(&map, &["dense".into()]).unwrap_err();
        assert!(
            matches!(&err, Error::Config { option, reason } if option == "layers"
                && reason.contains("no layer `dense`") && reason.contains("head, lstm")),
            "{err}"
        );
    }

    #[test]
    fn cell_keys_become_layer_zero_and_prefixes_select_a_module() {
        let mut cell = TensorMap::new();
        lstm_tensors(&mut cell, "", "");
        let names: Vec<String> = pytorch_state_dict(&cell, None)
            .unwrap()
            .names()
            .map(String::from)
            .collect();
        assert_eq!(
            names,
            ["bias_hh_l0", "bias_ih_l0", "weight_hh_l0", "weight_ih_l0"]
        );

        let mut model = TensorMap::with_source("`model.safetensors`");
        lstm_tensors(&mut model, "encoder.lstm.", "_l0");
        model.insert("head.weight", Tensor::F32(Array2::zeros((1, 2)).into_dyn()));
        for prefix in ["encoder.lstm", "encoder.lstm."] {
            let selected = pytorch_state_dict(&model, Some(prefix)).unwrap();
            assert_eq!(selected.len(), 4);
            assert!(selected.contains("weight_hh_l0"));
        }
        let err = pytorch_state_dict(&model, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("select it with the prefix `encoder.lstm`"),
            "{err}"
        );
        let err = pytorch_state_dict(&model, Some("decoder")).unwrap_err();
        assert!(
            err.to_string().contains("start with encoder, head"),
            "{err}"
        );
    }

    #[test]
    fn a_stray_tensor_is_named_not_taken_for_keras() {
        let mut map = TensorMap::with_source("`w.safetensors`");
        lstm_tensors(&mut map, "", "_l0");
        map.insert(
            "num_batches_tracked",
            Tensor::I64(ndarray::ArrayD::zeros(vec![])),
        );
        let err = pytorch_or_keras(&map).unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedTensor { name, .. } if name == "num_batches_tracked"),
            "{err}"
        );

        let mut keras = TensorMap::with_source("`k.npz`");
        keras.insert(
            "lstm/lstm_cell/kernel:0",
            Tensor::F32(Array2::zeros((3, 8)).into_dyn()),
        );
        keras.insert(
            "lstm/lstm_cell/recurrent_kernel:0",
            Tensor::F32(Array2::zeros((2, 8)).into_dyn()),
        );
        keras.insert(
            "lstm/lstm_cell/bias:0",
            Tensor::F32(Array1::zeros(8).into_dyn()),
        );
        let converted = pytorch_or_keras(&keras).unwrap();
        assert_eq!(
            converted.float::<f32>("weight_ih_l0").unwrap().shape(),
            [8, 3]
        );
        keras.insert(
            "num_batches_tracked",
            Tensor::I64(ndarray::ArrayD::zeros(vec![])),
        );
        let err = pytorch_or_keras(&keras).unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedTensor { name, .. } if name == "num_batches_tracked"),
            "{err}"
        );
    }
}
