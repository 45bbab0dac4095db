//! Expansion snapshots of every zoo cell, read from the zoo's own source so a new zoo cell is
//! snapshotted without touching this file. Each snapshot is the prettyplease-formatted code a
//! reviewer reads: the weight struct, the fused forward steps and the derived backward step.

use quote::ToTokens;

const ZOO: &str = include_str!("../../lstm-runtime/src/zoo.rs");

/// `(name, args, item)` for every `#[lstm_cell]` struct of the zoo.
fn zoo_cells() -> Vec<(String, proc_macro2::TokenStream, proc_macro2::TokenStream)> {
    let file = syn::parse_file(ZOO).expect("the zoo parses");
    file.items
        .into_iter()
        .filter_map(|item| {
            let syn::Item::Struct(mut item) = item else {
                return None;
            };
            let position = item
                .attrs
                .iter()
                .position(|a| a.path().is_ident("lstm_cell"))?;
            let attr = item.attrs.remove(position);
            let args = match attr.meta {
                syn::Meta::List(list) => list.tokens,
                _ => proc_macro2::TokenStream::new(),
            };
            Some((item.ident.to_string(), args, item.into_token_stream()))
        })
        .collect()
}

#[test]
fn zoo_has_every_cell_of_the_foundation() {
    let names: Vec<String> = zoo_cells().into_iter().map(|(n, ..)| n).collect();
    for expected in [
        "Lstm",
        "ForgetBias",
        "ScaledForget",
        "Peephole",
        "Cifg",
        "HardSigmoid",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "zoo lacks {expected}: {names:?}"
        );
    }
}

#[test]
fn zoo_expansions() {
    for (name, args, item) in zoo_cells() {
        let tokens = crate::expand_cell(args, item);
        let file: syn::File = syn::parse2(tokens).expect("generated code parses");
        insta::assert_snapshot!(name, prettyplease::unparse(&file));
    }
}
