//! A cell's equations as text: the forward step as written and defaulted, and the backward
//! step as `grad` derived it, with the names the generated code uses (`d_c`, `d_z_f`) and
//! everything unnamed written out (`d_z_f = 1.5 · d_f · f · (1 − f)`), so that a reader (or
//! a snapshot test) sees the gradient the macro compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::grad::{self, Backward};
use crate::ir::{Forward, Graph, Id, Leaf, Node};
use crate::validate::Checked;

/// Where an equation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The spec wrote it.
    Written,
    /// The standard LSTM's, as the spec did not write it.
    Default,
    /// Derived by differentiating the forward step.
    Derived,
}

/// One equation: `name = rhs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equation {
    pub name: String,
    pub rhs: String,
    pub origin: Origin,
}

/// The equations of one cell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equations {
    /// The struct's name.
    pub cell: String,
    /// The gates computed from the weights, in weight-row order.
    pub gates: Vec<&'static str>,
    /// One step, per hidden unit, in the spec language.
    pub forward: Vec<Equation>,
    /// The derived backward step: `d_x` is `∂L/∂x`; `dh` and `dc` are the gradients the step
    /// receives for its outputs `h` and `c`.
    pub backward: Vec<Equation>,
    /// The spec's functions the cell calls, in the table's order.
    pub functions: Vec<FunctionUse>,
}

/// A function of the spec language a cell calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionUse {
    pub name: &'static str,
    /// What it computes.
    pub meaning: &'static str,
    /// PyTorch's convention where its derivative does not exist everywhere.
    pub convention: Option<&'static str>,
}

impl Equations {
    pub(crate) fn new(checked: &Checked, forward: &Forward, backward: &Backward) -> Equations {
        let forward_equations = checked
            .equations
            .iter()
            .map(|e| Equation {
                name: e.name.to_string(),
                rhs: e.rhs.clone(),
                origin: if e.written {
                    Origin::Written
                } else {
                    Origin::Default
                },
            })
            .collect();
        Equations {
            cell: checked.spec.ident.to_string(),
            gates: forward.letters().to_vec(),
            forward: forward_equations,
            backward: backward_equations(checked, forward, backward),
            functions: checked
                .functions()
                .into_iter()
                .map(|func| {
                    let row = func.row();
                    FunctionUse {
                        name: row.name,
                        meaning: row.doc,
                        convention: row.convention,
                    }
                })
                .collect(),
        }
    }
}

impl fmt::Display for Equations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: gates {} (zx = W_ih·x, zh = W_hh·h_prev, z_f the forget gate's part of z)",
            self.cell,
            self.gates.join(", ")
        )?;
        writeln!(f, "\nforward, per hidden unit:")?;
        let width = self.forward.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for equation in &self.forward {
            let origin = match equation.origin {
                Origin::Written => "written",
                _ => "default",
            };
            let rhs = format!("{:width$} = {}", equation.name, equation.rhs);
            writeln!(f, "  {rhs:40}  ({origin})")?;
        }
        writeln!(
            f,
            "\nbackward (d_x = ∂L/∂x; dh, dc: the gradients of the step's h and c; Σ sums over \
             the hidden units):"
        )?;
        for equation in &self.backward {
            writeln!(f, "  {} = {}", equation.name, equation.rhs)?;
        }
        writeln!(f, "\nfunctions:")?;
        for function in &self.functions {
            let (name, meaning) = (function.name, function.meaning);
            match function.convention {
                Some(convention) => writeln!(f, "  {name}: {meaning}; {convention} (PyTorch)")?,
                None => writeln!(f, "  {name}: {meaning}")?,
            }
        }
        Ok(())
    }
}

