//! Every instruction-set level this CPU supports (`lstm_runtime::isa`), forced in turn, runs
//! layers that agree with the naive `f64` reference of `common/layer_reference.rs`: the
//! packed step products, the batch-1 unit split, the matrix-vector kernels and the generated
//! row kernels all dispatch on the active level. Levels the CPU lacks are skipped, and say so.
//!
//! Its own test binary: it switches the process-wide level and thread count.

#[path = "common/layer_reference.rs"]
mod layer_reference;
#[path = "common/zoo_steps.rs"]
mod zoo_steps;

use ndarray::{Array, Array3, ArrayViewD, Dimension};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use layer_reference::{RefValidity, RowStep, max_diff, ref_cells, reference};
use lstm_runtime::isa::{self, Isa};
use lstm_runtime::zoo::{LayerNorm, Lstm as LstmCell, Peephole, ScaledForget};
use lstm_runtime::{
    Call, Cell, Float, Lstm, LstmConfig, LstmGradients, OutputGrad, Parameters, linalg, lstm_cell,
};

/// Max |a − b| / max(1, |b|) over two arrays of one shape.
fn relative<D: Dimension>(a: &Array<f32, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (f64::from(a) - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

/// Shapes that reach every kernel: batch 1 over enough steps to split the units between the
/// threads, a batch of 24 whose products run packed in a duet (partial row blocks and panel
/// groups, a hidden size that is no multiple of 16), and a batch of 32 whose inference steps
/// run by rows on the two threads, a chunk at a time.
fn cases() -> Vec<(usize, usize, LstmConfig)> {
    vec![
        (351, 1, LstmConfig::new(5, 64)),
        (40, 24, LstmConfig::new(7, 72).with_bidirectional(true)),
        (20, 32, LstmConfig::new(6, 128).with_bidirectional(true)),
        (30, 9, LstmConfig::new(6, 40).with_num_layers(2)),
    ]
}

fn agree<C32, C64>(level: Isa, step_of: &dyn Fn(&C32) -> RowStep)
where
    C32: Cell<Elem = f32>,
    C64: Cell<Elem = f64>,
{
    let name = C32::SPEC.name;
    for (seed, (seq_len, batch, config)) in cases().into_iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed as u64);
        let mut single = Lstm::<C32>::new(config.clone(), &mut rng).unwrap();
        single
            .visit_parameters_mut(&mut |_, mut v| v.mapv_inplace(|_| rng.random_range(-0.4..0.4)));
        let mut double = Lstm::<C64>::new(config.clone(), &mut rng).unwrap();
        let mut values = Vec::new();
        single.visit_parameters(&mut |name, v| values.push((name.to_string(), v.mapv(f64::from))));
        double.visit_parameters_mut(&mut |name, mut v| {
            let (_, from) = values.iter().find(|(n, _)| n == name).unwrap();
            v.assign(from);
        });
        let x = Array3::from_shape_fn((seq_len, batch, config.input_size), |_| {
            rng.random_range(-1.0..1.0)
        });
        let x32 = x.mapv(|v| v as f32);
        let what = format!("{level} {name} case {seed}");

        let found = single.forward(x32.view(), Call::new()).unwrap();
        let states = config.num_layers * config.num_directions();
        let h0 = Array3::zeros((states, batch, config.output_size()));
        let c0 = Array3::zeros((states, batch, config.hidden_size));
        let cells = ref_cells(&single, step_of);
        let expected = reference(&cells, &config, &x, &RefValidity::All, &h0, &c0, None);
        let worst = max_diff(found.output.view(), expected.output.view());
        assert!(worst < 2e-4, "{what}: output differs by {worst}");

        let (output, tape) = single
            .forward_train(x32.view(), Call::new().with_training(true))
            .unwrap();
        let d_output = output.output.view().mapv(|v| (3.0 * v).sin());
        let grads = backward(&single, tape, d_output.view().into_dyn());
        let (_, tape64) = double
            .forward_train(x.view(), Call::new().with_training(true))
            .unwrap();
        let d_output64 = d_output.mapv(f64::from);
        let grads64 = backward(&double, tape64, d_output64.view().into_dyn());
        for (param, expected) in grads64.params.iter() {
            let worst = relative(grads.params.get(param).unwrap(), expected);
            assert!(worst < 2e-3, "{what}: d{param} differs by {worst}");
        }
        let worst = relative(&grads.input, &grads64.input);
        assert!(worst < 2e-3, "{what}: dx differs by {worst}");
    }
}

