//! Tests of [`Call::record`]: the recorded gates and states against a naive loop written
//! apart from the time loops, and recording against the same call without it.

use ndarray::{Array, Array2, Array3, Axis, Dimension, ShapeBuilder, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::Error;
use crate::float::Float;
use crate::layer::Lstm;
use crate::layer::call::Call;
use crate::layer::config::LstmConfig;
use crate::zoo::{self, lookup::CellVisitor, lookup::visit_zoo_cell};

fn random<F: Float, Sh: ShapeBuilder>(rng: &mut ChaCha8Rng, shape: Sh) -> Array<F, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    Array::from_shape_simple_fn(shape, || F::of(rng.random_range(-1.0..1.0)))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// PyTorch's LSTM equations for one row of one direction, step by step over the row's
/// `length` valid steps (reversed for the reverse direction): `[i, f, g, o, c, h]` at each
/// time index, zeros elsewhere.
fn naive_lstm(
    cell: &zoo::Lstm<f64>,
    x: &Array3<f64>,
    row: usize,
    length: usize,
    direction: Direction,
) -> Vec<Array2<f64>> {
    let weights = cell.weights();
    let hidden = weights.weight_hh.ncols();
    let seq_len = x.dim().0;
    let mut values = vec![Array2::<f64>::zeros((seq_len, hidden)); 6];
    let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
    let order: Vec<usize> = match direction {
        Direction::Forward => (0..length).collect(),
        Direction::Reverse => (0..length).rev().collect(),
    };
    for t in order {
        let z = |gate: usize, unit: usize| {
            let r = gate * hidden + unit;
            let mut sum = weights.bias_ih.unwrap()[r] + weights.bias_hh.unwrap()[r];
            for (k, w) in weights.weight_ih.row(r).iter().enumerate() {
                sum += w * x[[t, row, k]];
            }
            for (k, w) in weights.weight_hh.row(r).iter().enumerate() {
                sum += w * h[k];
            }
            sum
        };
        let mut new_h = vec![0.0; hidden];
        for j in 0..hidden {
            let (i, f, g, o) = (
                sigmoid(z(0, j)),
                sigmoid(z(1, j)),
                z(2, j).tanh(),
                sigmoid(z(3, j)),
            );
            c[j] = f * c[j] + i * g;
            new_h[j] = o * c[j].tanh();
            for (k, value) in [i, f, g, o, c[j], new_h[j]].into_iter().enumerate() {
                values[k][[t, j]] = value;
            }
        }
        h = new_h;
    }
    values
}

#[test]
fn recorded_gates_and_states_match_a_naive_loop() {
    let (seq_len, batch, input, hidden) = (6, 3, 4, 5);
    let config = LstmConfig::new(input, hidden).with_bidirectional(true);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut layer = Lstm::<zoo::Lstm<f64>>::new(config, &mut rng).unwrap();
    let x: Array3<f64> = random(&mut rng, (seq_len, batch, input));
    let lengths = [6, 4, 0];
    let names = ["i", "f", "g", "o", "c", "h"];
    let out = layer
        .forward(
            x.view(),
            Call::new().with_lengths(&lengths).with_record(&names),
        )
        .unwrap();
    assert_eq!(out.records.len(), 12);
    for direction in Direction::BOTH {
        let suffix = match direction {
            Direction::Forward => "_l0",
            Direction::Reverse => "_l0_reverse",
        };
        let cell = layer.cell(0, direction).unwrap();
        for (row, &length) in lengths.iter().enumerate() {
            let expected = naive_lstm(cell, &x, row, length, direction);
            for (name, expected) in names.iter().zip(&expected) {
                let recorded = &out.records[&format!("{name}{suffix}")];
                assert_eq!(recorded.dim(), (seq_len, batch, hidden));
                let recorded = recorded.index_axis(Axis(1), row);
                let worst = recorded
                    .iter()
                    .zip(expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(worst < 1e-12, "{name}{suffix} row {row}: off by {worst:e}");
            }
        }
    }
    // `h` of the forward direction is the first half of the (concatenated) output.
    let output = out.output.sequence().unwrap();
    assert_eq!(out.records["h_l0"], output.slice(s![.., .., ..hidden]));
}

/// Every value a zoo cell records, over a two-layer stack with lengths, against the same
/// call without recording: outputs and final states bit for bit, `h` and `c` the layer's.
struct RecordingChangesNothing;

impl<F: Float> CellVisitor<F> for RecordingChangesNothing {
    type Output = ();

    fn visit<C: Cell<Elem = F>>(self) {
        let (seq_len, batch, hidden) = (5, 4, 6);
        let config = LstmConfig::new(3, hidden)
            .with_num_layers(2)
            .with_batch_first(true);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut layer = Lstm::<C>::new(config, &mut rng).unwrap();
        let x: Array3<F> = random(&mut rng, (batch, seq_len, 3));
        let lengths = [5, 2, 0, 4];
        let plain = layer
            .forward(x.view(), Call::new().with_lengths(&lengths))
            .unwrap();
        let mut names: Vec<&str> = C::SPEC.record.to_vec();
        names.extend(C::SPEC.states);
        names.push("h");
        let recorded = layer
            .forward(
                x.view(),
                Call::new().with_lengths(&lengths).with_record(&names),
            )
            .unwrap();
        let what = C::SPEC.name;
        assert_eq!(recorded.output, plain.output, "{what}: output");
        assert_eq!(recorded.h_n, plain.h_n, "{what}: h_n");
        assert_eq!(recorded.c_n, plain.c_n, "{what}: c_n");
        assert_eq!(recorded.records.len(), 2 * names.len(), "{what}");
        for layer_index in 0..2 {
            for name in &names {
                let values = &recorded.records[&format!("{name}_l{layer_index}")];
                assert_eq!(values.dim(), (batch, seq_len, hidden), "{what}: {name}");
            }
            let h = &recorded.records[&format!("h_l{layer_index}")];
            // Each state at a row's last step is its final value.
            let finals = [("c", plain.c_n.as_ref())].into_iter().chain(
                plain
                    .states
                    .iter()
                    .map(|(name, v)| (name.as_str(), Some(v))),
            );
            for (row, &length) in lengths.iter().enumerate() {
                // Past a sequence's length: zero.
                assert!(
                    h.slice(s![row, length.., ..])
                        .iter()
                        .all(|v| *v == F::zero())
                );
                if length == 0 {
                    continue;
                }
                let last = length - 1;
                assert_eq!(
                    h.slice(s![row, last, ..]),
                    plain.h_n.as_ref().unwrap().slice(s![layer_index, row, ..]),
                    "{what}: h at the last step is h_n"
                );
                for (name, last_value) in finals.clone() {
                    let (Some(last_value), Some(values)) = (
                        last_value,
                        recorded.records.get(&format!("{name}_l{layer_index}")),
                    ) else {
                        continue;
                    };
                    assert_eq!(
                        values.slice(s![row, last, ..]),
                        last_value.slice(s![layer_index, row, ..]),
                        "{what}: {name} at the last step is its final value"
                    );
                }
            }
        }
        let top = &recorded.records["h_l1"];
        assert_eq!(
            top,
            plain.output.sequence().unwrap(),
            "{what}: h_l1 is the output"
        );
    }
}

#[test]
fn recording_changes_no_output_of_any_zoo_cell() {
    for spec in zoo::all() {
        visit_zoo_cell::<f64, _>(spec.name, RecordingChangesNothing).unwrap();
        visit_zoo_cell::<f32, _>(spec.name, RecordingChangesNothing).unwrap();
    }
}

#[test]
fn cells_record_the_gates_they_evaluate() {
    assert_eq!(<zoo::Lstm<f32> as Cell>::SPEC.record, ["i", "f", "g", "o"]);
    // CIFG's `i = 1 - f` has no weight rows but is evaluated.
    let cifg = <zoo::Cifg<f32> as Cell>::SPEC.record;
    assert!(cifg.contains(&"i") && cifg.contains(&"f"), "{cifg:?}");
    // JANET evaluates no `i` and no `o`.
    let janet = <zoo::Janet<f32> as Cell>::SPEC.record;
    assert!(!janet.contains(&"i") && !janet.contains(&"o"), "{janet:?}");
}

#[test]
fn unknown_names_and_training_calls_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut layer = Lstm::<zoo::Janet<f32>>::new(LstmConfig::new(2, 3), &mut rng).unwrap();
    let x = Array3::<f32>::zeros((2, 1, 2));
    let err = layer
        .forward(x.view(), Call::new().with_record(&["f", "i"]))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, reason } if option == "record" && reason.contains("`i`")),
        "{err}"
    );
    let err = layer
        .forward_train(
            x.view(),
            Call::new().with_record(&["f"]).with_training(true),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "record"),
        "{err}"
    );
    // A sequence too long to record (a broadcast view: nothing allocated for the input).
    let step = Array3::<f32>::zeros((1, 1, 2));
    let endless = step.broadcast((1 << 60, 1, 2)).unwrap();
    let err = layer
        .forward(endless, Call::new().with_record(&["c"]))
        .unwrap_err();
    assert!(matches!(&err, Error::Allocation { .. }), "{err}");
}
