//! quote! from the checked spec and its graphs: the weight struct (`weights`), the step
//! functions (`step`) and the rustdoc that shows the equations (`docs`).

mod docs;
mod step;
mod weights;

use proc_macro2::TokenStream;
use quote::quote;

use crate::grad;
use crate::ir;
use crate::validate::Checked;

/// Everything generated for one cell.
pub fn cell(checked: &Checked) -> TokenStream {
    let mut forward = ir::lower(checked);
    let backward = grad::differentiate(&mut forward);
    let steps = step::Steps::plan(checked, &forward, &backward);
    let krate = &checked.spec.krate;
    let ident = &checked.spec.ident;

    let doc = docs::cell_docs(checked);
    let structure = weights::structure(checked, &doc);
    let constructors = weights::constructors(checked);
    let spec = steps.spec_const(checked);
    let step_fns = steps.functions(checked, &forward);

    quote! {
        #structure

        #[automatically_derived]
        impl<F: #krate::Float> #krate::Cell for #ident<F> {
            type Elem = F;

            const SPEC: &'static #krate::CellSpec = &#spec;

            #constructors

            #step_fns
        }

        impl<F: #krate::Float> #ident<F> {
            /// A cell with freshly initialised weights: PyTorch's uniform `±1/√hidden_size`
            /// for the four weights, the spec's inits for its parameters.
            pub fn new<R: #krate::rand::Rng + ?Sized>(
                input_size: usize,
                hidden_size: usize,
                rng: &mut R,
            ) -> Self {
                <Self as #krate::Cell>::init(#krate::CellDims::new(input_size, hidden_size), rng)
            }
        }
    }
}
