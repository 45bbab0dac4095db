//! `lstm expand FILE.rs [--cell NAME] [--equations]`: the code `#[lstm_cell]` generates for
//! the cells of a Rust source file, or their equations (forward as written and defaulted,
//! backward as derived), from the same generator the macro runs (`lstm-codegen`).

use std::io::{self, Write};
use std::path::PathBuf;

use lstm_codegen::CellCode;

/// Arguments of `lstm expand`.
#[derive(Debug, clap::Args)]
pub struct ExpandArgs {
    /// A Rust source file with `#[lstm_cell]` structs.
    pub file: PathBuf,
    /// Only the cell of this name: the struct's (`MyCell`) or its `SPEC.name` (`my_cell`).
    #[arg(long)]
    pub cell: Option<String>,
    /// Print the equations instead of the code: forward as written and defaulted, backward as
    /// derived.
    #[arg(long)]
    pub equations: bool,
}

/// Why `lstm expand` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} defines no #[lstm_cell] struct")]
    NoCells { path: String },
    #[error("{path} defines no cell named `{name}`; it defines {defined}")]
    UnknownCell {
        path: String,
        name: String,
        defined: String,
    },
    #[error("{path}: the #[lstm_cell] specs have errors\n{rendered}")]
    Spec { path: String, rendered: String },
}

/// Writes the expansion (or the equations) of the selected cells of `args.file`.
pub fn run(args: &ExpandArgs, out: &mut impl Write) -> Result<(), super::Error> {
    let path = args.file.display().to_string();
    let source = std::fs::read_to_string(&args.file).map_err(|source| ExpandError::Read {
        path: path.clone(),
        source,
    })?;
    let cells = lstm_codegen::cells(&source).map_err(|diagnostics| ExpandError::Spec {
        path: path.clone(),
        rendered: diagnostics.render(&path, &source),
    })?;
    let selected = select(cells, args.cell.as_deref(), &path)?;
    for (index, cell) in selected.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        if args.equations {
            write!(out, "{}", cell.equations())?;
        } else {
            write!(out, "{}", cell.expand())?;
        }
    }
    Ok(())
}

/// The cells to print: all, or the one named `name`.
fn select(
    cells: Vec<CellCode>,
    name: Option<&str>,
    path: &str,
) -> Result<Vec<CellCode>, ExpandError> {
    if cells.is_empty() {
        return Err(ExpandError::NoCells {
            path: path.to_string(),
        });
    }
    let Some(name) = name else {
        return Ok(cells);
    };
    let defined: Vec<String> = cells.iter().map(CellCode::name).collect();
    let chosen: Vec<CellCode> = cells
        .into_iter()
        .filter(|cell| cell.name() == name || cell.spec_name() == name)
        .collect();
    if chosen.is_empty() {
        return Err(ExpandError::UnknownCell {
            path: path.to_string(),
            name: name.to_string(),
            defined: defined.join(", "),
        });
    }
    Ok(chosen)
}
