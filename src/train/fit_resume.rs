//! What lets a run on a data set continue after a kill or with more epochs: the metadata a
//! data run's checkpoint carries besides the weights (the settings that shape the trajectory,
//! every finished epoch's figures), and the checks that a last and a best checkpoint belong
//! to one run of the config they are resumed under.
//!
//! Every epoch's shuffle and masks depend only on the seed, the epoch and the step, and the
//! plateau schedule's state is a function of the monitored losses, so a resumed run computes
//! what the whole run would have, bit for bit.

use lstm::checkpoint::Checkpoint;
use lstm::{Error, Float, Result};

use super::data::Objective;
use super::fit::{EpochReport, FitConfig, keys};

/// The settings a checkpoint must share with a config to be resumed under it: all but
/// `epochs` (a resumed run may go on longer), and the data's sizes.
pub(super) fn trajectory(
    config: &FitConfig,
    train: usize,
    validation: Option<usize>,
    objective: Objective,
) -> String {
    format!(
        "objective {}, outputs {}, train sequences {train}, validation sequences {}, hidden \
         {}, layers {}, bidirectional {}, batch {}, lr {}, schedule {:?}, warmup {}, patience \
         {:?}, max_grad_norm {}, seed {}, {:?}",
        objective.name(),
        objective.output_size(),
        validation.unwrap_or(0),
        config.hidden_size,
        config.num_layers,
        config.bidirectional,
        config.batch_size,
        config.lr,
        config.schedule,
        config.warmup_steps,
        config.patience,
        config.max_grad_norm,
        config.seed,
        config.layer,
    )
}

/// Every epoch's figures as one metadata value: `;`-separated epochs of `,`-separated
/// `train_loss, val_loss, val_accuracy, lr` (`-` for none). Rust prints an `f64` with the
/// fewest digits that parse back to it, so the figures survive exactly.
pub(super) fn encode_history(epochs: &[EpochReport]) -> String {
    let optional = |value: Option<f64>| value.map_or("-".to_string(), |value| value.to_string());
    epochs
        .iter()
        .map(|epoch| {
            format!(
                "{},{},{},{}",
                epoch.train_loss,
                optional(epoch.val_loss),
                optional(epoch.val_accuracy),
                epoch.lr
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The epochs [`encode_history`] wrote.
fn decode_history(text: &str) -> Result<Vec<EpochReport>> {
    let bad =
        |reason: String| Error::invalid_value(format!("checkpoint {}", keys::HISTORY), reason);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(';')
        .enumerate()
        .map(|(index, record)| {
            let number = |field: &str| {
                field
                    .parse::<f64>()
                    .map_err(|_| bad(format!("epoch {}: `{field}` is not a number", index + 1)))
            };
            let optional = |field: &str| match field {
                "-" => Ok(None),
                field => number(field).map(Some),
            };
            let fields: Vec<&str> = record.split(',').collect();
            let [train_loss, val_loss, val_accuracy, lr] = fields[..] else {
                return Err(bad(format!(
                    "epoch {}: {} fields, expected 4",
                    index + 1,
                    fields.len()
                )));
            };
            Ok(EpochReport {
                epoch: index + 1,
                train_loss: number(train_loss)?,
                val_loss: optional(val_loss)?,
                val_accuracy: optional(val_accuracy)?,
                lr: number(lr)?,
            })
        })
        .collect()
}

/// The loss that chooses the best epoch and the plateau: validation's, else training's.
pub(super) fn monitored(epoch: &EpochReport) -> f64 {
    epoch.val_loss.unwrap_or(epoch.train_loss)
}

/// The best epoch of `epochs` (from 1) and its monitored loss: the first lowest, as [`fit`]
/// chooses it while it runs.
///
/// [`fit`]: super::fit::fit
pub(super) fn best_of(epochs: &[EpochReport]) -> Option<(f64, usize)> {
    epochs.iter().fold(None, |best, epoch| match best {
        Some((loss, _)) if monitored(epoch) >= loss => best,
        _ => Some((monitored(epoch), epoch.epoch)),
    })
}

/// Where a resumed run stands.
pub(super) struct Resumed {
    /// The finished epochs' figures.
    pub epochs: Vec<EpochReport>,
    /// The best epoch's monitored loss and number.
    pub best: (f64, usize),
}

/// Checks that `last` and `best` are a data run's checkpoints after its last and its best
/// epoch under `trajectory`, with `steps_per_epoch` steps an epoch, and returns its state.
/// When the last epoch is the best, `best` is not needed (the last checkpoint is written
/// first, so a kill between the two writes leaves an older or no best checkpoint).
///
/// # Errors
///
/// [`Error::InvalidValue`] naming `checkpoint` (or `best checkpoint`) and what disagrees: a
/// setting, the cell, the epoch count against the history or the step, the optimizer's step,
/// the best epoch against the history.
pub(super) fn check<F: Float>(
    last: &Checkpoint<F>,
    best: Option<&Checkpoint<F>>,
    cell: &str,
    trajectory: &str,
    steps_per_epoch: u64,
    max_epochs: usize,
) -> Result<Resumed> {
    for (what, checkpoint) in [("checkpoint", Some(last)), ("best checkpoint", best)] {
        let Some(checkpoint) = checkpoint else {
            continue;
        };
        let disagree = |reason: String| Err(Error::invalid_value(what, reason));
        let value = |key: &str| checkpoint.metadata.get(key).map(String::as_str);
        if value(keys::CELL) != Some(cell) {
            return disagree(format!(
                "it was written for cell {}; this run trains {cell}",
                value(keys::CELL).unwrap_or("(none)")
            ));
        }
        let saved = value(keys::TRAJECTORY).unwrap_or("(none: not a data run's checkpoint)");
        if saved != trajectory {
            return disagree(format!(
                "it was written with settings `{saved}`; this run has `{trajectory}`"
            ));
        }
        if checkpoint.optimizer.step != checkpoint.step {
            return disagree(format!(
                "it is at step {}, but its optimizer is at step {}",
                checkpoint.step, checkpoint.optimizer.step
            ));
        }
    }
    let history = |checkpoint: &Checkpoint<F>| {
        decode_history(
            checkpoint
                .metadata
                .get(keys::HISTORY)
                .map_or("", String::as_str),
        )
    };
    let epochs = history(last)?;
    let done = epochs.len();
    let disagree = |reason: String| Err(Error::invalid_value("checkpoint", reason));
    if done == 0 {
        return disagree("it holds no finished epoch".into());
    }
    if last.step != done as u64 * steps_per_epoch {
        return disagree(format!(
            "it is at step {} after {done} epochs of {steps_per_epoch} steps",
            last.step
        ));
    }
    if done > max_epochs {
        return disagree(format!(
            "it is after epoch {done}, past the {max_epochs} epochs asked for"
        ));
    }
    // At least one epoch: a best exists.
    let Some((loss, best_epoch)) = best_of(&epochs) else {
        return disagree("it holds no finished epoch".into());
    };
    if best_epoch < done {
        let Some(best) = best else {
            return Err(Error::invalid_value(
                "best checkpoint",
                format!("it is missing; the run's best epoch is {best_epoch} of {done}"),
            ));
        };
        let best_history = history(best)?;
        if best_history.len() != best_epoch || best_history[..] != epochs[..best_epoch] {
            return Err(Error::invalid_value(
                "best checkpoint",
                format!(
                    "it is after epoch {} of another course; the run's best epoch is \
                     {best_epoch}",
                    best_history.len()
                ),
            ));
        }
    }
    Ok(Resumed {
        epochs,
        best: (loss, best_epoch),
    })
}
