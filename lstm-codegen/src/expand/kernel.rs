//! The code of one step function from its [`Kernel`] plan: the row kernel (one generic,
//! `#[inline(always)]` body with the fused loops over the hidden units of one batch row), the
//! loop over the batch rows that cuts each row's slices for it, and the thin wrappers that
//! compile that loop for AVX2 and AVX-512 with the runtime's FMA flavour of the spec's
//! functions, chosen at run time by `isa::active()`.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use crate::plan::{Arg, Blocks, Buffer, Kernel, Kind, Step, Width};
use crate::schedule::{At, Block, Stmt, Value};
use crate::spec::BinOp;

/// What a step function's code needs to know about the cell.
pub struct Cell<'a> {
    pub krate: &'a syn::Path,
    pub ident: &'a Ident,
    pub gates: usize,
    /// Carried states besides `h` (`c`, then the declared ones).
    pub states: usize,
    pub cache_units: usize,
    pub cache_rows: usize,
    /// Gates the recording step writes per unit.
    pub record_units: usize,
}

/// The whole step function (`step`, `step_train`, `step_backward` or `step_record`).
pub fn step_function(kernel: &Kernel, cell: &Cell) -> TokenStream {
    let krate = cell.krate;
    let ident = cell.ident;
    let row_kernel = row_kernel(kernel, krate);
    let rows = rows(kernel, cell);
    let (signature, io, extra_param, extra_arg, check) = match kernel.step {
        Step::Inference => (
            quote!(fn step(&self, io: #krate::StepIo<'_, F>)),
            quote!(#krate::StepIo<'_, F>),
            quote!(),
            quote!(),
            quote!(#krate::__private::check_step(self, &io);),
        ),
        Step::Training => (
            quote!(fn step_train(&self, io: #krate::StepIo<'_, F>, cache: &mut [F])),
            quote!(#krate::StepIo<'_, F>),
            quote!(, cache: &mut [F]),
            quote!(, cache),
            quote!(#krate::__private::check_train(self, &io, cache);),
        ),
        Step::Record => (
            quote!(fn step_record(&self, io: #krate::StepIo<'_, F>, record: &mut [F])),
            quote!(#krate::StepIo<'_, F>),
            quote!(, record: &mut [F]),
            quote!(, record),
            quote!(#krate::__private::check_record(self, &io, record);),
        ),
        Step::Backward => {
            let grads = if writes_grads(kernel) {
                format_ident!("grads")
            } else {
                format_ident!("_grads")
            };
            let (extra_param, extra_arg) = if writes_grads(kernel) {
                (quote!(, grads: &mut #ident<F>), quote!(, grads))
            } else {
                (quote!(), quote!())
            };
            (
                quote!(fn step_backward(&self, io: #krate::BackwardIo<'_, F>, #grads: &mut Self)),
                quote!(#krate::BackwardIo<'_, F>),
                extra_param,
                extra_arg,
                quote!(#krate::__private::check_backward(self, &io);),
            )
        }
    };
    let avx2 = "avx2,fma";
    let avx512 = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma";
    let helpers = helpers(kernel, krate);
    quote! {
        #signature {
            #helpers
            #row_kernel
            #rows
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = #avx2)]
            fn rows_avx2<F: #krate::Float>(cell: &#ident<F>, io: #io #extra_param) {
                rows(#krate::ops::Fma, cell, io #extra_arg)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = #avx512)]
            fn rows_avx512<F: #krate::Float>(cell: &#ident<F>, io: #io #extra_param) {
                rows(#krate::ops::Fma, cell, io #extra_arg)
            }
            #check
            #[cfg(target_arch = "x86_64")]
            match #krate::isa::active() {
                #krate::isa::Isa::Avx512 => unsafe { rows_avx512(self, io #extra_arg) },
                #krate::isa::Isa::Avx2 => unsafe { rows_avx2(self, io #extra_arg) },
                #krate::isa::Isa::Baseline => rows(#krate::ops::Portable, self, io #extra_arg),
            }
            #[cfg(not(target_arch = "x86_64"))]
            rows(#krate::ops::Portable, self, io #extra_arg);
        }
    }
}

/// `use ::lstm::__private::{blocks, …};` for the cutting helpers the step's code calls.
fn helpers(kernel: &Kernel, krate: &syn::Path) -> TokenStream {
    let all = kernel
        .blocks
        .iter()
        .chain(&kernel.call_blocks)
        .chain(&kernel.row_blocks);
    let mut names: Vec<Ident> = all.map(helper).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => quote!(),
        _ => quote!(use #krate::__private::{#(#names),*};),
    }
}

/// Whether the step accumulates parameter gradients into its `grads` argument.
fn writes_grads(kernel: &Kernel) -> bool {
    let mut args = kernel
        .params
        .iter()
        .map(|p| &p.arg)
        .chain(kernel.call_blocks.iter().map(|b| &b.of));
    args.any(|arg| {
        matches!(
            arg,
            Arg::Slice {
                buffer: Buffer::Grad(_),
                ..
            }
        )
    })
}

/// The runtime helper that cuts `b`: `blocks`, `blocks_mut`, `blocks_rest`, `blocks_rest_mut`.
fn helper(b: &Blocks) -> Ident {
    let rest = if b.rest.is_some() { "_rest" } else { "" };
    let mutable = if b.mutable { "_mut" } else { "" };
    format_ident!("blocks{}{}", rest, mutable)
}

/// The loop over the batch rows, generic over the ops flavour: cuts each row's slices and
/// runs the row kernel on them.
fn rows(kernel: &Kernel, cell: &Cell) -> TokenStream {
    let krate = cell.krate;
    let ident = cell.ident;
    let (io, extra) = match kernel.step {
        Step::Inference => (quote!(#krate::StepIo<'_, F>), quote!()),
        Step::Training => (quote!(#krate::StepIo<'_, F>), quote!(, cache: &mut [F])),
        Step::Record => (quote!(#krate::StepIo<'_, F>), quote!(, record: &mut [F])),
        Step::Backward if writes_grads(kernel) => (
            quote!(#krate::BackwardIo<'_, F>),
            quote!(, grads: &mut #ident<F>),
        ),
        Step::Backward => (quote!(#krate::BackwardIo<'_, F>), quote!()),
    };
    let mut args: Vec<&Arg> = kernel.params.iter().map(|p| &p.arg).collect();
    args.extend(kernel.call_blocks.iter().map(|b| &b.of));
    args.extend(kernel.row_blocks.iter().map(|b| &b.of));
    let uses = |width: Width| {
        args.iter()
            .any(|arg| matches!(arg, Arg::Slice { width: w, .. } if *w == width))
    };
    let gates = n(cell.gates);
    let mut sizes = quote!(let hidden = cell.weight_ih.nrows() / #gates;);
    if uses(Width::Gates) {
        sizes.extend(quote!(let gates = #gates * hidden;));
    }
    if uses(Width::State) {
        let states = n(cell.states);
        sizes.extend(quote!(let states = #states * hidden;));
    }
    if uses(Width::Cache) {
        let units = n(cell.cache_units);
        sizes.extend(match cell.cache_rows {
            0 => quote!(let cache_len = #units * hidden;),
            rows => {
                let rows = n(rows);
                quote!(let cache_len = #units * hidden + #rows;)
            }
        });
    }
    if uses(Width::Record) {
        let units = n(cell.record_units);
        sizes.extend(quote!(let record_len = #units * hidden;));
    }
    if uses(Width::Scratch) {
        let spills = n(kernel.row.scratch.len());
        sizes.extend(quote!(let scratch_len = #spills * hidden;));
    }
    let call_blocks = kernel
        .call_blocks
        .iter()
        .map(|b| blocks(b, &arg(&b.of, krate)));
    let row_blocks = kernel
        .row_blocks
        .iter()
        .map(|b| blocks(b, &arg(&b.of, krate)));
    let args = kernel.params.iter().map(|p| arg(&p.arg, krate));
    quote! {
        /// Every batch row of the step, with the spec's functions as `ops` computes them.
        #[inline(always)]
        fn rows<F: #krate::Float, Ops: #krate::ops::Flavour>(
            ops: Ops,
            cell: &#ident<F>,
            io: #io
            #extra
        ) {
            #sizes
            #(#call_blocks)*
            for row in 0..io.rows {
                #(#row_blocks)*
                row_kernel(ops, hidden, #(#args),*);
            }
        }
    }
}

/// The row kernel: the fused loops over the units of one batch row.
fn row_kernel(kernel: &Kernel, krate: &syn::Path) -> TokenStream {
    let params = kernel.params.iter().map(|p| {
        let name = format_ident!("{}", p.name);
        match p.kind {
            Kind::Value => quote!(#name: F),
            Kind::Slice => quote!(#name: &[F]),
            Kind::SliceMut => quote!(#name: &mut [F]),
        }
    });
    let cuts = kernel.blocks.iter().map(|b| {
        let Arg::Name(stacked) = &b.of else {
            return quote!();
        };
        let stacked = format_ident!("{}", stacked);
        blocks(b, &quote!(#stacked))
    });
    let units = kernel
        .row
        .leaves
        .contains(&crate::ir::Leaf::Units)
        .then(|| quote!(let units = F::of(hidden as f64);));
    let body = kernel.row.blocks.iter().map(|block| match block {
        Block::Row(stmts) => {
            let stmts = stmts.iter().map(stmt);
            quote!(#(#stmts)*)
        }
        Block::Units(stmts) => {
            let stmts = stmts.iter().map(stmt);
            quote!(for j in 0..hidden { #(#stmts)* })
        }
    });
    let doc = match kernel.step {
        Step::Inference => " One batch row of the step, fused into loops over the hidden units.",
        Step::Training => {
            " One batch row of the step, caching what the backward step reads (`cache_*`)."
        }
        Step::Backward => " One batch row of the derived backward step.",
        Step::Record => " One batch row of the step, recording every gate (`record_*`).",
    };
    let ops = if calls_ops(&kernel.row.blocks) {
        format_ident!("ops")
    } else {
        format_ident!("_ops")
    };
    quote! {
        #[doc = #doc]
        #[inline(always)]
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
        fn row_kernel<F: #krate::Float, Ops: #krate::ops::Flavour>(
            #ops: Ops,
            hidden: usize,
            #(#params),*
        ) {
            #(#cuts)*
            #units
            #(#body)*
        }
    }
}

/// Whether the row's code calls a function of its ops flavour.
fn calls_ops(blocks: &[Block]) -> bool {
    fn calls(value: &Value) -> bool {
        match value {
            Value::Name(_) | Value::Load(..) | Value::Lit(_) => false,
            Value::Call(..) | Value::Cmp(..) | Value::Sum(_) => true,
            Value::Neg(inner) => calls(inner),
            Value::Binary(_, left, right) => calls(left) || calls(right),
        }
    }
    blocks.iter().any(|block| {
        let (Block::Row(stmts) | Block::Units(stmts)) = block;
        stmts.iter().any(|stmt| match stmt {
            Stmt::Let { value, .. } | Stmt::Store { value, .. } => calls(value),
        })
    })
}

/// `let [a, b, …] = blocks(of, hidden);`, with `_` for unread blocks and the rest if wanted.
fn blocks(b: &Blocks, of: &TokenStream) -> TokenStream {
    let names = b.names.iter().map(|name| match name {
        Some(name) => {
            let name = format_ident!("{}", name);
            quote!(#name)
        }
        None => quote!(_),
    });
    let helper = helper(b);
    match &b.rest {
        None => quote!(let [#(#names),*] = #helper(#of, hidden);),
        Some(rest) => {
            let rest = format_ident!("{}", rest);
            quote!(let ([#(#names),*], #rest) = #helper(#of, hidden);)
        }
    }
}

/// What the loop over the rows passes for one parameter of the row kernel.
fn arg(arg: &Arg, krate: &syn::Path) -> TokenStream {
    match arg {
        Arg::Name(name) => {
            let name = format_ident!("{}", name);
            quote!(#name)
        }
        Arg::Scalar(param) => {
            let field = format_ident!("{}", param);
            quote!(#krate::__private::slice(&cell.#field)[0])
        }
        Arg::Slice {
            buffer,
            per_row,
            width,
            mutable,
        } => {
            let buffer = match buffer {
                Buffer::Io(field) => {
                    let field = format_ident!("{}", field);
                    quote!(io.#field)
                }
                Buffer::Cache => quote!(cache),
                Buffer::Record => quote!(record),
                Buffer::Param(param) => {
                    let field = format_ident!("{}", param);
                    quote!(#krate::__private::slice(&cell.#field))
                }
                Buffer::Grad(param) => {
                    let field = format_ident!("{}", param);
                    quote!(#krate::__private::slice_mut(&mut grads.#field))
                }
            };
            let width = match width {
                Width::Hidden => quote!(hidden),
                Width::Gates => quote!(gates),
                Width::State => quote!(states),
                Width::One => quote!(1),
                Width::Cache => quote!(cache_len),
                Width::Record => quote!(record_len),
                Width::Scratch => quote!(scratch_len),
            };
            let reference = if *mutable { quote!(&mut) } else { quote!(&) };
            if *per_row {
                quote!(#reference #buffer[row * #width..][..#width])
            } else {
                quote!(#reference #buffer[..#width])
            }
        }
    }
}

fn stmt(stmt: &Stmt) -> TokenStream {
    match stmt {
        Stmt::Let { name, value } => {
            let name = format_ident!("{}", name);
            let value = expression(value);
            quote!(let #name = #value;)
        }
        Stmt::Store {
            slice,
            at,
            accumulate,
            value,
        } => {
            let place = load(slice, *at);
            let value = expression(value);
            if *accumulate {
                quote!(#place += #value;)
            } else {
                quote!(#place = #value;)
            }
        }
    }
}

fn load(slice: &str, at: At) -> TokenStream {
    let slice = format_ident!("{}", slice);
    match at {
        At::Unit => quote!(#slice[j]),
        At::Index(k) => {
            let k = n(k);
            quote!(#slice[#k])
        }
    }
}

/// Binding strength of an expression, for the fewest parentheses that keep its meaning.
fn precedence(value: &Value) -> u8 {
    match value {
        Value::Binary(BinOp::Add | BinOp::Sub, ..) => 1,
        Value::Binary(BinOp::Mul | BinOp::Div, ..) => 2,
        Value::Neg(_) => 3,
        _ => 4,
    }
}

/// An operand, parenthesised if it binds looser than `min`.
fn operand(value: &Value, min: u8) -> TokenStream {
    let tokens = expression(value);
    if precedence(value) < min {
        quote!((#tokens))
    } else {
        tokens
    }
}

/// The Rust of an expression. A right operand of equal binding strength keeps its
/// parentheses even for `+` and `*`: floating-point addition is not associative, and the
/// generated code evaluates exactly the graph's order.
pub fn expression(value: &Value) -> TokenStream {
    match value {
        Value::Name(name) => {
            let name = format_ident!("{}", name);
            quote!(#name)
        }
        Value::Load(slice, at) => load(slice, *at),
        Value::Lit(value) => literal(*value),
        Value::Neg(inner) => {
            let inner = operand(inner, 4);
            quote!(-#inner)
        }
        Value::Binary(op, left, right) => {
            let strength = precedence(value);
            // `a + b` is `b + a` to the bit, so a compound right operand of a sum or product
            // moves left, where it needs no parentheses: `zx_i[j] + b_ih_i[j] + zh_i[j]`.
            let commutes = matches!(op, BinOp::Add | BinOp::Mul);
            let (left, right) =
                if commutes && precedence(right) == strength && precedence(left) != strength {
                    (right, left)
                } else {
                    (left, right)
                };
            let left = operand(left, strength);
            let right = operand(right, strength + 1);
            match op {
                BinOp::Add => quote!(#left + #right),
                BinOp::Sub => quote!(#left - #right),
                BinOp::Mul => quote!(#left * #right),
                BinOp::Div => quote!(#left / #right),
            }
        }
        Value::Call(func, args) => {
            let func = format_ident!("{}", func.name());
            let args = args.iter().map(expression);
            quote!(ops.#func(#(#args),*))
        }
        Value::Cmp(cmp, left, right) => {
            let func = format_ident!("{}", cmp.ops_name());
            let (left, right) = (expression(left), expression(right));
            quote!(ops.#func(#left, #right))
        }
        Value::Sum(slice) => {
            let slice = format_ident!("{}", slice);
            quote!(ops.sum(#slice))
        }
    }
}

fn literal(value: f64) -> TokenStream {
    if value == 0.0 {
        quote!(F::zero())
    } else if value == 1.0 {
        quote!(F::one())
    } else if let Some(name) = std_constant(value) {
        // By name: the digits of a known constant would trip clippy's `approx_constant` in
        // the user's crate.
        let name = format_ident!("{}", name);
        quote!(F::of(::core::f64::consts::#name))
    } else {
        let lit = Literal::f64_unsuffixed(value);
        quote!(F::of(#lit))
    }
}

/// The name of the standard library's constant equal to `value`, if there is one: the
/// constants derivatives bring in (`gelu`'s `1/√2`, `erf`'s `2/√π`) and their kin.
fn std_constant(value: f64) -> Option<&'static str> {
    use std::f64::consts;
    let table = [
        (consts::PI, "PI"),
        (consts::E, "E"),
        (consts::SQRT_2, "SQRT_2"),
        (consts::FRAC_1_SQRT_2, "FRAC_1_SQRT_2"),
        (consts::FRAC_2_SQRT_PI, "FRAC_2_SQRT_PI"),
        (consts::FRAC_1_PI, "FRAC_1_PI"),
        (consts::FRAC_2_PI, "FRAC_2_PI"),
        (consts::FRAC_PI_2, "FRAC_PI_2"),
        (consts::LN_2, "LN_2"),
        (consts::LN_10, "LN_10"),
        (consts::LOG2_E, "LOG2_E"),
        (consts::LOG10_E, "LOG10_E"),
    ];
    table
        .iter()
        .find(|&&(constant, _)| constant == value)
        .map(|&(_, name)| name)
}

/// `3`, not `3usize`, in generated code.
pub fn n(value: usize) -> Literal {
    Literal::usize_unsuffixed(value)
}
