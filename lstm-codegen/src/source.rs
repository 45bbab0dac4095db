//! Finds the `#[lstm_cell]` items of a Rust source file, wherever they are (at the top level,
//! in modules, in function bodies), and splits each into what the compiler would hand the
//! attribute macro: the attribute's arguments and the item without the attribute.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// One `#[lstm_cell(...)]` item.
pub struct CellItem {
    /// The tokens between the attribute's parentheses.
    pub args: TokenStream,
    /// The item, without the attribute.
    pub item: TokenStream,
    /// The attribute, where errors without a narrower place point.
    pub attribute: Span,
}

/// Every `#[lstm_cell]` item of `file`, in source order.
pub fn cell_items(file: &syn::File) -> Vec<CellItem> {
    let mut finder = Finder { found: Vec::new() };
    finder.visit_file(file);
    finder.found
}

struct Finder {
    found: Vec<CellItem>,
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if let Some(cell) = cell_item(item) {
            self.found.push(cell);
        }
        syn::visit::visit_item(self, item);
    }
}

/// `lstm_cell` or a path ending in it (`lstm::lstm_cell`).
fn is_lstm_cell(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "lstm_cell")
}

fn cell_item(item: &syn::Item) -> Option<CellItem> {
    let mut item = item.clone();
    let attrs = match &mut item {
        syn::Item::Struct(i) => &mut i.attrs,
        syn::Item::Enum(i) => &mut i.attrs,
        syn::Item::Union(i) => &mut i.attrs,
        syn::Item::Fn(i) => &mut i.attrs,
        syn::Item::Trait(i) => &mut i.attrs,
        syn::Item::Impl(i) => &mut i.attrs,
        syn::Item::Type(i) => &mut i.attrs,
        _ => return None,
    };
    let position = attrs.iter().position(is_lstm_cell)?;
    let attr = attrs.remove(position);
    let attribute = attr.span();
    let args = match attr.meta {
        syn::Meta::List(list) => list.tokens,
        _ => TokenStream::new(),
    };
    Some(CellItem {
        args,
        item: item.into_token_stream(),
        attribute,
    })
}
