//! Data-parallel training. Two layers:
//!
//! - In-process ranks (threads summing through shared memory, a stand-in for MPI that needs
//!   nothing installed): N ranks with the global batch split among them follow the loss curve
//!   of one process on the whole batch (`f64` to 1e-12), with regularizers and with uneven
//!   shards; every rank's weights stay bit-identical; the errors of a wrong rank count.
//! - Real MPI (`mpirun -np 2` on loopback TCP), built with `--features mpi`: the `lstm` binary
//!   with `--distributed` against one process with the same global batch (`f64` to 1e-12,
//!   `f32` within [`F32_TOLERANCE`]), ranks' weights compared bit for bit (this test binary
//!   re-run under `mpirun` as the ranks), `--resume` on the same number of ranks, and a rank
//!   killed mid-run (the other stops, the last checkpoint loads). Without the feature or
//!   without `mpirun` these print why they are skipped; `.ci/run` runs them for real.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use lstm::checkpoint::Checkpoint;
use lstm::train::{
    Collective, DistributedError, FitConfig, LayerOptions, Task, TrainConfig, Trainer, csv_windows,
    fit, fit_distributed, shard_range,
};
use lstm::zoo;
use lstm::{Constraints, Regularizer, Regularizers};

/// How far an `f32` run on 2 ranks may drift from one process on the whole batch: the sums
/// round in another order, and 30 Adam steps carry the difference along (measured: 3e-7).
const F32_TOLERANCE: f64 = 1e-5;

/// The adding problem at 10 steps with a small model, `steps` long.
fn small_adding(steps: u64, batch_size: usize) -> TrainConfig {
    TrainConfig {
        task: Task::adding(10),
        hidden_size: 8,
        batch_size,
        steps,
        lr: 0.01,
        max_grad_norm: 1.0,
        seed: 3,
        eval_batches: 2,
        regularizers: Regularizers::new(),
        constraints: Constraints::new(),
        layer: LayerOptions::default(),
    }
}

/// The largest difference between two loss curves of the same length.
fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "the curves have different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------
// In-process ranks.

/// What the threads of one group share: a slot per rank and a barrier.
struct Shared {
    barrier: Barrier,
    f32_slots: Mutex<Vec<Vec<f32>>>,
    f64_slots: Mutex<Vec<Vec<f64>>>,
    bytes: Mutex<Vec<u8>>,
}

