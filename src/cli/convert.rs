//! `lstm convert IN OUT --from FORMAT`: maps a weights file from the layout it was saved in
//! (a framework's names, or a hand-written cell's tensors described by flags) to
//! `nn.LSTM`-named safetensors that `lstm infer` and the library load, or with `--to keras`
//! to Keras 3 weight paths. The mapping is the library's ([`lstm::io::layout`]); this module
//! turns flags into a [`SourceLayout`] and moves files.
//!
//! The flags of the generic formats (`combined`, `per-gate`) are a contract with the README
//! and with scripts that call this: their names and meanings do not change.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lstm::io::layout::without_keras_layers;
use lstm::io::layout::{Columns, Combined, GateOrder, PerGate, SourceLayout};
use lstm::io::{pytorch_to_keras, read_weights, write_weights};
use lstm::{Error, Result};

/// The layouts `--from` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// An `nn.LSTM` or `nn.LSTMCell` `state_dict` (`--prefix` for a submodule's keys).
    Pytorch,
    /// Keras 3's `.keras` and `.weights.h5` files, or Keras 3 weight paths or Keras 2 `:0`
    /// names (`.npz`, `.safetensors`).
    Keras,
    /// Flax `OptimizedLSTMCell` parameters, flattened with `/`.
    Flax,
    /// One matrix with every gate's rows (`--weight`, `--gates`, `--columns`).
    Combined,
    /// One tensor per gate (`--weight` pattern with `{g}`, `--gates`).
    PerGate,
}

/// The layouts `--to` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum To {
    /// `nn.LSTM` names (`weight_ih_l0`, …).
    Pytorch,
    /// Keras 3 weight paths (`lstm/lstm_cell/kernel`, …).
    Keras,
}

/// The flags of `lstm convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The weights to convert: `.safetensors`, or by extension `.npz`, HDF5 (`.h5`,
    /// `.weights.h5`) or a Keras 3 `.keras` archive.
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Where to write: `.safetensors`, or `.npz` by extension.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
    /// The layout of IN.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub from: From,
    /// The layout of OUT.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "pytorch")]
    pub to: To,
    /// `--from pytorch`: the key prefix of the LSTM in a whole model's `state_dict`
    /// (`encoder.lstm`).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// `--from keras`: a layer of the model to leave out, by its name in the file (a `Dense`
    /// head: `dense`, or the name the model gave it); repeat for several.
    #[arg(long, value_name = "LAYER")]
    pub ignore_layer: Vec<String>,
    /// `combined`: key of the matrix of all gates; `per-gate`: its pattern, `{g}` replaced
    /// by each gate's letter.
    #[arg(long, value_name = "KEY")]
    pub weight: Option<String>,
    /// Key (pattern) of a separate recurrent matrix.
    #[arg(long, value_name = "KEY")]
    pub weight_h: Option<String>,
    /// Key (pattern) of the bias.
    #[arg(long, value_name = "KEY")]
    pub bias: Option<String>,
    /// Key (pattern) of a second bias (PyTorch-style `b_h{g}`).
    #[arg(long, value_name = "KEY")]
    pub bias_h: Option<String>,
    /// Order of the input and hidden columns of a matrix over both: `x,h` or `h,x`.
    #[arg(long, value_name = "x,h|h,x")]
    pub columns: Option<String>,
    /// The gate blocks in storage order: four or fewer of i, f, g, o (c or j for g).
    #[arg(long, value_name = "ORDER")]
    pub gates: Option<String>,
    /// The matrices are stored `(in, out)`, as Keras and TensorFlow keep them.
    #[arg(long)]
    pub transposed: bool,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `lstm convert`, reporting what it wrote on `out`.
