//! Symbolic reverse-mode differentiation over the IR.
//!
//! Given the seeds `dL/dh` and `dL/d{state}` (`dc`, `dn`, …) of a step, every forward node's adjoint is built as new
//! nodes of the same graph, in reverse topological order (node ids are topological: a node's
//! inputs always have smaller ids). Derivatives reuse forward values: `σ' = σ(1 − σ)` and
//! `tanh' = 1 − tanh²` are written in terms of the forward node itself, not recomputed.
//! A per-row value used by per-unit nodes (a layer-norm mean) gets the sum over the units of
//! its uses' adjoints, so reductions differentiate into reductions.
//!
//! Each function's partial derivatives, PyTorch's convention where one does not exist
//! everywhere (`relu'(0) = 0`, …), are its row of the table in `functions`.

use std::collections::{BTreeSet, HashMap};

use crate::functions::Algebra;
use crate::ir::{Forward, Graph, Id, Lane, Leaf, Node, ParamLane};

/// Adjoints of everything the runtime and the optimizer need.
pub struct Backward {
    /// `dL/dzx` per gate slot.
    pub dzx: Vec<Id>,
    /// `dL/dzh` per gate slot.
    pub dzh: Vec<Id>,
    pub dbias_ih: Vec<Id>,
    pub dbias_hh: Vec<Id>,
    /// `dL/d(constant projection)` per gate slot (empty without a constant).
    pub dconstant: Vec<Id>,
    /// `dL/d{state}_prev` per carried state, in packing order.
    pub dstate_prev: Vec<Id>,
    pub dh_prev: Id,
    /// Per parameter: one node (PerUnit, Scalar) or one per gate slot (Gates).
    pub dparams: Vec<Vec<Id>>,
}

/// Derives the backward step of `forward` into its graph.
pub fn differentiate(forward: &mut Forward) -> Backward {
    let graph = &mut forward.graph;
    let mut contributions: HashMap<Id, Vec<Id>> = HashMap::new();
    let seed_h = graph.leaf(Leaf::SeedH);
    contributions.entry(forward.h).or_default().push(seed_h);
    for (s, &state) in forward.states.iter().enumerate() {
        let seed = graph.leaf(Leaf::Seed(s));
        contributions.entry(state).or_default().push(seed);
    }
    let mut roots = vec![forward.h];
    roots.extend(&forward.states);
    let reachable = reachable(graph, &roots);
    let mut totals: HashMap<Id, Id> = HashMap::new();
    for &id in reachable.iter().rev() {
        let node = graph.node(id).clone();
        if matches!(node, Node::Leaf(_)) {
            continue;
        }
        let Some(parts) = contributions.remove(&id) else {
            continue;
        };
        let adjoint = total(graph, id, parts);
        totals.insert(id, adjoint);
        if let Some(name) = graph.names.get(&id).cloned() {
            graph.name(adjoint, format!("d_{name}"));
        }
        for (input, part) in local_adjoints(graph, id, &node, adjoint) {
            contributions.entry(input).or_default().push(part);
        }
    }

    let leaf_adjoint = |graph: &mut Graph, leaf: Leaf, name: String| -> Id {
        let id = graph.leaf(leaf);
        let parts = contributions.get(&id).cloned().unwrap_or_default();
        let adjoint = total(graph, id, parts);
        graph.name(adjoint, name);
        adjoint
    };
    let letters = graph.leaf_names.letters.clone();
    let params = graph.leaf_names.params.clone();
    let constant = graph.leaf_names.constant.clone();
    let per_slot = |graph: &mut Graph, leaf: fn(usize) -> Leaf, stem: &str| -> Vec<Id> {
        letters
            .iter()
            .enumerate()
            .map(|(s, letter)| leaf_adjoint(graph, leaf(s), format!("d_{stem}_{letter}")))
            .collect()
    };
    let dzx = per_slot(graph, Leaf::Zx, "zx");
    let dzh = per_slot(graph, Leaf::Zh, "zh");
    let dbias_ih = per_slot(graph, Leaf::BiasIh, "b_ih");
    let dbias_hh = per_slot(graph, Leaf::BiasHh, "b_hh");
    let dconstant = match &constant {
        Some(name) => per_slot(graph, Leaf::Constant, name),
        None => Vec::new(),
    };
    let states = graph.leaf_names.states.clone();
    let dstate_prev = (0..states.len())
        .map(|s| leaf_adjoint(graph, Leaf::Prev(s), format!("d_{}_prev", states[s])))
        .collect();
    let dh_prev = leaf_adjoint(graph, Leaf::HPrev, "d_h_prev".into());
    let param_lanes = graph.param_lanes.clone();
    let dparams = param_lanes
        .iter()
        .enumerate()
        .map(|(p, lane)| {
            let name = &params[p];
            match lane {
                ParamLane::Gates => letters
                    .iter()
                    .enumerate()
                    .map(|(s, l)| {
                        leaf_adjoint(graph, Leaf::GateParam(p, s), format!("d_{name}_{l}"))
                    })
                    .collect(),
                ParamLane::PerUnit | ParamLane::Scalar => {
                    vec![leaf_adjoint(graph, Leaf::Param(p), format!("d_{name}"))]
                }
                // Its gradient is `dconstant`; the runtime turns it into the weight's.
                ParamLane::Constant => Vec::new(),
            }
        })
        .collect();
    Backward {
        dzx,
        dzh,
        dbias_ih,
        dbias_hh,
        dconstant,
        dstate_prev,
        dh_prev,
        dparams,
    }
}

