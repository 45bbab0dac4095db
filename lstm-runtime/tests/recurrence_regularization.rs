//! Regularisation inside the recurrence (issue 9): Keras' variational `dropout` and
//! `recurrent_dropout`, weight drop, and zoneout of `c` and `h`.
//!
//! - Injected masks against a naive `f64` reference written here: one row at a time, explicit
//!   matrix-vector loops, the masks applied where the papers put them (input ⊙ mask before
//!   `W_ih`, `h_prev` ⊙ mask before `W_hh`, `W_hh` ⊙ mask, zoneout blending each state).
//! - Gradcheck with fixed masks, for every kind alone and all together, through lengths,
//!   Keras masks, both directions, stacking and projection.
//! - Inference equals the undropped layer, zoneout's inference is its expectation.
//! - The same seed draws the same masks; observed rates within statistical bounds; bad masks
//!   are errors that name the mask.

#[path = "common/layer_reference.rs"]
mod layer_reference;
#[path = "common/zoo_steps.rs"]
mod zoo_steps;

use ndarray::{Array2, Array3, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use layer_reference::{Pre, RefCell, RowStep, max_diff, ref_cells};
use lstm_runtime::zoo::{LayerNorm, Lstm as LstmCell, Peephole};
use lstm_runtime::{
    Call, Cell, DirectionMasks, Error, GradcheckOptions, Lstm, LstmConfig, Parameters,
    RecurrentMasks, gradcheck,
};

const SEQ_LEN: usize = 5;
const BATCH: usize = 3;
const INPUT: usize = 4;
const HIDDEN: usize = 3;

/// A layer of `config` with weights drawn uniformly from ±0.7 (larger than the default init,
/// so every mask visibly changes the outputs).
fn layer<C: Cell<Elem = f64>>(config: LstmConfig, seed: u64) -> Lstm<C> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut layer = Lstm::new(config, &mut rng).unwrap();
    layer.visit_parameters_mut(&mut |_, mut v| v.mapv_inplace(|_| rng.random_range(-0.7..0.7)));
    layer
}

fn input(seed: u64) -> Array3<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array3::from_shape_simple_fn((SEQ_LEN, BATCH, INPUT), || rng.random_range(-1.0..1.0))
}

/// The config with every regulariser inside the recurrence on.
fn all_on(config: LstmConfig) -> LstmConfig {
    config
        .with_input_dropout(0.3)
        .with_recurrent_dropout(0.4)
        .with_weight_drop(0.25)
        .with_zoneout(0.3, 0.2)
}

/// Each regulariser alone, then all of them.
fn each_kind(base: &LstmConfig) -> Vec<(&'static str, LstmConfig)> {
    vec![
        ("input dropout", base.clone().with_input_dropout(0.4)),
        (
            "recurrent dropout",
            base.clone().with_recurrent_dropout(0.4),
        ),
        ("weight drop", base.clone().with_weight_drop(0.4)),
        ("zoneout c", base.clone().with_zoneout(0.4, 0.0)),
        ("zoneout h", base.clone().with_zoneout(0.0, 0.4)),
        ("all", all_on(base.clone())),
    ]
}

/// How zoneout acts on one state in the naive reference.
enum Zone<'a> {
    Off,
    Rate(f64),
    Mask(&'a Array3<f64>),
}

impl Zone<'_> {
    fn d(&self, t: usize, b: usize, j: usize) -> f64 {
        match self {
            Zone::Off => 0.0,
            Zone::Rate(rate) => *rate,
            Zone::Mask(mask) => mask[[t, b, j]],
        }
    }
}

/// One direction's masks in the naive reference's terms.
struct NaiveMasks<'a> {
    input: Option<&'a Array2<f64>>,
    recurrent: Option<&'a Array2<f64>>,
    weight_hh: Option<&'a Array2<f64>>,
    zoneout_c: Zone<'a>,
    zoneout_h: Zone<'a>,
}

