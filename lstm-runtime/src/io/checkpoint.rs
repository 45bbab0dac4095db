//! Training checkpoints in the [safetensors](https://github.com/huggingface/safetensors)
//! format: a model's weights, its optimizer's state, the step reached and the seed, so a run
//! stopped at any step can resume and continue exactly as if it had not stopped.
//!
//! A checkpoint file holds
//!
//! - `model.{name}`: every tensor of the model, by its [`Parameters`] name, in the element
//!   type of the run (`F32` or `F64`);
//! - `optim.{statistic}.{name}`: the optimizer's buffers ([`OptimizerState::buffers`]);
//! - `history.{series}`: per-step series the trainer recorded (the loss curve), in `F64`;
//! - string metadata: `lstm.format` (`checkpoint`), `lstm.version`, `lstm.step`,
//!   `lstm.seed`, `lstm.dtype`, `lstm.optimizer`, `lstm.optimizer_step`, and any keys of
//!   [`Checkpoint::metadata`] (which may not start with `lstm.`);
//! - checksums: `lstm.sha256.{tensor}`, SHA-256 of each tensor's dtype, shape and bytes, and
//!   `lstm.sha256`, SHA-256 of every other metadata entry (the tensors' checksums included),
//!   so a changed bit anywhere in the file is caught and the error names where.
//!
//! [`Checkpoint::load`] verifies the checksums, then the checkpoint's consistency: every
//! history series is `step` values long, and every optimizer buffer belongs to a model tensor
//! of its shape. A checkpoint that fails is an error naming what disagrees; nothing is
//! loaded from it.
//!
//! The bytes go through the crate's one safetensors codec (`safetensors.rs`).
//!
//! [`Checkpoint::save`] writes atomically: to a temporary file in the destination's
//! directory, flushed to disk, then renamed over the destination, and the directory flushed,
//! so a crash leaves either the old checkpoint or the new one, never half of one.
//! [`Checkpoint::load`] never panics on a bad file: it names the file and what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{Array1, ArrayD};
use sha2::{Digest, Sha256};

use super::atomic::write_atomically;
use super::safetensors::{digest_of, hex, parse, serialize};
use super::tensor::{Tensor, TensorMap, dtype_mismatch};
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::params::Parameters;
use crate::train::optim::{Optimizer, OptimizerState};

/// Prefix of the model's tensors in the file.
const MODEL: &str = "model.";
/// Prefix of the optimizer's buffers in the file.
const OPTIM: &str = "optim.";
/// Prefix of the recorded series in the file.
const HISTORY: &str = "history.";
/// Prefix of the metadata keys this module reserves.
const RESERVED: &str = "lstm.";
/// What `lstm.format` says.
const FORMAT: &str = "checkpoint";
/// What `lstm.version` says; bumped when the layout changes (2: checksums).
const VERSION: &str = "2";
/// Metadata key of the checksum over the metadata; `{CHECKSUM}.{tensor}` are the tensors'.
const CHECKSUM: &str = "lstm.sha256";
/// The format's name in error messages.
const FORMAT_NAME: &str = "safetensors checkpoint";

/// Everything needed to resume training.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint<F> {
    /// Optimizer steps completed.
    pub step: u64,
    /// The seed the run started from.
    pub seed: u64,
    /// Free-form description of the run (task, cell, hyperparameters). Keys may not start
    /// with `lstm.`.
    pub metadata: BTreeMap<String, String>,
    /// The model's tensors, by parameter name.
    pub model: BTreeMap<String, ArrayD<F>>,
    /// The optimizer's state.
    pub optimizer: OptimizerState<F>,
    /// Series recorded once per step (`loss`), each `step` values long (checked on load).
    pub history: BTreeMap<String, Vec<f64>>,
}

impl<F: Float> Checkpoint<F> {
    /// A checkpoint of `model` and `optimizer` after `step` steps of a run seeded with `seed`,
    /// with no metadata or history yet.
    pub fn capture(
        model: &dyn Parameters<F>,
        optimizer: &dyn Optimizer<F>,
        step: u64,
        seed: u64,
    ) -> Self {
        let mut tensors = BTreeMap::new();
        model.visit_parameters(&mut |name, values| {
            tensors.insert(name.to_string(), values.to_owned());
        });
        Checkpoint {
            step,
            seed,
            metadata: BTreeMap::new(),
            model: tensors,
            optimizer: optimizer.state(),
            history: BTreeMap::new(),
        }
    }

