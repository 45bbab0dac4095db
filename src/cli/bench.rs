//! `lstm bench`: median wall time of a layer's inference forward pass and of a training
//! forward plus full backward pass (every gradient), in `f32`, for any zoo cell.
//!
//! Timing lives here and in criterion benches only; tests never assert on time.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use lstm::ndarray::{Array3, ArrayD};
use lstm::rand::{Rng, SeedableRng};
use lstm::{Call, Cell, CellVisitor, Lstm, LstmConfig, OutputGrad, linalg};
use rand_chacha::ChaCha8Rng;

use super::Error;
use super::catalog::Catalog;
use super::memory::Counting;
use super::regularization::RegularizationArgs;

/// Arguments of `lstm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch size B.
    #[arg(long)]
    pub batch: usize,
    /// Sequence length T.
    #[arg(long)]
    pub seq_len: usize,
    /// Input features I.
    #[arg(long)]
    pub input_size: usize,
    /// Hidden units H.
    #[arg(long)]
    pub hidden_size: usize,
    /// Zoo cell, by its `lstm cells` name.
    #[arg(long, default_value = "lstm")]
    pub cell: String,
    /// Stacked layers.
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Heads K of a block-diagonal recurrence (`weight_hh` is `(gates·H, H/K)`; 1 is dense).
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// Run both directions.
    #[arg(long)]
    pub bidirectional: bool,
    /// Threads for the matrix products (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed repetitions of each pass (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Untimed passes of each kind before the timed ones (at least one). A process's first
    /// passes also fault in the pages of their large buffers until the C allocator has
    /// adapted to their sizes (glibc serves them from fresh mappings until a freed one raises
    /// its threshold): three passes leave the timed ones at the steady state in which the
    /// frameworks `bench/compare_torch.py` compares with, long-lived in its process, are
    /// timed.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print one JSON object per line instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Regularisers inside the recurrence, applied in the training pass (inference is the
    /// undropped layer, with zoneout's expectation).
    #[command(flatten)]
    pub regularization: RegularizationArgs,
}

/// What one benchmark measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Median milliseconds of an inference forward pass, timed back to back (as the other
    /// frameworks' passes are timed).
    pub fwd_ms: f64,
    /// Median microseconds per step of a [`lstm::Stepper`] taking the same input one step at a
    /// time; `None` for a bidirectional layer.
    pub step_us: Option<f64>,
    /// The stepper's time per step over the forward pass's, both timed alternately so that
    /// the two medians see the same drift of the machine's speed; `None` with `step_us`.
    pub step_ratio: Option<f64>,
    /// Median milliseconds of a training forward pass plus the full backward pass.
    pub fwdbwd_ms: f64,
    /// Forward matrix-product work (multiply-adds count 2) per second of `fwd_ms`, in GFLOP/s.
    pub gflops: f64,
    /// Peak heap memory of one training pass (forward with its tape, then backward with all
    /// gradients) above what was in use before it, in MB (10⁶ bytes).
    pub train_peak_mb: f64,
    /// What any implementation holds at that peak besides its own memory, in MB: the output
    /// the pass returns, the output gradient the caller hands back, and the gradients the
    /// backward pass returns (every parameter, the input, the initial states). The rest of
    /// the peak, `train_peak_mb − held_mb`, is the layer's own: its tape and workspaces.
    pub held_mb: f64,
    /// The minimal activations training must keep, in MB: for every layer, direction, step
    /// and row the gate activations (`gates · hidden`), `c` (`hidden`) and `h`
    /// (`output_size`), as PyTorch's LSTM keeps them.
    pub activations_mb: f64,
}

impl Measurement {
    /// The layer's own part of the training peak, in MB: `train_peak_mb − held_mb`.
    pub fn own_mb(&self) -> f64 {
        self.train_peak_mb - self.held_mb
    }
}

