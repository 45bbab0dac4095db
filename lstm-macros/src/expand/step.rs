//! The three step functions of the `Cell` impl (inference, training, backward) and the
//! `CellSpec` constant that tells the runtime their workspace sizes.
//!
//! What the training step caches is decided here from the backward graph: the forward values
//! the backward step reads (the *frontier* between forward-only and seed-dependent nodes),
//! minus those the runtime already keeps (`c_prev`, the new `c`, `h_prev`, biases,
//! parameters), minus functions of one of those (`tanh(c)`: one evaluation per unit in the
//! backward step instead of one stored value per unit and step), and minus cheap arithmetic
//! over values that are cached anyway. The standard LSTM caches its four gates.

use std::collections::{BTreeSet, HashMap};

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::expand::weights::init_tokens;
use crate::grad::Backward;
use crate::ir::{Forward, Graph, Id, Lane, Leaf, Node};
use crate::schedule::{self, Naming, RowCode, Sink, SinkTarget, Source};
use crate::spec::ParamShape;
use crate::validate::Checked;

pub struct Steps {
    inference: RowCode,
    training: RowCode,
    backward: RowCode,
    /// `(definition, call)` of each function's row kernel.
    kernels: [(TokenStream, TokenStream); 3],
    /// Cached per-unit nodes, in cache-slice order.
    cached_units: Vec<Id>,
    /// Cached per-row nodes.
    cached_rows: Vec<Id>,
    shared_grad: bool,
    /// Whether no value of a unit depends on another unit's (no sum over the units, nor
    /// their count): the steps then run over any subset of the units as a cell of that size.
    unit_local: bool,
}

impl Steps {
    pub fn plan(checked: &Checked, forward: &Forward, backward: &Backward) -> Steps {
        let graph = &forward.graph;
        let naming = naming(forward);
        let outputs = vec![
            Sink {
                id: forward.h,
                target: unit_sink("h_out", false),
            },
            Sink {
                id: forward.c,
                target: unit_sink("c_out", false),
            },
        ];
        let krate = &checked.spec.krate;
        let inference = schedule::emit_row(graph, &naming, &outputs, &HashMap::new());
        let inference_kernel =
            schedule::kernel(graph, &naming, &inference, &outputs, &HashMap::new(), krate);

        let shared_grad = backward.dzx == backward.dzh;
        let mut backward_sinks = Vec::new();
        for (s, letter) in forward.letters.iter().enumerate() {
            backward_sinks.push(Sink {
                id: backward.dzx[s],
                target: unit_sink(&format!("dzx_{letter}"), false),
            });
            if !shared_grad {
                backward_sinks.push(Sink {
                    id: backward.dzh[s],
                    target: unit_sink(&format!("dzh_{letter}"), false),
                });
            }
            backward_sinks.push(Sink {
                id: backward.dbias_ih[s],
                target: unit_sink(&format!("db_ih_{letter}"), true),
            });
            backward_sinks.push(Sink {
                id: backward.dbias_hh[s],
                target: unit_sink(&format!("db_hh_{letter}"), true),
            });
        }
        backward_sinks.push(Sink {
            id: backward.dc_prev,
            target: unit_sink("dc_prev_out", false),
        });
        if checked.reads_h_prev {
            backward_sinks.push(Sink {
                id: backward.dh_prev,
                target: unit_sink("dh_prev_out", false),
            });
        }
        for (p, param) in checked.spec.params.iter().enumerate() {
            let grads = &backward.dparams[p];
            match param.shape {
                ParamShape::PerUnit => backward_sinks.push(Sink {
                    id: grads[0],
                    target: unit_sink(&format!("grad_{}", param.ident), true),
                }),
                ParamShape::Scalar => backward_sinks.push(Sink {
                    id: grads[0],
                    target: SinkTarget::Row {
                        slice: format_ident!("grad_{}", param.ident),
                        index: 0,
                        accumulate: true,
                    },
                }),
                // The constant's gradient is `dconstant`, sunk below.
                ParamShape::Constant => {}
                ParamShape::Gates => {
                    for (s, letter) in forward.letters.iter().enumerate() {
                        backward_sinks.push(Sink {
                            id: grads[s],
                            target: unit_sink(&format!("grad_{}_{letter}", param.ident), true),
                        });
                    }
                }
            }
        }

        for (s, letter) in forward.letters.iter().enumerate() {
            if let Some(&id) = backward.dconstant.get(s) {
                backward_sinks.push(Sink {
                    id,
                    target: unit_sink(&format!("dconst_{letter}"), true),
                });
            }
        }
        let roots: Vec<Id> = backward_sinks.iter().map(|s| s.id).collect();
        let frontier = frontier(graph, &roots, forward.c);
        let cached_units: Vec<Id> = frontier
            .iter()
            .copied()
            .filter(|&id| graph.lane(id) == Lane::Unit)
            .collect();
        let cached_rows: Vec<Id> = frontier
            .iter()
            .copied()
            .filter(|&id| graph.lane(id) == Lane::Row)
            .collect();

        let mut training_sinks = outputs;
        let mut sources = HashMap::new();
        for (k, &id) in cached_units.iter().enumerate() {
            training_sinks.push(Sink {
                id,
                target: unit_sink(&format!("cache{k}"), false),
            });
            sources.insert(id, Source::Unit(format_ident!("cache{}", k)));
        }
        for (k, &id) in cached_rows.iter().enumerate() {
            training_sinks.push(Sink {
                id,
                target: SinkTarget::Row {
                    slice: format_ident!("cache_rows"),
                    index: k,
                    accumulate: false,
                },
            });
            sources.insert(id, Source::Row(format_ident!("cache_rows"), k));
        }
        let training = schedule::emit_row(graph, &naming, &training_sinks, &HashMap::new());
        let training_kernel = schedule::kernel(
            graph,
            &naming,
            &training,
            &training_sinks,
            &HashMap::new(),
            krate,
        );
        sources.insert(forward.c, Source::Unit(format_ident!("c_new")));
        let backward_code = schedule::emit_row(graph, &naming, &backward_sinks, &sources);
        let backward_kernel = schedule::kernel(
            graph,
            &naming,
            &backward_code,
            &backward_sinks,
            &sources,
            krate,
        );
        Steps {
            kernels: [inference_kernel, training_kernel, backward_kernel],
            inference,
            training,
            backward: backward_code,
            cached_units,
            cached_rows,
            shared_grad,
            unit_local: !graph
                .nodes
                .iter()
                .any(|node| matches!(node, Node::Sum(_) | Node::Leaf(Leaf::Units))),
        }
    }

