//! The weight struct: PyTorch's four weights plus the spec's parameters, generic over the
//! float type; construction, dims, and visiting by name.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::expand::kernel::n;
use crate::spec::{Init, ParamShape};
use crate::validate::Checked;

pub fn structure(checked: &Checked, doc: &str) -> TokenStream {
    let spec = &checked.spec;
    let krate = &spec.krate;
    let (attrs, vis, ident) = (&spec.attrs, &spec.vis, &spec.ident);
    let doc_lines = doc.lines().map(|line| quote!(#[doc = #line]));
    let params = spec.params.iter().map(|p| {
        let name = &p.ident;
        let attrs = &p.attrs;
        if p.shape == ParamShape::Constant {
            let weight = format_ident!("weight_{}", name);
            let line = format!(
                " Projection of the constant input `{name}`: `(gates · hidden_size, constant_size)`, \
                 initialised {}. Equations read `{name}` (gate-wise) or `{name}_f` (one gate) as \
                 `{weight} · {name}`, computed once per call.",
                init_text(p.init)
            );
            return quote! {
                #(#attrs)*
                #[doc = #line]
                pub #weight: #krate::ndarray::Array2<F>,
            };
        }
        let line = format!(
            " `{}`: {}, initialised {}.",
            name,
            match p.shape {
                ParamShape::PerUnit => "one value per hidden unit, shape `(hidden_size,)`",
                ParamShape::Scalar => "a single value, shape `(1,)`",
                ParamShape::Gates => "one value per gate and unit, shape `(gates · hidden_size,)`",
                ParamShape::Constant | ParamShape::State => "",
            },
            init_text(p.init)
        );
        let separator = if attrs.is_empty() {
            quote!()
        } else {
            quote!(#[doc = ""])
        };
        quote! {
            #(#attrs)*
            #separator
            #[doc = #line]
            pub #name: #krate::ndarray::Array1<F>,
        }
    });
    quote! {
        #(#attrs)*
        #[doc = ""]
        #(#doc_lines)*
        #[derive(Clone, Debug, PartialEq)]
        #vis struct #ident<F: #krate::Float = f32> {
            /// Input-to-hidden weights `W_ih`, gate-stacked rows: `(gates · hidden_size, input_size)`.
            pub weight_ih: #krate::ndarray::Array2<F>,
            /// Hidden-to-hidden weights `W_hh`: `(gates · hidden_size, recurrent_size / heads)`, the
            /// heads of a block-diagonal recurrence reading their own slice of `h_prev`.
            pub weight_hh: #krate::ndarray::Array2<F>,
            /// Input bias `b_ih`: `(gates · hidden_size,)`, `None` for a cell without bias.
            pub bias_ih: ::core::option::Option<#krate::ndarray::Array1<F>>,
            /// Hidden bias `b_hh`: `(gates · hidden_size,)`, `None` for a cell without bias.
            pub bias_hh: ::core::option::Option<#krate::ndarray::Array1<F>>,
            #(#params)*
        }
    }
}

pub fn init_text(init: Init) -> String {
    match init {
        Init::Default => "uniform in ±1/√hidden_size (PyTorch's default)".into(),
        Init::Zeros => "to zeros".into(),
        Init::Ones => "to ones".into(),
        Init::Constant(v) => format!("to {v:?}"),
        Init::Uniform(lo, hi) => format!("uniform in [{lo:?}, {hi:?})"),
    }
}

pub fn init_tokens(krate: &syn::Path, init: Init) -> TokenStream {
    match init {
        Init::Default => quote!(#krate::Init::Default),
        Init::Zeros => quote!(#krate::Init::Zeros),
        Init::Ones => quote!(#krate::Init::Ones),
        Init::Constant(v) => quote!(#krate::Init::Constant(#v)),
        Init::Uniform(lo, hi) => quote!(#krate::Init::Uniform(#lo, #hi)),
    }
}

/// `init`, `zeros`, `dims`, `weights`, `weights_mut`, `visit`, `visit_mut`.
pub fn constructors(checked: &Checked) -> TokenStream {
    let spec = &checked.spec;
    let krate = &spec.krate;
    let gates = n(checked.gates.len());
    let vectors: Vec<_> = spec
        .params
        .iter()
        .filter(|p| p.shape != ParamShape::Constant)
        .collect();
    let names: Vec<_> = vectors.iter().map(|p| &p.ident).collect();
    let name_strs: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let constant = spec.params.iter().find(|p| p.shape == ParamShape::Constant);
    let constant_field = constant.map(|p| format_ident!("weight_{}", p.ident));
    let constant_key = constant.map(|p| format!("weight_{}", p.ident));
    let constant_zeros = constant_field
        .iter()
        .map(|f| quote!(#f: #krate::ndarray::Array2::zeros((rows, dims.constant_size)),));
    let constant_init = constant.map(|p| {
        let field = format_ident!("weight_{}", p.ident);
        let init = init_tokens(krate, p.init);
        quote!(#init.fill(#krate::__private::slice2_mut(&mut cell.#field), dims.hidden_size, rng);)
    });
    let constant_size = match &constant_field {
        Some(f) => quote!(self.#f.ncols()),
        None => quote!(0),
    };
    let (constant_ref, constant_mut) = match &constant_field {
        Some(f) => (
            quote!(::core::option::Option::Some(&self.#f)),
            quote!(::core::option::Option::Some(&mut self.#f)),
        ),
        None => (
            quote!(::core::option::Option::None),
            quote!(::core::option::Option::None),
        ),
    };
    let constant_visit = constant_field
        .iter()
        .zip(&constant_key)
        .map(|(f, key)| quote!(visitor(#key, self.#f.view().into_dyn());));
    let constant_visit_mut = constant_field
        .iter()
        .zip(&constant_key)
        .map(|(f, key)| quote!(visitor(#key, self.#f.view_mut().into_dyn());));
    let lens = vectors.iter().map(|p| match p.shape {
        ParamShape::PerUnit => quote!(dims.hidden_size),
        ParamShape::Scalar => quote!(1),
        ParamShape::Gates | ParamShape::Constant | ParamShape::State => {
            quote!(#gates * dims.hidden_size)
        }
    });
    let inits = vectors.iter().map(|p| {
        let name = &p.ident;
        let init = init_tokens(krate, p.init);
        quote!(#init.fill(#krate::__private::slice_mut(&mut cell.#name), dims.hidden_size, rng);)
    });
    let private = format_ident!("__private");
    quote! {
        fn init<R: #krate::rand::Rng + ?Sized>(dims: #krate::CellDims, rng: &mut R) -> Self {
            let mut cell = <Self as #krate::Cell>::zeros(dims);
            let weights = <Self as #krate::Cell>::weights_mut(&mut cell);
            let tensors = [
                ::core::option::Option::Some(#krate::#private::slice2_mut(weights.weight_ih)),
                ::core::option::Option::Some(#krate::#private::slice2_mut(weights.weight_hh)),
                weights.bias_ih.map(#krate::#private::slice_mut),
                weights.bias_hh.map(#krate::#private::slice_mut),
            ];
            for values in tensors.into_iter().flatten() {
                #krate::Init::Default.fill(values, dims.hidden_size, rng);
            }
            #(#inits)*
            #constant_init
            cell
        }

        fn zeros(dims: #krate::CellDims) -> Self {
            let rows = #gates * dims.hidden_size;
            Self {
                weight_ih: #krate::ndarray::Array2::zeros((rows, dims.input_size)),
                weight_hh: #krate::ndarray::Array2::zeros((rows, dims.head_size())),
                bias_ih: dims.bias.then(|| #krate::ndarray::Array1::zeros(rows)),
                bias_hh: dims.bias.then(|| #krate::ndarray::Array1::zeros(rows)),
                #(#names: #krate::ndarray::Array1::zeros(#lens),)*
                #(#constant_zeros)*
            }
        }

        fn dims(&self) -> #krate::CellDims {
            #krate::CellDims {
                input_size: self.weight_ih.ncols(),
                hidden_size: self.weight_ih.nrows() / #gates,
                recurrent_size: self.weight_hh.ncols(),
                bias: self.bias_ih.is_some(),
                constant_size: #constant_size,
                heads: 1,
            }
        }

        fn weights(&self) -> #krate::Weights<'_, F> {
            #krate::Weights {
                weight_ih: &self.weight_ih,
                weight_hh: &self.weight_hh,
                bias_ih: self.bias_ih.as_ref(),
                bias_hh: self.bias_hh.as_ref(),
                weight_constant: #constant_ref,
            }
        }

        fn weights_mut(&mut self) -> #krate::WeightsMut<'_, F> {
            #krate::WeightsMut {
                weight_ih: &mut self.weight_ih,
                weight_hh: &mut self.weight_hh,
                bias_ih: self.bias_ih.as_mut(),
                bias_hh: self.bias_hh.as_mut(),
                weight_constant: #constant_mut,
            }
        }

        fn visit(&self, visitor: &mut dyn FnMut(&'static str, #krate::ndarray::ArrayViewD<'_, F>)) {
            visitor("weight_ih", self.weight_ih.view().into_dyn());
            visitor("weight_hh", self.weight_hh.view().into_dyn());
            if let ::core::option::Option::Some(bias) = &self.bias_ih {
                visitor("bias_ih", bias.view().into_dyn());
            }
            if let ::core::option::Option::Some(bias) = &self.bias_hh {
                visitor("bias_hh", bias.view().into_dyn());
            }
            #(visitor(#name_strs, self.#names.view().into_dyn());)*
            #(#constant_visit)*
        }

        fn visit_mut(
            &mut self,
            visitor: &mut dyn FnMut(&'static str, #krate::ndarray::ArrayViewMutD<'_, F>),
        ) {
            visitor("weight_ih", self.weight_ih.view_mut().into_dyn());
            visitor("weight_hh", self.weight_hh.view_mut().into_dyn());
            if let ::core::option::Option::Some(bias) = &mut self.bias_ih {
                visitor("bias_ih", bias.view_mut().into_dyn());
            }
            if let ::core::option::Option::Some(bias) = &mut self.bias_hh {
                visitor("bias_hh", bias.view_mut().into_dyn());
            }
            #(visitor(#name_strs, self.#names.view_mut().into_dyn());)*
            #(#constant_visit_mut)*
        }
    }
}
