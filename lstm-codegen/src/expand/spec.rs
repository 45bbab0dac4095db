//! The `CellSpec` constant: what the runtime knows about a cell without running it (its
//! gates, parameters, equations, and the workspace sizes of its step functions).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::expand::kernel::n;
use crate::expand::weights::init_tokens;
use crate::plan::Steps;
use crate::spec::ParamShape;
use crate::validate::Checked;

/// The `CellSpec` literal.
pub fn spec_const(checked: &Checked, steps: &Steps) -> TokenStream {
    let spec = &checked.spec;
    let krate = &spec.krate;
    let type_name = spec.ident.to_string();
    let name = snake_case(&type_name);
    let gates = checked.gates.iter().map(|&k| match k {
        0 => quote!(#krate::Gate::Input),
        1 => quote!(#krate::Gate::Forget),
        2 => quote!(#krate::Gate::Cell),
        _ => quote!(#krate::Gate::Output),
    });
    let constant = match spec.params.iter().find(|p| p.shape == ParamShape::Constant) {
        Some(p) => {
            let name = p.ident.to_string();
            quote!(::core::option::Option::Some(#name))
        }
        None => quote!(::core::option::Option::None),
    };
    let params = spec
        .params
        .iter()
        .filter(|p| p.shape != ParamShape::Constant)
        .map(|p| {
            let name = p.ident.to_string();
            let shape = format_ident!("{}", p.shape.variant());
            let init = init_tokens(krate, p.init);
            quote!(#krate::ParamSpec { name: #name, shape: #krate::ParamShape::#shape, init: #init })
        });
    let equations = checked.equations.iter().map(|e| {
        let (name, rhs, written) = (e.name, &e.rhs, e.written);
        quote!(#krate::Equation { name: #name, rhs: #rhs, written: #written })
    });
    let reads_h_prev = checked.reads_h_prev;
    let scratch = n(steps
        .inference
        .row
        .scratch
        .len()
        .max(steps.training.row.scratch.len())
        .max(steps.record.row.scratch.len()));
    let cache_units = n(steps.cache_units.len());
    let cache_rows = n(steps.cache_rows);
    let backward_scratch = n(steps.backward.row.scratch.len());
    let shared = steps.shared_grad;
    let unit_local = steps.unit_local;
    let record = &steps.record_gates;
    let states = checked.states.iter().map(|t| t.name());
    quote! {
        #krate::CellSpec {
            name: #name,
            type_name: #type_name,
            gates: &[#(#gates),*],
            params: &[#(#params),*],
            constant: #constant,
            equations: &[#(#equations),*],
            reads_h_prev: #reads_h_prev,
            scratch: #krate::Workspace { per_unit: #scratch, per_row: 0 },
            cache: #krate::Workspace { per_unit: #cache_units, per_row: #cache_rows },
            backward_scratch: #krate::Workspace { per_unit: #backward_scratch, per_row: 0 },
            shared_preactivation_grad: #shared,
            unit_local: #unit_local,
            record: &[#(#record),*],
            states: &[#(#states),*],
        }
    }
}

/// `ForgetBias` → `forget_bias`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (k, ch) in name.char_indices() {
        if ch.is_uppercase() {
            if k > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