    /// The `CellSpec` literal.
    pub fn spec_const(&self, checked: &Checked) -> TokenStream {
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
        let params = spec.params.iter().filter(|p| p.shape != ParamShape::Constant).map(|p| {
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
        let scratch = self.inference.spills.max(self.training.spills);
        let cache_units = n(self.cached_units.len());
        let cache_rows = n(self.cached_rows.len());
        let backward_scratch = self.backward.spills;
        let shared = self.shared_grad;
        let unit_local = self.unit_local;
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
            }
        }
    }

    pub fn functions(&self, checked: &Checked, forward: &Forward) -> TokenStream {
        let krate = &checked.spec.krate;
        let letters = &forward.letters;
        let gates = n(letters.len());
        let preamble = quote! {
            let hidden = self.weight_ih.nrows() / #gates;
            let gates_len = #gates * hidden;
        };
        let allow =
            quote!(#[allow(clippy::needless_range_loop, clippy::too_many_lines, unused_variables)]);

        // Inference.
        let inference = self.forward_fn(checked, forward, &self.inference, false);
        let training = self.forward_fn(checked, forward, &self.training, true);
        let backward_fn = self.backward_fn(checked, forward);
        quote! {
            #allow
            fn step(&self, io: #krate::StepIo<'_, F>) {
                #preamble
                #inference
            }

            #allow
            fn step_train(&self, io: #krate::StepIo<'_, F>, cache: &mut [F]) {
                #preamble
                #training
            }

            #allow
            fn step_backward(&self, io: #krate::BackwardIo<'_, F>, grads: &mut Self) {
                #preamble
                #backward_fn
            }
        }
    }

    fn forward_fn(
        &self,
        checked: &Checked,
        forward: &Forward,
        code: &RowCode,
        train: bool,
    ) -> TokenStream {
        let krate = &checked.spec.krate;
        let (kernel, call) = &self.kernels[usize::from(train)];
        let per_call = per_call_leaves(checked, forward, &code.leaves);
        let per_row = per_row_leaves(forward, &code.leaves, quote!(zx_all), quote!(zh_all));
        let spills = n(code.spills);
        let spill_slices = split_mut_chain(
            quote!(scratch[row * scratch_len..]),
            &(0..code.spills)
                .map(|k| Some(format_ident!("spill{}", k)))
                .collect::<Vec<_>>(),
        );
        let cache_units = n(self.cached_units.len());
        let cache_rows = n(self.cached_rows.len());
        let (cache_check, cache_bind) = if train {
            let names: Vec<Option<Ident>> = (0..self.cached_units.len())
                .map(|k| Some(format_ident!("cache{}", k)))
                .collect();
            let chain =
                split_mut_chain_rest(quote!(cache_row), &names, format_ident!("cache_rows"));
            (
                quote! {
                    let cache_len = #cache_units * hidden + #cache_rows;
                    assert!(cache.len() >= rows * cache_len, "cache holds fewer values than rows × SPEC.cache");
                },
                quote! {
                    let cache_row = &mut cache[row * cache_len..][..cache_len];
                    #chain
                },
            )
        } else {
            (quote!(), quote!())
        };
        let constant_len = n(usize::from(forward.constant.is_some()));
        quote! {
            #kernel
            let #krate::StepIo {
                rows, zx: zx_all, zh: zh_all, bias_ih, bias_hh, constant: constant_all,
                c_prev: c_prev_all, h_prev: h_prev_all, h: h_all, c: c_all, scratch,
            } = io;
            let scratch_len = #spills * hidden;
            assert!(
                zx_all.len() >= rows * gates_len && zh_all.len() >= rows * gates_len
                    && (#constant_len == 0 || constant_all.len() >= rows * gates_len)
                    && bias_ih.len() >= gates_len && bias_hh.len() >= gates_len
                    && c_prev_all.len() >= rows * hidden && h_all.len() >= rows * hidden
                    && c_all.len() >= rows * hidden && scratch.len() >= rows * scratch_len,
                "step buffers are smaller than the Cell contract requires"
            );
            #cache_check
            #per_call
            for row in 0..rows {
                #per_row
                let h_out = &mut h_all[row * hidden..][..hidden];
                let c_out = &mut c_all[row * hidden..][..hidden];
                #spill_slices
                #cache_bind
                #call
            }
        }
    }

    fn backward_fn(&self, checked: &Checked, forward: &Forward) -> TokenStream {
        let krate = &checked.spec.krate;
        let code = &self.backward;
        let (kernel, call) = &self.kernels[2];
        let body = &code.body;
        let letters = &forward.letters;
        let per_call = per_call_leaves(checked, forward, &code.leaves);
        let per_row = per_row_leaves(forward, &code.leaves, quote!(zx_unused), quote!(zh_unused));
        let spills = n(code.spills);
        let spill_slices = split_mut_chain(
            quote!(scratch[row * scratch_len..]),
            &(0..code.spills)
                .map(|k| Some(format_ident!("spill{}", k)))
                .collect::<Vec<_>>(),
        );
        let cache_units = n(self.cached_units.len());
        let cache_rows = n(self.cached_rows.len());
        let cache_slices = (0..self.cached_units.len()).map(|k| {
            let name = format_ident!("cache{}", k);
            let k = n(k);
            quote!(let #name = &cache_row[#k * hidden..][..hidden];)
        });
        let gate_slices = |stem: &str, all: TokenStream| {
            let names: Vec<Option<Ident>> = letters
                .iter()
                .map(|l| Some(format_ident!("{}_{}", stem, l)))
                .collect();
            let chain = split_mut_chain(all.clone(), &names);
            quote! { #chain }
        };
        let dzx = gate_slices("dzx", quote!(dzx_row));
        let dzh = if self.shared_grad {
            quote!()
        } else {
            gate_slices("dzh", quote!(dzh_row))
        };
        let dzh_row = if self.shared_grad {
            quote!()
        } else {
            quote!(let dzh_row = &mut dzh_all[row * gates_len..][..gates_len];)
        };
        let dzh_check = if self.shared_grad {
            quote!(true)
        } else {
            quote!(dzh_all.len() >= rows * gates_len)
        };
        let db_ih = gate_slices("db_ih", quote!(dbias_ih));
        let db_hh = gate_slices("db_hh", quote!(dbias_hh));
        let param_grads = checked.spec.params.iter().map(|param| {
            let field = &param.ident;
            let grad = format_ident!("grad_{}", param.ident);
            match param.shape {
                // The runtime turns the constant's `dconstant` into its weight's gradient.
                ParamShape::Constant => quote!(),
                ParamShape::PerUnit => quote! {
                    let #grad = &mut #krate::__private::slice_mut(&mut grads.#field)[..hidden];
                },
                ParamShape::Scalar => quote! {
                    let #grad = &mut #krate::__private::slice_mut(&mut grads.#field)[..1];
                },
                ParamShape::Gates => {
                    let names: Vec<Option<Ident>> =
                        letters.iter().map(|l| Some(format_ident!("grad_{}_{}", param.ident, l))).collect();
                    let chain = split_mut_chain(quote!(#grad), &names);
                    quote! {
                        let #grad = &mut #krate::__private::slice_mut(&mut grads.#field)[..gates_len];
                        #chain
                    }
                }
            }
        });
        let h_prev_out = if checked.reads_h_prev {
            quote!(let dh_prev_out = &mut dh_prev_all[row * hidden..][..hidden];)
        } else {
            quote!()
        };
        let constant_len = n(usize::from(forward.constant.is_some()));
        let dconstant = if forward.constant.is_some() {
            let chain = gate_slices("dconst", quote!(dconst_row));
            quote! {
                let dconst_row = &mut dconstant_all[row * gates_len..][..gates_len];
                #chain
            }
        } else {
            quote!()
        };
        let uses_c_new = body.to_string().contains("c_new");
        let c_new = if uses_c_new {
            quote!(let c_new = &c_all[row * hidden..][..hidden];)
        } else {
            quote!()
        };
        quote! {
            #kernel
            let #krate::BackwardIo {
                rows, dh: dh_all, dc: dc_all, c_prev: c_prev_all, c: c_all, h_prev: h_prev_all,
                bias_ih, bias_hh, constant: constant_all, cache, dzx: dzx_all, dzh: dzh_all,
                dc_prev: dc_prev_all, dh_prev: dh_prev_all, dconstant: dconstant_all, dbias_ih,
                dbias_hh, scratch,
            } = io;
            let scratch_len = #spills * hidden;
            let cache_len = #cache_units * hidden + #cache_rows;
            assert!(
                dh_all.len() >= rows * hidden && dc_all.len() >= rows * hidden
                    && c_prev_all.len() >= rows * hidden && c_all.len() >= rows * hidden
                    && cache.len() >= rows * cache_len && dzx_all.len() >= rows * gates_len
                    && #dzh_check && dc_prev_all.len() >= rows * hidden
                    && bias_ih.len() >= gates_len && bias_hh.len() >= gates_len
                    && dbias_ih.len() >= gates_len && dbias_hh.len() >= gates_len
                    && scratch.len() >= rows * scratch_len
                    && (#constant_len == 0 || (constant_all.len() >= rows * gates_len
                        && dconstant_all.len() >= rows * gates_len)),
                "backward buffers are smaller than the Cell contract requires"
            );
            let dbias_ih = &mut dbias_ih[..gates_len];
            let dbias_hh = &mut dbias_hh[..gates_len];
            #db_ih
            #db_hh
            #(#param_grads)*
            #per_call
            for row in 0..rows {
                let dh = &dh_all[row * hidden..][..hidden];
                let dc = &dc_all[row * hidden..][..hidden];
                #c_new
                #per_row
                let cache_row = &cache[row * cache_len..][..cache_len];
                #(#cache_slices)*
                let cache_rows = &cache_row[#cache_units * hidden..];
                let dzx_row = &mut dzx_all[row * gates_len..][..gates_len];
                #dzx
                #dzh_row
                #dzh
                let dc_prev_out = &mut dc_prev_all[row * hidden..][..hidden];
                #h_prev_out
                #dconstant
                #spill_slices
                #call
            }
        }
    }
}

/// `3`, not `3usize`, in generated code.
fn n(value: usize) -> proc_macro2::Literal {
    proc_macro2::Literal::usize_unsuffixed(value)
}

fn unit_sink(name: &str, accumulate: bool) -> SinkTarget {
    SinkTarget::Unit {
        slice: format_ident!("{}", name),
        accumulate,
    }
}

pub fn naming(forward: &Forward) -> Naming {
    Naming {
        letters: forward.letters.clone(),
        params: forward.params.clone(),
        constant: forward.constant.clone(),
    }
}

/// Bindings made once per call: bias and parameter slices, the unit count.
fn per_call_leaves(checked: &Checked, forward: &Forward, leaves: &BTreeSet<Leaf>) -> TokenStream {
    let krate = &checked.spec.krate;
    let naming = naming(forward);
    let mut out = TokenStream::new();
    let mut params_bound = BTreeSet::new();
    for leaf in leaves {
        let name = naming.leaf(*leaf);
        match *leaf {
            Leaf::Units => out.extend(quote!(let units = F::of(hidden as f64);)),
            Leaf::BiasIh(s) => {
                let s = n(s);
                out.extend(quote!(let #name = &bias_ih[#s * hidden..][..hidden];));
            }
            Leaf::BiasHh(s) => {
                let s = n(s);
                out.extend(quote!(let #name = &bias_hh[#s * hidden..][..hidden];));
            }
            Leaf::Param(p) if checked.spec.params[p].shape == ParamShape::Scalar => {
                let field = &checked.spec.params[p].ident;
                out.extend(quote!(let #name = #krate::__private::slice(&self.#field)[0];));
            }
            Leaf::Param(p) => {
                let field = &checked.spec.params[p].ident;
                out.extend(quote!(let #name = &#krate::__private::slice(&self.#field)[..hidden];));
            }
            Leaf::GateParam(p, s) => {
                let field = &checked.spec.params[p].ident;
                if params_bound.insert(p) {
                    out.extend(
                        quote!(let #field = &#krate::__private::slice(&self.#field)[..gates_len];),
                    );
                }
                let s = n(s);
                out.extend(quote!(let #name = &#field[#s * hidden..][..hidden];));
            }
            _ => {}
        }
    }
    out
}

/// Bindings made per batch row: the row's slices of the step inputs.
fn per_row_leaves(
    forward: &Forward,
    leaves: &BTreeSet<Leaf>,
    zx_all: TokenStream,
    zh_all: TokenStream,
) -> TokenStream {
    let naming = naming(forward);
    let mut out = TokenStream::new();
    for leaf in leaves {
        let name = naming.leaf(*leaf);
        match *leaf {
            Leaf::Zx(s) => {
                let s = n(s);
                out.extend(
                    quote!(let #name = &#zx_all[row * gates_len + #s * hidden..][..hidden];),
                );
            }
            Leaf::Zh(s) => {
                let s = n(s);
                out.extend(
                    quote!(let #name = &#zh_all[row * gates_len + #s * hidden..][..hidden];),
                );
            }
            Leaf::CPrev => out.extend(quote!(let c_prev = &c_prev_all[row * hidden..][..hidden];)),
            Leaf::HPrev => out.extend(quote!(let h_prev = &h_prev_all[row * hidden..][..hidden];)),
            Leaf::Constant(s) => {
                let s = n(s);
                out.extend(
                    quote!(let #name = &constant_all[row * gates_len + #s * hidden..][..hidden];),
                );
            }
            _ => {}
        }
    }
    out
}

/// `let (a, rest) = rest.split_at_mut(hidden); …` binding each named chunk of `hidden` values.
fn split_mut_chain(base: TokenStream, names: &[Option<Ident>]) -> TokenStream {
    let last_used = names.iter().rposition(Option::is_some);
    let Some(last) = last_used else {
        return quote!();
    };
    let mut out = quote!(let rest = &mut #base[..];);
    if last == 0 && names.len() == 1 {
        let name = &names[0];
        return quote!(let #name = &mut #base[..hidden];);
    }
    for (k, name) in names.iter().enumerate().take(last + 1) {
        let bind = match name {
            Some(n) => quote!(#n),
            None => quote!(_),
        };
        out.extend(if k == last {
            quote!(let (#bind, _) = rest.split_at_mut(hidden);)
        } else {
            quote!(let (#bind, rest) = rest.split_at_mut(hidden);)
        });
    }
    out
}

/// As [`split_mut_chain`], binding what remains after the chunks to `rest_name`.
fn split_mut_chain_rest(
    base: TokenStream,
    names: &[Option<Ident>],
    rest_name: Ident,
) -> TokenStream {
    let mut out = quote!(let rest = &mut #base[..];);
    for name in names {
        let bind = match name {
            Some(n) => quote!(#n),
            None => quote!(_),
        };
        out.extend(quote!(let (#bind, rest) = rest.split_at_mut(hidden);));
    }
    out.extend(quote!(let #rest_name = rest;));
    out
}

/// The forward values the backward step reads and cannot get otherwise.
fn frontier(graph: &Graph, backward_roots: &[Id], c_new: Id) -> Vec<Id> {
    let mut seeded = vec![false; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        seeded[id] = match graph.node(id) {
            Node::Leaf(Leaf::SeedH | Leaf::SeedC) => true,
            node => node.inputs().iter().any(|&i| seeded[i]),
        };
    }
    let needed = crate::grad::reachable(graph, backward_roots);
    let available = |id: Id| available(graph, id, c_new);
    let mut frontier: BTreeSet<Id> = BTreeSet::new();
    for &id in &needed {
        if seeded[id] {
            for input in graph.node(id).inputs() {
                if !seeded[input] && !available(input) {
                    frontier.insert(input);
                }
            }
        } else if backward_roots.contains(&id) && !available(id) {
            // A gradient that does not depend on the seeds (a zero) needs no cache; one that
            // is a forward value read directly does.
            if !matches!(graph.node(id), Node::Leaf(Leaf::Lit(_))) {
                frontier.insert(id);
            }
        }
    }
    // Cheap arithmetic is recomputed in backward rather than cached: a cached `o * (1 - o)`
    // is replaced by `o` when that adds at most one value to the cache (none if `o` is cached
    // anyway). Each replacement moves to smaller ids, so this terminates.
    let cheap = |id: Id| {
        matches!(
            graph.node(id),
            Node::Add(..) | Node::Sub(..) | Node::Mul(..) | Node::Neg(_) | Node::Cmp(..)
        )
    };
    loop {
        let replacement = frontier
            .iter()
            .copied()
            .filter(|&id| cheap(id))
            .find_map(|id| {
                let mut base = BTreeSet::new();
                let mut stack = graph.node(id).inputs();
                while let Some(input) = stack.pop() {
                    if available(input) || frontier.contains(&input) {
                        continue;
                    }
                    if cheap(input) {
                        stack.extend(graph.node(input).inputs());
                    } else {
                        base.insert(input);
                    }
                }
                (base.len() <= 1).then_some((id, base))
            });
        match replacement {
            Some((id, base)) => {
                frontier.remove(&id);
                frontier.extend(base);
            }
            None => break,
        }
    }
    frontier.into_iter().collect()
}

/// Whether the backward step has `id` without a cache: the runtime keeps it (`c_prev`, the
/// new `c`, `h_prev`, biases, parameters, constants), or it is a function of one such value
/// (`tanh(c)`), recomputed for one evaluation per unit instead of one stored value per step.
fn available(graph: &Graph, id: Id, c_new: Id) -> bool {
    match graph.node(id) {
        Node::Leaf(
            Leaf::BiasIh(_)
            | Leaf::BiasHh(_)
            | Leaf::CPrev
            | Leaf::HPrev
            | Leaf::Param(_)
            | Leaf::GateParam(..)
            | Leaf::Constant(_)
            | Leaf::Lit(_)
            | Leaf::Units,
        ) => true,
        Node::Unary(_, input) => {
            graph.lane(id) == Lane::Unit && (*input == c_new || available(graph, *input, c_new))
        }
        _ => id == c_new,
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