/// Nodes reachable from `roots`, ascending (so topological).
pub fn reachable(graph: &Graph, roots: &[Id]) -> Vec<Id> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    while let Some(id) = stack.pop() {
        if seen.insert(id) {
            stack.extend(graph.node(id).inputs());
        }
    }
    seen.into_iter().collect()
}

/// Sum of the contributions to one node's adjoint. A per-row node used per unit receives the
/// sum over the units of those uses.
fn total(graph: &mut Graph, id: Id, parts: Vec<Id>) -> Id {
    let (unit_parts, row_parts): (Vec<Id>, Vec<Id>) = parts
        .into_iter()
        .partition(|&p| graph.lane(p) == Lane::Unit);
    let mut acc = if graph.lane(id) == Lane::Row && !unit_parts.is_empty() {
        graph.sum(unit_parts)
    } else {
        unit_parts
            .into_iter()
            .fold(graph.lit(0.0), |acc, p| graph.add(acc, p))
    };
    for p in row_parts {
        acc = graph.add(acc, p);
    }
    acc
}

/// The adjoint contributions a node sends to each of its inputs, given its own adjoint `a`.
fn local_adjoints(graph: &mut Graph, id: Id, node: &Node, a: Id) -> Vec<(Id, Id)> {
    let g = graph;
    match *node {
        Node::Leaf(_) => Vec::new(),
        Node::Add(x, y) => vec![(x, a), (y, a)],
        Node::Sub(x, y) => {
            let minus = g.neg(a);
            vec![(x, a), (y, minus)]
        }
        Node::Mul(x, y) => {
            let dx = g.mul(a, y);
            let dy = g.mul(a, x);
            vec![(x, dx), (y, dy)]
        }
        Node::Div(x, y) => {
            // d(x/y)/dy = -(x/y)/y: reuse the quotient.
            let dx = g.div(a, y);
            let q = g.mul(a, id);
            let q = g.div(q, y);
            let dy = g.neg(q);
            vec![(x, dx), (y, dy)]
        }
        Node::Neg(x) => {
            let dx = g.neg(a);
            vec![(x, dx)]
        }
        Node::Call(func, ref args) => {
            let partials = (func.row().partials)(g, args, id);
            args.iter()
                .zip(partials)
                .map(|(&x, partial)| (x, g.mul(a, partial)))
                .collect()
        }
        Node::Cmp(..) => Vec::new(),
        Node::Sum(ref items) => items.iter().map(|&item| (item, a)).collect(),
    }
}
