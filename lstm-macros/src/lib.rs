//! The `#[lstm_cell]` attribute: a declarative gate-equation spec compiled to a weight struct,
//! a fused forward step and a symbolically derived fused backward step.
//!
//! A thin wrapper: the generator itself is the `lstm-codegen` library, so that the code and
//! gradients it produces can also be printed (`lstm expand`) and snapshotted. The spec
//! language is documented on [`macro@lstm_cell`].

use proc_macro::TokenStream;

/// Defines an LSTM cell from the equations that differ from PyTorch's `nn.LSTM`.
///
/// An empty spec is the standard LSTM: with `zx = W_ih·x`, `zh = W_hh·h_prev` split by gate
/// (`z` is evaluated per gate: `z_i`, `z_f`, `z_g`, `z_o`),
///
#[doc = concat!("```text\n", include_str!("../../lstm-codegen/src/standard_lstm.txt"), "```")]
///
/// A spec overrides any of these, `name = expression`, and declares extra learned
/// parameters as fields (`PerUnit`, `Scalar` or `Gates`, with `#[init(...)]`). See the
/// README's "Writing a cell" section for the whole language.
#[proc_macro_attribute]
pub fn lstm_cell(args: TokenStream, item: TokenStream) -> TokenStream {
    lstm_codegen::lstm_cell(args.into(), item.into()).into()
}
