//! Training end to end, on sizes that take a second or two: the loss really falls (below a
//! fraction of what an input-blind guess scores), a resumed run continues the uninterrupted
//! run's loss curve bit for bit in `f64`, and a run directory gets its three files.

use lstm::checkpoint::Checkpoint;
use lstm::train::{
    CHECKPOINT_FILE, LayerOptions, METRICS_FILE, PLOT_FILE, RunOptions, Start, Task, TrainConfig,
    Trainer, train_run,
};
use lstm::zoo;
use lstm::{Constraints, Regularizers};

/// The adding problem at 10 steps with a small model: learns within a few hundred steps.
fn small_adding(steps: u64) -> TrainConfig {
    TrainConfig {
        task: Task::adding(10),
        hidden_size: 16,
        batch_size: 32,
        steps,
        lr: 0.01,
        max_grad_norm: 1.0,
        seed: 0,
        eval_batches: 4,
        regularizers: Regularizers::new(),
        constraints: Constraints::new(),
        layer: LayerOptions::default(),
    }
}

/// Every regulariser inside the recurrence, and chrono initialisation.
fn regularized() -> LayerOptions {
    LayerOptions {
        input_dropout: 0.1,
        recurrent_dropout: 0.2,
        weight_drop: 0.2,
        zoneout_c: 0.1,
        zoneout_h: 0.05,
        chrono_t_max: Some(10.0),
        ..LayerOptions::default()
    }
}

fn options(dir: &std::path::Path, checkpoint_every: u64, resume: bool) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        checkpoint_every,
        start: if resume { Start::Resume } else { Start::Fresh },
        show_progress: false,
    }
}

#[test]
fn the_adding_problem_is_learned() {
    let config = small_adding(300);
    let dir = tempfile::tempdir().unwrap();
    let outcome = train_run::<zoo::Lstm<f64>>(&config, &options(dir.path(), 0, false)).unwrap();
    let metrics = &outcome.metrics;
    let baseline = config.task.baseline_loss();
    let first: f64 = outcome.losses[..20].iter().sum::<f64>() / 20.0;
    assert!(
        metrics.final_loss < first / 10.0,
        "loss fell from {first} to {} only",
        metrics.final_loss
    );
    // Far below predicting the mean: the model uses the marked values.
    assert!(metrics.final_loss < baseline / 4.0, "{metrics:?}");
    assert!(metrics.eval_loss < baseline / 4.0, "{metrics:?}");
    assert_eq!(metrics.steps, 300);
    assert_eq!(outcome.losses.len(), 300);
    for file in [CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap())
            .unwrap();
    // serde_json's parser may be an ulp off the shortest representation it printed.
    let written = json["final_loss"].as_f64().unwrap();
    assert!((written - metrics.final_loss).abs() <= 1e-15 * metrics.final_loss);
    assert_eq!(json["cell"], "lstm");
    assert!(json["wall_time_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn running_parity_is_learned_with_lengths() {
    let config = TrainConfig {
        task: Task::parity(8),
        steps: 300,
        ..small_adding(0)
    };
    let mut trainer = Trainer::<zoo::Lstm<f64>>::new(config).unwrap();
    let before = trainer.evaluate().unwrap();
    while !trainer.is_done() {
        trainer.step().unwrap();
    }
    let after = trainer.evaluate().unwrap();
    let baseline = Task::parity(8).baseline_loss();
    assert!(before.loss > baseline * 0.9, "{before:?}");
    assert!(after.loss < baseline / 10.0, "{after:?}");
    assert!(after.accuracy.unwrap() > 0.95, "{after:?}");
}

#[test]
fn a_resumed_run_continues_the_loss_curve_bit_for_bit() {
    resumes_bit_for_bit(LayerOptions::default());
}

#[test]
fn a_resumed_run_with_dropout_and_zoneout_draws_the_same_masks() {
    resumes_bit_for_bit(regularized());
}

#[test]
fn dropout_and_zoneout_act_in_training_only() {
    let config = |layer| TrainConfig {
        layer,
        ..small_adding(3)
    };
    let mut plain = Trainer::<zoo::Lstm<f64>>::new(config(LayerOptions::default())).unwrap();
    let only_dropout = LayerOptions {
        input_dropout: 0.3,
        recurrent_dropout: 0.3,
        weight_drop: 0.3,
        ..LayerOptions::default()
    };
    let mut dropped = Trainer::<zoo::Lstm<f64>>::new(config(only_dropout)).unwrap();
    // The same weights: evaluation (inference) is the undropped layer.
    assert_eq!(plain.evaluate().unwrap(), dropped.evaluate().unwrap());
    // Training draws masks: the first step's loss differs.
    assert_ne!(plain.step().unwrap().loss, dropped.step().unwrap().loss);
}

/// A run stopped half way (its last checkpoint) and resumed reproduces the uninterrupted
/// run's losses, weights and optimizer state bit for bit.
fn resumes_bit_for_bit(layer: LayerOptions) {
    let total = 40;
    let config = |steps| TrainConfig {
        layer,
        ..small_adding(steps)
    };
    let straight_dir = tempfile::tempdir().unwrap();
    let straight =
        train_run::<zoo::ForgetBias<f64>>(&config(total), &options(straight_dir.path(), 0, false))
            .unwrap();

    // The same run stopped at half way (its last checkpoint), then resumed to the end.
    let resumed_dir = tempfile::tempdir().unwrap();
    train_run::<zoo::ForgetBias<f64>>(&config(total / 2), &options(resumed_dir.path(), 7, false))
        .unwrap();
    let halfway = Checkpoint::<f64>::load(&resumed_dir.path().join(CHECKPOINT_FILE)).unwrap();
    assert_eq!(halfway.step, total / 2);
    let resumed =
        train_run::<zoo::ForgetBias<f64>>(&config(total), &options(resumed_dir.path(), 7, true))
            .unwrap();

    assert_eq!(resumed.metrics.resumed_from_step, Some(total / 2));
    let bits = |losses: &[f64]| losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.losses), bits(&straight.losses));
    let load = |dir: &std::path::Path| Checkpoint::<f64>::load(&dir.join(CHECKPOINT_FILE)).unwrap();
    let (a, b) = (load(straight_dir.path()), load(resumed_dir.path()));
    assert_eq!(a.model, b.model);
    assert_eq!(a.optimizer, b.optimizer);
    assert_eq!(
        resumed.metrics.eval_loss.to_bits(),
        straight.metrics.eval_loss.to_bits()
    );
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let losses = |seed| {
        let mut trainer = Trainer::<zoo::Lstm<f32>>::new(TrainConfig {
            seed,
            ..small_adding(5)
        })
        .unwrap();
        (0..5)
            .map(|_| trainer.step().unwrap().loss)
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(3), losses(3));
    assert_ne!(losses(3), losses(4));
}