    /// Copies the saved weights into `model`, which must have exactly the saved tensors (as
    /// PyTorch's `load_state_dict(strict=True)`). Checks everything before changing anything.
    ///
    /// # Errors
    ///
    /// - [`Error::MissingTensor`] naming `model.{name}` if the checkpoint lacks a tensor of
    ///   the model.
    /// - [`Error::ShapeMismatch`] naming `model.{name}` if a saved tensor has another shape.
    /// - [`Error::InvalidValue`] naming `model.{name}` if the checkpoint has a tensor the
    ///   model does not.
    pub fn restore_model(&self, model: &mut dyn Parameters<F>) -> Result<()> {
        let mut checked = Ok(());
        let mut seen = 0;
        model.visit_parameters(&mut |name, values| {
            if checked.is_err() {
                return;
            }
            seen += 1;
            checked = match self.model.get(name) {
                Some(saved) => {
                    expect_shape(&format!("{MODEL}{name}"), values.shape(), saved.shape())
                }
                None => Err(Error::MissingTensor {
                    name: format!("{MODEL}{name}"),
                    source_name: "the checkpoint".into(),
                }),
            };
        });
        checked?;
        if seen != self.model.len() {
            let shapes = model.parameter_shapes();
            if let Some(extra) = self
                .model
                .keys()
                .find(|saved| !shapes.iter().any(|(name, _)| name == *saved))
            {
                return Err(Error::invalid_value(
                    format!("{MODEL}{extra}"),
                    "the checkpoint has this tensor but the model does not",
                ));
            }
        }
        model.visit_parameters_mut(&mut |name, mut values| {
            if let Some(saved) = self.model.get(name) {
                values.assign(saved);
            }
        });
        Ok(())
    }

