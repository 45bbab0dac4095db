//! Checks on the parsed spec: name resolution in each equation's context, arity, duplicate
//! and unknown equations, cycles (reading the new `c` before it exists), unused definitions
//! and parameters, and which gates the cell really computes. Produces the [`Checked`] model
//! with every name resolved; all errors are collected and reported together.

use std::collections::BTreeSet;

use proc_macro2::Span;
use syn::Ident;

use crate::defaults;
use crate::errors::Errors;
use crate::functions::{Func, Function};
use crate::spec::{BinOp, Expr, Param, ParamShape, Spec};

/// The four gates in PyTorch order; a gate is referred to by its index here.
pub const GATE_LETTERS: [&str; 4] = ["i", "f", "g", "o"];

/// Something an equation defines.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Target {
    /// Gate-wise overrides (evaluated once per computed gate).
    Zx,
    Zh,
    Z,
    /// Per-unit values: the gates (by index 0..4), then the states.
    Gate(usize),
    C,
    H,
    /// An extra recurrent state the spec declares (`n: State`), by name.
    State(&'static str),
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Zx => "zx",
            Target::Zh => "zh",
            Target::Z => "z",
            Target::Gate(k) => GATE_LETTERS[k],
            Target::C => "c",
            Target::H => "h",
            Target::State(name) => name,
        }
    }

    /// The target `name` defines, among the built-in ones and the spec's `states`.
    fn parse(name: &str, states: &[&'static str]) -> Option<Target> {
        Some(match name {
            "zx" => Target::Zx,
            "zh" => Target::Zh,
            "z" => Target::Z,
            "c" => Target::C,
            "h" => Target::H,
            other => match GATE_LETTERS.iter().position(|g| *g == other) {
                Some(k) => Target::Gate(k),
                None => Target::State(states.iter().find(|s| **s == other)?),
            },
        })
    }

    /// Whether the target is a recurrent state (`c` or a declared one), read as
    /// `{name}_prev` from the previous step.
    pub fn is_state(self) -> bool {
        matches!(self, Target::C | Target::State(_))
    }

    fn is_gatewise(self) -> bool {
        matches!(self, Target::Zx | Target::Zh | Target::Z)
    }

    /// The standard LSTM's definition, in the spec language (`zx` and `zh` default to
    /// themselves).
    fn default_text(self) -> &'static str {
        defaults::rhs(self.name()).unwrap_or(self.name())
    }

    fn context(self) -> Context {
        if self.is_gatewise() {
            Context::Gatewise(self)
        } else {
            Context::PerUnit(self)
        }
    }
}

/// Which pre-activation part a name refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Pre {
    /// `z`: the whole pre-activation (after any `z` override).
    Z,
    /// `zx`: the input part (after any `zx` override).
    Zx,
    /// `zh`: the recurrent part (after any `zh` override).
    Zh,
    /// Inside the `zx`/`zh` overrides: the raw product `W_ih·x` / `W_hh·h_prev`.
    RawZx,
    RawZh,
    /// Inside the `z` override, `z` itself: the default sum.
    DefaultZ,
    /// `b_ih`, or one gate's block of it (`b_ih_f`) in a per-unit equation.
    BiasIh,
    /// `b_hh`, or one gate's block of it (`b_hh_f`) in a per-unit equation.
    BiasHh,
}

/// A resolved name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ref {
    /// A per-unit definition (a gate, the new `c` or a new declared state).
    Var(Target),
    CPrev,
    HPrev,
    /// A declared state's previous value (`n_prev`).
    StatePrev(&'static str),
    /// A pre-activation part of one gate (`z_f`) or its bias (`b_hh_f`), in a per-unit
    /// equation.
    GatePre(Pre, usize),
    /// A pre-activation part of whichever gate a gate-wise equation is evaluated for.
    Pre(Pre),
    Param(usize),
    /// The constant input's projection for one gate (`cond_f`), in a per-unit equation.
    GateConstant(usize),
    /// The constant input's projection for whichever gate a gate-wise equation is evaluated
    /// for (`cond`).
    Constant,
}

