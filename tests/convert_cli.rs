//! `lstm convert` end to end, on weights written by the frameworks and cells they come from
//! (`tests/fixtures/convert/`, see `scripts/fixtures.py`): each case's documented command
//! converts the source file, `lstm infer` runs the result, and its output and final states
//! must be what the source framework computed. Also the exact round trips (`combined →
//! pytorch` against slicing done in PyTorch, `pytorch → keras → pytorch`), the README table
//! quoting every case's command, and errors that name the culprit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures::{F64_TOLERANCE, assert_close, root};
use lstm::io::{Tensor, TensorMap, read_npy};
use lstm::ndarray::ArrayD;

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("lstm-convert-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn lstm<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm"))
        .args(args)
        .output()
        .expect("the lstm binary runs")
}

fn succeeded(what: &str, run: &Output) {
    assert!(
        run.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// One case of `tests/fixtures/convert/`: its directory and `convert.json`.
struct Case {
    name: String,
    dir: PathBuf,
    convert: Vec<String>,
    infer: Vec<String>,
}

impl Case {
    fn load(name: &str) -> Case {
        let dir = root().join("convert").join(name);
        let text = std::fs::read_to_string(dir.join("convert.json")).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        let strings = |key: &str| -> Vec<String> {
            meta[key]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no `{key}`"))
                .iter()
                .map(|v| v.as_str().expect("a string").to_string())
                .collect()
        };
        Case {
            name: name.into(),
            dir,
            convert: strings("convert"),
            infer: strings("infer"),
        }
    }

    fn all() -> Vec<Case> {
        let mut names: Vec<String> = std::fs::read_dir(root().join("convert"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.iter().map(|name| Case::load(name)).collect()
    }

    /// Runs the case's `lstm convert` command, IN from the case, OUT into `scratch`; the
    /// converted file's path.
    fn convert(&self, scratch: &Scratch) -> PathBuf {
        let output = scratch.path(&self.convert[1]);
        let mut args: Vec<std::ffi::OsString> = vec![
            "convert".into(),
            self.dir.join(&self.convert[0]).into(),
            output.clone().into(),
        ];
        args.extend(self.convert[2..].iter().map(Into::into));
        succeeded(&format!("{} convert", self.name), &lstm(&args));
        output
    }

    /// The command as the README shows it.
    fn command(&self) -> String {
        format!("lstm convert {}", self.convert.join(" "))
    }
}

#[test]
fn every_seed_layout_converts_and_runs_as_its_framework_did() {
    let cases = Case::all();
    assert!(cases.len() >= 6, "the convert fixtures are missing");
    for case in &cases {
        let scratch = Scratch::new(&case.name);
        let weights = case.convert(&scratch);
        let (y, h_n, c_n) = (
            scratch.path("y.npy"),
            scratch.path("h_n.npy"),
            scratch.path("c_n.npy"),
        );
        let mut args: Vec<std::ffi::OsString> = vec![
            "infer".into(),
            "--weights".into(),
            weights.into(),
            "--input".into(),
            case.dir.join("x.npy").into(),
            "--output".into(),
            y.clone().into(),
            "--h-n".into(),
            h_n.clone().into(),
            "--c-n".into(),
            c_n.clone().into(),
        ];
        args.extend(case.infer.iter().map(Into::into));
        succeeded(&format!("{} infer", case.name), &lstm(&args));
        for (stem, path) in [("y", &y), ("h_n", &h_n), ("c_n", &c_n)] {
            let found = floats(&read_npy(path).unwrap());
            let expected = floats(&read_npy(case.dir.join(format!("{stem}.npy"))).unwrap());
            assert_close(
                &format!("{} {stem}", case.name),
                found.view(),
                expected.view(),
                F64_TOLERANCE,
            );
        }
    }
}

fn floats(tensor: &Tensor) -> ArrayD<f64> {
    tensor.to_float("array").unwrap()
}

#[test]
fn the_readme_table_gives_each_case_its_command() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for case in Case::all() {
        assert!(
            readme.contains(&format!("`{}`", case.command())),
            "README lacks `{}`",
            case.command()
        );
    }
}

#[test]
fn combined_to_pytorch_is_exact() {
    let case = Case::load("seed_000_combined");
    let scratch = Scratch::new("exact");
    let converted = TensorMap::read_safetensors(case.convert(&scratch)).unwrap();
    let expected = TensorMap::read_safetensors(case.dir.join("expected.safetensors")).unwrap();
    let strip = |map: TensorMap| map.into_iter().collect::<Vec<_>>();
    assert_eq!(strip(converted), strip(expected));
}

fn convert(scratch: &Scratch, input: &Path, output: &str, flags: &[&str]) -> TensorMap {
    let output = scratch.path(output);
    let mut args: Vec<std::ffi::OsString> =
        vec!["convert".into(), input.into(), output.clone().into()];
    args.extend(flags.iter().map(Into::into));
    succeeded(&format!("convert {}", input.display()), &lstm(&args));
    lstm::io::read_weights(&output).unwrap()
}

#[test]
fn pytorch_to_keras_and_back_is_exact() {
    let scratch = Scratch::new("round-trip");
    // Bidirectional nn.LSTM weights with both biases non-zero; Keras keeps their sum, which
    // fixtures.py computed in NumPy and Keras ran (keras.npz).
    let dir = root().join("keras_from_pytorch");
    let pytorch = TensorMap::read_safetensors(dir.join("weights.safetensors")).unwrap();
    let keras = convert(
        &scratch,
        &dir.join("weights.safetensors"),
        "keras.npz",
        &["--from", "pytorch", "--to", "keras"],
    );
    let by_python = TensorMap::read_npz(dir.join("keras.npz")).unwrap();
    assert_eq!(
        keras.clone().into_iter().collect::<Vec<_>>(),
        by_python.into_iter().collect::<Vec<_>>()
    );
    let back = convert(
        &scratch,
        &scratch.path("keras.npz"),
        "back.safetensors",
        &["--from", "keras"],
    );
    for (name, tensor) in pytorch.iter() {
        if name.starts_with("weight") {
            assert_eq!(back.get(name), Some(tensor), "{name}");
        }
    }
    // The biases come back as their sum and zeros: the same sum, bit for bit.
    for suffix in ["_l0", "_l0_reverse"] {
        let sum = |map: &TensorMap| {
            map.float::<f64>(&format!("bias_ih{suffix}")).unwrap()
                + map.float::<f64>(&format!("bias_hh{suffix}")).unwrap()
        };
        assert_eq!(sum(&back), sum(&pytorch));
        assert!(
            back.float::<f64>(&format!("bias_hh{suffix}"))
                .unwrap()
                .iter()
                .all(|&b| b == 0.0)
        );
    }
    // Weights that came from Keras (one bias, `bias_hh` zero) survive tensor for tensor, and
    // so does a second trip.
    let again = convert(
        &scratch,
        &scratch.path("back.safetensors"),
        "keras_again.npz",
        &["--from", "pytorch", "--to", "keras"],
    );
    let twice = convert(
        &scratch,
        &scratch.path("keras_again.npz"),
        "twice.safetensors",
        &["--from", "keras"],
    );
    assert_eq!(
        again.into_iter().collect::<Vec<_>>(),
        keras.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        twice.into_iter().collect::<Vec<_>>(),
        back.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn errors_name_the_culprit() {
    let scratch = Scratch::new("errors");
    // A Keras model's non-recurrent layer is named, with the flag that leaves it out; a
    // layer to leave out that the file does not have is named with the file's layers.
    for (case, file, layer) in [
        ("keras_dense_head", "model.keras", "dense"),
        ("keras_legacy_h5", "model.h5", "head"),
    ] {
        let model = root().join("convert").join(case).join(file);
        let out = scratch.path("keras.safetensors");
        let convert = |extra: &[&str]| {
            let mut args = vec!["convert", model.to_str().unwrap(), out.to_str().unwrap()];
            args.extend(["--from", "keras"]);
            args.extend(extra);
            lstm(&args)
        };
        let run = convert(&[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(
            stderr.contains(&format!("--ignore-layer {layer}`")),
            "{case}: {stderr}"
        );
        let run = convert(&["--ignore-layer", "decoder"]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(
            stderr.contains("no layer `decoder`") && stderr.contains(layer),
            "{case}: {stderr}"
        );
        assert!(!out.exists(), "{case}");
    }

    // A stray tensor beside nn.LSTM weights is named, not taken for a Keras file.
    let mut weights =
        TensorMap::read_safetensors(root().join("pytorch_lstm/weights.safetensors")).unwrap();
    weights.insert("num_batches_tracked", Tensor::I64(ArrayD::zeros(vec![])));
    let stray = scratch.path("stray.safetensors");
    weights.write_safetensors(&stray).unwrap();
    let run = lstm(&[
        "infer".as_ref(),
        "--weights".as_ref(),
        stray.as_os_str(),
        "--input".as_ref(),
        root().join("pytorch_lstm/x.npy").as_os_str(),
        "--output".as_ref(),
        scratch.path("y.npy").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("unexpected tensor `num_batches_tracked`"),
        "{stderr}"
    );
    assert!(!stderr.contains("/kernel"), "{stderr}");

    // A whole model's state_dict without --prefix: the message says which prefix to pass.
    let model = root().join("convert/pytorch_lstm_cell_prefix/model.safetensors");
    let out = scratch.path("out.safetensors");
    let run = lstm(&[
        "convert".as_ref(),
        model.as_os_str(),
        out.as_os_str(),
        "--from".as_ref(),
        "pytorch".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("select it with the prefix `encoder`"),
        "{stderr}"
    );
    assert!(!out.exists());

    // A per-gate layout that forgets the second bias names the tensor it would lose.
    let seed_003 = root().join("convert/seed_003_per_gate/seed_003.safetensors");
    let run = lstm(&[
        "convert",
        seed_003.to_str().unwrap(),
        out.to_str().unwrap(),
        "--from",
        "per-gate",
        "--weight",
        "w_i{g}",
        "--weight-h",
        "w_h{g}",
        "--bias",
        "b_i{g}",
        "--gates",
        "ifgo",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("unexpected tensor `b_hf`"), "{stderr}");
}