/// Every function the research cells brought into the spec language, in one cell.
#[lstm_cell(
    crate = "lstm_runtime",
    i = exp(logsigmoid(z_i)),
    f = sigmoid(z_f - 0.1 * stop_gradient(softplus(z_f))),
    g = tanh(silu(z_g) + 0.1 * gelu(z_g) + 0.1 * elu(z_g, alpha)),
    o = sigmoid(z_o) * pow(1.0 + abs(z_o), -0.5),
    h = o * tanh(c) + 0.1 * log(1.0 + pow(c, 2)) + 0.01 * sqrt(1.0 + abs(c))
)]
pub struct Functions {
    #[init(constant(0.7))]
    alpha: Scalar,
}

/// [`Functions`]' equations in `f64`, written from its spec with the standard library.
fn functions_step<F: Float>(cell: &Functions<F>) -> layer_reference::RowStep {
    let alpha = cell.alpha[0].to_f64_lossy();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    std::rc::Rc::new(move |pre, c_prev, _| {
        (0..pre.hidden)
            .map(|j| {
                let (zi, zf, zg, zo) = (pre.z('i', j), pre.z('f', j), pre.z('g', j), pre.z('o', j));
                let i = sigmoid(zi);
                let f = sigmoid(zf - 0.1 * zf.exp().ln_1p());
                let silu = zg * sigmoid(zg);
                let gelu = 0.5 * zg * (1.0 + libm::erf(zg / 2f64.sqrt()));
                let elu = if zg > 0.0 { zg } else { alpha * zg.exp_m1() };
                let g = (silu + 0.1 * gelu + 0.1 * elu).tanh();
                let o = sigmoid(zo) / (1.0 + zo.abs()).sqrt();
                let c = f * c_prev[j] + i * g;
                let h = o * c.tanh() + 0.1 * (1.0 + c * c).ln() + 0.01 * (1.0 + c.abs()).sqrt();
                (h, c)
            })
            .unzip()
    })
}

fn backward<C: Cell>(
    layer: &Lstm<C>,
    tape: lstm_runtime::Tape<'_, C::Elem>,
    d_output: ArrayViewD<'_, C::Elem>,
) -> LstmGradients<C::Elem> {
    let grad = OutputGrad {
        output: Some(d_output),
        ..Default::default()
    };
    layer.backward(tape, grad).unwrap()
}

#[test]
fn every_supported_level_matches_the_reference() {
    linalg::set_num_threads(2);
    for level in Isa::ALL {
        if !level.supported() {
            eprintln!("skipped: this CPU does not support {level}");
            assert!(isa::set_active(level).is_err());
            continue;
        }
        isa::set_active(level).unwrap();
        assert_eq!(isa::active(), level);
        let chunks = lstm_runtime::__private::row_split_chunks();
        agree::<LstmCell<f32>, LstmCell<f64>>(level, &|c| zoo_steps::lstm(c));
        agree::<Peephole<f32>, Peephole<f64>>(level, &|c| zoo_steps::peephole(c));
        agree::<ScaledForget<f32>, ScaledForget<f64>>(level, &|c| zoo_steps::scaled_forget(c));
        agree::<LayerNorm<f32>, LayerNorm<f64>>(level, &|c| zoo_steps::layer_norm_cell(c));
        agree::<Functions<f32>, Functions<f64>>(level, &|c| functions_step(c));
        // The steps by rows take packed products, which every level but the baseline runs.
        if level != Isa::Baseline {
            let ran = lstm_runtime::__private::row_split_chunks() - chunks;
            assert!(ran > 0, "{level}: no chunk ran by rows");
        }
    }
}
