//! Runs a parity fixture through [`lstm::Lstm`] and compares everything the framework that
//! wrote it computed: the output, the final states and the gradient of
//! `sum(output ⊙ grad_output)` with respect to every weight, the input and the initial
//! states.

// Each test crate that includes `mod common;` uses a part of this module.
#![allow(dead_code)]

use ndarray::{Array3, ArrayD, ArrayView3, Axis, Ix2, Ix3};

use super::fixtures::{Fixture, assert_close};
use lstm::io::{PytorchLayout, TensorMap, keras_to_pytorch, lstm_from_pytorch_with};
use lstm::{Call, Cell, CellVisitor, Float, LstmConfig, MergeMode, OutputGrad, visit_zoo_cell};

/// Checks the case `name` in the precision its `case.json` gives.
pub fn check_case(name: &str) {
    let fixture = Fixture::load(name);
    let cell = fixture.cell().to_string();
    let run = if fixture.is_f32() {
        visit_zoo_cell::<f32, _>(&cell, CaseRun { fixture: &fixture })
    } else {
        visit_zoo_cell::<f64, _>(&cell, CaseRun { fixture: &fixture })
    };
    run.unwrap_or_else(|err| panic!("{name}: {err}"));
}

/// The weights a case loads: Keras cases through the Keras file and its conversion, so the
/// conversion is part of what is checked.
pub fn case_weights(fixture: &Fixture) -> TensorMap {
    if fixture.semantics() == "keras" {
        keras_to_pytorch(&fixture.tensors("keras.safetensors")).unwrap()
    } else {
        fixture.weights()
    }
}

/// The layer's configuration: the layout read off the weights, the call semantics from
/// `case.json`; `heads` from `case.json` when the case has it (the headed cases).
pub fn case_config<C: Cell>(fixture: &Fixture, weights: &TensorMap) -> LstmConfig {
    let merge_mode = match fixture.text("merge_mode") {
        Some("concat") => MergeMode::Concat,
        Some("sum") => MergeMode::Sum,
        Some("ave") => MergeMode::Ave,
        Some("mul") => MergeMode::Mul,
        None => MergeMode::None,
        Some(other) => panic!("{}: merge mode {other}", fixture.name),
    };
    let config = PytorchLayout::infer(weights, C::SPEC)
        .unwrap()
        .config()
        .with_batch_first(fixture.flag("batch_first"))
        .with_merge_mode(merge_mode)
        .with_go_backwards(fixture.flag("go_backwards"))
        .with_return_sequences(fixture.flag("return_sequences"))
        .with_zero_output_for_mask(fixture.flag("zero_output_for_mask"));
    with_case_heads(fixture, config)
}

// --- Headed recurrence and extra states (sLSTM's `n`, `m`): the `cell_slstm*`,
// `cell_lstm_heads` and `cell_lstm_diagonal` cases, through `LstmConfig::heads` and
// `with_heads`, `Call::with_initial_states`, `LstmOutput::states`, `LstmGradients::states`.

/// The states beyond `h` and `c` a case may carry, by their key in `LstmOutput::states`,
/// `LstmGradients::states` and `Call::with_initial_states` (files `{key}0.npy`,
/// `{key}_n.npy`, gradient `{key}0`).
const EXTRA_STATES: [&str; 2] = ["n", "m"];

/// `config` with the case's `heads` (K of a block-diagonal `weight_hh` `(gates·H, H/K)`).
fn with_case_heads(fixture: &Fixture, config: LstmConfig) -> LstmConfig {
    match fixture.optional_size("heads") {
        Some(heads) => config.with_heads(heads),
        None => config,
    }
}

/// Checks the heads the loaded layer read off `weight_hh`'s shape agree with `case.json`'s.
fn check_heads(fixture: &Fixture, config: &LstmConfig) {
    let heads = fixture.optional_size("heads").unwrap_or(1);
    assert_eq!(config.heads, heads, "{}: heads", fixture.name);
}

/// The initial extra states the case gives (`n0.npy`, `m0.npy`), by key.
fn extra_initial_states<F: Float>(fixture: &Fixture) -> Vec<(&'static str, Array3<F>)> {
    EXTRA_STATES
        .iter()
        .filter_map(|&key| {
            let array = fixture.array::<F>(&format!("{key}0"))?;
            Some((key, array.into_dimensionality::<Ix3>().unwrap()))
        })
        .collect()
}

/// Compares the final extra states with the case's `{key}_n.npy`; the layer returns exactly
/// the extra states the case has.
fn check_extra_final_states<F: Float>(
    fixture: &Fixture,
    states: &std::collections::BTreeMap<String, Array3<F>>,
) {
    let name = fixture.name.as_str();
    let mut expected_keys = Vec::new();
    for key in EXTRA_STATES {
        let Some(expected) = fixture.array::<F>(&format!("{key}_n")) else {
            continue;
        };
        expected_keys.push(key.to_string());
        let found = states
            .get(key)
            .unwrap_or_else(|| panic!("{name}: no final state {key}"));
        assert_close(
            &format!("{name} {key}_n"),
            found.view().into_dyn(),
            expected.view(),
            fixture.tolerance(),
        );
    }
    expected_keys.sort();
    let found_keys: Vec<String> = states.keys().cloned().collect();
    assert_eq!(found_keys, expected_keys, "{name}: extra final states");
}

// --- end of the headed and extra-state helpers.

