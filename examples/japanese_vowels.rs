//! Trains the standard LSTM on a real data set committed to the repository, the Japanese
//! Vowels data set (9 speakers, 12 cepstrum coefficients per frame, 7 to 29 frames; see
//! `data/japanese_vowels/README.md`), choosing the best epoch on a fifth of the training
//! utterances, then reports that epoch's accuracy on the 370 test utterances.
//!
//! ```sh
//! cargo run --release --example japanese_vowels
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};

use lstm::checkpoint::Checkpoint;
use lstm::train::{
    BEST_FILE, Dataset, FitConfig, RunOptions, Schedule, SequenceModel, Start, data_run, evaluate,
};
use lstm::zoo;

/// Held out of the training utterances to choose the epoch.
const VAL_FRACTION: f64 = 0.2;

fn main() -> Result<(), Box<dyn Error>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/japanese_vowels");
    let all = Dataset::<f32>::read_npz(&data.join("train.npz"), true)?;
    let test = Dataset::<f32>::read_npz(&data.join("test.npz"), true)?;
    let config = FitConfig {
        hidden_size: 64,
        epochs: 40,
        batch_size: 32,
        lr: 0.01,
        schedule: Schedule::Cosine,
        patience: Some(10),
        ..FitConfig::default()
    };
    let (train, validation) = all.split(VAL_FRACTION, config.seed)?;
    let options = RunOptions {
        out_dir: PathBuf::from("runs/japanese_vowels"),
        checkpoint_every: 0,
        // The example's own output: running it again replaces it.
        start: Start::Overwrite,
        show_progress: true,
    };
    let metrics = data_run::<zoo::Lstm<f32>>(
        &config,
        &train,
        Some(&validation),
        "japanese_vowels",
        &options,
    )?;
    let objective = all.objective().ok_or("the training data has labels")?;
    let mut model = SequenceModel::<zoo::Lstm<f32>>::for_objective(
        all.input_size(),
        objective,
        config.hidden_size,
        config.seed,
        |layer| config.configure(layer),
    )?;
    Checkpoint::<f32>::load(&options.out_dir.join(BEST_FILE))?.restore_model(&mut model)?;
    let tested = evaluate(&mut model, &test, objective, 256)?;
    println!(
        "best epoch {} of {}: validation accuracy {:.1}% ({} utterances), test accuracy {:.1}% \
         ({} utterances); {:.0} ms per epoch",
        metrics.best_epoch,
        metrics.epochs,
        100.0 * metrics.val_accuracy.unwrap_or(0.0),
        validation.len(),
        100.0 * tested.accuracy.unwrap_or(0.0),
        test.len(),
        1000.0 * metrics.epoch_seconds
    );
    println!("wrote {}", options.out_dir.display());
    Ok(())
}
