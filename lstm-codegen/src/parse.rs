//! syn parsing of the attribute arguments and the struct into the [`Spec`] model.
//!
//! Only syntax is checked here (what kind of expression, which field type, the form of an
//! init); names are resolved by `validate`. Every problem found is collected, not just the
//! first.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, Item, Token};

use crate::errors::Errors;
use crate::spec::{BinOp, Def, Expr, Init, Param, ParamShape, Spec};

/// Parses the attribute's arguments and the annotated item.
pub fn spec(args: TokenStream, item: TokenStream) -> syn::Result<Spec> {
    let item: Item = syn::parse2(item)?;
    let Item::Struct(item) = item else {
        return Err(syn::Error::new(
            item_keyword_span(&item),
            "#[lstm_cell] applies to a struct; write `pub struct MyCell;` or a struct with parameter fields",
        ));
    };
    let mut errors = Errors::default();
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "an #[lstm_cell] struct takes no generics; the macro makes it generic over the float type",
        ));
    }
    let (defs, krate) = attribute_args(args, &mut errors);
    let fields = match &item.fields {
        Fields::Unit => Vec::new(),
        Fields::Named(named) => named
            .named
            .iter()
            .filter_map(|f| param(f, &mut errors))
            .collect(),
        Fields::Unnamed(unnamed) => {
            errors.push(syn::Error::new_spanned(
                unnamed,
                "parameters are named fields; write `struct Cell { alpha: PerUnit }`",
            ));
            Vec::new()
        }
    };
    let (states, params): (Vec<Param>, Vec<Param>) = fields
        .into_iter()
        .partition(|p| p.shape == ParamShape::State);
    for state in &states {
        if state.init != Init::Default {
            errors.push(syn::Error::new_spanned(
                &state.ident,
                format!(
                    "state `{}` takes no #[init]: a state starts from zeros or from the call's \
                     initial state",
                    state.ident
                ),
            ));
        }
    }
    errors.finish()?;
    Ok(Spec {
        attrs: item.attrs,
        vis: item.vis,
        ident: item.ident,
        defs,
        params,
        states,
        krate,
    })
}

fn item_keyword_span(item: &Item) -> Span {
    match item {
        Item::Enum(e) => e.enum_token.span,
        Item::Fn(f) => f.sig.fn_token.span,
        Item::Union(u) => u.union_token.span,
        Item::Trait(t) => t.trait_token.span,
        Item::Impl(i) => i.impl_token.span,
        other => other.span(),
    }
}