/// The gradients the backward step produces, under the names the runtime gives them.
fn outputs(checked: &Checked, forward: &Forward, backward: &Backward) -> Vec<(String, Id)> {
    let letters = forward.letters();
    let mut outputs = Vec::new();
    for (s, letter) in letters.iter().enumerate() {
        outputs.push((format!("d_zx_{letter}"), backward.dzx[s]));
        outputs.push((format!("d_zh_{letter}"), backward.dzh[s]));
        outputs.push((format!("d_b_ih_{letter}"), backward.dbias_ih[s]));
        outputs.push((format!("d_b_hh_{letter}"), backward.dbias_hh[s]));
    }
    for (name, &id) in forward
        .graph
        .leaf_names
        .states
        .iter()
        .zip(&backward.dstate_prev)
    {
        outputs.push((format!("d_{name}_prev"), id));
    }
    if checked.reads_h_prev {
        outputs.push(("d_h_prev".into(), backward.dh_prev));
    }
    let names = &forward.graph.leaf_names;
    for (p, grads) in backward.dparams.iter().enumerate() {
        match grads.as_slice() {
            [single] => outputs.push((format!("d_{}", names.params[p]), *single)),
            per_gate => {
                for (&id, letter) in per_gate.iter().zip(letters) {
                    outputs.push((format!("d_{}_{letter}", names.params[p]), id));
                }
            }
        }
    }
    if let Some(constant) = &names.constant {
        for (&id, letter) in backward.dconstant.iter().zip(letters) {
            outputs.push((format!("d_{constant}_{letter}"), id));
        }
    }
    outputs
}

/// Every named backward value in evaluation order, then the outputs that are another value
/// under a second name, grouped: `d_zx_i = d_zh_i = d_b_ih_i = d_b_hh_i = d_z_i`.
fn backward_equations(checked: &Checked, forward: &Forward, backward: &Backward) -> Vec<Equation> {
    let graph = &forward.graph;
    let outputs = outputs(checked, forward, backward);
    let seeded = seeded(graph);
    let roots: Vec<Id> = outputs.iter().map(|(_, id)| *id).collect();
    let named: BTreeSet<Id> = grad::reachable(graph, &roots)
        .into_iter()
        .filter(|&id| seeded[id] && graph.names.contains_key(&id))
        .collect();
    let text = Text { graph };
    let mut equations: Vec<Equation> = named
        .iter()
        .map(|&id| Equation {
            name: graph.names[&id].clone(),
            rhs: text.rhs(id),
            origin: Origin::Derived,
        })
        .collect();
    let mut aliases: BTreeMap<Id, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    for (name, id) in outputs {
        if graph.names.get(&id) == Some(&name) && named.contains(&id) {
            continue;
        }
        if !aliases.contains_key(&id) {
            order.push(id);
        }
        aliases.entry(id).or_default().push(name);
    }
    for id in order {
        let names = &aliases[&id];
        let rhs = if named.contains(&id) {
            graph.names[&id].clone()
        } else {
            text.rhs(id)
        };
        equations.push(Equation {
            name: names.join(" = "),
            rhs,
            origin: Origin::Derived,
        });
    }
    equations
}

/// Whether each node depends on the seeds `dh`, `dc` (is part of the backward step).
fn seeded(graph: &Graph) -> Vec<bool> {
    let mut seeded = vec![false; graph.nodes.len()];
    for id in 0..graph.nodes.len() {
        seeded[id] = match graph.node(id) {
            Node::Leaf(Leaf::SeedH | Leaf::Seed(_)) => true,
            node => node.inputs().iter().any(|&i| seeded[i]),
        };
    }
    seeded
}

/// Writes nodes as text: named nodes by name, unnamed ones as their expression.
struct Text<'a> {
    graph: &'a Graph,
}

/// Binding strength, for the fewest parentheses.
const SUM: u8 = 1;
const PRODUCT: u8 = 2;
const UNARY: u8 = 3;
const ATOM: u8 = 4;

/// A number as a reader writes it: `1.5`, `1/6`, `−3`.
fn number(value: f64) -> (String, u8) {
    let magnitude = value.abs();
    let fraction = (2..=12).find_map(|denominator| {
        let numerator = magnitude * f64::from(denominator);
        let exact = numerator.fract() == 0.0 && numerator / f64::from(denominator) == magnitude;
        (exact && magnitude.fract() != 0.0 && (magnitude * 10.0).fract() != 0.0)
            .then(|| format!("{numerator}/{denominator}"))
    });
    let (text, strength) = match fraction {
        Some(text) => (text, PRODUCT),
        None => (format!("{magnitude}"), ATOM),
    };
    if value < 0.0 {
        (format!("−{text}"), UNARY)
    } else {
        (text, strength)
    }
}