impl<'a> NaiveMasks<'a> {
    fn of(masks: &'a DirectionMasks<f64>) -> Self {
        let zone = |mask: &'a Option<Array3<f64>>| mask.as_ref().map_or(Zone::Off, Zone::Mask);
        NaiveMasks {
            input: masks.input.as_ref(),
            recurrent: masks.recurrent.as_ref(),
            weight_hh: masks.weight_hh.as_ref(),
            zoneout_c: zone(&masks.zoneout_c),
            zoneout_h: zone(&masks.zoneout_h),
        }
    }

    fn expectation(config: &LstmConfig) -> Self {
        let zone = |rate: f64| {
            if rate > 0.0 {
                Zone::Rate(rate)
            } else {
                Zone::Off
            }
        };
        NaiveMasks {
            input: None,
            recurrent: None,
            weight_hh: None,
            zoneout_c: zone(config.zoneout_c),
            zoneout_h: zone(config.zoneout_h),
        }
    }
}

fn matvec(weight: &Array2<f64>, v: &[f64]) -> Vec<f64> {
    (0..weight.nrows())
        .map(|r| (0..weight.ncols()).map(|k| weight[[r, k]] * v[k]).sum())
        .collect()
}

/// One direction of one layer over `x: (T, B, I)` from zero states, each row over its first
/// `lengths[b]` steps (walked backwards when `reverse`), outputs zero past a row's length.
/// Returns the outputs `(T, B, H)` and the final `(h, c)` of each row.
fn naive(
    cell: &RefCell,
    step: &RowStep,
    x: &Array3<f64>,
    lengths: &[usize],
    reverse: bool,
    masks: &NaiveMasks<'_>,
) -> (Array3<f64>, Array2<f64>, Array2<f64>) {
    let (seq_len, batch, input_size) = x.dim();
    let hidden = cell.weight_ih.nrows() / cell.gates.len();
    let weight_hh = match masks.weight_hh {
        Some(mask) => &cell.weight_hh * mask,
        None => cell.weight_hh.clone(),
    };
    let mut outputs = Array3::zeros((seq_len, batch, hidden));
    let mut h_n = Array2::zeros((batch, hidden));
    let mut c_n = Array2::zeros((batch, hidden));
    for b in 0..batch {
        let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
        let times: Vec<usize> = if reverse {
            (0..lengths[b]).rev().collect()
        } else {
            (0..lengths[b]).collect()
        };
        for t in times {
            let x_t: Vec<f64> = (0..input_size)
                .map(|i| x[[t, b, i]] * masks.input.map_or(1.0, |m| m[[b, i]]))
                .collect();
            let h_in: Vec<f64> = (0..hidden)
                .map(|j| h[j] * masks.recurrent.map_or(1.0, |m| m[[b, j]]))
                .collect();
            let pre = Pre {
                gates: cell.gates.clone(),
                hidden,
                zx: matvec(&cell.weight_ih, &x_t),
                zh: matvec(&weight_hh, &h_in),
                b_ih: cell.bias_ih.to_vec(),
                b_hh: cell.bias_hh.to_vec(),
                constant: Vec::new(),
            };
            let (h_new, c_new) = step(&pre, &c, &h_in);
            for j in 0..hidden {
                let (dc, dh) = (masks.zoneout_c.d(t, b, j), masks.zoneout_h.d(t, b, j));
                c[j] = dc * c[j] + (1.0 - dc) * c_new[j];
                h[j] = dh * h[j] + (1.0 - dh) * h_new[j];
                outputs[[t, b, j]] = h[j];
            }
        }
        for j in 0..hidden {
            h_n[[b, j]] = h[j];
            c_n[[b, j]] = c[j];
        }
    }
    (outputs, h_n, c_n)
}