///
/// # Errors
///
/// [`Error::Config`] for flags that do not fit `--from` or an OUT that exists without
/// `--force`; any error reading, mapping or writing, naming the file or tensor.
pub fn run(args: &ConvertArgs, out: &mut impl Write) -> std::result::Result<(), super::Error> {
    let layout = source_layout(args)?;
    if args.output.exists() && !args.force {
        return Err(Error::Config {
            option: "OUT".into(),
            reason: format!(
                "`{}` exists; pass --force to overwrite it",
                args.output.display()
            ),
        }
        .into());
    }
    let source = read_weights(&args.input)?;
    let source = match args.ignore_layer.as_slice() {
        [] => source,
        layers => without_keras_layers(&source, layers)?,
    };
    let pytorch = layout.to_pytorch(&source)?;
    let converted = match args.to {
        To::Pytorch => pytorch,
        To::Keras => pytorch_to_keras(&pytorch)?,
    };
    write_weights(&converted, &args.output)?;
    writeln!(out, "wrote {}:", args.output.display())?;
    for (name, tensor) in converted.iter() {
        writeln!(out, "  {name} {:?} {}", tensor.shape(), tensor.dtype())?;
    }
    Ok(())
}

/// The layout the flags describe.
///
/// # Errors
///
/// [`Error::Config`] naming a flag that is missing for `--from`, given where it means
/// nothing, or malformed.
pub fn source_layout(args: &ConvertArgs) -> Result<SourceLayout> {
    let generic = matches!(args.from, From::Combined | From::PerGate);
    let generic_flags = [
        ("--weight", args.weight.is_some()),
        ("--weight-h", args.weight_h.is_some()),
        ("--bias", args.bias.is_some()),
        ("--bias-h", args.bias_h.is_some()),
        ("--columns", args.columns.is_some()),
        ("--gates", args.gates.is_some()),
        ("--transposed", args.transposed),
    ];
    if !generic && let Some((flag, _)) = generic_flags.iter().find(|(_, given)| *given) {
        return Err(Error::Config {
            option: flag.trim_start_matches('-').into(),
            reason: format!("{flag} describes `--from combined` or `--from per-gate` layouts"),
        });
    }
    if !args.ignore_layer.is_empty() && args.from != From::Keras {
        return Err(Error::Config {
            option: "ignore-layer".into(),
            reason: "--ignore-layer leaves a layer of a Keras model out (`--from keras`)".into(),
        });
    }
    if args.prefix.is_some() && args.from != From::Pytorch {
        return Err(Error::Config {
            option: "prefix".into(),
            reason: "--prefix selects a submodule of a PyTorch state_dict (`--from pytorch`)"
                .into(),
        });
    }
    let required = |flag: &str, value: &Option<String>| {
        value.clone().ok_or_else(|| Error::Config {
            option: flag.into(),
            reason: format!("`--from {}` needs --{flag}", from_name(args.from)),
        })
    };
    Ok(match args.from {
        From::Pytorch => SourceLayout::Pytorch {
            prefix: args.prefix.clone(),
        },
        From::Keras => SourceLayout::Keras,
        From::Flax => SourceLayout::Flax,
        From::Combined => {
            let columns = args.columns.as_deref().map(str::parse).transpose()?;
            if columns.is_none() && args.weight_h.is_none() {
                return Err(Error::Config {
                    option: "columns".into(),
                    reason: "`--from combined` needs --columns x,h or h,x (or a separate \
                             recurrent matrix, --weight-h)"
                        .into(),
                });
            }
            SourceLayout::Combined(Combined {
                weight: required("weight", &args.weight)?,
                weight_h: args.weight_h.clone(),
                bias: args.bias.clone(),
                bias_h: args.bias_h.clone(),
                columns,
                gates: gates(&required("gates", &args.gates)?)?,
                transposed: args.transposed,
            })
        }
        From::PerGate => SourceLayout::PerGate(PerGate {
            weight: required("weight", &args.weight)?,
            weight_h: args.weight_h.clone(),
            bias: args.bias.clone(),
            bias_h: args.bias_h.clone(),
            gates: gates(&required("gates", &args.gates)?)?,
            columns: args
                .columns
                .as_deref()
                .map(str::parse::<Columns>)
                .transpose()?,
            transposed: args.transposed,
        }),
    })
}

/// `--gates` parsed.
fn gates(text: &str) -> Result<GateOrder> {
    text.parse()
}

