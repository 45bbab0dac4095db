//! Weight files in and out, on the parity fixtures: every file format reads what Python
//! wrote, the layout read off PyTorch names matches the case's configuration, Keras and
//! PyTorch layouts convert into each other exactly as the fixture script converted them, and
//! every kind of bad file is an error that names the file, the tensor and the shapes.

mod common;

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};

use common::fixtures::{Fixture, all_cases};
use lstm::io::{
    PytorchLayout, Tensor, TensorMap, cell_from_pytorch, keras_to_pytorch, pytorch_to_keras,
    read_npy, write_npy,
};
use lstm::zoo::{Cifg, Lstm, Peephole};
use lstm::{Cell, CellSpec, Direction, Error, zoo};

/// A file path of this test process, in the system's temporary directory.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lstm-weights-io-{}-{name}", std::process::id()))
}

fn spec_named(name: &str) -> &'static CellSpec {
    zoo::all()
        .iter()
        .copied()
        .find(|spec| spec.name == name)
        .unwrap_or_else(|| panic!("no zoo cell `{name}`"))
}

#[test]
fn layout_is_read_off_the_names_and_shapes_of_every_fixture() {
    for name in all_cases() {
        let fixture = Fixture::load(&name);
        let weights = fixture.weights();
        let layout = PytorchLayout::infer(&weights, spec_named(fixture.cell()))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let expected = PytorchLayout {
            input_size: fixture.size("input_size"),
            hidden_size: fixture.size("hidden_size"),
            num_layers: fixture.size("num_layers"),
            bidirectional: fixture.flag("bidirectional"),
            bias: fixture.flag("bias"),
            proj_size: fixture.size("proj_size"),
            heads: fixture.optional_size("heads").unwrap_or(1),
            constant_size: 0,
        };
        assert_eq!(layout, expected, "{name}");
    }
}

