//! Every zoo cell inside every wrapper `Lstm` offers, against the naive layer reference
//! (`common/layer_reference.rs`, f64, one row at a time, explicit reversal): plain, lengths,
//! Keras masks with holes (both output policies), `go_backwards`, bidirectional with every
//! merge mode, stacked bidirectional LSTMP layers, last outputs, batch-first, initial states.

#[path = "common/layer_reference.rs"]
mod layer_reference;
#[path = "common/zoo_steps.rs"]
mod zoo_steps;

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use layer_reference::{RefValidity, RowStep, max_diff, ref_cells, reference};
use lstm_runtime::zoo::{
    Cifg, ForgetBias, HardSigmoid, LayerNorm, Lstm as LstmCell, Peephole, ScaledForget,
};
use lstm_runtime::{Call, Cell, Float, Lstm, LstmConfig, MergeMode, Parameters};

const SEQ_LEN: usize = 6;
const BATCH: usize = 4;
const INPUT: usize = 3;
const HIDDEN: usize = 5;

/// How a wrapper case calls the layer.
#[derive(Clone, Copy, Debug)]
enum Validity {
    All,
    Lengths,
    Mask,
}

/// Every wrapper case: a name, a config, what the call passes, whether it gives `(h0, c0)`.
fn cases() -> Vec<(&'static str, LstmConfig, Validity, bool)> {
    let base = LstmConfig::new(INPUT, HIDDEN);
    let bi = base.clone().with_bidirectional(true);
    let mut cases = vec![
        ("plain", base.clone(), Validity::All, false),
        ("initial state", base.clone(), Validity::All, true),
        ("lengths", base.clone(), Validity::Lengths, true),
        ("mask with holes", base.clone(), Validity::Mask, true),
        (
            "mask, zero outputs",
            base.clone().with_zero_output_for_mask(true),
            Validity::Mask,
            false,
        ),
        (
            "go_backwards, lengths",
            base.clone().with_go_backwards(true),
            Validity::Lengths,
            true,
        ),
        (
            "go_backwards, mask",
            base.clone().with_go_backwards(true),
            Validity::Mask,
            false,
        ),
        (
            "last output, mask",
            base.clone().with_return_sequences(false),
            Validity::Mask,
            true,
        ),
        (
            "batch_first, lengths",
            base.clone().with_batch_first(true),
            Validity::Lengths,
            false,
        ),
        (
            "proj_size",
            base.clone().with_proj_size(3),
            Validity::Lengths,
            true,
        ),
        (
            "stacked bidirectional proj",
            bi.clone().with_num_layers(2).with_proj_size(2),
            Validity::Lengths,
            true,
        ),
        (
            "stacked, mask, last",
            base.clone().with_num_layers(3).with_return_sequences(false),
            Validity::Mask,
            true,
        ),
        (
            "bidirectional last, mask",
            bi.clone().with_return_sequences(false),
            Validity::Mask,
            false,
        ),
        (
            "bidirectional go_backwards, lengths",
            bi.clone().with_go_backwards(true),
            Validity::Lengths,
            false,
        ),
    ];
    for mode in MergeMode::ALL {
        cases.push((
            "bidirectional, lengths",
            bi.clone().with_merge_mode(mode),
            Validity::Lengths,
            true,
        ));
        cases.push((
            "bidirectional, mask",
            bi.clone().with_merge_mode(mode),
            Validity::Mask,
            true,
        ));
    }
    cases
}

/// Random values in every parameter, so no init (ones, zeros) hides a misplaced one.
fn randomize<C: Cell>(layer: &mut Lstm<C>, rng: &mut ChaCha8Rng) {
    layer.visit_parameters_mut(&mut |_, mut values| {
        values.mapv_inplace(|_| C::Elem::of(rng.random_range(-0.6..0.6)))
    });
}

/// A mask with holes anywhere, and a row without any valid step.
fn holey_mask(rng: &mut ChaCha8Rng) -> Array2<bool> {
    let mut mask = Array2::from_shape_fn((BATCH, SEQ_LEN), |_| rng.random_bool(0.6));
    mask.row_mut(1).fill(false);
    mask[[0, 0]] = false;
    mask[[0, 2]] = true;
    mask
}

