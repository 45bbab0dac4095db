//! The `#[lstm_cell]` attribute: a declarative gate-equation spec compiled to a weight struct,
//! a fused forward step and a symbolically derived fused backward step.
//!
//! Stages, one file each, data flowing one way: `parse` (tokens → [`spec`] model) →
//! `validate` (names resolved, every error collected) → `ir` (the step's expression graph)
//! → `grad` (reverse-mode derivation over that graph) → `schedule` (loops over the hidden
//! units) → `expand` (quote!). The spec language itself is documented on [`macro@lstm_cell`].

mod errors;
mod expand;
mod grad;
mod ir;
mod parse;
mod schedule;
mod spec;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Defines an LSTM cell from the equations that differ from PyTorch's `nn.LSTM`.
///
/// An empty spec is the standard LSTM: with `zx = W_ih·x`, `zh = W_hh·h_prev` split by gate,
///
/// ```text
/// z = zx + b_ih + zh + b_hh    (per gate: z_i, z_f, z_g, z_o)
/// i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_g)   o = sigmoid(z_o)
/// c = f * c_prev + i * g
/// h = o * tanh(c)
/// ```
///
/// A spec overrides any of these, `name = expression`, and declares extra learned
/// parameters as fields (`PerUnit`, `Scalar` or `Gates`, with `#[init(...)]`). See the
/// README's "Writing a cell" section for the whole language.
#[proc_macro_attribute]
pub fn lstm_cell(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_cell(args.into(), item.into()).into()
}

/// The whole pipeline on `proc_macro2` tokens (what the snapshot tests call).
fn expand_cell(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    parse::spec(args, item)
        .and_then(validate::check)
        .map(|checked| expand::cell(&checked))
        .unwrap_or_else(syn::Error::into_compile_error)
}
