//! Turns a set of wanted values of the graph into the code of one batch row: loops over the
//! hidden units, as few as the reductions allow.
//!
//! Every needed node gets a *stage*: leaves and loaded values are at stage 0, an elementwise
//! node is at the latest stage of its inputs, and a sum over the units is available one stage
//! after its items. Per-unit nodes of stage `s` are computed in loop `s`; per-row nodes of
//! stage `s` just before it. A per-unit value needed in a later loop is spilled to scratch.
//! The standard LSTM has no reduction, so its whole step is one fused loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ir::{Cmp, Graph, Id, Lane, Leaf, Node, ParamLane, Unary};

/// Where a wanted value goes.
pub struct Sink {
    pub id: Id,
    pub target: SinkTarget,
}

pub enum SinkTarget {
    /// `slice[j] = value` (or `+=` when accumulating), one value per unit.
    Unit { slice: Ident, accumulate: bool },
    /// `slice[index] = value` (or `+=`), one value per row.
    Row {
        slice: Ident,
        index: usize,
        accumulate: bool,
    },
}

/// A value that is loaded (from a cache or a state buffer) instead of computed.
pub enum Source {
    /// Per-unit: `slice[j]`.
    Unit(Ident),
    /// Per-row: `slice[index]`.
    Row(Ident, usize),
}

/// Names the per-unit and per-row leaves of a graph the way the generated code binds them.
pub struct Naming {
    pub letters: Vec<&'static str>,
    pub params: Vec<String>,
    pub constant: Option<String>,
}

impl Naming {
    pub fn leaf(&self, leaf: Leaf) -> TokenStream {
        match leaf {
            Leaf::Zx(s) => ident_tokens(format!("zx_{}", self.letters[s])),
            Leaf::Zh(s) => ident_tokens(format!("zh_{}", self.letters[s])),
            Leaf::BiasIh(s) => ident_tokens(format!("b_ih_{}", self.letters[s])),
            Leaf::BiasHh(s) => ident_tokens(format!("b_hh_{}", self.letters[s])),
            Leaf::CPrev => quote!(c_prev),
            Leaf::HPrev => quote!(h_prev),
            Leaf::Param(p) => ident_tokens(self.params[p].clone()),
            Leaf::GateParam(p, s) => {
                ident_tokens(format!("{}_{}", self.params[p], self.letters[s]))
            }
            Leaf::Constant(s) => ident_tokens(format!(
                "{}_{}",
                self.constant.as_deref().unwrap_or("constant"),
                self.letters[s]
            )),
            Leaf::Lit(bits) => literal(f64::from_bits(bits)),
            Leaf::Units => quote!(units),
            Leaf::SeedH => quote!(dh),
            Leaf::SeedC => quote!(dc),
        }
    }
}

