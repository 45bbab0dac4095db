//! The parity fixtures of `tests/fixtures/`, written by `scripts/fixtures.py` with real
//! PyTorch and Keras 3: one directory per case, its configuration in `case.json`, arrays as
//! `.npy`, weights and gradients as safetensors (the script's docstring lists every file).

// Each test crate that includes `mod common;` uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayViewD};

use lstm::Float;
use lstm::io::{Tensor, TensorMap, read_npy};

/// Tolerance of f64 fixtures, relative.
pub const F64_TOLERANCE: f64 = 1e-5;
/// Tolerance of f32 fixtures, relative.
pub const F32_TOLERANCE: f64 = 1e-4;

/// The directory holding every case.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every case's name, sorted: the directories with a `case.json` (`regularizers/` holds the
/// archives of `scripts/regularizer_fixtures.py` instead).
pub fn all_cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .expect("tests/fixtures exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.join("case.json").is_file())
        .map(|path| {
            path.file_name()
                .expect("a directory entry has a name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// One case: its directory and `case.json`.
pub struct Fixture {
    /// The case's name (its directory's).
    pub name: String,
    /// The case's directory.
    pub dir: PathBuf,
    meta: serde_json::Value,
}

impl Fixture {
    /// Loads the case `name`.
    pub fn load(name: &str) -> Fixture {
        let dir = root().join(name);
        let text = std::fs::read_to_string(dir.join("case.json"))
            .unwrap_or_else(|err| panic!("{name}/case.json: {err}"));
        let meta = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        Fixture {
            name: name.into(),
            dir,
            meta,
        }
    }

    fn field(&self, key: &str) -> &serde_json::Value {
        self.meta
            .get(key)
            .unwrap_or_else(|| panic!("{}/case.json has no `{key}`", self.name))
    }

    /// A boolean option of `case.json`.
    pub fn flag(&self, key: &str) -> bool {
        self.field(key).as_bool().expect("a boolean")
    }

    /// A size of `case.json`.
    pub fn size(&self, key: &str) -> usize {
        self.field(key).as_u64().expect("a number") as usize
    }

    /// A size of `case.json` that only some cases have (`heads`).
    pub fn optional_size(&self, key: &str) -> Option<usize> {
        self.meta
            .get(key)
            .map(|value| value.as_u64().expect("a number") as usize)
    }

    /// A string of `case.json` (`None` for JSON `null`).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.field(key).as_str()
    }

    /// The zoo cell's name.
    pub fn cell(&self) -> &str {
        self.text("cell").expect("a cell name")
    }

    /// `pytorch` or `keras`.
    pub fn semantics(&self) -> &str {
        self.text("semantics").expect("semantics")
    }

    /// Whether the case's arrays are f32 (else f64).
    pub fn is_f32(&self) -> bool {
        self.text("dtype") == Some("f32")
    }

    /// The relative tolerance the case's precision allows.
    pub fn tolerance(&self) -> f64 {
        if self.is_f32() {
            F32_TOLERANCE
        } else {
            F64_TOLERANCE
        }
    }

    /// The path of one of the case's files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Whether the case has the file.
    pub fn has(&self, file: &str) -> bool {
        self.path(file).exists()
    }

    /// A safetensors file of the case.
    pub fn tensors(&self, file: &str) -> TensorMap {
        TensorMap::read_safetensors(self.path(file))
            .unwrap_or_else(|err| panic!("{}: {err}", self.name))
    }

    /// The weights under PyTorch's names.
    pub fn weights(&self) -> TensorMap {
        self.tensors("weights.safetensors")
    }

    /// The `.npy` array `stem` of the case, if present.
    pub fn tensor(&self, stem: &str) -> Option<Tensor> {
        let path = self.path(&format!("{stem}.npy"));
        path.exists()
            .then(|| read_npy(&path).unwrap_or_else(|err| panic!("{}: {err}", self.name)))
    }

    /// The float array `stem`, converted to `F`, if present.
    pub fn array<F: Float>(&self, stem: &str) -> Option<ArrayD<F>> {
        self.tensor(stem)
            .map(|tensor| tensor.to_float(stem).expect("a float array"))
    }

    /// The sequence lengths, if the case has them.
    pub fn lengths(&self) -> Option<Vec<usize>> {
        self.tensor("lengths").map(|tensor| {
            tensor
                .to_lengths("lengths")
                .expect("int64")
                .iter()
                .copied()
                .collect()
        })
    }

    /// The Keras mask, if the case has one.
    pub fn mask(&self) -> Option<ArrayD<bool>> {
        self.tensor("mask")
            .map(|tensor| tensor.as_mask("mask").expect("bool").to_owned())
    }
}

/// Asserts `found` equals `expected` within `tolerance`, relative to each expected value with
/// a floor of 1% of the largest expected magnitude (so exact zeros and tiny gradients ask for
/// no more than the tensor's scale allows).
pub fn assert_close<F: Float>(
    what: &str,
    found: ArrayViewD<'_, F>,
    expected: ArrayViewD<'_, F>,
    tolerance: f64,
) {
    assert_eq!(found.shape(), expected.shape(), "{what}: shape");
    let scale = expected
        .iter()
        .map(|v| v.to_f64_lossy().abs())
        .fold(0.0, f64::max);
    let floor = (scale * 1e-2).max(f64::MIN_POSITIVE);
    for (index, (found, expected)) in found.iter().zip(&expected).enumerate() {
        let (found, expected) = (found.to_f64_lossy(), expected.to_f64_lossy());
        let error = (found - expected).abs() / expected.abs().max(floor);
        assert!(
            error <= tolerance,
            "{what}[{index}]: found {found}, expected {expected} (relative error {error:e})"
        );
    }
}
