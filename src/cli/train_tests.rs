//! Tests of `lstm train`'s arguments: what each flag sets in the run's config.

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

fn parse(args: &[&str]) -> TrainArgs {
    let mut argv = vec!["lstm", "train"];
    argv.extend_from_slice(args);
    match Cli::parse_from(argv).command {
        Some(Command::Train(args)) => *args,
        other => panic!("expected train, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_train_config_defaults() {
    let args = parse(&[]);
    assert_eq!(TrainArgs::defaults(), args);
    assert_eq!(args.config(), TrainConfig::default());
    assert_eq!(args.cell, "lstm");
    assert_eq!(
        args.out_dir(&args.config()),
        PathBuf::from("runs/adding-lstm")
    );
    assert_eq!(args.precision, Precision::F32);
}

#[test]
fn the_documented_flags_parse() {
    let args = parse(&[
        "--task",
        "adding",
        "--cell",
        "peephole",
        "--steps",
        "300",
        "--seed",
        "7",
        "--out",
        "somewhere",
    ]);
    let config = args.config();
    assert_eq!((config.steps, config.seed), (300, 7));
    assert_eq!(args.cell, "peephole");
    assert_eq!(args.out_dir(&config), PathBuf::from("somewhere"));

    let args = parse(&[
        "--compare",
        "lstm,forget_bias,scaled_forget",
        "--task",
        "parity",
    ]);
    assert_eq!(args.compare, ["lstm", "forget_bias", "scaled_forget"]);
    assert_eq!(args.config().task, Task::parity(PARITY_DEFAULT_LEN));
    assert_eq!(
        args.out_dir(&args.config()),
        PathBuf::from("runs/parity-compare")
    );

    let args = parse(&[
        "--lr",
        "0.003",
        "--batch",
        "8",
        "--hidden",
        "16",
        "--seq-len",
        "30",
        "--max-grad-norm",
        "5",
        "--precision",
        "f64",
        "--resume",
        "--quiet",
        "--dropout",
        "0.1",
        "--recurrent-dropout",
        "0.2",
        "--weight-drop",
        "0.3",
        "--zoneout-c",
        "0.4",
        "--zoneout-h",
        "0.5",
        "--chrono",
        "100",
        "--init",
        "flax",
        "--heads",
        "2",
    ]);
    let config = args.config();
    assert_eq!(
        config.layer,
        LayerOptions {
            input_dropout: 0.1,
            recurrent_dropout: 0.2,
            weight_drop: 0.3,
            zoneout_c: 0.4,
            zoneout_h: 0.5,
            chrono_t_max: Some(100.0),
            init: Framework::Flax,
            heads: 2,
        }
    );
    assert_eq!(config.lr, 0.003);
    assert_eq!((config.batch_size, config.hidden_size), (8, 16));
    assert_eq!(config.task, Task::adding(30));
    assert_eq!(config.max_grad_norm, 5.0);
    assert!(args.resume && args.quiet);
    assert_eq!(args.start(), Start::Resume);
    assert_eq!(parse(&["--overwrite"]).start(), Start::Overwrite);
    assert_eq!(parse(&[]).start(), Start::Fresh);
    let argv = ["lstm", "train", "--resume", "--overwrite"];
    assert!(Cli::try_parse_from(argv).is_err());
}

#[test]
fn cell_and_compare_exclude_each_other() {
    let argv = ["lstm", "train", "--cell", "lstm", "--compare", "lstm,cifg"];
    assert!(Cli::try_parse_from(argv).is_err());
    assert!(Cli::try_parse_from(["lstm", "train", "--task", "copy"]).is_err());
}

#[test]
fn unknown_cells_are_errors_naming_the_zoo() {
    let config = TrainConfig {
        steps: 1,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out_dir: dir.path().to_path_buf(),
        checkpoint_every: 0,
        start: Start::Fresh,
        show_progress: false,
    };
    let err = train_named(&Catalog::zoo(), "mgu", Precision::F32, &config, &options).unwrap_err();
    assert!(err.to_string().contains("no cell is called `mgu`"), "{err}");
}