/// One case run with the cell type the visitor is instantiated with.
struct CaseRun<'a> {
    fixture: &'a Fixture,
}

impl<F: Float> CellVisitor<F> for CaseRun<'_> {
    type Output = ();

    fn visit<C: Cell<Elem = F>>(self) {
        run_case::<C>(self.fixture);
    }
}

fn run_case<C: Cell>(fixture: &Fixture) {
    let name = fixture.name.as_str();
    let tolerance = fixture.tolerance();
    let weights = case_weights(fixture);
    let config = case_config::<C>(fixture, &weights);
    let mut layer = lstm_from_pytorch_with::<C>(&weights, config).unwrap();
    check_heads(fixture, layer.config());

    let input: ArrayD<C::Elem> = fixture.array("x").unwrap();
    let lengths = fixture.lengths();
    let mask = fixture
        .mask()
        .map(|mask| mask.into_dimensionality::<Ix2>().unwrap());
    let h0 = fixture
        .array::<C::Elem>("h0")
        .map(|h0| h0.into_dimensionality::<Ix3>().unwrap());
    // A cell without a cell state (a GRU) has `h0` alone.
    let c0 = fixture
        .array::<C::Elem>("c0")
        .map(|c0| c0.into_dimensionality::<Ix3>().unwrap());
    if h0.is_some() && c0.is_none() {
        assert!(!C::SPEC.carries_cell_state(), "{name}: h0 without c0");
    }
    let extra0 = extra_initial_states::<C::Elem>(fixture);
    let views: Vec<(&str, ArrayView3<'_, C::Elem>)> = extra0
        .iter()
        .map(|(key, state)| (*key, state.view()))
        .collect();
    let call = || {
        let mut call = Call::new();
        if let Some(lengths) = &lengths {
            call = call.with_lengths(lengths);
        }
        if let Some(mask) = &mask {
            call = call.with_mask(mask.view());
        }
        match (&h0, &c0) {
            (Some(h0), Some(c0)) => call = call.with_initial_state(h0.view(), c0.view()),
            (Some(h0), None) => call = call.with_h0(h0.view()),
            _ => {}
        }
        if !views.is_empty() {
            call = call.with_initial_states(&views);
        }
        call
    };

    let expected_y: ArrayD<C::Elem> = fixture.array("y").unwrap();
    let grad_output: ArrayD<C::Elem> = fixture.array("grad_output").unwrap();
    // Keras' `merge_mode=None` returns both directions: the fixture stacks them.
    let both_directions = config_has_no_merge(fixture);

    let inference = layer.forward(input.view(), call()).unwrap();
    let (output, tape) = layer.forward_train(input.view(), call()).unwrap();
    assert_eq!(
        inference, output,
        "{name}: forward and forward_train differ"
    );
    if both_directions {
        let reverse = output.output_reverse.as_ref().expect("output_reverse");
        assert_close(
            &format!("{name} output"),
            output.output.view(),
            expected_y.index_axis(Axis(0), 0),
            tolerance,
        );
        assert_close(
            &format!("{name} output_reverse"),
            reverse.view(),
            expected_y.index_axis(Axis(0), 1),
            tolerance,
        );
    } else {
        assert_close(
            &format!("{name} output"),
            output.output.view(),
            expected_y.view(),
            tolerance,
        );
    }
    for (state, found) in [("h_n", &output.h_n), ("c_n", &output.c_n)] {
        // Cases from a cell without a cell state have no `c_n`.
        let Some(expected) = fixture.array::<C::Elem>(state) else {
            assert!(
                state == "c_n" && !C::SPEC.carries_cell_state(),
                "{name}: no {state}"
            );
            continue;
        };
        let found = found.as_ref().expect("return_state is on");
        assert_close(
            &format!("{name} {state}"),
            found.view().into_dyn(),
            expected.view(),
            tolerance,
        );
    }
    check_extra_final_states(fixture, &output.states);

    let grad = if both_directions {
        OutputGrad {
            output: Some(grad_output.index_axis(Axis(0), 0)),
            output_reverse: Some(grad_output.index_axis(Axis(0), 1)),
            ..OutputGrad::default()
        }
    } else {
        OutputGrad {
            output: Some(grad_output.view()),
            ..OutputGrad::default()
        }
    };
    let grads = layer.backward(tape, grad).unwrap();
    let expected = fixture.tensors("grads.safetensors");
    for (key, tensor) in expected.iter() {
        let expected: ArrayD<C::Elem> = tensor.to_float(key).unwrap();
        let found = match key {
            "input" => grads.input.view().into_dyn(),
            "h0" => grads.h0.view().into_dyn(),
            "c0" => grads.c0.view().into_dyn(),
            "n0" | "m0" => grads
                .states
                .get(&key[..1])
                .unwrap_or_else(|| panic!("{name}: no gradient of {key}"))
                .view()
                .into_dyn(),
            param => grads
                .params
                .get(param)
                .unwrap_or_else(|| panic!("{name}: no gradient of {param}"))
                .view(),
        };
        assert_close(&format!("{name} d{key}"), found, expected.view(), tolerance);
    }
    for (key, _) in grads.params.iter() {
        assert!(expected.contains(key), "{name}: unexpected gradient {key}");
    }
}

/// Whether the case is a Keras `Bidirectional(merge_mode=None)`.
fn config_has_no_merge(fixture: &Fixture) -> bool {
    fixture.flag("bidirectional") && fixture.text("merge_mode").is_none()
}