#[test]
fn resuming_under_another_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    train_run::<zoo::Lstm<f64>>(&small_adding(2), &options(dir.path(), 0, false)).unwrap();
    let other_seed = TrainConfig {
        seed: 1,
        ..small_adding(4)
    };
    let err = train_run::<zoo::Lstm<f64>>(&other_seed, &options(dir.path(), 0, true)).unwrap_err();
    assert!(
        err.to_string().contains("seed = 0; this run has 1"),
        "{err}"
    );
    let err = train_run::<zoo::Peephole<f64>>(&small_adding(4), &options(dir.path(), 0, true))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("train.cell = lstm; this run has peephole"),
        "{err}"
    );
    let err =
        train_run::<zoo::Lstm<f32>>(&small_adding(4), &options(dir.path(), 0, true)).unwrap_err();
    assert!(err.to_string().contains("dtype F64; expected F32"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err =
        train_run::<zoo::Lstm<f64>>(&small_adding(4), &options(empty.path(), 0, true)).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn bad_configs_are_errors() {
    for (config, what) in [
        (
            TrainConfig {
                lr: 0.0,
                ..small_adding(1)
            },
            "lr",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..small_adding(1)
            },
            "batch_size",
        ),
        (
            TrainConfig {
                hidden_size: 0,
                ..small_adding(1)
            },
            "hidden_size",
        ),
        (
            TrainConfig {
                task: Task::adding(1),
                ..small_adding(1)
            },
            "seq_len",
        ),
        (
            TrainConfig {
                max_grad_norm: f64::NAN,
                ..small_adding(1)
            },
            "max_grad_norm",
        ),
    ] {
        let err = Trainer::<zoo::Lstm<f64>>::new(config).unwrap_err();
        assert!(err.to_string().contains(&format!("`{what}`")), "{err}");
    }
}
