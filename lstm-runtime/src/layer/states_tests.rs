//! Tests of the states a cell carries besides `h`: the sLSTM's `n` and `m` and the GRU's
//! `h` alone, through calls (initial and final states by name, errors naming what is wrong),
//! masked steps, and the finite-difference gradcheck of every initial state.

use ndarray::{Array2, Array3, ArrayView3, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Error;
use crate::layer::Lstm;
use crate::layer::call::{Call, OutputGrad};
use crate::layer::config::LstmConfig;
use crate::layer::gradcheck::{GradcheckOptions, gradcheck};
use crate::parallel::threads::with_threads;
use crate::zoo::{Gru, Slstm};

fn random(rng: &mut ChaCha8Rng, shape: (usize, usize, usize)) -> Array3<f64> {
    Array3::from_shape_fn(shape, |_| rng.random_range(-1.0..1.0))
}

fn slstm(config: LstmConfig) -> Lstm<Slstm<f64>> {
    Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(3)).unwrap()
}

#[test]
fn slstm_returns_and_takes_its_states_by_name() {
    let config = LstmConfig::new(3, 4).with_num_layers(2);
    let mut layer = slstm(config);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = random(&mut rng, (6, 2, 3));
    let out = layer.forward(x.view(), Call::new()).unwrap();
    let names: Vec<&str> = out.states.keys().map(String::as_str).collect();
    assert_eq!(names, ["m", "n"]);
    assert_eq!(out.states["n"].dim(), (2, 2, 4));
    assert_eq!(out.c_n.as_ref().unwrap().dim(), (2, 2, 4));
    // n sums positive input gates: never zero after a step.
    assert!(out.states["n"].iter().all(|n| *n > 0.0));

    // Running the second half from the first half's final states continues the sequence.
    let first = layer
        .forward(x.slice(s![..3, .., ..]), Call::new())
        .unwrap();
    let (h, c) = (first.h_n.unwrap(), first.c_n.unwrap());
    let extra = [
        ("n", first.states["n"].view()),
        ("m", first.states["m"].view()),
    ];
    let second = layer
        .forward(
            x.slice(s![3.., .., ..]),
            Call::new()
                .with_initial_state(h.view(), c.view())
                .with_initial_states(&extra),
        )
        .unwrap();
    let whole = out.output.sequence().unwrap();
    let tail = second.output.sequence().unwrap();
    let diff = (&whole.slice(s![3.., .., ..]) - tail).mapv(f64::abs);
    assert!(diff.iter().all(|d| *d < 1e-12), "{diff}");
    for name in ["n", "m"] {
        let diff = (&out.states[name] - &second.states[name]).mapv(f64::abs);
        assert!(diff.iter().all(|d| *d < 1e-12), "{name}: {diff}");
    }
}

#[test]
fn masked_steps_carry_every_state() {
    let mut layer = slstm(LstmConfig::new(3, 4));
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = random(&mut rng, (5, 2, 3));
    let short = layer
        .forward(x.slice(s![..2, .., ..]), Call::new())
        .unwrap();
    let lengths = [2, 2];
    let padded = layer
        .forward(x.view(), Call::new().with_lengths(&lengths))
        .unwrap();
    for name in ["n", "m"] {
        assert_eq!(short.states[name], padded.states[name], "{name}");
    }
    assert_eq!(short.c_n, padded.c_n);
}

#[test]
fn states_the_cell_does_not_carry_are_errors_naming_them() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = random(&mut rng, (3, 2, 3));
    let zeros = Array3::<f64>::zeros((1, 2, 4));
    let mut layer = slstm(LstmConfig::new(3, 4));
    let unknown = [("q", zeros.view())];
    let err = layer
        .forward(x.view(), Call::new().with_initial_states(&unknown))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "initial state q"),
        "{err}"
    );
    let wrong = Array3::<f64>::zeros((1, 2, 5));
    let misshaped = [("n", wrong.view())];
    let err = layer
        .forward(x.view(), Call::new().with_initial_states(&misshaped))
        .unwrap_err();
    assert!(err.to_string().contains("initial state n"), "{err}");
    let both = Call::new()
        .with_initial_state(zeros.view(), zeros.view())
        .with_h0(zeros.view());
    let err = layer.forward(x.view(), both).unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "h0"),
        "{err}"
    );

    let mut gru: Lstm<Gru<f64>> = Lstm::new(LstmConfig::new(3, 4), &mut rng).unwrap();
    let err = gru
        .forward(
            x.view(),
            Call::new().with_initial_state(zeros.view(), zeros.view()),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "c0"),
        "{err}"
    );
    let out = gru
        .forward(x.view(), Call::new().with_h0(zeros.view()))
        .unwrap();
    assert!(out.c_n.is_none() && out.states.is_empty());
    let err = Lstm::<Slstm<f64>>::new(LstmConfig::new(3, 4).with_zoneout(0.1, 0.0), &mut rng)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { option, .. } if option == "zoneout_c"),
        "{err}"
    );
}