    /// Writes the checkpoint to `path` atomically (see the module documentation). The
    /// directory must exist.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidValue`] naming a metadata key that starts with `lstm.`.
    /// - [`Error::Io`] if the temporary file cannot be created, written, flushed or renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] with the element type `F`.
    ///
    /// # Errors
    ///
    /// - [`Error::Io`] if the file cannot be read.
    /// - [`Error::Format`] if it is not a safetensors file, or lacks this module's metadata,
    ///   or a tensor name has none of the known prefixes.
    /// - [`Error::DtypeMismatch`] naming a tensor stored in another element type.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|err| Error::io("read", path, &err))?;
        Self::from_bytes(&bytes).map_err(|err| match err {
            Error::Format { format, reason, .. } => Error::Format {
                path: path.display().to_string(),
                format,
                reason,
            },
            other => other,
        })
    }

    /// The file's contents, as [`Checkpoint::save`] writes them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidValue`] naming a metadata key that starts with `lstm.`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if let Some(key) = self.metadata.keys().find(|key| key.starts_with(RESERVED)) {
            return Err(Error::invalid_value(
                key.as_str(),
                format!("metadata keys starting with `{RESERVED}` are reserved"),
            ));
        }
        let mut tensors = TensorMap::new();
        for (name, values) in &self.model {
            tensors.insert(format!("{MODEL}{name}"), Tensor::from_float(values.clone()));
        }
        for (key, values) in &self.optimizer.buffers {
            tensors.insert(format!("{OPTIM}{key}"), Tensor::from_float(values.clone()));
        }
        for (series, values) in &self.history {
            let values = Array1::from(values.clone()).into_dyn();
            tensors.insert(format!("{HISTORY}{series}"), Tensor::F64(values));
        }
        let mut metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        for (key, value) in [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("step", self.step.to_string()),
            ("seed", self.seed.to_string()),
            ("dtype", F::DTYPE.to_string()),
            ("optimizer", self.optimizer.kind.clone()),
            ("optimizer_step", self.optimizer.step.to_string()),
        ] {
            metadata.insert(format!("{RESERVED}{key}"), value);
        }
        for (name, tensor) in tensors.iter() {
            metadata.insert(format!("{CHECKSUM}.{name}"), digest_of(tensor));
        }
        metadata.insert(CHECKSUM.into(), metadata_digest(&metadata));
        serialize(tensors.iter(), Some(metadata)).map_err(|err| Error::Format {
            path: String::new(),
            format: FORMAT_NAME.into(),
            reason: format!("cannot serialize: {err}"),
        })
    }

    /// Parses and verifies a file's contents, as [`Checkpoint::load`] does. [`Error::Format`]s
    /// carry an empty path, which [`Checkpoint::load`] fills in.
    ///
    /// # Errors
    ///
    /// As [`Checkpoint::load`], without the I/O.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let format_error = |reason: String| Error::Format {
            path: String::new(),
            format: FORMAT_NAME.into(),
            reason,
        };
        let file = parse(bytes, "", FORMAT_NAME)?;
        let metadata = file.metadata();
        let reserved = |key: &str| {
            metadata
                .get(&format!("{RESERVED}{key}"))
                .ok_or_else(|| format_error(format!("no `{RESERVED}{key}` in the metadata")))
        };
        let number = |key: &str| -> Result<u64> {
            let text = reserved(key)?;
            text.parse().map_err(|_| {
                format_error(format!(
                    "`{RESERVED}{key}` is `{text}`; expected a whole number"
                ))
            })
        };
        if reserved("format")? != FORMAT {
            return Err(format_error(format!(
                "`{RESERVED}format` is not `{FORMAT}`"
            )));
        }
        let version = reserved("version")?;
        if version != VERSION {
            return Err(format_error(format!(
                "version {version}; this build reads version {VERSION}"
            )));
        }
        verify_checksums(metadata, &file.digests()).map_err(format_error)?;
        let mut checkpoint = Checkpoint {
            step: number("step")?,
            seed: number("seed")?,
            metadata: metadata
                .iter()
                .filter(|(key, _)| !key.starts_with(RESERVED))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            model: BTreeMap::new(),
            optimizer: OptimizerState {
                kind: reserved("optimizer")?.clone(),
                step: number("optimizer_step")?,
                buffers: BTreeMap::new(),
            },
            history: BTreeMap::new(),
        };
        // By name, so the first bad tensor reported is the same on every run.
        for (name, tensor) in file.tensors(String::new())?.iter() {
            if let Some(series) = name.strip_prefix(HISTORY) {
                checkpoint
                    .history
                    .insert(series.into(), decode_f64(name, tensor)?);
            } else if let Some(param) = name.strip_prefix(MODEL) {
                checkpoint.model.insert(param.into(), decode(name, tensor)?);
            } else if let Some(key) = name.strip_prefix(OPTIM) {
                checkpoint
                    .optimizer
                    .buffers
                    .insert(key.into(), decode(name, tensor)?);
            } else {
                return Err(format_error(format!(
                    "tensor `{name}` has none of the prefixes {MODEL}, {OPTIM}, {HISTORY}"
                )));
            }
        }
        checkpoint.check_consistency().map_err(format_error)?;
        Ok(checkpoint)
    }

    /// `Ok` if the parts of the checkpoint agree: every history series has `step` values, and
    /// every optimizer buffer `{statistic}.{name}` has the shape of the model's tensor `name`.
    /// The error says what disagrees.
    fn check_consistency(&self) -> std::result::Result<(), String> {
        for (series, values) in &self.history {
            if values.len() as u64 != self.step {
                return Err(format!(
                    "`{HISTORY}{series}` has {} values, but the checkpoint is at step {}",
                    values.len(),
                    self.step
                ));
            }
        }
        for (key, buffer) in &self.optimizer.buffers {
            let param = key.split_once('.').map_or("", |(_, param)| param);
            match self.model.get(param) {
                None => {
                    return Err(format!(
                        "optimizer buffer `{OPTIM}{key}` belongs to no tensor of the model \
                         (no `{MODEL}{param}`)"
                    ));
                }
                Some(values) if values.shape() != buffer.shape() => {
                    return Err(format!(
                        "optimizer buffer `{OPTIM}{key}` has shape {:?}, but `{MODEL}{param}` \
                         has {:?}",
                        buffer.shape(),
                        values.shape()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// SHA-256, in hex, over every metadata entry but [`CHECKSUM`] itself, in key order.
fn metadata_digest(metadata: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = metadata
        .iter()
        .filter(|(key, _)| key.as_str() != CHECKSUM)
        .collect();
    let mut hasher = Sha256::new();
    for (key, value) in sorted {
        // Lengths first, so no two different maps hash the same bytes.
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value.as_bytes());
    }
    hex(&hasher.finalize())
}

/// `Ok` if the metadata matches its checksum and every tensor its own (`digests`, computed
/// from the stored bytes); otherwise what does not match.
fn verify_checksums(
    metadata: &HashMap<String, String>,
    digests: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    let changed = "the file was changed after it was written";
    match metadata.get(CHECKSUM) {
        None => return Err(format!("no `{CHECKSUM}` in the metadata")),
        Some(stored) if *stored != metadata_digest(metadata) => {
            return Err(format!(
                "the metadata does not match its checksum: {changed}"
            ));
        }
        Some(_) => {}
    }
    for (name, digest) in digests {
        match metadata.get(&format!("{CHECKSUM}.{name}")) {
            None => return Err(format!("tensor `{name}` has no checksum: {changed}")),
            Some(stored) if stored != digest => {
                return Err(format!(
                    "tensor `{name}` does not match its checksum: {changed}"
                ));
            }
            Some(_) => {}
        }
    }
    let prefix = format!("{CHECKSUM}.");
    if let Some(missing) = metadata
        .keys()
        .filter_map(|key| key.strip_prefix(&prefix))
        .find(|name| !digests.contains_key(*name))
    {
        return Err(format!(
            "tensor `{missing}` is missing, though the checksums list it: {changed}"
        ));
    }
    Ok(())
}

/// A stored tensor as an array of `F`, which must be its dtype (a checkpoint resumes in the
/// precision it was written in).
fn decode<F: Float>(name: &str, tensor: &Tensor) -> Result<ArrayD<F>> {
    match (F::DTYPE, tensor) {
        ("f32", Tensor::F32(values)) => Ok(values.mapv(|v| F::of(f64::from(v)))),
        ("f64", Tensor::F64(values)) => Ok(values.mapv(F::of)),
        (expected, found) => Err(dtype_mismatch(
            name,
            &expected.to_uppercase(),
            found.dtype().name().to_uppercase(),
        )),
    }
}

/// A stored `F64` series.
fn decode_f64(name: &str, tensor: &Tensor) -> Result<Vec<f64>> {
    match tensor {
        Tensor::F64(values) => Ok(values.iter().copied().collect()),
        other => Err(dtype_mismatch(
            name,
            "F64",
            other.dtype().name().to_uppercase(),
        )),
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