/// Runs one (possibly bidirectional, concatenating) layer in training mode with `masks` and
/// compares with the naive reference direction by direction.
fn check_against_naive<C: Cell<Elem = f64>>(
    name: &str,
    config: LstmConfig,
    step_of: &dyn Fn(&C) -> RowStep,
    seed: u64,
) {
    let mut layer = layer::<C>(config.clone(), seed);
    let masks = layer.sample_masks(SEQ_LEN, BATCH);
    let x = input(seed + 100);
    let lengths = [SEQ_LEN, 2, 4];
    let call = Call::new()
        .with_training(true)
        .with_masks(&masks)
        .with_lengths(&lengths);
    let found = layer.forward(x.view(), call).unwrap();
    let trained = layer.forward_train(x.view(), call).unwrap().0;
    assert_eq!(found, trained, "{name}: forward and forward_train differ");
    let sequence = found.output.sequence().unwrap();
    let h_n = found.h_n.unwrap();
    let c_n = found.c_n.unwrap();
    let cells = ref_cells(&layer, &|cell: &C| step_of(cell));
    for (d, cell) in cells.iter().enumerate() {
        let naive_masks = NaiveMasks::of(&masks.directions[d]);
        let (out, h, c) = naive(cell, &cell.step, &x, &lengths, d == 1, &naive_masks);
        let columns = d * HIDDEN..(d + 1) * HIDDEN;
        let found_out = sequence.slice(s![.., .., columns]);
        let errors = [
            max_diff(found_out.into_dyn(), out.view().into_dyn()),
            max_diff(h_n.slice(s![d, .., ..]).into_dyn(), h.view().into_dyn()),
            max_diff(c_n.slice(s![d, .., ..]).into_dyn(), c.view().into_dyn()),
        ];
        assert!(
            errors.iter().all(|&e| e < 1e-12),
            "{name}, direction {d}: errors (output, h_n, c_n) {errors:?}"
        );
    }
    // The masks matter: the undropped layer gives other outputs.
    let plain = layer
        .forward(x.view(), Call::new().with_lengths(&lengths))
        .unwrap();
    assert_ne!(plain.output, found.output, "{name}: masks changed nothing");
}

#[test]
fn injected_masks_match_the_naive_reference() {
    let base = LstmConfig::new(INPUT, HIDDEN);
    for (seed, (kind, config)) in each_kind(&base).into_iter().enumerate() {
        let seed = seed as u64;
        check_against_naive::<LstmCell<f64>>(
            &format!("lstm, {kind}"),
            config.clone(),
            &zoo_steps::lstm,
            seed,
        );
        check_against_naive::<LstmCell<f64>>(
            &format!("lstm bidirectional, {kind}"),
            config.clone().with_bidirectional(true),
            &zoo_steps::lstm,
            seed + 10,
        );
    }
    check_against_naive::<Peephole<f64>>(
        "peephole, all",
        all_on(base.clone()).with_bidirectional(true),
        &zoo_steps::peephole,
        20,
    );
    check_against_naive::<LayerNorm<f64>>(
        "layer_norm, all",
        all_on(base),
        &zoo_steps::layer_norm_cell,
        21,
    );
}