impl Text<'_> {
    /// The right-hand side of a named node: its expression, never its own name.
    fn rhs(&self, id: Id) -> String {
        self.expression(id).0
    }

    /// A node as an operand: its name if it has one.
    fn operand(&self, id: Id) -> (String, u8) {
        match self.graph.label(id) {
            Some(_) if self.graph.literal(id).is_some() => self.expression(id),
            Some(label) => (label, ATOM),
            None => self.expression(id),
        }
    }

    fn wrapped(&self, id: Id, min: u8) -> String {
        let (text, strength) = self.operand(id);
        if strength < min {
            format!("({text})")
        } else {
            text
        }
    }

    /// The node's expression and how strongly it binds.
    fn expression(&self, id: Id) -> (String, u8) {
        let graph = self.graph;
        match graph.node(id) {
            Node::Leaf(leaf) => match graph.literal(id) {
                Some(value) => number(value),
                None => (graph.leaf_names.name(*leaf), ATOM),
            },
            Node::Add(a, b) => {
                let mut terms = self.terms(*a);
                terms.extend(self.terms(*b));
                let terms: Vec<String> = terms.into_iter().map(|t| self.wrapped(t, SUM)).collect();
                (terms.join(" + "), SUM)
            }
            Node::Sub(a, b) => (
                format!("{} − {}", self.wrapped(*a, SUM), self.wrapped(*b, PRODUCT)),
                SUM,
            ),
            Node::Mul(..) => (self.product(id), PRODUCT),
            Node::Div(a, b) => (
                format!(
                    "{} / {}",
                    self.wrapped(*a, PRODUCT),
                    self.wrapped(*b, UNARY)
                ),
                PRODUCT,
            ),
            Node::Neg(a) => (format!("−{}", self.wrapped(*a, UNARY)), UNARY),
            Node::Call(func, args) => {
                let args: Vec<String> = args.iter().map(|&a| self.wrapped(a, 0)).collect();
                (format!("{}({})", func.name(), args.join(", ")), ATOM)
            }
            Node::Cmp(cmp, a, b) => (
                format!(
                    "[{} {} {}]",
                    self.wrapped(*a, 0),
                    cmp.symbol(),
                    self.wrapped(*b, 0)
                ),
                ATOM,
            ),
            Node::Sum(items) => {
                let items: Vec<String> = items.iter().map(|&i| self.wrapped(i, SUM)).collect();
                (format!("Σ({})", items.join(" + ")), ATOM)
            }
        }
    }

    /// The terms a node contributes to a sum: itself, or an unnamed sum's terms.
    fn terms(&self, id: Id) -> Vec<Id> {
        match self.graph.node(id) {
            Node::Add(a, b) if self.unnamed(id) => {
                let mut terms = self.terms(*a);
                terms.extend(self.terms(*b));
                terms
            }
            _ => vec![id],
        }
    }

    fn unnamed(&self, id: Id) -> bool {
        self.graph.label(id).is_none()
    }

    /// A product with its factors flattened and ordered as one reads them: numbers, then
    /// gradients, then forward values; a factor times itself is a square.
    fn product(&self, id: Id) -> String {
        let mut factors = Vec::new();
        self.factors(id, &mut factors);
        let seeded = seeded(self.graph);
        let rank = |&f: &Id| {
            if self.graph.literal(f).is_some() {
                0
            } else if seeded[f] {
                1
            } else {
                2
            }
        };
        factors.sort_by_key(rank);
        let mut parts: Vec<String> = Vec::new();
        let mut k = 0;
        while k < factors.len() {
            let factor = factors[k];
            if factors.get(k + 1) == Some(&factor) {
                parts.push(format!("{}²", self.wrapped(factor, ATOM)));
                k += 2;
            } else {
                parts.push(self.wrapped(factor, PRODUCT + 1));
                k += 1;
            }
        }
        parts.join(" · ")
    }

    fn factors(&self, id: Id, out: &mut Vec<Id>) {
        match self.graph.node(id) {
            Node::Mul(a, b) => {
                for &factor in [a, b] {
                    if self.unnamed(factor) && matches!(self.graph.node(factor), Node::Mul(..)) {
                        self.factors(factor, out);
                    } else {
                        out.push(factor);
                    }
                }
            }
            _ => out.push(id),
        }
    }
}
