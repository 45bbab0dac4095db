//! `lstm infer`: runs a zoo cell's layer with weights from a file on numpy inputs and writes
//! numpy outputs, and optionally the gradients of `sum(output ⊙ grad_output)`. Other tools
//! drive it, so its flags are an interface: every input is a file, every output is a file.
//!
//! The layer's configuration is read off the weights' PyTorch names and shapes; the flags
//! add what the weights cannot say, each the [`LstmConfig`] option or [`Call`] field of the
//! same name: layout, merge mode, `go_backwards`, `return_sequences`, lengths or Keras mask,
//! initial states, constants. The element type is the input's: an f32 input runs in f32 (f64
//! weights rounded), an f64 input in f64. The cell is any of the catalog's, the zoo's or a
//! binary's own ([`main_with`](super::main_with)).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use lstm::io::layout::pytorch_or_keras;
use lstm::io::{PytorchLayout, Tensor, TensorMap, lstm_from_pytorch_with, read_npy, write_npy};
use lstm::ndarray::{Array3, ArrayD, ArrayView3, Ix2, Ix3};
use lstm::{Call, Cell, CellVisitor, Error, Float, MergeMode, OutputGrad, Result};

use super::catalog::Catalog;
#[cfg(doc)]
use lstm::LstmConfig;

/// The flags of `lstm infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Weights (safetensors, `.npz`) under PyTorch's `nn.LSTM` names or Keras' weight paths,
    /// or Keras 3's `.keras` or `.weights.h5`; layers, directions, bias and projection are
    /// read off them.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Input, f32 or f64 `.npy`: `(T, B, I)`, or `(B, T, I)` with `--batch-first`.
    #[arg(long, value_name = "X.npy")]
    pub input: PathBuf,
    /// The cell, by its name in `lstm cells`.
    #[arg(long, value_name = "NAME", default_value = "lstm")]
    pub cell: String,
    /// Inputs and outputs are batch-major, `(B, T, ·)`.
    #[arg(long)]
    pub batch_first: bool,
    /// How a bidirectional layer combines its directions' outputs (Keras
    /// `Bidirectional(merge_mode=…)`); `none` writes the reverse direction's to
    /// `--output-reverse`.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = MergeArg::Concat)]
    pub merge_mode: MergeArg,
    /// Process each sequence reversed, outputs in processing order (Keras `go_backwards`).
    #[arg(long)]
    pub go_backwards: bool,
    /// Output only each sequence's last valid output, `(B, dirs·H_out)` (Keras
    /// `return_sequences=False`).
    #[arg(long)]
    pub no_return_sequences: bool,
    /// The per-sequence constant input `(B, constant_size)` (Keras `constants`), for a cell
    /// whose spec declares one.
    #[arg(long, value_name = "C.npy")]
    pub constants: Option<PathBuf>,
    /// Sequence lengths, int64 `.npy` `(B,)`: PyTorch's packed-sequence semantics.
    #[arg(long, value_name = "L.npy", conflicts_with = "mask")]
    pub lengths: Option<PathBuf>,
    /// Keras mask, bool `.npy` `(B, T)`: masked steps carry the state over.
    #[arg(long, value_name = "M.npy")]
    pub mask: Option<PathBuf>,
    /// Masked steps output zeros instead of repeating the previous output.
    #[arg(long, requires = "mask")]
    pub zero_output_for_mask: bool,
    /// Initial hidden states `(layers·dirs, B, H_out)`; with `--c0`, or alone for a cell
    /// without a cell state (`gru`).
    #[arg(long, value_name = "H0.npy")]
    pub h0: Option<PathBuf>,
    /// Initial cell states `(layers·dirs, B, H)`, with `--h0`.
    #[arg(long, value_name = "C0.npy")]
    pub c0: Option<PathBuf>,
    /// Where to write the output `(T, B, dirs·H_out)` (or batch-first; `(B, ·)` with
    /// `--no-return-sequences`); with `--merge-mode none` the forward direction's.
    #[arg(long, value_name = "Y.npy")]
    pub output: PathBuf,
    /// Where to write the reverse direction's output under `--merge-mode none`.
    #[arg(long, value_name = "Y.npy")]
    pub output_reverse: Option<PathBuf>,
    /// Where to write the final hidden states `(layers·dirs, B, H_out)`.
    #[arg(long = "h-n", value_name = "H.npy")]
    pub h_n: Option<PathBuf>,
    /// Where to write the final cell states `(layers·dirs, B, H)`.
    #[arg(long = "c-n", value_name = "C.npy")]
    pub c_n: Option<PathBuf>,
    /// Initial values of the states the cell carries besides `h` and `c` (safetensors), each
    /// under its name (`n`, `m` of `slstm`), `(layers·dirs, B, H)`; those absent start at
    /// zero.
    #[arg(long, value_name = "S0.safetensors")]
    pub state_in: Option<PathBuf>,
    /// Where to write the final values of the states the cell carries besides `h` and `c`
    /// (safetensors): each under its name (`n`, `m` of `slstm`), `(layers·dirs, B, H)`.
    #[arg(long, value_name = "S.safetensors")]
    pub state_out: Option<PathBuf>,
    /// Gradient of the loss with respect to the output, shaped like it: the loss is
    /// `sum(output ⊙ grad_output)` (plus `sum(output_reverse ⊙ grad_output_reverse)`).
    #[arg(long, value_name = "G.npy", requires = "grads")]
    pub grad_output: Option<PathBuf>,
    /// Gradient of the loss with respect to the reverse output of `--merge-mode none`.
    #[arg(long, value_name = "G.npy", requires = "grad_output")]
    pub grad_output_reverse: Option<PathBuf>,
    /// Where to write the gradients (safetensors): every weight under its name, `input`, and
    /// `constants` when given.
    #[arg(long, value_name = "GRADS.safetensors", requires = "grad_output")]
    pub grads: Option<PathBuf>,
    /// Values to record at every step of every layer and direction, comma-separated: the
    /// gates the cell evaluates by letter (`i,f,g,o`, after their activation), its states
    /// (`c`, and `n`, `m`, … for a cell that declares more) and `h` (the cell's output,
    /// before any projection).
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        num_args = 1..,
        requires = "record_out"
    )]
    pub record: Vec<String>,
    /// Where to write the recorded values (safetensors): `{name}_l{k}` and
    /// `{name}_l{k}_reverse`, `(T, B, H)`, or `(B, T, H)` with `--batch-first`; zero past a
    /// sequence's length and at masked steps.
    #[arg(long, value_name = "R.safetensors", requires = "record")]
    pub record_out: Option<PathBuf>,
}

