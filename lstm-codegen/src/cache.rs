//! What the training step caches for the backward step: the forward values the backward
//! graph reads (the *frontier* between forward-only and seed-dependent nodes), minus those
//! the runtime already keeps (`c_prev` and the other states' previous values, the new states,
//! `h_prev`, biases, parameters), minus
//! functions of one of those (`tanh(c)`: one evaluation per unit in the backward step instead
//! of one stored value per unit and step), and minus cheap arithmetic over values that are
//! cached anyway. The standard LSTM caches its four gates.

use std::collections::BTreeSet;

use crate::grad;
use crate::ir::{Graph, Id, Lane, Leaf, Node};
use crate::names::derived_name;

/// The forward values the backward step reads and cannot get otherwise.
pub fn frontier(graph: &Graph, backward_roots: &[Id], states_new: &[Id]) -> Vec<Id> {
    let mut seeded = vec![false; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        seeded[id] = match graph.node(id) {
            Node::Leaf(Leaf::SeedH | Leaf::Seed(_)) => true,
            node => node.inputs().iter().any(|&i| seeded[i]),
        };
    }
    let needed = grad::reachable(graph, backward_roots);
    let available = |id: Id| available(graph, id, states_new);
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
fn available(graph: &Graph, id: Id, states_new: &[Id]) -> bool {
    match graph.node(id) {
        Node::Leaf(
            Leaf::BiasIh(_)
            | Leaf::BiasHh(_)
            | Leaf::Prev(_)
            | Leaf::HPrev
            | Leaf::Param(_)
            | Leaf::GateParam(..)
            | Leaf::Constant(_)
            | Leaf::Lit(_)
            | Leaf::Units,
        ) => true,
        Node::Call(_, args) => {
            graph.lane(id) == Lane::Unit
                && args.len() == 1
                && (states_new.contains(&args[0]) || available(graph, args[0], states_new))
        }
        _ => states_new.contains(&id),
    }
}

/// `cache_f` for the cached gate `f`: a cached value's slice is named after what it holds.
pub fn names(graph: &Graph, cached: &[Id]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (k, &id) in cached.iter().enumerate() {
        let base = match graph.label(id).or_else(|| derived_name(graph, id)) {
            Some(label) => format!("cache_{label}"),
            None => format!("cache_{k}"),
        };
        let mut name = base.clone();
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}
