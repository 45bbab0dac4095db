//! `lstm predict`: the model of a run on a data set (its best epoch's checkpoint) applied to
//! the sequences of an `.npz` file; class probabilities `(N, C)` or `(N, T, C)` for
//! classification, values `(N, O)` or `(N, T, O)` for regression, written as `.npy`.

use std::path::{Path, PathBuf};

use clap::Args;
use lstm::checkpoint::Checkpoint;
use lstm::io::{Tensor, write_npy};
use lstm::ndarray::{Array2, Array3, ArrayD, Axis, concatenate};
use lstm::train::{BEST_FILE, Dataset, Objective, SequenceModel, keys};
use lstm::{Cell, CellVisitor, Error, Float, LstmConfig};

use super::catalog::{Catalog, Precision};

/// Options of `lstm predict`.
#[derive(Clone, Debug, PartialEq, Args)]
pub struct PredictArgs {
    /// The run directory of `lstm train --data` (its `best.safetensors` is read).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The sequences: `x` `(N, T, I)` and optional `lengths` or `mask`; `y` is ignored.
    #[arg(long, value_name = "FILE.npz")]
    pub data: PathBuf,
    /// Where to write the predictions.
    #[arg(long, value_name = "P.npy")]
    pub output: PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Replace `--output` if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Predicts as `args` say.
///
/// # Errors
///
/// What reading the checkpoint or the data reports (naming the file and what is wrong),
/// [`Error::InvalidValue`] naming `output` if it exists without `--overwrite`, or `x` if
/// its features do not match the model's.
pub fn run(args: &PredictArgs, catalog: &Catalog) -> Result<(), Error> {
    if args.output.exists() && !args.overwrite {
        return Err(Error::invalid_value(
            "output",
            format!(
                "`{}` exists; pass --overwrite to replace it",
                args.output.display()
            ),
        ));
    }
    let path = args.run.join(BEST_FILE);
    let predictions = match Checkpoint::<f32>::load(&path) {
        Ok(checkpoint) => predict_with(&checkpoint, args, catalog)?,
        Err(Error::DtypeMismatch { .. }) => {
            predict_with(&Checkpoint::<f64>::load(&path)?, args, catalog)?
        }
        Err(err) => return Err(err),
    };
    let temporary = temporary_beside(&args.output);
    write_npy(&temporary, &predictions)?;
    std::fs::rename(&temporary, &args.output)
        .map_err(|err| Error::io("rename into place", &args.output, &err))
}

/// A temporary path beside `path`, renamed over it once the file is whole.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "predictions".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}-{}.tmp", std::process::id()))
}

/// The predictions of the checkpoint's model.
fn predict_with<F: Precision>(
    checkpoint: &Checkpoint<F>,
    args: &PredictArgs,
    catalog: &Catalog,
) -> Result<Tensor, Error> {
    let cell = metadata(checkpoint, keys::CELL)?;
    catalog
        .find(&cell)?
        .jobs::<F>()
        .predict(Predict { checkpoint, args })
}

/// A metadata entry of a data run's checkpoint.
fn metadata<F>(checkpoint: &Checkpoint<F>, key: &str) -> Result<String, Error> {
    checkpoint.metadata.get(key).cloned().ok_or_else(|| {
        Error::invalid_value(
            "run",
            format!("its checkpoint has no `{key}`; was it written by `lstm train --data`?"),
        )
    })
}

/// A number in a data run's checkpoint's metadata.
fn number<F, T: std::str::FromStr>(checkpoint: &Checkpoint<F>, key: &str) -> Result<T, Error> {
    let text = metadata(checkpoint, key)?;
    text.parse()
        .map_err(|_| Error::invalid_value("run", format!("its checkpoint has `{key}` = `{text}`")))
}

/// The prediction for the cell type chosen by the checkpoint.
pub(crate) struct Predict<'a, F> {
    checkpoint: &'a Checkpoint<F>,
    args: &'a PredictArgs,
}

