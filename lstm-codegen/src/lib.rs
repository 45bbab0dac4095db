//! The code generator behind `#[lstm_cell]`, as a plain library: it turns a cell's spec into
//! the Rust the macro emits, and shows the gradient it derived. The `lstm-macros` crate wraps
//! [`lstm_cell`] thinly (as thiserror-impl and serde_derive_internals are wrapped); the
//! `lstm expand` command and snapshot tests call [`expand`], [`equations`] and [`cells`] on
//! a source file.
//!
//! ```
//! let source = "#[lstm_cell(f = sigmoid(1.5 * z_f))] pub struct ScaledForget;";
//! let code = lstm_codegen::expand(source)?;
//! assert!(code.contains("impl<F: ::lstm::Float> ::lstm::Cell for ScaledForget<F>"));
//! let equations = &lstm_codegen::equations(source)?[0];
//! assert!(equations.to_string().contains("d_z_f = 1.5 · d_f · f · (1 − f)"));
//! # Ok::<(), lstm_codegen::Diagnostics>(())
//! ```
//!
//! Stages, one file each, data flowing one way: `parse` (tokens → `spec` model) → `validate`
//! (names resolved against the `functions` table and the `defaults`, every error collected)
//! → `ir` (the step's expression graph) → `grad` (reverse-mode derivation over that graph)
//! → `plan` (what each step function reads and writes, `cache` deciding what training keeps
//! for backward) → `schedule` (the loops over the hidden units, as data; `names` for the
//! values it binds) → `expand` (quote! from the plans). `equations` prints the same
//! graphs as text; `source` finds the cells of a file and `diagnostics` locates its errors.

mod cache;
mod defaults;
mod diagnostics;
mod equations;
mod errors;
mod expand;
mod functions;
mod grad;
mod ir;
mod names;
mod parse;
mod plan;
mod schedule;
mod source;
mod spec;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;

pub use defaults::STANDARD_LSTM;
pub use diagnostics::{Diagnostic, Diagnostics, Location};
pub use equations::{Equation, Equations, FunctionUse, Origin};

/// The `#[lstm_cell]` attribute on `proc_macro2` tokens: the generated items, or
/// `compile_error!`s pointing at every mistake in the spec.
pub fn lstm_cell(args: TokenStream, item: TokenStream) -> TokenStream {
    match CellCode::compile(args, item) {
        Ok(cell) => cell.tokens(),
        Err(error) => error.into_compile_error(),
    }
}

/// Every `#[lstm_cell]` struct of a Rust source file, compiled (none if it has none); the
/// errors of all of them if any cell's spec is wrong.
pub fn cells(source: &str) -> Result<Vec<CellCode>, Diagnostics> {
    let file = syn::parse_file(source).map_err(|error| Diagnostics::from_syn(error, None))?;
    let mut cells = Vec::new();
    let mut errors = Diagnostics::none();
    for found in source::cell_items(&file) {
        match CellCode::compile(found.args, found.item) {
            Ok(cell) => cells.push(cell),
            Err(error) => errors.extend(Diagnostics::from_syn(error, Some(found.attribute))),
        }
    }
    if errors.is_empty() {
        Ok(cells)
    } else {
        Err(errors)
    }
}

/// The code `#[lstm_cell]` generates for every cell of a Rust source file, formatted by
/// prettyplease as one file; an error if the source defines no cell.
pub fn expand(source: &str) -> Result<String, Diagnostics> {
    let cells = cells(source)?;
    if cells.is_empty() {
        return Err(no_cells());
    }
    Ok(unparse(cells.iter().map(CellCode::tokens).collect()))
}

/// The equations of every cell of a Rust source file: forward as written and defaulted,
/// backward as derived; an error if the source defines no cell.
pub fn equations(source: &str) -> Result<Vec<Equations>, Diagnostics> {
    let cells = cells(source)?;
    if cells.is_empty() {
        return Err(no_cells());
    }
    Ok(cells.iter().map(CellCode::equations).collect())
}

fn no_cells() -> Diagnostics {
    Diagnostics::message("the source defines no #[lstm_cell] struct")
}

/// One cell, compiled: its checked spec, graphs and plans, ready to be written as Rust or
/// printed as equations.
pub struct CellCode {
    checked: validate::Checked,
    forward: ir::Forward,
    backward: grad::Backward,
    steps: plan::Steps,
}

impl CellCode {
    /// The pipeline from the attribute's arguments and the item.
    fn compile(args: TokenStream, item: TokenStream) -> syn::Result<CellCode> {
        let checked = parse::spec(args, item).and_then(validate::check)?;
        let mut forward = ir::lower(&checked);
        let backward = grad::differentiate(&mut forward);
        let steps = plan::Steps::plan(&checked, &forward, &backward);
        Ok(CellCode {
            checked,
            forward,
            backward,
            steps,
        })
    }

    /// The struct's name (`MyCell`).
    pub fn name(&self) -> String {
        self.checked.spec.ident.to_string()
    }

    /// The snake_case name the runtime knows the cell by (`my_cell`, its `SPEC.name`).
    pub fn spec_name(&self) -> String {
        expand::snake_case(&self.name())
    }

    /// The generated items as tokens.
    pub fn tokens(&self) -> TokenStream {
        expand::cell(&self.checked, &self.steps)
    }

    /// The generated items as prettyplease formats them.
    pub fn expand(&self) -> String {
        unparse(vec![self.tokens()])
    }

    pub fn equations(&self) -> Equations {
        Equations::new(&self.checked, &self.forward, &self.backward)
    }
}

/// Formats generated items. They always parse (every zoo cell's expansion is snapshotted);
/// were they not to, the raw tokens would still show what was generated.
fn unparse(items: Vec<TokenStream>) -> String {
    let tokens: TokenStream = items.into_iter().collect();
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}
