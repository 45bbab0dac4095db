//! Tests of [`Checkpoint`](super::Checkpoint): exact round trips in both precisions, the
//! file as plain safetensors, atomic replacement, and every kind of bad or tampered file named.

use ndarray::{Array1, array};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::*;
use crate::params::Gradients;
use crate::train::linear::Linear;
use crate::train::optim::{Adam, AdamConfig};

fn trained_pair<F: Float>() -> (Linear<F>, Adam<F>) {
    let mut layer = Linear {
        weight: array![[0.25, -0.5, 1.0 / 3.0]].mapv(F::of),
        bias: Array1::from_elem(1, F::of(0.1)),
    };
    let mut adam = Adam::new(AdamConfig::adamw().with_lr(0.01)).unwrap();
    let mut grads = Gradients::new();
    grads.insert("weight", array![[0.3, 0.2, -0.7]].mapv(F::of).into_dyn());
    grads.insert("bias", array![0.9].mapv(F::of).into_dyn());
    adam.step(&mut layer, &grads).unwrap();
    (layer, adam)
}

fn round_trip<F: Float>() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let (layer, adam) = trained_pair::<F>();
    let mut checkpoint = Checkpoint::capture(&layer, &adam, 2, 42);
    checkpoint.metadata.insert("task".into(), "adding".into());
    checkpoint
        .history
        .insert("loss".into(), vec![0.1 + 0.2, f64::MIN_POSITIVE]);
    checkpoint.save(&path).unwrap();
    let loaded = Checkpoint::<F>::load(&path).unwrap();
    assert_eq!(loaded, checkpoint);
    let mut restored = Linear::<F>::zeros(3, 1);
    loaded.restore_model(&mut restored).unwrap();
    assert_eq!(restored, layer);
    let mut resumed = Adam::<F>::new(AdamConfig::adamw().with_lr(0.01)).unwrap();
    resumed.load_state(loaded.optimizer).unwrap();
    assert_eq!(resumed.state(), adam.state());
    // Only the checkpoint is left in the directory: no temporary file.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn round_trip_is_exact_in_both_precisions() {
    round_trip::<f32>();
    round_trip::<f64>();
}

#[test]
fn saving_replaces_an_existing_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let (layer, adam) = trained_pair::<f64>();
    Checkpoint::capture(&layer, &adam, 1, 0)
        .save(&path)
        .unwrap();
    Checkpoint::capture(&layer, &adam, 7, 0)
        .save(&path)
        .unwrap();
    assert_eq!(Checkpoint::<f64>::load(&path).unwrap().step, 7);
}

#[test]
fn the_file_is_plain_safetensors() {
    let (layer, adam) = trained_pair::<f32>();
    let bytes = Checkpoint::capture(&layer, &adam, 1, 5).to_bytes().unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = tensors.names();
    names.sort();
    assert_eq!(
        names,
        [
            "model.bias",
            "model.weight",
            "optim.exp_avg.bias",
            "optim.exp_avg.weight",
            "optim.exp_avg_sq.bias",
            "optim.exp_avg_sq.weight"
        ]
    );
    let weight = tensors.tensor("model.weight").unwrap();
    assert_eq!(weight.dtype(), Dtype::F32);
    assert_eq!(weight.shape(), &[1, 3]);
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().as_ref().unwrap();
    assert_eq!(metadata["lstm.step"], "1");
    assert_eq!(metadata["lstm.seed"], "5");
    assert_eq!(metadata["lstm.optimizer"], "adamw");
}

#[test]
fn restoring_into_the_wrong_model_is_an_error_that_changes_nothing() {
    let (layer, adam) = trained_pair::<f64>();
    let checkpoint = Checkpoint::capture(&layer, &adam, 1, 0);
    let mut wider = Linear::<f64>::zeros(4, 1);
    assert_eq!(
        checkpoint.restore_model(&mut wider),
        Err(Error::shape_mismatch("model.weight", &[1, 4], &[1, 3]))
    );
    assert_eq!(wider, Linear::zeros(4, 1));
    let mut missing = checkpoint.clone();
    missing.model.remove("bias");
    let mut target = Linear::<f64>::zeros(3, 1);
    assert_eq!(
        missing.restore_model(&mut target),
        Err(Error::MissingTensor {
            name: "model.bias".into(),
            source_name: "the checkpoint".into()
        })
    );
    let mut extra = checkpoint.clone();
    extra.model.insert("scale".into(), ArrayD::zeros(vec![1]));
    assert!(matches!(
        extra.restore_model(&mut target),
        Err(Error::InvalidValue { what, .. }) if what == "model.scale"
    ));
    assert_eq!(target, Linear::zeros(3, 1));
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let missing = Checkpoint::<f64>::load(&path).unwrap_err();
    assert!(matches!(&missing, Error::Io { kind, .. } if *kind == std::io::ErrorKind::NotFound));
    assert!(missing.to_string().contains("c.safetensors"), "{missing}");

    let (layer, adam) = trained_pair::<f64>();
    let checkpoint = Checkpoint::capture(&layer, &adam, 3, 1);
    let bytes = checkpoint.to_bytes().unwrap();
    for cut in [0, 7, 8, 20, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = Checkpoint::<f64>::load(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Format { path: p, .. } if p.ends_with("c.safetensors")),
            "cut at {cut}: {err}"
        );
    }
    let mut garbled = bytes.clone();
    garbled[10] = b'\xff';
    std::fs::write(&path, &garbled).unwrap();
    assert!(matches!(
        Checkpoint::<f64>::load(&path),
        Err(Error::Format { .. })
    ));

    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        Checkpoint::<f32>::load(&path),
        Err(Error::DtypeMismatch {
            what: "model.bias".into(),
            expected: "F32".into(),
            found: "F64".into()
        })
    );

    let foreign = safetensors::serialize(
        [(
            "weight",
            TensorView::new(Dtype::F64, vec![1], &[0u8; 8]).unwrap(),
        )],
        None,
    )
    .unwrap();
    std::fs::write(&path, foreign).unwrap();
    let err = Checkpoint::<f64>::load(&path).unwrap_err();
    assert!(err.to_string().contains("no `lstm.format`"), "{err}");
}