/// How `--from` spells a layout.
fn from_name(from: From) -> &'static str {
    match from {
        From::Pytorch => "pytorch",
        From::Keras => "keras",
        From::Flax => "flax",
        From::Combined => "combined",
        From::PerGate => "per-gate",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use lstm::io::{ParamName, TensorMap};

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ConvertArgs {
        let cli = Cli::try_parse_from(
            ["lstm", "convert", "in.safetensors", "out.safetensors"]
                .iter()
                .chain(args),
        )
        .unwrap_or_else(|err| panic!("{args:?}: {err}"));
        match cli.command {
            Some(Command::Convert(args)) => *args,
            other => panic!("not convert: {other:?}"),
        }
    }

    #[test]
    fn the_documented_generic_flags_describe_their_layouts() {
        let args = parse(&[
            "--from",
            "combined",
            "--weight",
            "kernel",
            "--bias",
            "bias",
            "--columns",
            "x,h",
            "--gates",
            "ijfo",
            "--transposed",
        ]);
        let SourceLayout::Combined(layout) = source_layout(&args).unwrap() else {
            panic!("not combined");
        };
        assert_eq!(layout.columns, Some(Columns::InputHidden));
        assert_eq!(layout.gates.to_string(), "ijfo");
        assert!(layout.transposed && layout.weight_h.is_none());

        let args = parse(&[
            "--from",
            "per-gate",
            "--weight",
            "w_i{g}",
            "--weight-h",
            "w_h{g}",
            "--bias",
            "b_i{g}",
            "--bias-h",
            "b_h{g}",
            "--gates",
            "ifgo",
        ]);
        let SourceLayout::PerGate(layout) = source_layout(&args).unwrap() else {
            panic!("not per-gate");
        };
        assert_eq!(layout.bias_h.as_deref(), Some("b_h{g}"));
        assert_eq!(layout.columns, None);

        let args = parse(&[
            "--from",
            "pytorch",
            "--prefix",
            "encoder.lstm",
            "--to",
            "keras",
        ]);
        assert_eq!(
            source_layout(&args).unwrap(),
            SourceLayout::Pytorch {
                prefix: Some("encoder.lstm".into())
            }
        );
        assert_eq!(args.to, To::Keras);
    }

    #[test]
    fn flags_that_do_not_fit_are_named() {
        let option = |args: &[&str]| match source_layout(&parse(args)) {
            Err(Error::Config { option, .. }) => option,
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(option(&["--from", "pytorch", "--gates", "ifgo"]), "gates");
        assert_eq!(option(&["--from", "keras", "--prefix", "m"]), "prefix");
        assert_eq!(
            option(&["--from", "combined", "--weight", "w", "--gates", "ifgo"]),
            "columns"
        );
        assert_eq!(
            option(&["--from", "combined", "--columns", "x,h", "--gates", "ifgo"]),
            "weight"
        );
        assert_eq!(option(&["--from", "per-gate", "--weight", "w{g}"]), "gates");
        assert_eq!(
            option(&["--from", "per-gate", "--weight", "w{g}", "--gates", "ifgx"]),
            "gates"
        );
        assert_eq!(
            option(&[
                "--from",
                "combined",
                "--weight",
                "w",
                "--gates",
                "ifgo",
                "--columns",
                "xh"
            ]),
            "columns"
        );
        assert!(Cli::try_parse_from(["lstm", "convert", "a", "b", "--from", "onnx"]).is_err());
        assert!(Cli::try_parse_from(["lstm", "convert", "a", "--from", "pytorch"]).is_err());
    }

    #[test]
    fn an_existing_output_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("cell.safetensors");
        let mut map = TensorMap::new();
        for key in ["weight_ih", "weight_hh"] {
            map.insert(
                key,
                lstm::io::Tensor::F32(lstm::ndarray::ArrayD::zeros(vec![4, 1])),
            );
        }
        map.write_safetensors(&input).unwrap();
        let output = dir.path().join("out.safetensors");
        std::fs::write(&output, b"mine").unwrap();
        let mut args = parse(&["--from", "pytorch"]);
        args.input = input;
        args.output = output.clone();
        let err = run(&args, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&output).unwrap(), b"mine");
        args.force = true;
        let mut report = Vec::new();
        run(&args, &mut report).unwrap();
        let written = TensorMap::read_safetensors(&output).unwrap();
        assert!(written.names().all(|key| ParamName::parse(key).is_some()));
        assert_eq!(written.len(), 2);
        assert!(
            String::from_utf8(report)
                .unwrap()
                .contains("weight_ih_l0 [4, 1] f32")
        );
    }
}