#[test]
fn keras_weights_convert_to_the_pytorch_weights_and_back() {
    let mut checked = 0;
    for name in all_cases() {
        let fixture = Fixture::load(&name);
        if !fixture.has("keras.safetensors") {
            continue;
        }
        let keras = fixture.tensors("keras.safetensors");
        let from_npz = TensorMap::read_npz(fixture.path("keras.npz")).unwrap();
        assert_eq!(
            from_npz.iter().collect::<Vec<_>>(),
            keras.iter().collect::<Vec<_>>(),
            "{name}"
        );

        let pytorch = fixture.weights();
        let exported = pytorch_to_keras(&pytorch).unwrap();
        assert_eq!(
            exported.iter().collect::<Vec<_>>(),
            keras.iter().collect::<Vec<_>>(),
            "{name}"
        );
        if name == "keras_from_pytorch" {
            // PyTorch's two biases became one: importing gives back their sum as `bias_ih`.
            let imported = keras_to_pytorch(&keras).unwrap();
            let sum = pytorch.float::<f64>("bias_ih_l0").unwrap()
                + pytorch.float::<f64>("bias_hh_l0").unwrap();
            assert_eq!(imported.float::<f64>("bias_ih_l0").unwrap(), sum);
        } else {
            let imported = keras_to_pytorch(&keras).unwrap();
            assert_eq!(
                imported.iter().collect::<Vec<_>>(),
                pytorch.iter().collect::<Vec<_>>(),
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} Keras cases");
}

#[test]
fn files_round_trip_through_every_format() {
    let fixture = Fixture::load("pytorch_proj");
    let weights = fixture.weights();
    let safetensors = scratch("round_trip.safetensors");
    weights.write_safetensors(&safetensors).unwrap();
    let read = TensorMap::read_safetensors(&safetensors).unwrap();
    assert_eq!(
        read.iter().collect::<Vec<_>>(),
        weights.iter().collect::<Vec<_>>()
    );

    let npz = scratch("round_trip.npz");
    weights.write_npz(&npz).unwrap();
    let read = TensorMap::read_npz(&npz).unwrap();
    assert_eq!(
        read.iter().collect::<Vec<_>>(),
        weights.iter().collect::<Vec<_>>()
    );

    let npy = scratch("round_trip.npy");
    for stem in ["x", "h0", "y"] {
        let tensor = fixture.tensor(stem).unwrap();
        write_npy(&npy, &tensor).unwrap();
        assert_eq!(read_npy(&npy).unwrap(), tensor, "{stem}");
    }
    let lengths = Fixture::load("pytorch_lengths").tensor("lengths").unwrap();
    write_npy(&npy, &lengths).unwrap();
    assert_eq!(read_npy(&npy).unwrap(), lengths);
    let mask = Fixture::load("keras_mask").tensor("mask").unwrap();
    write_npy(&npy, &mask).unwrap();
    assert_eq!(read_npy(&npy).unwrap(), mask);
    for path in [safetensors, npz, npy] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn a_cell_exported_and_loaded_again_is_unchanged() {
    let weights = Fixture::load("cell_peephole_stacked_bidirectional").weights();
    let cell: Peephole<f64> = cell_from_pytorch(&weights, 1, Direction::Reverse).unwrap();
    let mut exported = TensorMap::new();
    lstm::io::cell_to_pytorch(&cell, 1, Direction::Reverse, &mut exported);
    for (key, tensor) in exported.iter() {
        assert_eq!(weights.get(key), Some(tensor), "{key}");
    }
    assert_eq!(exported.len(), 7);
}

#[test]
fn truncated_and_missing_files_are_errors_naming_the_file() {
    let fixture = Fixture::load("pytorch_lstm");
    let bytes = std::fs::read(fixture.path("weights.safetensors")).unwrap();
    let truncated = scratch("truncated.safetensors");
    for cut in [3, 40, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        match TensorMap::read_safetensors(&truncated) {
            Err(Error::Format { path, .. }) => assert_eq!(PathBuf::from(path), truncated),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let npy = std::fs::read(fixture.path("x.npy")).unwrap();
    std::fs::write(&truncated, &npy[..npy.len() - 8]).unwrap();
    assert!(matches!(read_npy(&truncated), Err(Error::Format { .. })));
    std::fs::write(&truncated, &npy[..20]).unwrap();
    assert!(matches!(read_npy(&truncated), Err(Error::Format { .. })));
    std::fs::write(&truncated, b"PK\x03\x04 not really a zip").unwrap();
    assert!(matches!(
        TensorMap::read_npz(&truncated),
        Err(Error::Format { .. })
    ));
    std::fs::remove_file(&truncated).unwrap();

    let absent = scratch("absent.safetensors");
    let err = TensorMap::read_safetensors(&absent).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&absent.display().to_string()),
        "{err}"
    );
}

#[test]
fn unsupported_element_types_are_named() {
    // A float16 `.npy` file, as `np.save(path, np.zeros(2, np.float16))` writes it.
    let mut header = b"{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut file = b"\x93NUMPY\x01\x00".to_vec();
    file.extend((header.len() as u16).to_le_bytes());
    file.extend(header);
    file.extend([0u8; 4]);
    let path = scratch("half.npy");
    std::fs::write(&path, file).unwrap();
    let err = read_npy(&path).unwrap_err();
    assert!(matches!(err, Error::DtypeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("<f2"), "{err}");
    std::fs::remove_file(&path).unwrap();

    let mut weights = Fixture::load("pytorch_lstm").weights();
    weights.insert("bias_hh_l0", Tensor::I64(ArrayD::zeros(IxDyn(&[20]))));
    let err = cell_from_pytorch::<Lstm<f64>>(&weights, 0, Direction::Forward).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`bias_hh_l0` has dtype i64; expected f32 or f64"
    );
}

#[test]
fn missing_unexpected_and_misshapen_tensors_are_named() {
    let fixture = Fixture::load("pytorch_lstm");
    let mut weights = fixture.weights();
    weights.remove("bias_hh_l0");
    let err = cell_from_pytorch::<Lstm<f64>>(&weights, 0, Direction::Forward).unwrap_err();
    let source = format!("`{}`", fixture.path("weights.safetensors").display());
    assert_eq!(
        err,
        Error::MissingTensor {
            name: "bias_hh_l0".into(),
            source_name: source.clone()
        }
    );

    let mut weights = fixture.weights();
    weights.insert("surprise_l0", Tensor::F64(ArrayD::zeros(IxDyn(&[5]))));
    let err = cell_from_pytorch::<Lstm<f64>>(&weights, 0, Direction::Forward).unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedTensor { name, .. } if name == "surprise_l0"),
        "{err:?}"
    );
    weights.insert(
        "not a pytorch name",
        Tensor::F64(ArrayD::zeros(IxDyn(&[5]))),
    );
    let err = cell_from_pytorch::<Lstm<f64>>(&weights, 0, Direction::Forward).unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedTensor { name, .. } if name == "not a pytorch name"),
        "{err:?}"
    );

    let mut weights = fixture.weights();
    weights.insert("weight_hh_l0", Tensor::F64(ArrayD::zeros(IxDyn(&[20, 4]))));
    let err = cell_from_pytorch::<Lstm<f64>>(&weights, 0, Direction::Forward).unwrap_err();
    assert_eq!(
        err,
        Error::shape_mismatch("weight_hh_l0", &[20, 5], &[20, 4])
    );
    assert_eq!(
        err.to_string(),
        "`weight_hh_l0` has shape [20, 4]; expected [20, 5]"
    );
}