/// `--merge-mode`'s values, Keras' names of [`MergeMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MergeArg {
    /// [`MergeMode::Concat`].
    Concat,
    /// [`MergeMode::Sum`].
    Sum,
    /// [`MergeMode::Mul`].
    Mul,
    /// [`MergeMode::Ave`].
    Ave,
    /// [`MergeMode::None`].
    None,
}

impl From<MergeArg> for MergeMode {
    fn from(mode: MergeArg) -> MergeMode {
        match mode {
            MergeArg::Concat => MergeMode::Concat,
            MergeArg::Sum => MergeMode::Sum,
            MergeArg::Mul => MergeMode::Mul,
            MergeArg::Ave => MergeMode::Ave,
            MergeArg::None => MergeMode::None,
        }
    }
}

/// Runs `lstm infer`.
///
/// # Errors
///
/// Any [`Error`] reading, checking, running or writing, naming the offending file or tensor.
pub fn run(args: &InferArgs, catalog: &Catalog) -> Result<()> {
    let cell = catalog.find(&args.cell)?;
    match read_npy(&args.input)? {
        Tensor::F32(input) => cell.jobs::<f32>().infer(Infer { args, input }),
        Tensor::F64(input) => cell.jobs::<f64>().infer(Infer { args, input }),
        other => Err(Error::DtypeMismatch {
            what: args.input.display().to_string(),
            expected: "f32 or f64".into(),
            found: other.dtype().to_string(),
        }),
    }
}

/// The work of `lstm infer` for an input of element type `F`.
pub(crate) struct Infer<'a, F> {
    args: &'a InferArgs,
    input: ArrayD<F>,
}