/// One rank of a group of threads: sums go through shared memory, in rank order, so every
/// rank computes the same sum (as an MPI all-reduce gives every rank the same result).
struct ThreadRank {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

/// `size` ranks for `size` threads.
fn thread_group(size: usize) -> Vec<ThreadRank> {
    let shared = Arc::new(Shared {
        barrier: Barrier::new(size),
        f32_slots: Mutex::new(vec![Vec::new(); size]),
        f64_slots: Mutex::new(vec![Vec::new(); size]),
        bytes: Mutex::new(Vec::new()),
    });
    (0..size)
        .map(|rank| ThreadRank {
            rank,
            size,
            shared: Arc::clone(&shared),
        })
        .collect()
}

impl ThreadRank {
    fn sum<T: Copy + std::ops::Add<Output = T>>(
        &self,
        slots: &Mutex<Vec<Vec<T>>>,
        values: &mut [T],
    ) {
        slots.lock().unwrap()[self.rank] = values.to_vec();
        self.shared.barrier.wait();
        {
            let slots = slots.lock().unwrap();
            for (index, value) in values.iter_mut().enumerate() {
                let mut total = slots[0][index];
                for slot in &slots[1..] {
                    total = total + slot[index];
                }
                *value = total;
            }
        }
        // Nobody writes the next sum's slot before everyone has read this one.
        self.shared.barrier.wait();
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<(), DistributedError> {
        self.sum(&self.shared.f32_slots, values);
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<(), DistributedError> {
        self.sum(&self.shared.f64_slots, values);
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), DistributedError> {
        if self.rank == 0 {
            *self.shared.bytes.lock().unwrap() = bytes.clone();
        }
        self.shared.barrier.wait();
        if self.rank != 0 {
            *bytes = self.shared.bytes.lock().unwrap().clone();
        }
        self.shared.barrier.wait();
        Ok(())
    }
}

/// Trains `config` on `ranks` in-process ranks; every rank's loss curve and final checkpoint.
fn train_on_threads(config: &TrainConfig, ranks: usize) -> Vec<(Vec<f64>, Checkpoint<f64>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = thread_group(ranks)
            .into_iter()
            .map(|rank| {
                scope.spawn(move || {
                    let mut trainer =
                        Trainer::<zoo::Lstm<f64>>::new_distributed(config.clone(), &rank).unwrap();
                    while !trainer.is_done() {
                        trainer.step_distributed(&rank).unwrap();
                    }
                    (trainer.losses().to_vec(), trainer.checkpoint())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The loss curve of one process on the whole batch.
fn train_alone(config: &TrainConfig) -> Vec<f64> {
    let mut trainer = Trainer::<zoo::Lstm<f64>>::new(config.clone()).unwrap();
    while !trainer.is_done() {
        trainer.step().unwrap();
    }
    trainer.losses().to_vec()
}

/// Every rank's weights, bit for bit, are rank 0's.
fn assert_same_weights(checkpoints: &[&Checkpoint<f64>]) {
    let bits = |checkpoint: &Checkpoint<f64>| -> Vec<(String, Vec<u64>)> {
        checkpoint
            .model
            .iter()
            .map(|(name, values)| (name.clone(), values.iter().map(|v| v.to_bits()).collect()))
            .collect()
    };
    let first = bits(checkpoints[0]);
    assert!(!first.is_empty());
    for (rank, checkpoint) in checkpoints.iter().enumerate().skip(1) {
        assert!(
            bits(checkpoint) == first,
            "rank {rank}'s weights differ from rank 0's"
        );
    }
}

#[test]
fn ranks_follow_one_process_on_the_whole_batch() {
    // 16 sequences over 2 ranks (8 each) and over 3 (6, 5, 5: uneven shards).
    let config = small_adding(25, 16);
    let alone = train_alone(&config);
    for ranks in [2, 3] {
        let runs = train_on_threads(&config, ranks);
        for (losses, _) in &runs {
            let difference = max_difference(losses, &alone);
            eprintln!("{ranks} in-process ranks: largest loss difference {difference:e}");
            assert!(difference < 1e-12, "{ranks} ranks: {difference}");
        }
        // A curve that would pass by accident, e.g. one that did not train, is not one.
        assert!(alone[24] < alone[0]);
        assert_same_weights(&runs.iter().map(|(_, c)| c).collect::<Vec<_>>());
    }
}

#[test]
fn parity_shards_weigh_by_their_steps_and_penalties_are_added_once() {
    // Parity's loss averages over valid steps, which the shards hold unequal numbers of; the
    // weight penalties belong to the weights (added once, after the sum) and the activity
    // penalty to the sequences.
    let regularizers = Regularizers::new()
        .with_kernel(Regularizer::L2 { l2: 0.01 })
        .with_recurrent(Regularizer::L1 { l1: 0.001 })
        .with_activity(Regularizer::L2 { l2: 0.02 });
    let config = TrainConfig {
        task: Task::parity(8),
        regularizers,
        ..small_adding(15, 12)
    };
    let alone = train_alone(&config);
    let runs = train_on_threads(&config, 2);
    let difference = max_difference(&runs[0].0, &alone);
    assert!(difference < 1e-12, "{difference}");
    assert_same_weights(&[&runs[0].1, &runs[1].1]);
}

#[test]
fn dropout_masks_differ_by_rank_but_weights_stay_identical() {
    let config = TrainConfig {
        layer: LayerOptions {
            input_dropout: 0.2,
            recurrent_dropout: 0.2,
            zoneout_h: 0.1,
            ..LayerOptions::default()
        },
        ..small_adding(10, 8)
    };
    let runs = train_on_threads(&config, 2);
    assert_same_weights(&[&runs[0].1, &runs[1].1]);
    // Rank 0 keeps one process' masks for its half; rank 1 draws its own, so the curve is
    // not one process' (whose masks span the whole batch).
    let alone = train_alone(&config);
    assert!(max_difference(&runs[0].0, &alone) > 1e-9);
}

#[test]
fn wrong_rank_counts_are_errors() {
    let ranks = thread_group(3);
    let err =
        Trainer::<zoo::Lstm<f64>>::new_distributed(small_adding(1, 2), &ranks[0]).unwrap_err();
    assert!(
        matches!(
            err,
            DistributedError::BatchTooSmall {
                batch_size: 2,
                ranks: 3
            }
        ),
        "{err}"
    );

    // A checkpoint of 2 ranks does not resume on 3, nor on one process.
    let config = small_adding(2, 6);
    let runs = train_on_threads(&config, 2);
    let checkpoint = &runs[0].1;
    let err = Trainer::<zoo::Lstm<f64>>::resume_distributed(config.clone(), checkpoint, &ranks[0])
        .unwrap_err();
    assert!(
        err.to_string().contains("train.ranks = 2; this run has 3"),
        "{err}"
    );
    let err = Trainer::<zoo::Lstm<f64>>::resume(config, checkpoint).unwrap_err();
    assert!(
        err.to_string().contains("train.ranks = 2; this run has 1"),
        "{err}"
    );
    assert_eq!(shard_range(6, 2, 1), 3..6);
}

/// A sine series of 80 points as a CSV file in `dir`, column `level`: 70 windows of 10.
fn sine_csv(dir: &Path) -> PathBuf {
    let csv = dir.join("series.csv");
    let mut text = String::from("t,level\n");
    for t in 0..80 {
        text.push_str(&format!("{t},{}\n", (t as f64 * 0.3).sin()));
    }
    std::fs::write(&csv, text).unwrap();
    csv
}

#[test]
fn a_fit_on_ranks_follows_one_process_epoch_by_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let data = csv_windows::<f64>(&sine_csv(dir.path()), "level", 10, 1).unwrap();
    let (train, validation) = data.split(0.2, 1).unwrap();
    // 56 training windows in batches of 16: the last batch has 8, split unevenly on 3 ranks.
    let config = FitConfig {
        hidden_size: 8,
        epochs: 3,
        batch_size: 16,
        ..FitConfig::default()
    };
    let epochs = |fitted: &lstm::train::Fitted<zoo::Lstm<f64>>| -> Vec<f64> {
        let figures = fitted.epochs.iter();
        figures
            .flat_map(|e| [e.train_loss, e.val_loss.unwrap()])
            .collect()
    };
    let alone =
        fit::<zoo::Lstm<f64>, lstm::Error>(&config, &train, Some(&validation), None, |_| Ok(()))
            .unwrap();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = thread_group(3)
            .into_iter()
            .map(|rank| {
                let (config, train, validation) = (&config, &train, &validation);
                scope.spawn(move || {
                    fit_distributed::<zoo::Lstm<f64>, DistributedError>(
                        config,
                        train,
                        Some(validation),
                        None,
                        &rank,
                        |_| Ok(()),
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for fitted in &runs {
        let difference = max_difference(&epochs(fitted), &epochs(&alone));
        eprintln!("3 in-process ranks, data run: largest loss difference {difference:e}");
        assert!(difference < 1e-12, "{difference}");
    }
    assert_same_weights(&runs.iter().map(|fitted| &fitted.last).collect::<Vec<_>>());
    // Batches smaller than the ranks cannot be split.
    let tiny = FitConfig {
        batch_size: 2,
        ..config
    };
    let ranks = thread_group(3);
    let err = fit_distributed::<zoo::Lstm<f64>, DistributedError>(
        &tiny,
        &train,
        None,
        None,
        &ranks[0],
        |_| Ok(()),
    )
    .unwrap_err();
    assert!(
        matches!(err, DistributedError::BatchTooSmall { ranks: 3, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Real MPI.

/// Why the MPI tests cannot run here, if they cannot.
fn mpi_missing() -> Option<String> {
    if !cfg!(feature = "mpi") {
        return Some(
            "built without the `mpi` feature (cargo test --features mpi --test distributed)".into(),
        );
    }
    if mpirun().is_none() {
        return Some(
            "no `mpirun` on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)".into(),
        );
    }
    None
}

/// `true` if the MPI tests can run; otherwise prints why the calling test is skipped.
fn mpi_available(test: &str) -> bool {
    match mpi_missing() {
        Some(reason) => {
            eprintln!("skipped {test}: {reason}");
            false
        }
        None => true,
    }
}

/// `mpirun` on PATH.
fn mpirun() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("mpirun"))
        .find(|candidate| candidate.is_file())
}

/// `mpirun -np <ranks>` on this machine, the ranks talking over loopback TCP as they would
/// between machines. The Open MPI settings (running as root in CI, more ranks than cores,
/// loopback only) are environment variables, which MPICH ignores.
fn mpirun_command(ranks: usize) -> Command {
    let mut command = Command::new(mpirun().expect("mpirun is on PATH"));
    command
        .args(["-np", &ranks.to_string()])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("OMPI_MCA_pml", "ob1")
        .env("OMPI_MCA_btl", "self,tcp")
        .env("OMPI_MCA_btl_tcp_if_include", "lo")
        .env("OMPI_MCA_oob_tcp_if_include", "lo");
    command
}

/// The tiny run of the CLI tests: a small model on 16 sequences a step (`--steps` apart).
const RUN: &[&str] = &[
    "train",
    "--quiet",
    "--hidden",
    "8",
    "--batch",
    "16",
    "--seq-len",
    "10",
    "--seed",
    "5",
    "--threads",
    "1",
];

/// `lstm` with `args`, on one process.
fn lstm_alone(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the lstm binary runs")
}

/// `mpirun -np <ranks> lstm <args> --distributed`.
fn lstm_distributed(ranks: usize, args: &[&str], out: &Path) -> Output {
    mpirun_command(ranks)
        .arg(env!("CARGO_BIN_EXE_lstm"))
        .args(args)
        .arg("--distributed")
        .arg("--out")
        .arg(out)
        .output()
        .expect("mpirun runs")
}

/// Panics with the output of a run that failed.
fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The loss curve in a run directory's checkpoint.
fn losses<F: lstm::Float>(dir: &Path) -> Vec<f64> {
    let checkpoint = Checkpoint::<F>::load(&dir.join("checkpoint.safetensors")).unwrap();
    checkpoint.history["loss"].clone()
}

#[test]
fn two_ranks_under_mpirun_follow_one_process_on_the_whole_batch() {
    if !mpi_available("two_ranks_under_mpirun_follow_one_process_on_the_whole_batch") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (precision, tolerance) in [("f64", 1e-12), ("f32", F32_TOLERANCE)] {
        for task in ["adding", "parity"] {
            let args: Vec<&str> = RUN
                .iter()
                .copied()
                .chain(["--steps", "30", "--precision", precision, "--task", task])
                .collect();
            let alone = dir.path().join(format!("{task}-{precision}-alone"));
            let two = dir.path().join(format!("{task}-{precision}-two"));
            assert_success(&lstm_alone(&args, &alone), "one process");
            let output = lstm_distributed(2, &args, &two);
            assert_success(&output, "mpirun -np 2");
            let (alone, two_ranks) = if precision == "f64" {
                (losses::<f64>(&alone), losses::<f64>(&two))
            } else {
                (losses::<f32>(&alone), losses::<f32>(&two))
            };
            assert_eq!(two_ranks.len(), 30);
            let difference = max_difference(&two_ranks, &alone);
            eprintln!("{task} {precision}: largest loss difference {difference:e}");
            assert!(difference < tolerance, "{task} {precision}: {difference}");
            // One summary line: rank 0's.
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(stdout.matches("wrote").count(), 1, "{stdout}");
            let metrics = std::fs::read_to_string(
                dir.path()
                    .join(format!("{task}-{precision}-two/metrics.json")),
            )
            .unwrap();
            assert!(metrics.contains("\"ranks\": 2"), "{metrics}");
        }
    }
}

#[test]
fn a_distributed_run_resumes_on_the_same_ranks_as_if_uninterrupted() {
    if !mpi_available("a_distributed_run_resumes_on_the_same_ranks_as_if_uninterrupted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = |steps: &'static str| -> Vec<&str> {
        RUN.iter()
            .copied()
            .chain(["--precision", "f64", "--steps", steps])
            .collect()
    };
    let whole = dir.path().join("whole");
    assert_success(&lstm_distributed(2, &args("30"), &whole), "the whole run");
    let split = dir.path().join("split");
    assert_success(&lstm_distributed(2, &args("12"), &split), "the first part");
    let rest: Vec<&str> = args("30").into_iter().chain(["--resume"]).collect();
    assert_success(&lstm_distributed(2, &rest, &split), "the resumed part");
    assert_eq!(losses::<f64>(&split), losses::<f64>(&whole));

    // On another number of ranks (here one process) the resume is refused, naming why.
    let output = lstm_alone(&rest, &split);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("train.ranks = 2; this run has 1"),
        "{stderr}"
    );
}

/// Without the feature, `--distributed` is an error that says how to get it.
#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_without_the_feature_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = RUN
        .iter()
        .copied()
        .chain(["--steps", "1", "--distributed"])
        .collect();
    let output = lstm_alone(&args, &dir.path().join("run"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--features mpi"), "{stderr}");
    assert!(!dir.path().join("run").exists(), "nothing is written");
}

#[test]
fn a_data_run_under_mpirun_follows_one_process_and_resumes() {
    if !mpi_available("a_data_run_under_mpirun_follows_one_process_and_resumes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = sine_csv(dir.path());
    let csv = csv.to_str().unwrap();
    let args = |epochs: &'static str| -> Vec<&str> {
        vec![
            "train",
            "--quiet",
            "--csv",
            csv,
            "--column",
            "level",
            "--window",
            "10",
            "--val-fraction",
            "0.2",
            "--hidden",
            "8",
            "--batch",
            "16",
            "--precision",
            "f64",
            "--threads",
            "1",
            "--epochs",
            epochs,
        ]
    };
    let history = |run: &Path| -> Vec<f64> {
        let text = std::fs::read_to_string(run.join("metrics.json")).unwrap();
        let metrics: serde_json::Value = serde_json::from_str(&text).unwrap();
        let epochs = metrics["history"].as_array().unwrap();
        epochs
            .iter()
            .flat_map(|e| {
                [
                    e["train_loss"].as_f64().unwrap(),
                    e["val_loss"].as_f64().unwrap(),
                ]
            })
            .collect()
    };
    let alone = dir.path().join("alone");
    assert_success(&lstm_alone(&args("3"), &alone), "one process");
    let two = dir.path().join("two");
    assert_success(&lstm_distributed(2, &args("3"), &two), "mpirun -np 2");
    let difference = max_difference(&history(&two), &history(&alone));
    eprintln!("data run f64: largest loss difference {difference:e}");
    assert!(difference < 1e-12, "{difference}");
    // Two epochs, then the third resumed on 2 ranks: the same course as the whole run.
    let split = dir.path().join("split");
    assert_success(&lstm_distributed(2, &args("2"), &split), "the first epochs");
    let resumed: Vec<&str> = args("3").into_iter().chain(["--resume"]).collect();
    assert_success(&lstm_distributed(2, &resumed, &split), "the resumed epoch");
    assert_eq!(history(&split), history(&two));
}

/// The environment variable that makes this test binary one rank of
/// [`each_rank_holds_bit_identical_weights`]: the directory to write its checkpoint into.
const RANK_DIR: &str = "LSTM_TEST_RANK_DIR";

#[test]
fn each_rank_holds_bit_identical_weights() {
    if !mpi_available("each_rank_holds_bit_identical_weights") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = mpirun_command(2)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "rank_of_each_rank_holds_bit_identical_weights",
            "--ignored",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env(RANK_DIR, dir.path())
        .output()
        .expect("mpirun runs");
    assert_success(&output, "the ranks");
    let load = |rank: usize| {
        Checkpoint::<f64>::load(&dir.path().join(format!("rank{rank}.safetensors"))).unwrap()
    };
    let (first, second) = (load(0), load(1));
    assert_eq!(first.step, 20);
    assert_same_weights(&[&first, &second]);
    // And the optimizer state, which shapes every later step.
    assert!(
        first.optimizer == second.optimizer,
        "the ranks' Adam states differ"
    );
}

/// One rank of [`each_rank_holds_bit_identical_weights`], which runs it under `mpirun`: 20
/// steps with dropout (each rank draws its own masks), then this rank's checkpoint into the
/// directory of `LSTM_TEST_RANK_DIR`.
#[test]
#[ignore = "a rank of each_rank_holds_bit_identical_weights, which runs it under mpirun"]
fn rank_of_each_rank_holds_bit_identical_weights() {
    #[cfg(feature = "mpi")]
    {
        let dir = std::env::var_os(RANK_DIR)
            .expect("run by each_rank_holds_bit_identical_weights, which sets LSTM_TEST_RANK_DIR");
        let world = lstm::train::MpiWorld::init().unwrap();
        let config = TrainConfig {
            layer: LayerOptions {
                input_dropout: 0.2,
                zoneout_c: 0.1,
                ..LayerOptions::default()
            },
            ..small_adding(20, 16)
        };
        let mut trainer = Trainer::<zoo::Lstm<f64>>::new_distributed(config, &world).unwrap();
        while !trainer.is_done() {
            trainer.step_distributed(&world).unwrap();
        }
        let path = Path::new(&dir).join(format!("rank{}.safetensors", world.rank()));
        trainer.checkpoint().save(&path).unwrap();
    }
    #[cfg(not(feature = "mpi"))]
    panic!("a rank needs the `mpi` feature");
}

#[test]
fn a_killed_rank_stops_the_run_and_leaves_a_loadable_checkpoint() {
    if !mpi_available("a_killed_rank_stops_the_run_and_leaves_a_loadable_checkpoint") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = mpirun_command(2)
        .arg(env!("CARGO_BIN_EXE_lstm"))
        .args([
            "train",
            "--quiet",
            "--distributed",
            "--threads",
            "1",
            "--hidden",
            "8",
        ])
        .args(["--batch", "8", "--seq-len", "10", "--steps", "10000000"])
        .args(["--checkpoint-every", "5", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun runs");
    let checkpoint = out.join("checkpoint.safetensors");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !checkpoint.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let victim = rank_process(child.id(), 1).expect("rank 1 is a process under mpirun");
    let killed = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The other rank must not wait forever in its all-reduce.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the run still runs 60 s after a rank was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("mpirun after rank 1 was killed:\n{stderr}");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("signal 9") || stderr.contains("Killed") || stderr.contains("KILLED"),
        "{stderr}"
    );
    // The checkpoint is whole: it loads, and a run resumes from it on 2 ranks.
    let loaded = Checkpoint::<f32>::load(&checkpoint).unwrap();
    assert!(
        loaded.step >= 5 && loaded.step.is_multiple_of(5),
        "step {}",
        loaded.step
    );
    let steps = (loaded.step + 5).to_string();
    let args = [
        "train",
        "--quiet",
        "--threads",
        "1",
        "--hidden",
        "8",
        "--batch",
        "8",
        "--seq-len",
        "10",
        "--steps",
        &steps,
        "--checkpoint-every",
        "5",
        "--resume",
    ];
    assert_success(&lstm_distributed(2, &args, &out), "the resumed run");
}

/// The process id of rank `rank` among the descendants of `mpirun_pid` (Open MPI tells a
/// rank its number in `OMPI_COMM_WORLD_RANK`, MPICH in `PMI_RANK`).
fn rank_process(mpirun_pid: u32, rank: usize) -> Option<u32> {
    let wanted = [
        format!("OMPI_COMM_WORLD_RANK={rank}"),
        format!("PMI_RANK={rank}"),
    ];
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command's name in parentheses: state, then the parent's id.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(1)?.parse().ok()
    };
    let descends = |mut pid: u32| {
        while let Some(parent) = parent_of(pid) {
            if parent == mpirun_pid {
                return true;
            }
            if parent <= 1 {
                return false;
            }
            pid = parent;
        }
        false
    };
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| descends(pid))
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&byte| byte == 0)
                    .any(|var| wanted.iter().any(|w| var == w.as_bytes()))
            })
        })
}