#[test]
fn inference_is_the_undropped_layer_and_zoneout_its_expectation() {
    let x = input(7);
    let lengths = [SEQ_LEN, 2, 4];
    let dropped = LstmConfig::new(INPUT, HIDDEN)
        .with_bidirectional(true)
        .with_num_layers(2)
        .with_input_dropout(0.5)
        .with_recurrent_dropout(0.5)
        .with_weight_drop(0.5);
    let mut regularized = layer::<LstmCell<f64>>(dropped.clone(), 3);
    let mut plain = layer::<LstmCell<f64>>(
        dropped
            .with_input_dropout(0.0)
            .with_recurrent_dropout(0.0)
            .with_weight_drop(0.0),
        3,
    );
    let call = Call::new().with_lengths(&lengths);
    assert_eq!(
        regularized.forward(x.view(), call).unwrap(),
        plain.forward(x.view(), call).unwrap()
    );
    let trained = regularized
        .forward(x.view(), call.with_training(true))
        .unwrap();
    assert_ne!(trained, plain.forward(x.view(), call).unwrap());

    // Zoneout in inference: h = rate · h_prev + (1 − rate) · h_new, likewise c.
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_bidirectional(true)
        .with_zoneout(0.3, 0.6);
    let mut zoned = layer::<LstmCell<f64>>(config.clone(), 4);
    let found = zoned.forward(x.view(), call).unwrap();
    let sequence = found.output.sequence().unwrap();
    let cells = ref_cells(&zoned, &|cell| zoo_steps::lstm(cell));
    for (d, cell) in cells.iter().enumerate() {
        let expectation = NaiveMasks::expectation(&config);
        let (out, _, c) = naive(cell, &cell.step, &x, &lengths, d == 1, &expectation);
        let columns = d * HIDDEN..(d + 1) * HIDDEN;
        let c_n = found.c_n.as_ref().unwrap();
        assert!(
            max_diff(
                sequence.slice(s![.., .., columns]).into_dyn(),
                out.view().into_dyn()
            ) < 1e-12
        );
        assert!(max_diff(c_n.slice(s![d, .., ..]).into_dyn(), c.view().into_dyn()) < 1e-12);
    }
}

/// Gradcheck in training mode with `masks` fixed (drawn once, then injected).
fn gradcheck_with_masks<C: Cell<Elem = f64>>(name: &str, config: LstmConfig, seed: u64) {
    let mut layer = layer::<C>(config, seed);
    let masks = layer.sample_masks(SEQ_LEN, BATCH);
    let x = input(seed + 50);
    let lengths = [SEQ_LEN, 1, 3];
    // A nonzero initial state: layer norm of `W_hh · 0` sits at its variance epsilon, where
    // finite differences lose their accuracy.
    let config = layer.config().clone();
    let states = config.num_layers * config.num_directions();
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 60);
    let mut state = |width: usize| {
        Array3::from_shape_simple_fn((states, BATCH, width), || rng.random_range(-0.5..0.5))
    };
    let (h0, c0) = (state(config.output_size()), state(config.hidden_size));
    let call = Call::new()
        .with_training(true)
        .with_masks(&masks)
        .with_lengths(&lengths)
        .with_initial_state(h0.view(), c0.view());
    let report = gradcheck(&layer, x.view(), call, &GradcheckOptions::default()).unwrap();
    assert!(report.worst_relative_error() < 1e-6, "{name}:\n{report}");
}

#[test]
fn gradients_with_fixed_masks_pass_gradcheck() {
    let base = LstmConfig::new(INPUT, HIDDEN);
    for (seed, (kind, config)) in each_kind(&base).into_iter().enumerate() {
        gradcheck_with_masks::<LstmCell<f64>>(kind, config, seed as u64);
    }
    gradcheck_with_masks::<Peephole<f64>>(
        "peephole, bidirectional, all",
        all_on(base.clone()).with_bidirectional(true),
        30,
    );
    gradcheck_with_masks::<LayerNorm<f64>>("layer_norm, all", all_on(base.clone()), 31);
    gradcheck_with_masks::<LstmCell<f64>>(
        "two bidirectional projected layers, all, with between-layer dropout",
        all_on(base.clone())
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_proj_size(2)
            .with_dropout(0.3),
        32,
    );
    gradcheck_with_masks::<LstmCell<f64>>(
        "go_backwards, last output",
        all_on(base.clone())
            .with_go_backwards(true)
            .with_return_sequences(false),
        33,
    );
}