impl<F: Float> CellVisitor<F> for Infer<'_, F> {
    type Output = Result<()>;

    fn visit<C: Cell<Elem = F>>(self) -> Result<()> {
        let Infer { args, input } = self;
        let weights = read_weights(&args.weights)?;
        let config = PytorchLayout::infer(&weights, C::SPEC)?
            .config()
            .with_batch_first(args.batch_first)
            .with_zero_output_for_mask(args.zero_output_for_mask)
            .with_merge_mode(args.merge_mode.into())
            .with_go_backwards(args.go_backwards)
            .with_return_sequences(!args.no_return_sequences);
        let apart = config.bidirectional && config.merge_mode == MergeMode::None;
        if args.output_reverse.is_some() != apart {
            return Err(Error::Config {
                option: "output_reverse".into(),
                reason: "expected `--output-reverse` exactly when a bidirectional layer keeps \
                         the reverse direction's output apart (`--merge-mode none`)"
                    .into(),
            });
        }
        check_states::<C>(args)?;
        let mut layer = lstm_from_pytorch_with::<C>(&weights, config)?;

        let lengths = args.lengths.as_deref().map(read_lengths).transpose()?;
        let mask = match &args.mask {
            Some(path) => Some(shaped::<bool, Ix2>(
                "mask",
                read_npy(path)?
                    .as_mask(&path.display().to_string())?
                    .to_owned(),
            )?),
            None => None,
        };
        let h0 = args
            .h0
            .as_deref()
            .map(|p| read_float::<F, Ix3>("h0", p))
            .transpose()?;
        let c0 = args
            .c0
            .as_deref()
            .map(|p| read_float::<F, Ix3>("c0", p))
            .transpose()?;
        let constants = args
            .constants
            .as_deref()
            .map(|p| read_float::<F, Ix2>("constants", p))
            .transpose()?;
        let initial_states = match &args.state_in {
            Some(path) => read_states::<F>(path)?,
            None => Vec::new(),
        };
        let initial_views: Vec<(&str, ArrayView3<'_, F>)> = initial_states
            .iter()
            .map(|(name, value)| (name.as_str(), value.view()))
            .collect();
        let mut call = Call::new().with_initial_states(&initial_views);
        if let Some(lengths) = &lengths {
            call = call.with_lengths(lengths);
        }
        if let Some(mask) = &mask {
            call = call.with_mask(mask.view());
        }
        match (&h0, &c0) {
            (Some(h0), Some(c0)) => call = call.with_initial_state(h0.view(), c0.view()),
            // A cell without a cell state (`check_states`).
            (Some(h0), None) => call = call.with_h0(h0.view()),
            _ => {}
        }
        if let Some(constants) = &constants {
            call = call.with_constants(constants.view());
        }

        let names: Vec<&str> = args.record.iter().map(String::as_str).collect();
        let (output, gradients) = match (&args.grad_output, &args.grads) {
            (Some(grad_path), Some(grads_path)) => {
                let grad_output = read_npy(grad_path)?.to_float::<F>("grad_output")?;
                let grad_output_reverse = match &args.grad_output_reverse {
                    Some(path) => Some(read_npy(path)?.to_float::<F>("grad_output_reverse")?),
                    None => None,
                };
                let (output, tape) = layer.forward_train(input.view(), call)?;
                let grad = OutputGrad {
                    output: Some(grad_output.view()),
                    output_reverse: grad_output_reverse.as_ref().map(|grad| grad.view()),
                    ..OutputGrad::default()
                };
                let gradients = layer.backward(tape, grad)?;
                (output, Some((gradients, grads_path)))
            }
            _ => (layer.forward(input.view(), call.with_record(&names))?, None),
        };

        write_npy(
            &args.output,
            &Tensor::from_float(output.output.view().to_owned()),
        )?;
        if let (Some(path), Some(reverse)) = (&args.output_reverse, &output.output_reverse) {
            write_npy(path, &Tensor::from_float(reverse.view().to_owned()))?;
        }
        for (path, state) in [(&args.h_n, &output.h_n), (&args.c_n, &output.c_n)] {
            if let (Some(path), Some(state)) = (path, state) {
                write_npy(path, &Tensor::from_float(state.clone().into_dyn()))?;
            }
        }
        if let Some(path) = &args.state_out {
            let mut map = TensorMap::default();
            for (name, values) in &output.states {
                map.insert(name, Tensor::from_float(values.clone().into_dyn()));
            }
            map.write_safetensors(path)?;
        }
        if let Some(path) = &args.record_out {
            // A training call records nothing: with `--grads`, the same call again for it.
            let records = match gradients {
                Some(_) => {
                    layer
                        .forward(input.view(), call.with_record(&names))?
                        .records
                }
                None => output.records,
            };
            let mut map = TensorMap::default();
            for (name, values) in records {
                map.insert(&name, Tensor::from_float(values.into_dyn()));
            }
            map.write_safetensors(path)?;
        }
        if let Some((gradients, path)) = gradients {
            let mut map = TensorMap::from_gradients(&gradients.params);
            map.insert("input", Tensor::from_float(gradients.input.into_dyn()));
            if let Some(constants) = gradients.constants {
                map.insert("constants", Tensor::from_float(constants.into_dyn()));
            }
            map.write_safetensors(path)?;
        }
        Ok(())
    }
}

/// Checks the state flags against the cell: `--h0` with `--c0` for a cell with a cell state;
/// `--h0` alone, and no `--c0` or `--c-n`, for one without (`gru`).
fn check_states<C: Cell>(args: &InferArgs) -> Result<()> {
    let spec = C::SPEC;
    if !spec.carries_cell_state() {
        for (option, given) in [("c0", args.c0.is_some()), ("c-n", args.c_n.is_some())] {
            if given {
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!(
                        "cell `{}` has no cell state: give `--h0` alone, and read `--h-n`",
                        spec.name
                    ),
                });
            }
        }
    } else if args.h0.is_some() != args.c0.is_some() {
        return Err(Error::Config {
            option: if args.h0.is_some() { "c0" } else { "h0" }.into(),
            reason: format!(
                "cell `{}` carries `h` and `c`: give `--h0` and `--c0` together",
                spec.name
            ),
        });
    }
    Ok(())
}