fn check<C: Cell>(step_of: fn(&C) -> RowStep, tolerance: f64, seed: u64) {
    for (name, config, validity, initial) in cases() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layer = Lstm::<C>::new(config.clone(), &mut rng).unwrap();
        randomize(&mut layer, &mut rng);
        let x = Array3::from_shape_fn((SEQ_LEN, BATCH, INPUT), |_| rng.random_range(-1.5..1.5));
        let states = config.num_layers * config.num_directions();
        let h0 = Array3::from_shape_fn((states, BATCH, config.output_size()), |_| {
            rng.random_range(-1.0..1.0)
        });
        let c0 = Array3::from_shape_fn((states, BATCH, HIDDEN), |_| rng.random_range(-1.0..1.0));
        let lengths = [SEQ_LEN, 3, 0, 1];
        let mask = holey_mask(&mut rng);
        let x_elem = x.mapv(C::Elem::of);
        let (h0_elem, c0_elem) = (h0.mapv(C::Elem::of), c0.mapv(C::Elem::of));
        let x_call = if config.batch_first {
            x_elem.clone().permuted_axes([1, 0, 2])
        } else {
            x_elem.clone()
        };
        let mut call = Call::new();
        let ref_validity = match validity {
            Validity::All => RefValidity::All,
            Validity::Lengths => {
                call = call.with_lengths(&lengths);
                RefValidity::Lengths(lengths.to_vec())
            }
            Validity::Mask => {
                call = call.with_mask(mask.view());
                RefValidity::Mask(mask.clone())
            }
        };
        if initial {
            call = call.with_initial_state(h0_elem.view(), c0_elem.view());
        }
        let found = layer.forward(x_call.view(), call).unwrap();
        let zeros_h = Array3::zeros(h0.raw_dim());
        let zeros_c = Array3::zeros(c0.raw_dim());
        let (h0_ref, c0_ref) = if initial {
            (&h0, &c0)
        } else {
            (&zeros_h, &zeros_c)
        };
        let cells = ref_cells(&layer, &|cell| step_of(cell));
        let expected = reference(&cells, &config, &x, &ref_validity, h0_ref, c0_ref, None);
        let what = format!("{} in `{name}` ({:?})", C::SPEC.name, config.merge_mode);
        let mut output = found.output.view().to_owned();
        if config.batch_first && config.return_sequences {
            output = output.permuted_axes(vec![1, 0, 2]);
        }
        let diff = max_diff(output.view(), expected.output.view());
        assert!(diff <= tolerance, "{what}: output off by {diff:e}");
        match (&found.output_reverse, &expected.output_reverse) {
            (Some(found), Some(expected)) => {
                let diff = max_diff(found.view(), expected.view());
                assert!(diff <= tolerance, "{what}: output_reverse off by {diff:e}");
            }
            (None, None) => {}
            _ => panic!("{what}: output_reverse presence differs"),
        }
        let h_n = found.h_n.unwrap();
        let c_n = found.c_n.unwrap();
        let diff = max_diff(h_n.view().into_dyn(), expected.h_n.view().into_dyn());
        assert!(diff <= tolerance, "{what}: h_n off by {diff:e}");
        let diff = max_diff(c_n.view().into_dyn(), expected.c_n.view().into_dyn());
        assert!(diff <= tolerance, "{what}: c_n off by {diff:e}");
    }
}

#[test]
fn lstm_in_every_wrapper() {
    check::<LstmCell<f64>>(zoo_steps::lstm, 1e-12, 1);
}

#[test]
fn lstm_f32_in_every_wrapper() {
    check::<LstmCell<f32>>(zoo_steps::lstm, 2e-5, 2);
}

#[test]
fn forget_bias_in_every_wrapper() {
    check::<ForgetBias<f64>>(zoo_steps::forget_bias, 1e-12, 3);
}

#[test]
fn scaled_forget_in_every_wrapper() {
    check::<ScaledForget<f64>>(zoo_steps::scaled_forget, 1e-12, 4);
}

#[test]
fn peephole_in_every_wrapper() {
    check::<Peephole<f64>>(zoo_steps::peephole, 1e-12, 5);
}

#[test]
fn cifg_in_every_wrapper() {
    check::<Cifg<f64>>(zoo_steps::cifg, 1e-12, 6);
}

#[test]
fn hard_sigmoid_in_every_wrapper() {
    check::<HardSigmoid<f64>>(zoo_steps::hard_sigmoid_cell, 1e-12, 7);
}

#[test]
fn layer_norm_in_every_wrapper() {
    check::<LayerNorm<f64>>(zoo_steps::layer_norm_cell, 1e-10, 8);
}

#[test]
fn layer_norm_f32_in_every_wrapper() {
    check::<LayerNorm<f32>>(zoo_steps::layer_norm_cell, 1e-4, 9);
}