#[test]
fn gradcheck_of_every_initial_state_and_parameter() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let config = LstmConfig::new(3, 4)
        .with_num_layers(2)
        .with_bidirectional(true);
    let layer = slstm(config);
    let x = random(&mut rng, (4, 2, 3));
    let (h0, c0) = (random(&mut rng, (4, 2, 4)), random(&mut rng, (4, 2, 4)));
    // n starts positive, as a sum of input gates is.
    let n0 = random(&mut rng, (4, 2, 4)).mapv(|v| 1.0 + 0.5 * v);
    let m0 = random(&mut rng, (4, 2, 4));
    let extra = [("n", n0.view()), ("m", m0.view())];
    let lengths = [4, 2];
    let call = Call::new()
        .with_lengths(&lengths)
        .with_initial_state(h0.view(), c0.view())
        .with_initial_states(&extra);
    let report = gradcheck(&layer, x.view(), call, &GradcheckOptions::default()).unwrap();
    for name in ["h0", "c0", "n0", "m0", "input", "weight_hh_l1_reverse"] {
        assert!(report.entry(name).is_some(), "{name} checked\n{report}");
    }
    assert!(report.worst_relative_error() < 1e-6, "{report}");

    let gru: Lstm<Gru<f64>> = Lstm::new(LstmConfig::new(3, 4), &mut rng).unwrap();
    let h0 = random(&mut rng, (1, 2, 4));
    let call = Call::new().with_h0(h0.view());
    let report = gradcheck(&gru, x.view(), call, &GradcheckOptions::default()).unwrap();
    assert!(report.entry("c0").is_none(), "{report}");
    assert!(report.worst_relative_error() < 1e-6, "{report}");
}

#[test]
fn n_and_m_can_be_recorded_at_every_step() {
    let mut layer = slstm(LstmConfig::new(3, 4));
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = random(&mut rng, (5, 2, 3));
    let out = layer
        .forward(x.view(), Call::new().with_record(&["n", "m", "c"]))
        .unwrap();
    let n: Array2<f64> = out.records["n_l0"].index_axis(Axis(0), 4).to_owned();
    assert_eq!(n, out.states["n"].index_axis(Axis(0), 0));
}

/// A final state's seed, as `OutputGrad::states` takes it.
type Seed<'a> = (&'a str, ArrayView3<'a, f64>);

/// `OutputGrad::states` seeds the final states by name: `c` named there is `c_n`, a name the
/// cell does not carry, a misshaped seed and a state seeded twice are errors naming the seed;
/// a call split by batch rows cuts the seeds as the rest (the gradcheck above weights `n_n`
/// and `m_n` in its loss, so their seeds are checked against finite differences there).
#[test]
fn final_states_are_seeded_by_name() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let mut layer = slstm(LstmConfig::new(3, 4));
    let x = random(&mut rng, (5, 2, 3));
    let (d_c, d_n) = (random(&mut rng, (1, 2, 4)), random(&mut rng, (1, 2, 4)));
    let backward = |layer: &mut Lstm<Slstm<f64>>, grad: OutputGrad<'_, f64>| {
        let (_, tape) = layer.forward_train(x.view(), Call::new()).unwrap();
        layer.backward(tape, grad)
    };
    let by_c_n = backward(
        &mut layer,
        OutputGrad {
            c_n: Some(d_c.view()),
            states: &[("n", d_n.view())],
            ..OutputGrad::default()
        },
    )
    .unwrap();
    let by_name = backward(
        &mut layer,
        OutputGrad {
            states: &[("n", d_n.view()), ("c", d_c.view())],
            ..OutputGrad::default()
        },
    )
    .unwrap();
    assert_eq!(by_c_n, by_name);
    let n_alone = backward(
        &mut layer,
        OutputGrad {
            states: &[("n", d_n.view())],
            ..OutputGrad::default()
        },
    )
    .unwrap();
    assert!(
        n_alone
            .params
            .iter()
            .any(|(_, g)| g.iter().any(|v| *v != 0.0))
    );

    let zeros = Array3::<f64>::zeros((1, 2, 4));
    let misshaped = Array3::<f64>::zeros((1, 3, 4));
    let cases: [(&[Seed<'_>], bool, &str); 4] = [
        (&[("q", zeros.view())], false, "grad q_n"),
        (&[("n", misshaped.view())], false, "grad n_n"),
        (&[("c", zeros.view())], true, "grad c_n"),
        (
            &[("m", zeros.view()), ("m", zeros.view())],
            false,
            "grad m_n",
        ),
    ];
    for (states, with_c_n, named) in cases {
        let grad = OutputGrad {
            c_n: with_c_n.then(|| zeros.view()),
            states,
            ..OutputGrad::default()
        };
        let err = backward(&mut layer, grad).unwrap_err();
        assert!(err.to_string().contains(named), "{named}: {err}");
    }

    // Enough rows and work for a training call to split by rows on two threads.
    let mut layer = slstm(LstmConfig::new(3, 32));
    let x = random(&mut rng, (64, 64, 3));
    let seeds = [random(&mut rng, (1, 64, 32)), random(&mut rng, (1, 64, 32))];
    let states = [("n", seeds[0].view()), ("m", seeds[1].view())];
    let [split, whole] = [2, 1].map(|threads| {
        with_threads(threads, || {
            let (_, tape) = layer.forward_train(x.view(), Call::new()).unwrap();
            assert_eq!(tape.halves.is_some(), threads == 2);
            let grad = OutputGrad {
                states: &states,
                ..OutputGrad::default()
            };
            layer.backward(tape, grad).unwrap()
        })
    });
    for (name, values) in whole.params.iter() {
        let other = split.params.get(name).unwrap();
        let worst = (values - other).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(worst < 1e-10, "{name}: {worst}");
    }
}