/// A resolved expression.
#[derive(Clone, Debug)]
pub enum RExpr {
    Lit(f64),
    Ref(Ref, Span),
    Neg(Box<RExpr>),
    Binary(BinOp, Box<RExpr>, Box<RExpr>),
    Call(Func, Vec<RExpr>),
    /// Layer normalisation across the hidden units (across gates and units in a gate-wise
    /// equation), with optional learned gain and bias parameters.
    LayerNorm {
        arg: Box<RExpr>,
        gain: Option<usize>,
        bias: Option<usize>,
    },
}

impl RExpr {
    fn visit_refs(&self, visit: &mut impl FnMut(Ref, Span)) {
        match self {
            RExpr::Lit(_) => {}
            RExpr::Ref(r, span) => visit(*r, *span),
            RExpr::Neg(a) => a.visit_refs(visit),
            RExpr::Binary(_, a, b) => {
                a.visit_refs(visit);
                b.visit_refs(visit);
            }
            RExpr::Call(_, args) => args.iter().for_each(|a| a.visit_refs(visit)),
            RExpr::LayerNorm { arg, gain, bias } => {
                arg.visit_refs(visit);
                for p in gain.iter().chain(bias) {
                    visit(Ref::Param(*p), Span::call_site());
                }
            }
        }
    }

    fn visit_funcs(&self, visit: &mut impl FnMut(Func)) {
        match self {
            RExpr::Lit(_) | RExpr::Ref(..) => {}
            RExpr::Neg(a) => a.visit_funcs(visit),
            RExpr::Binary(_, a, b) => {
                a.visit_funcs(visit);
                b.visit_funcs(visit);
            }
            RExpr::Call(func, args) => {
                visit(*func);
                args.iter().for_each(|a| a.visit_funcs(visit));
            }
            RExpr::LayerNorm { arg, .. } => {
                visit(Func::LayerNorm);
                arg.visit_funcs(visit);
            }
        }
    }
}

impl Checked {
    /// The spec's functions the cell calls, written or defaulted, in the table's order.
    pub fn functions(&self) -> Vec<Func> {
        let mut used = Vec::new();
        let overrides = [&self.zx, &self.zh, &self.z].into_iter().flatten();
        for expr in overrides.chain(self.order.iter().map(|(_, e)| e)) {
            expr.visit_funcs(&mut |func| used.push(func));
        }
        crate::functions::FUNCTIONS
            .iter()
            .map(|row| row.func)
            .filter(|func| used.contains(func))
            .collect()
    }
}

/// One equation of the checked cell, for documentation.
pub struct DocEquation {
    pub name: &'static str,
    pub rhs: String,
    pub written: bool,
}

/// The spec with every name resolved and every check passed.
pub struct Checked {
    pub spec: Spec,
    /// Gates computed from the weights, as indices into i, f, g, o, ascending.
    pub gates: Vec<usize>,
    /// Gate-wise overrides (`zx`, `zh`, `z`), if written.
    pub zx: Option<RExpr>,
    pub zh: Option<RExpr>,
    pub z: Option<RExpr>,
    /// Per-unit definitions needed for `h` and the states, in evaluation order.
    pub order: Vec<(Target, RExpr)>,
    /// The recurrent states the cell carries besides `h`, in the order the runtime packs
    /// them: `c` first when anything reads it, then the declared states.
    pub states: Vec<Target>,
    pub reads_h_prev: bool,
    pub equations: Vec<DocEquation>,
}

/// Names a parameter or state cannot take: the four weights, and the generated steps' names
/// for the packed state buffers.
const RESERVED_PARAMS: [&str; 7] = [
    "weight_ih",
    "weight_hh",
    "bias_ih",
    "bias_hh",
    "states_prev",
    "states_new",
    "dstates",
];