#[test]
fn weights_of_another_cell_are_refused() {
    let lstm_weights = Fixture::load("pytorch_lstm").weights();
    let err = cell_from_pytorch::<Peephole<f64>>(&lstm_weights, 0, Direction::Forward).unwrap_err();
    assert_eq!(
        err,
        Error::MissingCellParameter {
            cell: "peephole".into(),
            name: "peephole_i_l0".into(),
            source_name: lstm_weights.source().into(),
        }
    );
    assert!(
        err.to_string().contains("which cell `peephole` needs"),
        "{err}"
    );

    let peephole_weights = Fixture::load("cell_peephole").weights();
    let err = cell_from_pytorch::<Lstm<f64>>(&peephole_weights, 0, Direction::Forward).unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedTensor { name, reason, .. }
            if name == "peephole_f_l0" && reason == "cell `lstm` has no parameter `peephole_f`"),
        "{err:?}"
    );

    // CIFG weights have three gate blocks (15 rows for 5 units), a standard cell four.
    let cifg_weights = Fixture::load("cell_cifg").weights();
    let err = cell_from_pytorch::<Lstm<f64>>(&cifg_weights, 0, Direction::Forward).unwrap_err();
    assert_eq!(
        err,
        Error::shape_mismatch("weight_ih_l0", &[20, 4], &[15, 4])
    );
    let cifg: Cifg<f64> = cell_from_pytorch(&cifg_weights, 0, Direction::Forward).unwrap();
    assert_eq!(cifg.dims().hidden_size, 5);
}

#[test]
fn f32_weights_load_into_f64_cells_and_back() {
    let weights = Fixture::load("pytorch_lstm_f32").weights();
    let wide: Lstm<f64> = cell_from_pytorch(&weights, 0, Direction::Forward).unwrap();
    let narrow: Lstm<f32> = cell_from_pytorch(&weights, 0, Direction::Forward).unwrap();
    let mut exported = TensorMap::new();
    lstm::io::cell_to_pytorch(&narrow, 0, Direction::Forward, &mut exported);
    assert_eq!(
        exported.iter().collect::<Vec<_>>(),
        weights.iter().collect::<Vec<_>>()
    );
    assert_eq!(wide.weight_ih.mapv(|v| v as f32), narrow.weight_ih);
}

/// A cell with a `Scalar` parameter, as PyTorch users write one:
/// `self.temperature = nn.Parameter(torch.tensor(1.0))`, which `state_dict` saves 0-d.
#[lstm::lstm_cell(g = tanh(z_g / temperature))]
pub struct Tempered {
    #[init(constant(1.0))]
    temperature: Scalar,
}

#[test]
fn a_scalar_parameter_saved_as_a_0_d_tensor_loads() {
    use lstm::io::lstm_from_pytorch_with;
    use lstm::{LstmConfig, Parameters};
    use rand::SeedableRng;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let layer = lstm::Lstm::<Tempered<f64>>::new(LstmConfig::new(2, 3), &mut rng).unwrap();
    let mut weights = TensorMap::from_parameters(&layer);
    // PyTorch's 0-d tensor, and a value the init did not give.
    let zero_d = ArrayD::from_elem(IxDyn(&[]), 2.5f32);
    weights.insert("temperature_l0", Tensor::F32(zero_d));

    let loaded = lstm_from_pytorch_with::<Tempered<f64>>(&weights, LstmConfig::new(2, 3)).unwrap();
    let mut temperature = None;
    loaded.visit_parameters(&mut |name, values| {
        if name == "temperature_l0" {
            temperature = Some(values.to_owned());
        }
    });
    assert_eq!(
        temperature.unwrap(),
        ArrayD::from_elem(IxDyn(&[1]), 2.5),
        "a 0-d tensor is the parameter's one value"
    );
    let cell: Tempered<f64> = cell_from_pytorch(&weights, 0, Direction::Forward).unwrap();
    assert_eq!(cell.temperature.to_vec(), vec![2.5]);

    // Any other shape is still an error naming the tensor and both shapes.
    weights.insert(
        "temperature_l0",
        Tensor::F32(ArrayD::from_elem(IxDyn(&[2]), 2.5f32)),
    );
    let err = lstm_from_pytorch_with::<Tempered<f64>>(&weights, LstmConfig::new(2, 3)).unwrap_err();
    assert_eq!(err, Error::shape_mismatch("temperature_l0", &[1], &[2]));
}