impl<F: Float> CellVisitor<F> for Predict<'_, F> {
    type Output = Result<Tensor, Error>;

    fn visit<C: Cell<Elem = F>>(self) -> Self::Output {
        let checkpoint = self.checkpoint;
        let outputs: usize = number(checkpoint, keys::OUTPUTS)?;
        let objective = match metadata(checkpoint, keys::OBJECTIVE)?.as_str() {
            "sequence_classification" => Objective::SequenceClassification { classes: outputs },
            "sequence_regression" => Objective::SequenceRegression { outputs },
            "step_classification" => Objective::StepClassification { classes: outputs },
            "step_regression" => Objective::StepRegression { outputs },
            other => {
                return Err(Error::invalid_value(
                    "run",
                    format!("its checkpoint has the unknown objective `{other}`"),
                ));
            }
        };
        let input_size: usize = number(checkpoint, keys::INPUT_SIZE)?;
        let layers: usize = number(checkpoint, keys::LAYERS)?;
        let bidirectional: bool = number(checkpoint, keys::BIDIRECTIONAL)?;
        let zoneout_c: f64 = number(checkpoint, keys::ZONEOUT_C)?;
        let zoneout_h: f64 = number(checkpoint, keys::ZONEOUT_H)?;
        let hidden: usize = number(checkpoint, keys::HIDDEN_SIZE)?;
        let heads: usize = if checkpoint.metadata.contains_key(keys::HEADS) {
            number(checkpoint, keys::HEADS)?
        } else {
            1
        };
        let configure = |config: LstmConfig| {
            config
                .with_heads(heads)
                .with_num_layers(layers)
                .with_bidirectional(bidirectional)
                .with_zoneout(zoneout_c, zoneout_h)
        };
        let mut model =
            SequenceModel::<C>::for_objective(input_size, objective, hidden, 0, configure)?;
        checkpoint.restore_model(&mut model)?;
        let data = Dataset::<F>::read_npz(&self.args.data, false)?;
        if data.input_size() != input_size {
            return Err(Error::invalid_value(
                "x",
                format!(
                    "{} features per step; the model of `{}` reads {input_size}",
                    data.input_size(),
                    self.args.run.display()
                ),
            ));
        }
        let rows: Vec<usize> = (0..data.len()).collect();
        let mut parts = Vec::new();
        for chunk in rows.chunks(self.args.batch.max(1)) {
            let batch = data.batch(chunk, objective);
            let outputs = model.predict(&batch)?;
            let outputs = if objective.is_classification() {
                softmax(outputs)
            } else {
                outputs
            };
            parts.push(batch_major(outputs, chunk.len(), objective)?);
        }
        let views: Vec<_> = parts.iter().map(|part| part.view()).collect();
        let all = concatenate(Axis(0), &views)
            .map_err(|_| Error::invalid_value("predictions", "the batches differ in shape"))?;
        Ok(Tensor::from_float(all))
    }
}

/// Each row of `logits` as probabilities (a stable softmax).
fn softmax<F: Float>(mut logits: Array2<F>) -> Array2<F> {
    for mut row in logits.rows_mut() {
        let max = row.iter().fold(F::neg_infinity(), |max, &v| max.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    logits
}

/// The head's rows of a batch of `batch` sequences as `(batch, C)` or, per step (rows
/// time-major), `(batch, T, C)`.
fn batch_major<F: Float>(
    rows: Array2<F>,
    batch: usize,
    objective: Objective,
) -> Result<ArrayD<F>, Error> {
    if !objective.per_step() {
        return Ok(rows.into_dyn());
    }
    let (count, width) = rows.dim();
    let steps = count / batch.max(1);
    let shape = [count, width];
    let time_major: Array3<F> = rows
        .into_shape_with_order((steps, batch, width))
        .map_err(|_| Error::shape_mismatch("predictions", &[steps * batch, width], &shape))?;
    Ok(time_major
        .permuted_axes([1, 0, 2])
        .as_standard_layout()
        .into_owned()
        .into_dyn())
}