/// What names an equation can read besides the built-in ones: the spec's parameters and
/// declared states.
#[derive(Clone, Copy)]
struct Scope<'a> {
    params: &'a [Param],
    states: &'a [&'static str],
}

impl Scope<'_> {
    const EMPTY: Scope<'static> = Scope {
        params: &[],
        states: &[],
    };
}

/// Whether the spec language already gives `name` a meaning (an equation, a built-in name in
/// either context, a weight or generated buffer, a function), so that neither a parameter nor
/// a state may take it.
fn reserved(name: &str) -> bool {
    Target::parse(name, &[]).is_some()
        || resolve_builtin(name, Context::PerUnit(Target::H), &[]).is_some()
        || resolve_builtin(name, Context::Gatewise(Target::Z), &[]).is_some()
        || RESERVED_PARAMS.contains(&name)
        || Func::in_spec(name).is_some()
}

pub fn check(spec: Spec) -> syn::Result<Checked> {
    let mut errors = Errors::default();
    // Targets are `Copy` and name themselves, so a declared state's name lives as long as
    // the program: a cell declares a handful, leaked once per expansion.
    let state_names: Vec<&'static str> = spec
        .states
        .iter()
        .map(|state| &*Box::leak(state.ident.to_string().into_boxed_str()))
        .collect();
    let scope = Scope {
        params: &spec.params,
        states: &state_names,
    };
    for (k, state) in spec.states.iter().enumerate() {
        let name = state_names[k];
        let builtin = reserved(name)
            || name.ends_with("_prev")
            || spec.params.iter().any(|p| p.ident == name)
            || state_names[..k].contains(&name);
        if builtin {
            errors.push(syn::Error::new_spanned(
                &state.ident,
                format!(
                    "state name `{name}` is taken (by the spec language, a parameter or another \
                     state); rename it"
                ),
            ));
        }
    }
    for extra in spec
        .params
        .iter()
        .filter(|p| p.shape == ParamShape::Constant)
        .skip(1)
    {
        errors.push(syn::Error::new_spanned(
            &extra.ident,
            "a cell takes at most one `Constant`; concatenate conditioning inputs into one",
        ));
    }
    for param in &spec.params {
        let name = param.ident.to_string();
        if reserved(&name) {
            errors.push(syn::Error::new_spanned(
                &param.ident,
                format!("parameter name `{name}` is reserved by the spec language; rename it"),
            ));
        }
    }

    // Resolve each written equation in its context.
    let mut written: Vec<(Target, RExpr, String)> = Vec::new();
    for def in &spec.defs {
        let Some(target) = Target::parse(&def.name.to_string(), &state_names) else {
            let declared: String = state_names.iter().map(|s| format!(", {s}")).collect();
            errors.push(syn::Error::new_spanned(
                &def.name,
                format!(
                    "unknown equation `{}`; expected one of i, f, g, o, c, h, z, zx, zh{declared} \
                     (or `crate`); an extra recurrent state is declared as a field `{}: State`",
                    def.name, def.name
                ),
            ));
            continue;
        };
        if written.iter().any(|(t, ..)| *t == target) {
            errors.push(syn::Error::new_spanned(
                &def.name,
                format!("`{}` is defined twice", def.name),
            ));
            continue;
        }
        if let Some(expr) = resolve(&def.expr, target.context(), scope, &mut errors) {
            written.push((target, expr, def.expr.to_string()));
        }
    }
    errors.finish()?;
    let mut errors = Errors::default();

    let definition = |target: Target| -> Option<(RExpr, bool)> {
        written
            .iter()
            .find(|(t, ..)| *t == target)
            .map(|(_, e, _)| (e.clone(), true))
            .or_else(|| default_expr(target).map(|e| (e, false)))
    };

    for (k, state) in spec.states.iter().enumerate() {
        if !written
            .iter()
            .any(|(t, ..)| *t == Target::State(state_names[k]))
        {
            errors.push(syn::Error::new_spanned(
                &state.ident,
                format!(
                    "state `{0}` is declared but no equation writes it; write `{0} = …` (read \
                     its previous value as `{0}_prev`)",
                    state.ident
                ),
            ));
        }
    }
    errors.finish()?;
    let mut errors = Errors::default();

    // Depth-first from the outputs: evaluation order, cycles and reachability. `c` is a
    // state of the cell only when something reads it (an `h`-only cell such as a GRU
    // leaves it out).
    let others = std::iter::once(Target::H).chain(state_names.iter().map(|&s| Target::State(s)));
    let mut order: Vec<(Target, RExpr)> = Vec::new();
    let mut visiting: Vec<Target> = Vec::new();
    for root in others.clone() {
        visit_def(root, &definition, &mut order, &mut visiting, &mut errors);
    }
    let reads_c_prev = |expr: &RExpr| {
        let mut reads = false;
        expr.visit_refs(&mut |r, _| reads |= r == Ref::CPrev);
        reads
    };
    let gatewise_written = written.iter().filter(|(t, ..)| t.is_gatewise());
    let carries_c = order
        .iter()
        .any(|(t, e)| *t == Target::C || reads_c_prev(e))
        || gatewise_written.clone().any(|(_, e, _)| reads_c_prev(e));
    if carries_c {
        // `c` first, as the standard LSTM evaluates it.
        order.clear();
        let roots = std::iter::once(Target::C).chain(others);
        for root in roots {
            visit_def(root, &definition, &mut order, &mut visiting, &mut errors);
        }
    }
    errors.finish()?;
    let mut errors = Errors::default();
    let mut states: Vec<Target> = Vec::new();
    if carries_c {
        states.push(Target::C);
    }
    states.extend(state_names.iter().map(|&s| Target::State(s)));
    for (k, state) in spec.states.iter().enumerate() {
        let name = state_names[k];
        let mut read = false;
        let mut note_read = |r: Ref, _| {
            read |= r == Ref::StatePrev(name) || r == Ref::Var(Target::State(name));
        };
        for (_, expr) in &order {
            expr.visit_refs(&mut note_read);
        }
        for (_, expr, _) in gatewise_written.clone() {
            expr.visit_refs(&mut note_read);
        }
        if !read {
            errors.push(syn::Error::new_spanned(
                &state.ident,
                format!(
                    "state `{name}` is written but nothing reads it (`{name}_prev`, or `{name}` \
                     in `h` or another state)"
                ),
            ));
        }
    }

    let mut gates = BTreeSet::new();
    let mut used_params = BTreeSet::new();
    let mut reads_h_prev = false;
    let constant = spec
        .params
        .iter()
        .position(|p| p.shape == ParamShape::Constant);
    let mut note = |r: Ref| match r {
        Ref::GatePre(_, k) => {
            gates.insert(k);
        }
        Ref::GateConstant(k) => {
            gates.insert(k);
            used_params.extend(constant);
        }
        Ref::Constant => {
            used_params.extend(constant);
        }
        Ref::Param(p) => {
            used_params.insert(p);
        }
        Ref::HPrev => reads_h_prev = true,
        _ => {}
    };
    for (_, expr) in &order {
        expr.visit_refs(&mut |r, _| note(r));
    }
    for (target, expr, _) in &written {
        if target.is_gatewise() {
            expr.visit_refs(&mut |r, _| note(r));
        }
    }
    for (target, _, _) in &written {
        if !target.is_gatewise() && !order.iter().any(|(t, _)| t == target) {
            let def = spec.defs.iter().find(|d| d.name == target.name());
            if let Some(def) = def {
                errors.push(syn::Error::new_spanned(
                    &def.name,
                    format!(
                        "`{}` is defined but neither `h` nor a state uses it{}",
                        target.name(),
                        if *target == Target::C {
                            " (a cell without a cell state leaves `c` out)"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    if gates.is_empty() {
        errors.push(syn::Error::new(
            Span::call_site(),
            "the cell reads no gate pre-activation (z_i, z_f, z_g, z_o, or their zx_/zh_ parts), \
             so its weights would have no rows",
        ));
    }
    for (k, param) in spec.params.iter().enumerate() {
        if !used_params.contains(&k) {
            errors.push(syn::Error::new_spanned(
                &param.ident,
                format!(
                    "parameter `{}` is declared but no equation uses it",
                    param.ident
                ),
            ));
        }
    }
    errors.finish()?;

    let take = |target: Target| {
        written
            .iter()
            .find(|(t, ..)| *t == target)
            .map(|(_, e, _)| e.clone())
    };
    let mut equations = Vec::new();
    for target in [Target::Zx, Target::Zh, Target::Z] {
        if let Some((_, _, text)) = written.iter().find(|(t, ..)| *t == target) {
            equations.push(DocEquation {
                name: target.name(),
                rhs: text.clone(),
                written: true,
            });
        } else if target == Target::Z {
            equations.push(DocEquation {
                name: "z",
                rhs: target.default_text().to_string(),
                written: false,
            });
        }
    }
    for (target, _) in &order {
        let text = written
            .iter()
            .find(|(t, ..)| t == target)
            .map(|(_, _, text)| text.clone());
        equations.push(DocEquation {
            name: target.name(),
            written: text.is_some(),
            rhs: text.unwrap_or_else(|| target.default_text().to_string()),
        });
    }

    Ok(Checked {
        gates: gates.into_iter().collect(),
        zx: take(Target::Zx),
        zh: take(Target::Zh),
        z: take(Target::Z),
        order,
        states,
        reads_h_prev,
        equations,
        spec,
    })
}

fn visit_def(
    target: Target,
    definition: &impl Fn(Target) -> Option<(RExpr, bool)>,
    order: &mut Vec<(Target, RExpr)>,
    visiting: &mut Vec<Target>,
    errors: &mut Errors,
) {
    if order.iter().any(|(t, _)| *t == target) {
        return;
    }
    let Some((expr, _)) = definition(target) else {
        return;
    };
    visiting.push(target);
    let mut deps: Vec<(Target, Span)> = Vec::new();
    expr.visit_refs(&mut |r, span| {
        if let Ref::Var(dep) = r {
            deps.push((dep, span));
        }
    });
    for (dep, span) in deps {
        if let Some(pos) = visiting.iter().position(|t| *t == dep) {
            let cycle: Vec<&str> = visiting[pos..].iter().map(|t| t.name()).collect();
            let message = if dep.is_state() {
                format!(
                    "the new `{0}` is not yet defined here: it is computed from {1}; \
                     read `{0}_prev` for the previous step's `{0}`",
                    dep.name(),
                    cycle[1..].join(", ")
                )
            } else {
                let hint = match visiting[pos..].iter().find(|t| t.is_state()) {
                    Some(state) => format!(
                        "; to read the previous step's `{0}`, write `{0}_prev`",
                        state.name()
                    ),
                    None => String::new(),
                };
                format!(
                    "`{}` depends on itself through {} -> {}{hint}",
                    dep.name(),
                    cycle.join(" -> "),
                    dep.name()
                )
            };
            errors.push(syn::Error::new(span, message));
            continue;
        }
        visit_def(dep, definition, order, visiting, errors);
    }
    visiting.pop();
    order.push((target, expr));
}

/// The standard LSTM's definition of `target`, resolved (`None` for `zx` and `zh`, which
/// default to the raw products).
pub fn default_expr(target: Target) -> Option<RExpr> {
    let expr = defaults::expr(target.name())?;
    let mut errors = Errors::default();
    let resolved = resolve(&expr, target.context(), Scope::EMPTY, &mut errors);
    // The standard LSTM reads only names every context resolves (its own test checks that
    // each equation resolves), so nothing is collected.
    errors.finish().ok()?;
    resolved
}

/// Where an expression is evaluated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A per-unit equation (i, f, g, o, c, h).
    PerUnit(Target),
    /// A gate-wise equation (z, zx, zh), evaluated once per gate.
    Gatewise(Target),
}

impl Context {
    fn target(self) -> Target {
        match self {
            Context::PerUnit(t) | Context::Gatewise(t) => t,
        }
    }
}

/// Names of the spec language other than parameters, as seen from `context`.
fn resolve_builtin(name: &str, context: Context, states: &[&'static str]) -> Option<Ref> {
    match name {
        "c_prev" => return Some(Ref::CPrev),
        "h_prev" => return Some(Ref::HPrev),
        _ => {}
    }
    if let Some(stem) = name.strip_suffix("_prev")
        && let Some(state) = states.iter().find(|s| **s == stem)
    {
        return Some(Ref::StatePrev(state));
    }
    match context {
        Context::PerUnit(_) => {
            if let Some(t @ (Target::Gate(_) | Target::C | Target::State(_))) =
                Target::parse(name, states)
            {
                return Some(Ref::Var(t));
            }
            let (part, letter) = name.rsplit_once('_')?;
            let k = GATE_LETTERS.iter().position(|g| *g == letter)?;
            let pre = match part {
                "z" => Pre::Z,
                "zx" => Pre::Zx,
                "zh" => Pre::Zh,
                "b_ih" => Pre::BiasIh,
                "b_hh" => Pre::BiasHh,
                _ => return None,
            };
            Some(Ref::GatePre(pre, k))
        }
        Context::Gatewise(target) => Some(Ref::Pre(match (name, target) {
            ("zx", Target::Zx) => Pre::RawZx,
            ("zh", Target::Zh) => Pre::RawZh,
            ("z", Target::Z) => Pre::DefaultZ,
            ("zx", Target::Z) => Pre::Zx,
            ("zh", Target::Z) => Pre::Zh,
            ("b_ih", _) => Pre::BiasIh,
            ("b_hh", _) => Pre::BiasHh,
            _ => return None,
        })),
    }
}

fn expected_names(context: Context) -> &'static str {
    match context {
        Context::PerUnit(_) => {
            "z_i, z_f, z_g, z_o, zx_i…, zh_i…, b_ih_i…, b_hh_i…, i, f, g, o, c (in o and h), c_prev, \
             h_prev or a parameter"
        }
        Context::Gatewise(Target::Zx) => "zx, b_ih, b_hh, c_prev, h_prev or a parameter",
        Context::Gatewise(Target::Zh) => "zh, b_ih, b_hh, c_prev, h_prev or a parameter",
        Context::Gatewise(_) => "z, zx, zh, b_ih, b_hh, c_prev, h_prev or a parameter",
    }
}

fn resolve(expr: &Expr, context: Context, scope: Scope, errors: &mut Errors) -> Option<RExpr> {
    match expr {
        Expr::Lit(v) => Some(RExpr::Lit(*v)),
        Expr::Name(ident) => resolve_name(ident, context, scope, errors),
        Expr::Neg(inner) => Some(RExpr::Neg(Box::new(resolve(
            inner, context, scope, errors,
        )?))),
        Expr::Binary(op, a, b) => {
            let a = resolve(a, context, scope, errors);
            let b = resolve(b, context, scope, errors);
            Some(RExpr::Binary(*op, Box::new(a?), Box::new(b?)))
        }
        Expr::Call(func, args) => {
            let Some(row) = Func::in_spec(&func.to_string()) else {
                args.iter().for_each(|a| {
                    resolve(a, context, scope, errors);
                });
                let names: Vec<&str> = Func::spec_names().collect();
                errors.push(syn::Error::new_spanned(
                    func,
                    format!(
                        "unknown function `{func}`; expected one of {}",
                        names.join(", ")
                    ),
                ));
                return None;
            };
            let (fewest, most) = row.arity;
            if !(fewest..=most).contains(&args.len()) {
                args.iter().for_each(|a| {
                    resolve(a, context, scope, errors);
                });
                let count = match (fewest, most) {
                    (1, 1) => "1 argument".to_string(),
                    (n, m) if n == m => format!("{n} arguments"),
                    (n, m) => format!("{n} to {m} arguments"),
                };
                errors.push(syn::Error::new_spanned(
                    func,
                    format!(
                        "`{}` takes {count} {}, found {}",
                        row.name,
                        row.signature,
                        args.len()
                    ),
                ));
                return None;
            }
            if row.func == Func::LayerNorm {
                return resolve_layer_norm(args, context, scope, errors);
            }
            let literal_ok = check_literal_args(row, args, errors);
            let resolved: Vec<Option<RExpr>> = args
                .iter()
                .map(|a| resolve(a, context, scope, errors))
                .collect();
            let mut args: Vec<RExpr> = resolved.into_iter().collect::<Option<_>>()?;
            // Omitted trailing arguments take the row's defaults, so every later stage sees
            // the full arity.
            let omitted = most - args.len();
            let defaults = &row.defaults[row.defaults.len() - omitted..];
            args.extend(defaults.iter().map(|&value| RExpr::Lit(value)));
            literal_ok.then_some(RExpr::Call(row.func, args))
        }
    }
}

/// Whether every argument the function needs as a number (`pow`'s exponent) is one: numbers
/// and arithmetic on them (`2`, `-0.5`, `1.0 / 3.0`), which the graph folds to one literal.
/// Reports each that is not, at its first name or call.
fn check_literal_args(row: &Function, args: &[Expr], errors: &mut Errors) -> bool {
    let mut ok = true;
    for &position in row.literal_args {
        let Some(arg) = args.get(position) else {
            continue;
        };
        if let Some(offender) = first_name(arg) {
            ok = false;
            errors.push(syn::Error::new_spanned(
                offender,
                format!(
                    "argument {} of `{}` must be a number written in the spec, like `2` or \
                     `-0.5`; found `{offender}`",
                    position + 1,
                    row.signature
                ),
            ));
        }
    }
    ok
}

/// The first name or function an expression mentions, if it is not made of numbers alone.
fn first_name(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Lit(_) => None,
        Expr::Name(ident) | Expr::Call(ident, _) => Some(ident),
        Expr::Neg(inner) => first_name(inner),
        Expr::Binary(_, a, b) => first_name(a).or_else(|| first_name(b)),
    }
}

fn resolve_name(
    ident: &Ident,
    context: Context,
    scope: Scope,
    errors: &mut Errors,
) -> Option<RExpr> {
    let params = scope.params;
    let name = ident.to_string();
    let span = ident.span();
    if let Some(k) = params.iter().position(|p| p.ident == name) {
        if params[k].shape == ParamShape::Constant {
            if let Context::PerUnit(_) = context {
                errors.push(syn::Error::new_spanned(
                    ident,
                    format!(
                        "the constant `{name}` names all gates at once and belongs in a gate-wise \
                         equation (z, zx, zh); here name one gate's projection, like `{name}_f`"
                    ),
                ));
                return None;
            }
            return Some(RExpr::Ref(Ref::Constant, span));
        }
        if params[k].shape == ParamShape::Gates && matches!(context, Context::PerUnit(_)) {
            errors.push(syn::Error::new_spanned(
                ident,
                format!(
                    "`{name}` is a `Gates` parameter (one value per gate and unit): use it in a \
                     gate-wise equation (z, zx, zh), or declare it `PerUnit`"
                ),
            ));
            return None;
        }
        return Some(RExpr::Ref(Ref::Param(k), span));
    }
    if name == context.target().name() && matches!(context, Context::PerUnit(_)) {
        let hint = match context.target() {
            Target::State(_) => format!("read `{name}_prev` for the previous step's `{name}`"),
            target => format!("its default is {}", target.default_text()),
        };
        errors.push(syn::Error::new_spanned(
            ident,
            format!("`{name}` cannot read itself; {hint}"),
        ));
        return None;
    }
    if let Some(r) = resolve_builtin(&name, context, scope.states) {
        return Some(RExpr::Ref(r, span));
    }
    if let (Context::PerUnit(_), Some((stem, letter))) = (context, name.rsplit_once('_'))
        && let Some(k) = GATE_LETTERS.iter().position(|g| *g == letter)
        && params
            .iter()
            .any(|p| p.shape == ParamShape::Constant && p.ident == stem)
    {
        return Some(RExpr::Ref(Ref::GateConstant(k), span));
    }
    let message = match (name.as_str(), context) {
        ("h", _) => "`h` is the step's output and cannot be read; use `h_prev` for the previous \
                     hidden state"
            .to_string(),
        (_, Context::Gatewise(_))
            if resolve_builtin(&name, Context::PerUnit(Target::H), scope.states).is_some() =>
        {
            format!(
                "`{name}` is a per-unit name and cannot appear in the gate-wise equation `{}`; \
                 expected {}",
                context.target().name(),
                expected_names(context)
            )
        }
        (_, Context::PerUnit(_))
            if resolve_builtin(&name, Context::Gatewise(Target::Z), scope.states).is_some() =>
        {
            format!(
                "`{name}` names all gates at once and belongs in a gate-wise equation (z, zx, zh); \
                 here name one gate, like `{name}_f`"
            )
        }
        _ => format!(
            "unknown name `{name}`; expected {}",
            expected_names(context)
        ),
    };
    errors.push(syn::Error::new(span, message));
    None
}

/// `layer_norm(x[, gain[, bias]])`, its arity already checked.
fn resolve_layer_norm(
    args: &[Expr],
    context: Context,
    scope: Scope,
    errors: &mut Errors,
) -> Option<RExpr> {
    let params = scope.params;
    let arg = resolve(&args[0], context, scope, errors);
    let wanted = match context {
        Context::PerUnit(_) => ParamShape::PerUnit,
        Context::Gatewise(_) => ParamShape::Gates,
    };
    let mut affine = args[1..].iter().map(|a| {
        let Expr::Name(ident) = a else {
            errors.push(syn::Error::new(
                Span::call_site(),
                "layer_norm's gain and bias are parameter names",
            ));
            return None;
        };
        let Some(k) = params.iter().position(|p| p.ident == *ident) else {
            errors.push(syn::Error::new_spanned(
                ident,
                format!("layer_norm's gain and bias are parameters; `{ident}` is not declared"),
            ));
            return None;
        };
        if params[k].shape != wanted {
            errors.push(syn::Error::new_spanned(
                ident,
                format!(
                    "`{ident}` must be declared `{}` to scale or shift this layer_norm",
                    wanted.variant()
                ),
            ));
            return None;
        }
        Some(k)
    });
    let gain = affine.next().map(|g| g.ok_or(()));
    let bias = affine.next().map(|b| b.ok_or(()));
    let gain = gain.transpose().ok()?;
    let bias = bias.transpose().ok()?;
    Some(RExpr::LayerNorm {
        arg: Box::new(arg?),
        gain,
        bias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_lstm_resolves_in_every_context() {
        let targets = [
            Target::Z,
            Target::Gate(0),
            Target::Gate(1),
            Target::Gate(2),
            Target::Gate(3),
            Target::C,
            Target::H,
        ];
        for target in targets {
            assert!(default_expr(target).is_some(), "{}", target.name());
        }
        assert!(default_expr(Target::Zx).is_none());
        assert_eq!(Target::Zh.default_text(), "zh");
    }
}
