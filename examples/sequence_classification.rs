//! Classifying variable-length sequences with a stacked bidirectional layer of a custom cell.
//!
//! ```sh
//! cargo run --release --example sequence_classification
//! ```
//!
//! Generated data: each sequence has 4 to 24 steps of 3 noisy channels, and its class is the
//! channel whose mean is shifted up. Sequences are padded to a common length (with garbage,
//! which the layer never reads) and passed with their `lengths`, PyTorch's packed-sequence
//! semantics. The model: a 2-layer bidirectional `Lstm` of a cell defined here (a forget gate
//! with a learned bias, an output gate that sees the new cell state), returning each
//! sequence's last valid output (`return_sequences = false`: the forward direction at the
//! sequence's end, the reverse direction at its start), then a linear head and softmax
//! cross-entropy, trained with Adam. Prints the loss and the held-out accuracy.

use std::error::Error;

use lstm::ndarray::{Array2, Array3, Axis};
use lstm::optim::{Adam, AdamConfig, Optimizer};
use lstm::{Call, Linear, Lstm, LstmConfig, OutputGrad, Parameters, loss, lstm_cell};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Forget gate with a learned bias starting at 1 (it starts out remembering), and an output
/// gate peeking at the new cell state.
#[lstm_cell(f = sigmoid(z_f + forget_bias), o = sigmoid(z_o + peep_o * c))]
pub struct RememberingPeephole {
    /// Added to the forget gate's pre-activation.
    #[init(ones)]
    forget_bias: PerUnit,
    /// Output-gate peephole weights.
    #[init(zeros)]
    peep_o: PerUnit,
}

const CHANNELS: usize = 3;
const MAX_LEN: usize = 24;
const BATCH: usize = 32;

/// A padded batch: `(MAX_LEN, BATCH, CHANNELS)` time-major, lengths, classes.
struct Batch {
    x: Array3<f32>,
    lengths: Vec<usize>,
    classes: Vec<usize>,
}

fn batch(rng: &mut ChaCha8Rng) -> Batch {
    let mut x = Array3::zeros((MAX_LEN, BATCH, CHANNELS));
    let mut lengths = Vec::new();
    let mut classes = Vec::new();
    for b in 0..BATCH {
        let length = rng.random_range(4..=MAX_LEN);
        let class = rng.random_range(0..CHANNELS);
        for t in 0..MAX_LEN {
            for channel in 0..CHANNELS {
                x[[t, b, channel]] = if t < length {
                    let shift = if channel == class { 0.6 } else { 0.0 };
                    shift + rng.random_range(-1.0f32..1.0)
                } else {
                    // Padding: never read under `lengths`.
                    1e6
                };
            }
        }
        lengths.push(length);
        classes.push(class);
    }
    Batch {
        x,
        lengths,
        classes,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let config = LstmConfig::new(CHANNELS, 24)
        .with_num_layers(2)
        .with_bidirectional(true)
        .with_dropout(0.1)
        .with_return_sequences(false);
    let mut layer = Lstm::<RememberingPeephole<f32>>::new(config.clone(), &mut rng)?;
    let mut head = Linear::<f32>::new(config.merged_size(), CHANNELS, &mut rng);
    let mut layer_optimizer = Adam::new(AdamConfig::adam().with_lr(0.01))?;
    let mut head_optimizer = Adam::new(AdamConfig::adam().with_lr(0.01))?;
    println!(
        "{} parameters: {:?}",
        layer.num_parameters() + head.num_parameters(),
        layer
            .parameter_shapes()
            .iter()
            .map(|(name, _)| name.as_str())
            .take(6)
            .collect::<Vec<_>>()
    );

    let held_out: Vec<Batch> = (0..8).map(|_| batch(&mut rng)).collect();
    for step in 1..=300 {
        let data = batch(&mut rng);
        let call = Call::new().with_lengths(&data.lengths).with_training(true);
        let (out, tape) = layer.forward_train(data.x.view(), call)?;
        // (BATCH, 2 · 24): each sequence's last valid forward and reverse outputs.
        let features = out
            .output
            .into_last()
            .ok_or("the layer returns last outputs")?;
        let logits = head.forward(features.view())?;
        let (loss, d_logits) = loss::cross_entropy(logits.view(), &data.classes, None)?;
        let mut head_grads = head.backward(features.view(), d_logits.view())?;
        let d_features = head_grads
            .remove("input")
            .ok_or("the head returns dL/d input")?;
        let layer_grads = layer.backward(
            tape,
            OutputGrad {
                output: Some(d_features.view()),
                ..Default::default()
            },
        )?;
        layer_optimizer.step(&mut layer, &layer_grads.params)?;
        head_optimizer.step(&mut head, &head_grads)?;
        if step % 50 == 0 {
            println!(
                "step {step:>3}  loss {loss:.4}  held-out accuracy {:.3}",
                accuracy(&mut layer, &head, &held_out)?
            );
        }
    }
    Ok(())
}

/// The share of held-out sequences classified right (inference: no dropout, no tape).
fn accuracy(
    layer: &mut Lstm<RememberingPeephole<f32>>,
    head: &Linear<f32>,
    batches: &[Batch],
) -> Result<f64, Box<dyn Error>> {
    let mut right = 0;
    let mut total = 0;
    for data in batches {
        let out = layer.forward(data.x.view(), Call::new().with_lengths(&data.lengths))?;
        let features: Array2<f32> = out.output.into_last().ok_or("last outputs")?;
        let logits = head.forward(features.view())?;
        for (row, &class) in logits.axis_iter(Axis(0)).zip(&data.classes) {
            let predicted = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(index, _)| index);
            right += usize::from(predicted == Some(class));
            total += 1;
        }
    }
    Ok(right as f64 / total as f64)
}