#[test]
fn keras_masks_and_zoneout_expectation_pass_gradcheck() {
    let mut mask = Array2::from_elem((BATCH, SEQ_LEN), true);
    mask[[0, 1]] = false;
    mask[[2, 0]] = false;
    mask[[2, 3]] = false;
    let x = input(9);
    let config = all_on(LstmConfig::new(INPUT, HIDDEN)).with_bidirectional(true);
    let mut layer = layer::<LstmCell<f64>>(config, 9);
    let masks = layer.sample_masks(SEQ_LEN, BATCH);
    let call = Call::new()
        .with_training(true)
        .with_masks(&masks)
        .with_mask(mask.view());
    let report = gradcheck(&layer, x.view(), call, &GradcheckOptions::default()).unwrap();
    assert!(report.worst_relative_error() < 1e-6, "{report}");
    // Inference mode: zoneout's expectation has gradients too.
    let call = Call::new().with_mask(mask.view());
    let report = gradcheck(&layer, x.view(), call, &GradcheckOptions::default()).unwrap();
    assert!(report.worst_relative_error() < 1e-6, "{report}");
}

#[test]
fn weight_drop_gradients_reach_only_kept_entries() {
    let config = LstmConfig::new(INPUT, HIDDEN).with_weight_drop(0.5);
    let mut layer = layer::<LstmCell<f64>>(config, 12);
    let masks = layer.sample_masks(SEQ_LEN, BATCH);
    let weight_mask = masks.directions[0].weight_hh.as_ref().unwrap();
    assert!(weight_mask.iter().any(|&m| m == 0.0) && weight_mask.iter().any(|&m| m == 2.0));
    let x = input(12);
    let call = Call::new().with_training(true).with_masks(&masks);
    let (output, tape) = layer.forward_train(x.view(), call).unwrap();
    let d_output = output.output.view().mapv(|_| 1.0);
    let grads = layer
        .backward(
            tape,
            lstm_runtime::OutputGrad {
                output: Some(d_output.view()),
                ..Default::default()
            },
        )
        .unwrap();
    let d_weight = grads.params.get("weight_hh_l0").unwrap();
    for (&g, &m) in d_weight.iter().zip(weight_mask.iter()) {
        if m == 0.0 {
            assert_eq!(g, 0.0, "a dropped weight got a gradient");
        }
    }
    assert!(d_weight.iter().any(|&g| g != 0.0));
}

#[test]
fn the_same_seed_draws_the_same_masks() {
    let config = all_on(LstmConfig::new(INPUT, HIDDEN))
        .with_bidirectional(true)
        .with_seed(5);
    let x = input(1);
    let call = Call::new().with_training(true);
    let mut a = layer::<LstmCell<f64>>(config.clone(), 2);
    let mut b = layer::<LstmCell<f64>>(config.clone(), 2);
    let mut seen = a.clone();
    let first = a.forward_train(x.view(), call).unwrap().0;
    assert_eq!(first, b.forward_train(x.view(), call).unwrap().0);
    // What `sample_masks` shows is what the call applied.
    let masks = seen.sample_masks(SEQ_LEN, BATCH);
    let injected = seen
        .clone()
        .forward_train(x.view(), call.with_masks(&masks))
        .unwrap()
        .0;
    assert_eq!(first, injected);
    // The next call draws new masks; another seed draws others.
    let second = a.forward_train(x.view(), call).unwrap().0;
    assert_ne!(first, second);
    let mut c = layer::<LstmCell<f64>>(config.with_seed(6), 2);
    assert_ne!(first, c.forward_train(x.view(), call).unwrap().0);
}

