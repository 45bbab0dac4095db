//! quote! from the checked spec and its plans: the weight struct (`weights`), the `CellSpec`
//! constant (`spec`), the step functions (`kernel`) and the rustdoc that shows the equations
//! (`docs`). Nothing here decides anything; it writes what the plans say.

mod docs;
mod kernel;
mod spec;
mod weights;

use proc_macro2::TokenStream;
use quote::quote;

use crate::plan::Steps;
use crate::validate::Checked;

pub use spec::snake_case;

/// Everything generated for one cell.
pub fn cell(checked: &Checked, steps: &Steps) -> TokenStream {
    let krate = &checked.spec.krate;
    let ident = &checked.spec.ident;

    let doc = docs::cell_docs(checked);
    let structure = weights::structure(checked, &doc);
    let constructors = weights::constructors(checked);
    let spec = spec::spec_const(checked, steps);
    let cell = kernel::Cell {
        krate,
        ident,
        gates: checked.gates.len(),
        states: checked.states.len(),
        cache_units: steps.cache_units.len(),
        cache_rows: steps.cache_rows,
        record_units: steps.record_gates.len(),
    };
    let step = kernel::step_function(&steps.inference, &cell);
    let step_train = kernel::step_function(&steps.training, &cell);
    let step_backward = kernel::step_function(&steps.backward, &cell);
    let step_record = kernel::step_function(&steps.record, &cell);

    quote! {
        #structure

        #[automatically_derived]
        impl<F: #krate::Float> #krate::Cell for #ident<F> {
            type Elem = F;

            const SPEC: &'static #krate::CellSpec = &#spec;

            #constructors

            #step

            #step_train

            #step_backward

            #step_record
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