/// The error of loading `bytes`, which must be a format error; its message.
fn load_error(bytes: &[u8]) -> String {
    let err = Checkpoint::<f64>::from_bytes(bytes).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    err.to_string()
}

#[test]
fn a_flipped_bit_anywhere_is_an_error_naming_where() {
    let (layer, adam) = trained_pair::<f64>();
    let mut checkpoint = Checkpoint::capture(&layer, &adam, 1, 3);
    checkpoint.history.insert("loss".into(), vec![0.5]);
    let bytes = checkpoint.to_bytes().unwrap();
    let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Every bit of the data section: the error names the tensor it belongs to.
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let data_start = header_len;
    for position in data_start..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[position] ^= 0x10;
        let message = load_error(&flipped);
        let owner = file
            .iter()
            .find(|(_, view)| {
                let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
                (start..start + view.data().len()).contains(&position)
            })
            .map(|(name, _)| name)
            .unwrap();
        assert!(
            message.contains(&format!("tensor `{owner}` does not match its checksum")),
            "byte {position}: {message}"
        );
    }
    // A digit of the step in the header: the metadata's checksum.
    let text = String::from_utf8_lossy(&bytes[8..header_len]).into_owned();
    let step_at = 8 + text.find("\"lstm.step\":\"1\"").unwrap() + "\"lstm.step\":\"".len();
    let mut flipped = bytes.clone();
    flipped[step_at] = b'2';
    let message = load_error(&flipped);
    assert!(
        message.contains("the metadata does not match its checksum"),
        "{message}"
    );
}

#[test]
fn parts_that_disagree_are_errors_naming_them() {
    let (layer, adam) = trained_pair::<f64>();
    let mut short_history = Checkpoint::capture(&layer, &adam, 2, 0);
    short_history.history.insert("loss".into(), vec![0.5]);
    let message = load_error(&short_history.to_bytes().unwrap());
    assert!(
        message.contains("`history.loss` has 1 values, but the checkpoint is at step 2"),
        "{message}"
    );

    let mut stray = Checkpoint::capture(&layer, &adam, 1, 0);
    let buffer = stray.optimizer.buffers["exp_avg.bias"].clone();
    stray
        .optimizer
        .buffers
        .insert("exp_avg.scale".into(), buffer);
    let message = load_error(&stray.to_bytes().unwrap());
    assert!(
        message.contains("`optim.exp_avg.scale` belongs to no tensor"),
        "{message}"
    );

    let mut reshaped = Checkpoint::capture(&layer, &adam, 1, 0);
    reshaped
        .optimizer
        .buffers
        .insert("exp_avg.weight".into(), ArrayD::zeros(vec![3]));
    let message = load_error(&reshaped.to_bytes().unwrap());
    assert!(
        message.contains("`optim.exp_avg.weight` has shape [3], but `model.weight` has [1, 3]"),
        "{message}"
    );
}

#[test]
fn a_removed_tensor_is_named() {
    let (layer, adam) = trained_pair::<f64>();
    let bytes = Checkpoint::capture(&layer, &adam, 1, 0).to_bytes().unwrap();
    // The same file without one of Adam's moments, its checksums kept.
    let file = parse(&bytes, "", FORMAT_NAME).unwrap();
    let mut tensors = file.tensors(String::new()).unwrap();
    let kept: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(name, _)| *name != "optim.exp_avg_sq.bias")
        .map(|(name, tensor)| (name.to_string(), tensor.clone()))
        .collect();
    tensors = TensorMap::new();
    for (name, tensor) in kept {
        tensors.insert(name, tensor);
    }
    let without = serialize(tensors.iter(), Some(file.metadata().clone())).unwrap();
    let message = load_error(&without);
    assert!(
        message.contains("tensor `optim.exp_avg_sq.bias` is missing"),
        "{message}"
    );
}

#[test]
fn reserved_metadata_keys_are_rejected() {
    let (layer, adam) = trained_pair::<f64>();
    let mut checkpoint = Checkpoint::capture(&layer, &adam, 0, 0);
    checkpoint.metadata.insert("lstm.step".into(), "9".into());
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        checkpoint.save(&dir.path().join("c.safetensors")),
        Err(Error::InvalidValue { what, .. }) if what == "lstm.step"
    ));
}

#[test]
fn saving_into_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, adam) = trained_pair::<f64>();
    let checkpoint = Checkpoint::capture(&layer, &adam, 0, 0);
    assert!(matches!(
        checkpoint.save(&dir.path().join("absent/c.safetensors")),
        Err(Error::Io { .. })
    ));
}
