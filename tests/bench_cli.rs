//! `lstm bench` end to end: the JSON line names the ISA level the kernels ran at, and an
//! `LSTM_ISA` that names no level is an error rather than a silent run at the detected one.

use std::process::{Command, Output};

/// A tiny layer, timed once.
const ARGS: &str = "bench --batch 1 --seq-len 2 --input-size 3 --hidden-size 4 --threads 1 \
                    --repeats 1 --json";

fn bench(isa: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lstm"))
        .args(ARGS.split_whitespace())
        .env("LSTM_ISA", isa)
        .output()
        .expect("the lstm binary runs")
}

#[test]
fn json_names_the_isa_level_it_ran_at() {
    let run = bench("baseline");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line = String::from_utf8(run.stdout).unwrap();
    assert!(line.contains("\"isa\":\"baseline\""), "{line}");
}

#[test]
fn unknown_isa_level_is_an_error() {
    let run = bench("sse9");
    assert!(!run.status.success());
    assert!(run.stdout.is_empty());
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(
        stderr.contains("LSTM_ISA") && stderr.contains("sse9"),
        "{stderr}"
    );
}