/// Runs the benchmark and writes its line.
pub fn run(args: &BenchArgs, catalog: &Catalog, out: &mut impl Write) -> Result<(), Error> {
    // A misspelt `LSTM_ISA` would otherwise run at the detected level and be reported as if
    // it had been asked for.
    lstm::isa::requested()?;
    if let Some(threads) = args.threads {
        linalg::set_num_threads(threads);
    }
    let measured = catalog.find(&args.cell)?.bench(Bench { args })?;
    if args.json {
        writeln!(
            out,
            "{{\"batch\":{},\"seq_len\":{},\"input_size\":{},\"hidden_size\":{},\"cell\":\"{}\",\
             \"layers\":{},\"heads\":{},\"bidirectional\":{},\"threads\":{},\"isa\":\"{}\",\
             \"regularization\":\"{}\",\"fwd_ms\":{:.4},\"step_us\":{},\"step_ratio\":{},\
             \"fwdbwd_ms\":{:.4},\"gflops\":{:.2},\"train_peak_mb\":{:.1},\"held_mb\":{:.1},\
             \"activations_mb\":{:.1}}}",
            args.batch,
            args.seq_len,
            args.input_size,
            args.hidden_size,
            args.cell,
            args.layers,
            args.heads,
            args.bidirectional,
            linalg::num_threads(),
            lstm::isa::active().name(),
            args.regularization.describe(),
            measured.fwd_ms,
            json_number(measured.step_us),
            json_number(measured.step_ratio),
            measured.fwdbwd_ms,
            measured.gflops,
            measured.train_peak_mb,
            measured.held_mb,
            measured.activations_mb
        )?;
    } else {
        writeln!(
            out,
            "{} B={} T={} I={} H={} layers={} heads={}{} threads={} isa={} regularization={}: forward \
             {:.3} ms, forward+backward {:.3} ms, {:.1} GFLOP/s;{} training peak {:.1} MB ({:.2}× \
             the {:.1} MB of minimal activations): {:.1} MB output, its gradient and the returned \
             gradients, {:.1} MB tape and workspaces ({:.2}× the minimal activations)",
            args.cell,
            args.batch,
            args.seq_len,
            args.input_size,
            args.hidden_size,
            args.layers,
            args.heads,
            if args.bidirectional {
                " bidirectional"
            } else {
                ""
            },
            linalg::num_threads(),
            lstm::isa::active().name(),
            args.regularization.describe(),
            measured.fwd_ms,
            measured.fwdbwd_ms,
            measured.gflops,
            match (measured.step_us, measured.step_ratio) {
                (Some(step_us), Some(ratio)) =>
                    format!(" stepper {step_us:.2} µs per step ({ratio:.2}× the forward pass's);"),
                _ => String::new(),
            },
            measured.train_peak_mb,
            measured.train_peak_mb / measured.activations_mb,
            measured.activations_mb,
            measured.held_mb,
            measured.own_mb(),
            measured.own_mb() / measured.activations_mb
        )?;
    }
    Ok(())
}

/// The benchmark, generic over the cell chosen by name.
pub(crate) struct Bench<'a> {
    args: &'a BenchArgs,
}

impl CellVisitor<f32> for Bench<'_> {
    type Output = Result<Measurement, lstm::Error>;

    fn visit<C: Cell<Elem = f32>>(self) -> Self::Output {
        let args = self.args;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let config = args.regularization.layer_options(None).apply(
            LstmConfig::new(args.input_size, args.hidden_size)
                .with_num_layers(args.layers)
                .with_heads(args.heads)
                .with_bidirectional(args.bidirectional),
        );
        let mut layer = Lstm::<C>::new(config.clone(), &mut rng)?;
        // Before the input is built: a batch or length past memory is an error, not an abort.
        Lstm::<C>::check_training_memory(&config, args.seq_len, args.batch)?;
        let input = Array3::from_shape_fn((args.seq_len, args.batch, args.input_size), |_| {
            rng.random_range(-1.0f32..1.0)
        });
        let repeats = args.repeats.max(1);
        // Untimed passes of each kind warm the caches, the thread pool and the allocator.
        let forward = |layer: &mut Lstm<C>| layer.forward(input.view(), Call::new()).map(drop);
        for _ in 0..args.warmup.max(1) {
            forward(&mut layer)?;
        }
        // Back to back, as the other frameworks' passes are timed: a forward pass right after
        // a stepper's steps runs several percent slower.
        let fwd_ms = median_ms(repeats, || forward(&mut layer))?;
        let (step_us, step_ratio) = if config.bidirectional {
            (None, None)
        } else {
            // The stepper over the same input, timed alternately with the forward pass so
            // that both medians see the same drift of the machine's speed.
            let stepped = layer.clone();
            let mut stepper = stepped.stepper(args.batch)?;
            let mut steps = || -> Result<(), lstm::Error> {
                let mut state = stepper.zero_state();
                for x in input.outer_iter() {
                    stepper.step(x, &mut state)?;
                }
                Ok(())
            };
            steps()?;
            let (mut forwards, mut stepping) = (Vec::new(), Vec::new());
            for _ in 0..repeats {
                forwards.push(time_ms(|| forward(&mut layer))?);
                stepping.push(time_ms(&mut steps)?);
            }
            let per_step = 1e3 / args.seq_len.max(1) as f64;
            let step_us = median(stepping) * per_step;
            (Some(step_us), Some(step_us / (median(forwards) * per_step)))
        };
        // Returns the values the pass held for its caller (see `Measurement::held_mb`).
        let train = |layer: &mut Lstm<C>| -> Result<usize, lstm::Error> {
            let (output, tape) =
                layer.forward_train(input.view(), Call::new().with_training(true))?;
            let ones = ArrayD::from_elem(output.output.shape(), 1.0f32);
            let grad = OutputGrad {
                output: Some(ones.view()),
                ..OutputGrad::default()
            };
            let grads = layer.backward(tape, grad)?;
            let params: usize = grads.params.iter().map(|(_, values)| values.len()).sum();
            Ok(2 * ones.len() + params + grads.input.len() + grads.h0.len() + grads.c0.len())
        };
        let before = Counting::in_use();
        Counting::reset_peak();
        let held = train(&mut layer)?;
        let train_peak_mb = Counting::peak().saturating_sub(before) as f64 / 1e6;
        for _ in 1..args.warmup.max(1) {
            train(&mut layer)?;
        }
        let fwdbwd_ms = median_ms(repeats, || train(&mut layer).map(drop))?;
        let flops = forward_flops(&config, C::SPEC.num_gates(), args.seq_len, args.batch);
        let activations = (config.num_layers * config.num_directions() * args.seq_len * args.batch)
            as f64
            * ((C::SPEC.num_gates() + 1) * config.hidden_size + config.output_size()) as f64;
        Ok(Measurement {
            fwd_ms,
            step_us,
            step_ratio,
            fwdbwd_ms,
            gflops: flops / (fwd_ms * 1e6),
            train_peak_mb,
            held_mb: (held * std::mem::size_of::<f32>()) as f64 / 1e6,
            activations_mb: activations * std::mem::size_of::<f32>() as f64 / 1e6,
        })
    }
}