/// `name = expr, …` and `crate = "path"`.
fn attribute_args(args: TokenStream, errors: &mut Errors) -> (Vec<Def>, syn::Path) {
    let mut defs = Vec::new();
    let mut krate: Option<syn::Path> = None;
    let parser = |input: ParseStream| {
        while !input.is_empty() {
            let name = Ident::parse_any(input)?;
            input.parse::<Token![=]>()?;
            if name == "crate" {
                let lit: syn::LitStr = input.parse()?;
                match lit.parse::<syn::Path>() {
                    Ok(path) if krate.is_none() => krate = Some(path),
                    Ok(_) => errors.push(syn::Error::new_spanned(&name, "`crate` is given twice")),
                    Err(_) => errors.push(syn::Error::new_spanned(
                        &lit,
                        "expected a path to the runtime crate, like \"::lstm\" or \"lstm_runtime\"",
                    )),
                }
            } else {
                let syntax: syn::Expr = input.parse()?;
                if let Some(expr) = expr(&syntax, errors) {
                    defs.push(Def { name, expr });
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    if let Err(err) = parser.parse2(args) {
        errors.push(err);
    }
    let krate = krate.unwrap_or_else(|| syn::parse_quote!(::lstm));
    (defs, krate)
}

/// Converts the syntax of a right-hand side into the spec model, reporting what the spec
/// language does not have.
pub fn expr(syntax: &syn::Expr, errors: &mut Errors) -> Option<Expr> {
    match syntax {
        syn::Expr::Lit(lit) => match &lit.lit {
            syn::Lit::Float(f) => number(f.base10_parse::<f64>(), errors),
            syn::Lit::Int(i) => number(i.base10_parse::<f64>(), errors),
            other => {
                errors.push(syn::Error::new_spanned(other, "expected a number"));
                None
            }
        },
        syn::Expr::Path(path) => match path.path.get_ident() {
            Some(ident) if path.qself.is_none() => Some(Expr::Name(ident.clone())),
            _ => {
                errors.push(syn::Error::new_spanned(
                    path,
                    "expected a plain name such as `z_f`, `c_prev` or a parameter",
                ));
                None
            }
        },
        syn::Expr::Paren(paren) => expr(&paren.expr, errors),
        syn::Expr::Group(group) => expr(&group.expr, errors),
        syn::Expr::Unary(unary) => match unary.op {
            syn::UnOp::Neg(_) => expr(&unary.expr, errors).map(|e| Expr::Neg(Box::new(e))),
            op => {
                errors.push(syn::Error::new_spanned(
                    op,
                    format!(
                        "unsupported operator `{}`; expected + - * / or unary minus",
                        op.to_token_stream()
                    ),
                ));
                None
            }
        },
        syn::Expr::Binary(binary) => {
            let op = match binary.op {
                syn::BinOp::Add(_) => Some(BinOp::Add),
                syn::BinOp::Sub(_) => Some(BinOp::Sub),
                syn::BinOp::Mul(_) => Some(BinOp::Mul),
                syn::BinOp::Div(_) => Some(BinOp::Div),
                other => {
                    errors.push(syn::Error::new_spanned(
                        other,
                        format!(
                            "unsupported operator `{}`; expected + - * / or unary minus",
                            other.to_token_stream()
                        ),
                    ));
                    None
                }
            };
            let left = expr(&binary.left, errors);
            let right = expr(&binary.right, errors);
            Some(Expr::Binary(op?, Box::new(left?), Box::new(right?)))
        }
        syn::Expr::Call(call) => {
            let func = match &*call.func {
                syn::Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
                _ => None,
            };
            let args: Vec<Option<Expr>> = call.args.iter().map(|a| expr(a, errors)).collect();
            let Some(func) = func else {
                errors.push(syn::Error::new_spanned(
                    &call.func,
                    "expected a function name such as `sigmoid`, `tanh` or `clip`",
                ));
                return None;
            };
            let args: Option<Vec<Expr>> = args.into_iter().collect();
            Some(Expr::Call(func, args?))
        }
        other => {
            errors.push(syn::Error::new_spanned(
                other,
                "unsupported expression; a gate equation is built from numbers, names, \
                 + - * /, unary minus and function calls",
            ));
            None
        }
    }
}

fn number(value: syn::Result<f64>, errors: &mut Errors) -> Option<Expr> {
    match value {
        Ok(v) => Some(Expr::Lit(v)),
        Err(err) => {
            errors.push(err);
            None
        }
    }
}

/// A parameter field: `#[init(...)] name: PerUnit | Scalar | Gates`.
fn param(field: &syn::Field, errors: &mut Errors) -> Option<Param> {
    let ident = field.ident.clone()?;
    let shape = match &field.ty {
        syn::Type::Path(p) if p.qself.is_none() => match p.path.get_ident() {
            Some(t) if t == "PerUnit" => Some(ParamShape::PerUnit),
            Some(t) if t == "Scalar" => Some(ParamShape::Scalar),
            Some(t) if t == "Gates" => Some(ParamShape::Gates),
            Some(t) if t == "Constant" => Some(ParamShape::Constant),
            Some(t) if t == "State" => Some(ParamShape::State),
            _ => None,
        },
        _ => None,
    };
    if shape.is_none() {
        errors.push(syn::Error::new_spanned(
            &field.ty,
            "unknown parameter type; expected `PerUnit` (one value per hidden unit), \
             `Scalar` (one value), `Gates` (one value per gate and unit), `Constant` \
             (a per-sequence constant input) or `State` (an extra recurrent state)",
        ));
    }
    let mut init = Init::Default;
    let mut attrs = Vec::new();
    let mut seen_init = false;
    for attr in &field.attrs {
        if attr.path().is_ident("init") {
            if seen_init {
                errors.push(syn::Error::new_spanned(attr, "`init` is given twice"));
            }
            seen_init = true;
            if let Some(parsed) = init_attr(attr, errors) {
                init = parsed;
            }
        } else {
            attrs.push(attr.clone());
        }
    }
    Some(Param {
        attrs,
        ident,
        shape: shape?,
        init,
    })
}

const INIT_HELP: &str =
    "expected `zeros`, `ones`, `constant(value)`, `uniform(low, high)` or `default`";

fn init_attr(attr: &Attribute, errors: &mut Errors) -> Option<Init> {
    let syntax: syn::Expr = match attr.parse_args() {
        Ok(e) => e,
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                attr,
                format!("bad init; {INIT_HELP}"),
            ));
            return None;
        }
    };
    let (name, args): (Option<&Ident>, Vec<&syn::Expr>) = match &syntax {
        syn::Expr::Path(p) => (p.path.get_ident(), Vec::new()),
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(p) => (p.path.get_ident(), call.args.iter().collect()),
            _ => (None, Vec::new()),
        },
        _ => (None, Vec::new()),
    };
    let Some(name) = name else {
        errors.push(syn::Error::new_spanned(
            &syntax,
            format!("bad init; {INIT_HELP}"),
        ));
        return None;
    };
    let values: Vec<f64> = args.iter().filter_map(|a| init_number(a, errors)).collect();
    if values.len() != args.len() {
        return None;
    }
    let arity = |n: usize, errors: &mut Errors| {
        if values.len() == n {
            true
        } else {
            errors.push(syn::Error::new_spanned(
                &syntax,
                format!("`{name}` takes {n} number(s), found {}", values.len()),
            ));
            false
        }
    };
    match name.to_string().as_str() {
        "default" => arity(0, errors).then_some(Init::Default),
        "zeros" => arity(0, errors).then_some(Init::Zeros),
        "ones" => arity(0, errors).then_some(Init::Ones),
        "constant" => arity(1, errors).then(|| Init::Constant(values[0])),
        "uniform" => {
            if !arity(2, errors) {
                return None;
            }
            if values[0] >= values[1] {
                errors.push(syn::Error::new_spanned(
                    &syntax,
                    "uniform(low, high) needs low < high",
                ));
                return None;
            }
            Some(Init::Uniform(values[0], values[1]))
        }
        _ => {
            errors.push(syn::Error::new_spanned(
                name,
                format!("unknown init `{name}`; {INIT_HELP}"),
            ));
            None
        }
    }
}

fn init_number(syntax: &syn::Expr, errors: &mut Errors) -> Option<f64> {
    let parsed = match syntax {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Float(f),
            ..
        }) => f.base10_parse().ok(),
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => {
            return init_number(expr, errors).map(|v| -v);
        }
        _ => None,
    };
    if parsed.is_none() {
        errors.push(syn::Error::new_spanned(syntax, "expected a number"));
    }
    parsed
}