fn ident_tokens(name: String) -> TokenStream {
    let ident = format_ident!("{}", name);
    quote!(#ident)
}

pub fn literal(value: f64) -> TokenStream {
    if value == 0.0 {
        quote!(F::zero())
    } else if value == 1.0 {
        quote!(F::one())
    } else {
        let lit = proc_macro2::Literal::f64_unsuffixed(value);
        quote!(F::of(#lit))
    }
}

/// The code of one row, and what it used.
pub struct RowCode {
    pub body: TokenStream,
    /// Leaves the body reads (the caller binds their slices or values).
    pub leaves: BTreeSet<Leaf>,
    /// Scratch rows of `hidden` values (`spill0`, `spill1`, …): per-unit values kept for a
    /// later loop, and the per-unit partials of each sum over the units.
    pub spills: usize,
}

/// How the row kernel receives one name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Value,
    /// A slice; `units` when it holds one value per unit (`hidden` of them).
    Slice {
        units: bool,
    },
    /// A mutable slice, as [`Pass::Slice`].
    SliceMut {
        units: bool,
    },
}

/// Wraps a row's code in an `#[inline(always)]` function that takes every slice as its own
/// reference parameter, and returns `(definition, call)`.
///
/// Inside the step, the slices come out of a struct passed by value, so the compiler cannot
/// tell the outputs apart from the inputs and would need a run-time overlap check for every
/// pair before vectorising the loop (it gives up when there are many). Reference parameters
/// carry Rust's aliasing guarantees, which survive inlining.
///
/// The kernel first cuts every per-unit slice to `hidden` values, so the loops over `0..hidden`
/// carry no bounds checks (with them, the compiler runs the last iterations one unit at a
/// time). On x86-64 the body is compiled a second time for AVX2 and FMA, where `ops` is the
/// runtime's `ops::fma`: the polynomials of `sigmoid`, `tanh` and `exp` on fused
/// multiply-adds.
pub fn kernel(
    graph: &Graph,
    naming: &Naming,
    code: &RowCode,
    sinks: &[Sink],
    sources: &HashMap<Id, Source>,
    krate: &syn::Path,
) -> (TokenStream, TokenStream) {
    let mut params: BTreeMap<String, Pass> = BTreeMap::new();
    for leaf in &code.leaves {
        let pass = match leaf {
            Leaf::Units => Pass::Value,
            Leaf::Param(p) if graph.param_lanes[*p] == ParamLane::Scalar => Pass::Value,
            _ => Pass::Slice { units: true },
        };
        params.insert(naming.leaf(*leaf).to_string(), pass);
    }
    for sink in sinks {
        let (slice, units) = match &sink.target {
            SinkTarget::Unit { slice, .. } => (slice, true),
            SinkTarget::Row { slice, .. } => (slice, false),
        };
        params.insert(slice.to_string(), Pass::SliceMut { units });
    }
    for source in sources.values() {
        let (slice, units) = match source {
            Source::Unit(slice) => (slice, true),
            Source::Row(slice, _) => (slice, false),
        };
        if code.body.to_string().contains(&slice.to_string()) {
            params.insert(slice.to_string(), Pass::Slice { units });
        }
    }
    for k in 0..code.spills {
        params.insert(format!("spill{k}"), Pass::SliceMut { units: true });
    }
    let (mut inputs, mut args, mut cuts) = (Vec::new(), Vec::new(), Vec::new());
    for (name, pass) in &params {
        let ident = format_ident!("{}", name);
        let (ty, arg) = match pass {
            Pass::Value => (quote!(F), quote!(#ident)),
            Pass::Slice { .. } => (quote!(&[F]), quote!(#ident)),
            Pass::SliceMut { .. } => (quote!(&mut [F]), quote!(&mut *#ident)),
        };
        match pass {
            Pass::Slice { units: true } => cuts.push(quote!(let #ident = &#ident[..hidden];)),
            Pass::SliceMut { units: true } => {
                cuts.push(quote!(let #ident = &mut #ident[..hidden];));
            }
            _ => {}
        }
        inputs.push(quote!(#ident: #ty));
        args.push(arg);
    }
    let body = &code.body;
    // The same kernel compiled a second time for AVX2 and FMA, chosen at run time: the crate
    // is built for baseline x86-64 (SSE2), where the loop vectorises only 4 lanes wide.
    let definition = quote! {
        #[inline(always)]
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop, unused_variables)]
        fn row_kernel<F: #krate::Float>(hidden: usize, #(#inputs),*) {
            use #krate::ops;
            #(#cuts)*
            #body
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments, clippy::needless_range_loop, unused_variables)]
        unsafe fn row_kernel_avx2<F: #krate::Float>(hidden: usize, #(#inputs),*) {
            use #krate::ops::fma as ops;
            #(#cuts)*
            #body
        }
    };
    let call = quote! {
        #[cfg(target_arch = "x86_64")]
        {
            if #krate::__private::has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA, checked at run time.
                unsafe { row_kernel_avx2(hidden, #(#args),*) };
            } else {
                row_kernel(hidden, #(#args),*);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        row_kernel(hidden, #(#args),*);
    };
    (definition, call)
}

pub fn emit_row(
    graph: &Graph,
    naming: &Naming,
    sinks: &[Sink],
    sources: &HashMap<Id, Source>,
) -> RowCode {
    let roots: Vec<Id> = sinks.iter().map(|s| s.id).collect();
    let needed = needed(graph, &roots, sources);
    let stage = stages(graph, &needed, sources);
    let computed = |id: &Id| !sources.contains_key(id) && !matches!(graph.node(*id), Node::Leaf(_));
    let is_sum = |id: Id| matches!(graph.node(id), Node::Sum(_));

    // Loop in which each per-unit node is computed or each sum accumulated.
    let loop_of = |id: Id| -> usize {
        if is_sum(id) {
            stage[&id] - 1
        } else {
            stage[&id]
        }
    };

    // Cheap arithmetic over loads and per-row values is recomputed where it is needed rather
    // than spilled to memory (`zx_i[j] - mean` costs less than a store and a load).
    let mut remat: BTreeMap<Id, usize> = BTreeMap::new();
    for &id in &needed {
        if !computed(&id) || graph.lane(id) != Lane::Unit {
            continue;
        }
        let cheap = matches!(
            graph.node(id),
            Node::Add(..) | Node::Sub(..) | Node::Mul(..) | Node::Neg(_)
        );
        let mut size = 1;
        let inputs_ok = graph.node(id).inputs().iter().all(|input| {
            if !computed(input) || graph.lane(*input) == Lane::Row {
                return true;
            }
            match remat.get(input) {
                Some(&inner) => {
                    size += inner;
                    true
                }
                None => false,
            }
        });
        if cheap && inputs_ok && size <= 4 {
            remat.insert(id, size);
        }
    }

    // Scratch rows: per-unit values kept for a later loop, and the partial sums of reductions.
    let mut scratch: BTreeMap<Id, usize> = BTreeMap::new();
    for &id in &needed {
        if !computed(&id) {
            continue;
        }
        let spill = graph.lane(id) == Lane::Unit
            && !remat.contains_key(&id)
            && needed.iter().any(|&user| {
                computed(&user)
                    && graph.node(user).inputs().contains(&id)
                    && (graph.lane(user) == Lane::Unit || is_sum(user))
                    && loop_of(user) > stage[&id]
            });
        if spill || is_sum(id) {
            let k = scratch.len();
            scratch.insert(id, k);
        }
    }
    let slot = |id: Id| format_ident!("spill{}", scratch[&id]);

    let mut leaves = BTreeSet::new();
    let max_stage = needed.iter().map(|id| stage[id]).max().unwrap_or(0);
    let mut body = TokenStream::new();
    let emit = |id: Id, s: usize, leaves: &mut BTreeSet<Leaf>| {
        let value = expression(
            graph, naming, id, s, &stage, sources, &scratch, &remat, leaves,
        );
        let var = var(graph, id);
        quote!(let #var = #value;)
    };
    for s in 0..=max_stage {
        // Per-row values of this stage (sums finished in the previous loop are already bound).
        for &id in &needed {
            if computed(&id) && graph.lane(id) == Lane::Row && !is_sum(id) && stage[&id] == s {
                body.extend(emit(id, s, &mut leaves));
            }
        }
        // Recomputed values this loop reads from earlier stages.
        let mut wanted: BTreeSet<Id> = BTreeSet::new();
        for &id in &needed {
            let here =
                computed(&id) && loop_of(id) == s && (graph.lane(id) == Lane::Unit || is_sum(id));
            if here {
                wanted.extend(graph.node(id).inputs());
            }
        }
        for sink in sinks {
            if matches!(sink.target, SinkTarget::Unit { .. }) && stage.get(&sink.id) == Some(&s) {
                wanted.insert(sink.id);
            }
        }
        let mut recompute: BTreeSet<Id> = BTreeSet::new();
        let mut stack: Vec<Id> = wanted.into_iter().collect();
        while let Some(id) = stack.pop() {
            if remat.contains_key(&id) && stage[&id] < s && recompute.insert(id) {
                stack.extend(graph.node(id).inputs());
            }
        }
        let mut inner = TokenStream::new();
        for &id in &recompute {
            inner.extend(emit(id, s, &mut leaves));
        }
        let mut finished = TokenStream::new();
        for &id in &needed {
            if !computed(&id) {
                continue;
            }
            match graph.node(id) {
                Node::Sum(items) if loop_of(id) == s => {
                    let partials = slot(id);
                    let mut values = items.iter().map(|&item| {
                        operand(
                            graph,
                            naming,
                            item,
                            s,
                            &stage,
                            sources,
                            &scratch,
                            &remat,
                            &mut leaves,
                        )
                    });
                    let first = values.next().unwrap_or_else(|| quote!(F::zero()));
                    let total = values.fold(first, |acc, v| quote!(#acc + #v));
                    inner.extend(quote!(#partials[j] = #total;));
                    let var = var(graph, id);
                    finished.extend(quote!(let #var = ops::sum(#partials);));
                }
                _ if graph.lane(id) == Lane::Unit && stage[&id] == s => {
                    inner.extend(emit(id, s, &mut leaves));
                    if let Some(&k) = scratch.get(&id) {
                        let spill = format_ident!("spill{}", k);
                        let var = var(graph, id);
                        inner.extend(quote!(#spill[j] = #var;));
                    }
                }
                _ => {}
            }
        }
        for sink in sinks {
            if let SinkTarget::Unit { slice, accumulate } = &sink.target
                && stage.get(&sink.id) == Some(&s)
            {
                let value = operand(
                    graph,
                    naming,
                    sink.id,
                    s,
                    &stage,
                    sources,
                    &scratch,
                    &remat,
                    &mut leaves,
                );
                inner.extend(if *accumulate {
                    quote!(#slice[j] += #value;)
                } else {
                    quote!(#slice[j] = #value;)
                });
            }
        }
        if !inner.is_empty() {
            body.extend(quote!(for j in 0..hidden { #inner }));
            body.extend(finished);
        }
    }
    for sink in sinks {
        if let SinkTarget::Row {
            slice,
            index,
            accumulate,
        } = &sink.target
        {
            let value = operand(
                graph,
                naming,
                sink.id,
                max_stage,
                &stage,
                sources,
                &scratch,
                &remat,
                &mut leaves,
            );
            body.extend(if *accumulate {
                quote!(#slice[#index] += #value;)
            } else {
                quote!(#slice[#index] = #value;)
            });
        }
    }
    RowCode {
        body,
        leaves,
        spills: scratch.len(),
    }
}

/// Nodes the sinks need, ascending, not looking through loaded values.
fn needed(graph: &Graph, roots: &[Id], sources: &HashMap<Id, Source>) -> Vec<Id> {
    let mut seen = BTreeSet::new();
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if seen.insert(id) && !sources.contains_key(&id) {
            stack.extend(graph.node(id).inputs());
        }
    }
    seen.into_iter().collect()
}

fn stages(graph: &Graph, needed: &[Id], sources: &HashMap<Id, Source>) -> HashMap<Id, usize> {
    let mut stage = HashMap::new();
    for &id in needed {
        let s = if sources.contains_key(&id) {
            0
        } else {
            let inputs = graph
                .node(id)
                .inputs()
                .iter()
                .map(|i| stage[i])
                .max()
                .unwrap_or(0);
            match graph.node(id) {
                Node::Sum(_) => inputs + 1,
                _ => inputs,
            }
        };
        stage.insert(id, s);
    }
    stage
}

fn var(graph: &Graph, id: Id) -> Ident {
    match graph.names.get(&id) {
        Some(name) => format_ident!("{}", name),
        None => format_ident!("t{}", id),
    }
}

/// How an input is referred to from code running in loop (or row stage) `s`.
#[allow(clippy::too_many_arguments)]
fn operand(
    graph: &Graph,
    naming: &Naming,
    id: Id,
    s: usize,
    stage: &HashMap<Id, usize>,
    sources: &HashMap<Id, Source>,
    scratch: &BTreeMap<Id, usize>,
    remat: &BTreeMap<Id, usize>,
    leaves: &mut BTreeSet<Leaf>,
) -> TokenStream {
    if let Some(source) = sources.get(&id) {
        return match source {
            Source::Unit(slice) => quote!(#slice[j]),
            Source::Row(slice, index) => quote!(#slice[#index]),
        };
    }
    if let Node::Leaf(leaf) = graph.node(id) {
        let name = naming.leaf(*leaf);
        if !matches!(leaf, Leaf::Lit(_)) {
            leaves.insert(*leaf);
        }
        return if graph.lane(id) == Lane::Unit {
            quote!(#name[j])
        } else {
            name
        };
    }
    if graph.lane(id) == Lane::Unit
        && stage[&id] < s
        && !remat.contains_key(&id)
        && let Some(k) = scratch.get(&id)
    {
        let spill = format_ident!("spill{}", k);
        return quote!(#spill[j]);
    }
    let v = var(graph, id);
    quote!(#v)
}

#[allow(clippy::too_many_arguments)]
fn expression(
    graph: &Graph,
    naming: &Naming,
    id: Id,
    s: usize,
    stage: &HashMap<Id, usize>,
    sources: &HashMap<Id, Source>,
    scratch: &BTreeMap<Id, usize>,
    remat: &BTreeMap<Id, usize>,
    leaves: &mut BTreeSet<Leaf>,
) -> TokenStream {
    // Every input is a name, a load or a literal, so no parentheses are ever needed.
    let mut op = |i: Id| operand(graph, naming, i, s, stage, sources, scratch, remat, leaves);
    match graph.node(id).clone() {
        Node::Leaf(_) => op(id),
        Node::Add(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(#a + #b)
        }
        Node::Sub(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(#a - #b)
        }
        Node::Mul(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(#a * #b)
        }
        Node::Div(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(#a / #b)
        }
        Node::Neg(a) => {
            let a = op(a);
            quote!(-#a)
        }
        Node::Unary(f, a) => {
            let a = op(a);
            let func = format_ident!(
                "{}",
                match f {
                    Unary::Sigmoid => "sigmoid",
                    Unary::Tanh => "tanh",
                    Unary::HardSigmoid => "hard_sigmoid",
                    Unary::HardSigmoidKeras2 => "hard_sigmoid_keras2",
                    Unary::Relu => "relu",
                    Unary::Softsign => "softsign",
                    Unary::Exp => "exp",
                    Unary::Abs => "abs",
                    Unary::Sqrt => "sqrt",
                }
            );
            quote!(ops::#func(#a))
        }
        Node::Min(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(ops::min(#a, #b))
        }
        Node::Max(a, b) => {
            let (a, b) = (op(a), op(b));
            quote!(ops::max(#a, #b))
        }
        Node::Clip(x, lo, hi) => {
            let (x, lo, hi) = (op(x), op(lo), op(hi));
            quote!(ops::clip(#x, #lo, #hi))
        }
        Node::Cmp(c, a, b) => {
            let (a, b) = (op(a), op(b));
            let func = match c {
                Cmp::Lt => quote!(lt),
                Cmp::Le => quote!(le),
                Cmp::Eq => quote!(eq),
            };
            quote!(ops::#func(#a, #b))
        }
        Node::Sum(_) => {
            // Sums are accumulated by `emit_row`, never written as one expression.
            let v = var(graph, id);
            quote!(#v)
        }
    }
}