/// A JSON number with four decimals, or `null`.
fn json_number(value: Option<f64>) -> String {
    value.map_or_else(|| "null".into(), |value| format!("{value:.4}"))
}

/// Median of `repeats` timings of `pass`, in milliseconds.
fn median_ms(
    repeats: usize,
    mut pass: impl FnMut() -> Result<(), lstm::Error>,
) -> Result<f64, lstm::Error> {
    let times = (0..repeats)
        .map(|_| time_ms(&mut pass))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(median(times))
}

/// Milliseconds one run of `pass` takes.
fn time_ms(mut pass: impl FnMut() -> Result<(), lstm::Error>) -> Result<f64, lstm::Error> {
    let start = Instant::now();
    pass()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The median of at least one time.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Multiply-adds ×2 of the forward pass's matrix products: per layer and direction, the
/// input projection `T·B × I_l by I_l × G·H` and the recurrent one `T·B × R/K by R/K × G·H`
/// (`K` heads of a block-diagonal recurrence).
pub fn forward_flops(config: &LstmConfig, gates: usize, seq_len: usize, batch: usize) -> f64 {
    let rows = (seq_len * batch) as f64;
    let width = (gates * config.hidden_size) as f64;
    let recurrent = (config.output_size() / config.heads.max(1)) as f64;
    (0..config.num_layers)
        .map(|layer| {
            let input = config.layer_input_size(layer) as f64;
            2.0 * rows * width * (input + recurrent) * config.num_directions() as f64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_count_both_products_of_every_layer_and_direction() {
        // One layer: 2·(T·B)·(4H)·(I + H) = 2·6·8·(3 + 2).
        let config = LstmConfig::new(3, 2);
        assert_eq!(forward_flops(&config, 4, 2, 3), 480.0);
        // Two bidirectional layers: the second reads 2H = 4 features.
        let config = LstmConfig::new(3, 2)
            .with_num_layers(2)
            .with_bidirectional(true);
        assert_eq!(
            forward_flops(&config, 4, 2, 3),
            2.0 * 480.0 + 2.0 * 2.0 * 6.0 * 8.0 * 6.0
        );
    }

    #[test]
    fn bench_runs_and_reports_json() {
        let args = BenchArgs {
            batch: 2,
            seq_len: 3,
            input_size: 4,
            hidden_size: 5,
            cell: "forget_bias".into(),
            layers: 2,
            heads: 1,
            bidirectional: true,
            threads: Some(1),
            repeats: 2,
            warmup: 1,
            json: true,
            regularization: RegularizationArgs {
                recurrent_dropout: 0.25,
                zoneout_c: 0.1,
                ..RegularizationArgs::default()
            },
        };
        let mut out = Vec::new();
        run(&args, &Catalog::zoo(), &mut out).unwrap();
        let line = String::from_utf8(out).unwrap();
        for key in [
            "\"batch\":2",
            "\"seq_len\":3",
            "\"heads\":1",
            "\"cell\":\"forget_bias\"",
            "\"isa\":\"",
            "\"fwd_ms\":",
            "\"step_us\":null",
            "\"fwdbwd_ms\":",
            "\"gflops\":",
            "\"train_peak_mb\":",
            "\"held_mb\":",
            "\"activations_mb\":",
            "\"regularization\":\"recurrent_dropout=0.25,zoneout_c=0.1\"",
        ] {
            assert!(line.contains(key), "{line}");
        }
    }

    #[test]
    fn unknown_cell_is_an_error() {
        let args = BenchArgs {
            batch: 1,
            seq_len: 1,
            input_size: 1,
            hidden_size: 1,
            cell: "mgu".into(),
            layers: 1,
            heads: 1,
            bidirectional: false,
            threads: None,
            repeats: 1,
            warmup: 1,
            json: false,
            regularization: RegularizationArgs::default(),
        };
        assert!(run(&args, &Catalog::zoo(), &mut Vec::new()).is_err());
    }
}
