//! How the generator names the values it computes when the spec did not: `tanh_c` for
//! `tanh(c)`, `z_o_slope` for `hard_sigmoid`'s derivative at `z_o`, `gamma_c_d_ln_c` for a
//! product. The generated code binds such values (`let tanh_c = …`, `cache_z_o_slope`) and
//! the names must say what they hold; a value no rule names short and clear is `t{id}`.

use std::collections::BTreeSet;

use crate::functions::Cmp;
use crate::ir::{Graph, Id, Node};

/// A name for an unnamed value from what it computes: `tanh_c` for `tanh(c)`,
/// `gamma_c_d_ln_c` for `gamma_c * d_ln_c`; `None` if that would not be short and clear.
pub fn derived_name(graph: &Graph, id: Id) -> Option<String> {
    let label = |id: Id| graph.label(id).filter(|_| graph.literal(id).is_none());
    let name = match graph.node(id) {
        Node::Call(func, args) => {
            let labels: Option<Vec<String>> = args.iter().map(|&a| label(a)).collect();
            format!("{}_{}", func.name(), labels?.join("_"))
        }
        Node::Neg(a) => format!("minus_{}", label(*a)?),
        // A derivative's window, `[lo < x] * [x < hi]`: where `x` passes the gradient.
        Node::Mul(a, b) if compared(graph, *a).is_some() => {
            let x = compared(graph, *a)?;
            if compared(graph, *b)? != x {
                return None;
            }
            format!("{}_in_range", label(x)?)
        }
        Node::Cmp(Cmp::Lt, a, b) if graph.literal(*a) == Some(0.0) => {
            format!("{}_positive", label(*b)?)
        }
        Node::Cmp(Cmp::Lt, a, b) if graph.literal(*b) == Some(0.0) => {
            format!("{}_negative", label(*a)?)
        }
        Node::Cmp(cmp, a, b) => format!("{}_{}_{}", label(*a)?, cmp.ops_name(), label(*b)?),
        // A value times a number; a window times a slope is a piecewise-linear function's
        // derivative at `x` (`hard_sigmoid`'s): `x_slope`.
        Node::Mul(a, b) if graph.literal(*a).is_some() || graph.literal(*b).is_some() => {
            let value = if graph.literal(*a).is_some() { *b } else { *a };
            match derived_name(graph, value) {
                Some(window) if window.ends_with("_in_range") => {
                    window.replace("_in_range", "_slope")
                }
                _ => format!("{}_scaled", label(value)?),
            }
        }
        Node::Mul(a, b) => format!("{}_{}", label(*a)?, label(*b)?),
        Node::Div(a, b) => format!("{}_over_{}", label(*a)?, label(*b)?),
        _ => return None,
    };
    (name.len() <= 24).then_some(name)
}

/// The value a comparison with a literal bound tests (`x` in `[-3 < x]`).
fn compared(graph: &Graph, id: Id) -> Option<Id> {
    let Node::Cmp(_, a, b) = *graph.node(id) else {
        return None;
    };
    match (graph.literal(a), graph.literal(b)) {
        (Some(_), None) => Some(b),
        (None, Some(_)) => Some(a),
        _ => None,
    }
}

/// `base`, or `base_2`, `base_3`, … if taken; taken from then on.
pub fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}