/// Weights from safetensors, `.npz` or a Keras file (by extension), under PyTorch's names or,
/// converted, Keras' (the names tell which; a tensor of neither is reported by name).
fn read_weights(path: &Path) -> Result<TensorMap> {
    pytorch_or_keras(&lstm::io::read_weights(path)?)
}

/// Every tensor of a safetensors file as a 3-dimensional float array, by name.
fn read_states<F: Float>(path: &Path) -> Result<Vec<(String, Array3<F>)>> {
    let map = TensorMap::read_safetensors(path)?;
    map.names()
        .map(|name| {
            let what = format!("{} `{name}`", path.display());
            let tensor = map.get(name).expect("a name the map lists");
            Ok((
                name.to_string(),
                shaped(&what, tensor.to_float::<F>(&what)?)?,
            ))
        })
        .collect()
}

/// Sequence lengths from an int64 `.npy` file.
fn read_lengths(path: &Path) -> Result<Vec<usize>> {
    let lengths = read_npy(path)?.to_lengths(&path.display().to_string())?;
    Ok(lengths.iter().copied().collect())
}

/// A float array of `D` dimensions from a `.npy` file, converted to `F`.
fn read_float<F: Float, D: lstm::ndarray::Dimension>(
    what: &str,
    path: &Path,
) -> Result<lstm::ndarray::Array<F, D>> {
    shaped(
        what,
        read_npy(path)?.to_float::<F>(&path.display().to_string())?,
    )
}

/// `values` as an array of `D` dimensions, or an error naming `what` and its shape.
fn shaped<T, D: lstm::ndarray::Dimension>(
    what: &str,
    values: ArrayD<T>,
) -> Result<lstm::ndarray::Array<T, D>> {
    let rank = D::NDIM.unwrap_or(values.ndim());
    let found = values.shape().to_vec();
    values.into_dimensionality().map_err(|_| {
        Error::invalid_value(
            what,
            format!("expected a {rank}-dimensional array, found shape {found:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use lstm::MergeMode;

    use super::MergeArg;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_the_documented_flags() {
        let cli = Cli::parse_from([
            "lstm",
            "infer",
            "--weights",
            "w.safetensors",
            "--input",
            "x.npy",
            "--cell",
            "peephole",
            "--batch-first",
            "--mask",
            "m.npy",
            "--zero-output-for-mask",
            "--h0",
            "h0.npy",
            "--c0",
            "c0.npy",
            "--output",
            "y.npy",
            "--h-n",
            "h.npy",
            "--c-n",
            "c.npy",
            "--grad-output",
            "g.npy",
            "--grads",
            "grads.safetensors",
            "--merge-mode",
            "none",
            "--output-reverse",
            "yr.npy",
            "--grad-output-reverse",
            "gr.npy",
            "--go-backwards",
            "--no-return-sequences",
            "--constants",
            "constants.npy",
        ]);
        let Some(Command::Infer(args)) = cli.command else {
            panic!("not infer");
        };
        assert_eq!(args.cell, "peephole");
        assert!(args.batch_first && args.zero_output_for_mask);
        assert_eq!(args.h_n.unwrap().to_str(), Some("h.npy"));
        assert_eq!(args.grads.unwrap().to_str(), Some("grads.safetensors"));
        assert_eq!(args.merge_mode, MergeArg::None);
        assert!(args.go_backwards && args.no_return_sequences);
        assert_eq!(args.constants.unwrap().to_str(), Some("constants.npy"));
    }

    #[test]
    fn merge_modes_are_keras_names() {
        for mode in MergeMode::ALL {
            let cli = Cli::parse_from([
                "lstm",
                "infer",
                "--weights",
                "w",
                "--input",
                "x",
                "--output",
                "y",
                "--merge-mode",
                mode.keras_name(),
            ]);
            let Some(Command::Infer(args)) = cli.command else {
                panic!("not infer");
            };
            assert_eq!(MergeMode::from(args.merge_mode), mode);
        }
    }

    #[test]
    fn rejects_inconsistent_flags() {
        let base = [
            "lstm",
            "infer",
            "--weights",
            "w",
            "--input",
            "x",
            "--output",
            "y",
        ];
        for extra in [
            &["--lengths", "l", "--mask", "m"][..],
            &["--zero-output-for-mask"],
            &["--grad-output", "g"],
            &["--grads", "g"],
            &["--grad-output-reverse", "g"],
            &["--merge-mode", "average"],
        ] {
            let args = base.iter().chain(extra);
            assert!(Cli::try_parse_from(args).is_err(), "{extra:?}");
        }
        assert!(Cli::try_parse_from(base).is_ok());
    }
}