#[test]
fn drop_rates_are_within_statistical_bounds() {
    let (seq_len, batch) = (40, 32);
    let config = LstmConfig::new(64, 48)
        .with_input_dropout(0.2)
        .with_recurrent_dropout(0.5)
        .with_weight_drop(0.3)
        .with_zoneout(0.15, 0.05)
        .with_seed(17);
    let mut layer = Lstm::<LstmCell<f32>>::new(config, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let masks = layer.sample_masks(seq_len, batch);
    let masks = &masks.directions[0];
    // Fraction of dropped (zero) multipliers, and the value of the kept ones.
    let check = |name: &str, values: Vec<f32>, rate: f64, kept: Option<f32>| {
        let n = values.len() as f64;
        let hits = values.iter().filter(|&&v| match kept {
            Some(_) => v == 0.0,
            None => v == 1.0,
        });
        let observed = hits.count() as f64 / n;
        let sigma = (rate * (1.0 - rate) / n).sqrt();
        assert!(
            (observed - rate).abs() < 5.0 * sigma,
            "{name}: observed {observed}, rate {rate}, sigma {sigma}"
        );
        if let Some(kept) = kept {
            assert!(values.iter().all(|&v| v == 0.0 || v == kept), "{name}");
        } else {
            assert!(values.iter().all(|&v| v == 0.0 || v == 1.0), "{name}");
        }
    };
    let flat2 = |a: &Option<Array2<f32>>| a.as_ref().unwrap().iter().copied().collect::<Vec<_>>();
    let flat3 = |a: &Option<Array3<f32>>| a.as_ref().unwrap().iter().copied().collect::<Vec<_>>();
    check("input", flat2(&masks.input), 0.2, Some(1.0 / 0.8));
    check("recurrent", flat2(&masks.recurrent), 0.5, Some(2.0));
    check("weight_hh", flat2(&masks.weight_hh), 0.3, Some(1.0 / 0.7));
    check("zoneout_c", flat3(&masks.zoneout_c), 0.15, None);
    check("zoneout_h", flat3(&masks.zoneout_h), 0.05, None);
    // Zoneout masks change from step to step; dropout masks are one per sequence.
    let zc = masks.zoneout_c.as_ref().unwrap();
    assert_ne!(zc.slice(s![0, .., ..]), zc.slice(s![1, .., ..]));
    assert_eq!(masks.input.as_ref().unwrap().dim(), (batch, 64));
}

#[test]
fn bad_masks_are_named() {
    let config = LstmConfig::new(INPUT, HIDDEN)
        .with_recurrent_dropout(0.3)
        .with_zoneout(0.2, 0.0);
    let mut layer = layer::<LstmCell<f64>>(config, 0);
    let x = input(0);
    let good = layer.sample_masks(SEQ_LEN, BATCH);
    let option = |layer: &mut Lstm<LstmCell<f64>>, call: Call<'_, f64>| match layer
        .forward(x.view(), call)
    {
        Err(Error::Config { option, .. }) => option,
        Err(Error::ShapeMismatch { what, .. }) => what,
        other => panic!("expected an error, found {other:?}"),
    };
    // Masks in an inference call.
    assert_eq!(option(&mut layer, Call::new().with_masks(&good)), "masks");
    let training = Call::new().with_training(true);
    // Wrong count.
    let mut two = good.clone();
    two.directions.push(good.directions[0].clone());
    assert_eq!(option(&mut layer, training.with_masks(&two)), "masks");
    // Missing although the rate is set, given although it is not.
    let mut missing = good.clone();
    missing.directions[0].recurrent = None;
    assert_eq!(
        option(&mut layer, training.with_masks(&missing)),
        "masks[0].recurrent"
    );
    let mut extra = good.clone();
    extra.directions[0].weight_hh = Some(Array2::ones((4 * HIDDEN, HIDDEN)));
    assert_eq!(
        option(&mut layer, training.with_masks(&extra)),
        "masks[0].weight_hh"
    );
    // Wrong shape.
    let mut short = good.clone();
    short.directions[0].zoneout_c = Some(Array3::zeros((SEQ_LEN - 1, BATCH, HIDDEN)));
    assert_eq!(
        option(&mut layer, training.with_masks(&short)),
        "masks[0].zoneout_c"
    );
    let _: RecurrentMasks<f64> = good;
}
