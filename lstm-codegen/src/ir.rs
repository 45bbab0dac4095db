//! The expression graph of one step, for one hidden unit `j` of one batch row.
//!
//! Nodes are hash-consed (a subexpression written twice is one node) and built through
//! simplifying constructors (`x * 1 = x`, literals fold), so the forward step, the symbolic
//! backward (`grad`) and the generated code all share one small graph. Every node has a
//! [`Lane`]: a per-unit value, or a per-row value that is the same for every unit (literals,
//! scalar parameters, and reductions over the units such as layer normalisation's mean).
//! Reductions are what make a step need more than one loop over the units; `schedule`
//! splits the work into those loops.

use std::collections::{HashMap, HashSet};

use crate::functions::{Algebra, Cmp, Func};
use crate::spec::{BinOp, ParamShape};
use crate::validate::{Checked, GATE_LETTERS, Pre, RExpr, Ref, Target, default_expr};

/// Index of a node in its [`Graph`].
pub type Id = usize;

/// Layer normalisation's epsilon, as PyTorch's `nn.LayerNorm` defaults it.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// A value the step reads rather than computes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Leaf {
    /// `W_ih·x` of gate slot `s` (slot = position among the computed gates).
    Zx(usize),
    /// `W_hh·h_prev` of gate slot `s`.
    Zh(usize),
    BiasIh(usize),
    BiasHh(usize),
    /// The previous value of carried state `s` (`c_prev`, `n_prev`; `s` indexes
    /// [`LeafNames::states`]).
    Prev(usize),
    HPrev,
    /// A `PerUnit` or `Scalar` parameter.
    Param(usize),
    /// The slice of a `Gates` parameter for gate slot `s`.
    GateParam(usize, usize),
    /// The constant input's projection for gate slot `s`.
    Constant(usize),
    /// A literal, by its bits (so it can be hashed).
    Lit(u64),
    /// The number of hidden units, as a float (means over units divide by it).
    Units,
    /// Backward seeds: `dL/dh` and `dL/d{state}` of the step's outputs.
    SeedH,
    Seed(usize),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Node {
    Leaf(Leaf),
    Add(Id, Id),
    Sub(Id, Id),
    Mul(Id, Id),
    Div(Id, Id),
    Neg(Id),
    /// A function of the table in `functions` (never `layer_norm`, which is lowered).
    Call(Func, Vec<Id>),
    Cmp(Cmp, Id, Id),
    /// Sum over the hidden units of every listed node (a per-row value).
    Sum(Vec<Id>),
}

impl Node {
    pub fn inputs(&self) -> Vec<Id> {
        match self {
            Node::Leaf(_) => Vec::new(),
            Node::Neg(a) => vec![*a],
            Node::Add(a, b)
            | Node::Sub(a, b)
            | Node::Mul(a, b)
            | Node::Div(a, b)
            | Node::Cmp(_, a, b) => vec![*a, *b],
            Node::Call(_, args) | Node::Sum(args) => args.clone(),
        }
    }
}

/// Whether a value differs across the hidden units of a row.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lane {
    Unit,
    Row,
}

/// What the generated code knows about each parameter's shape.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamLane {
    PerUnit,
    Scalar,
    Gates,
    /// The constant declaration: never read as a parameter leaf (see [`Leaf::Constant`]).
    Constant,
}

/// What the leaves of a cell's graph are called, in the generated code and in the printed
/// equations: `zx_f`, `b_ih_f`, `c_prev`, a parameter's own name, `dh`.
#[derive(Default)]
pub struct LeafNames {
    /// Letter of each gate slot (`f`, `g`, `o` for a coupled-gate cell).
    pub letters: Vec<&'static str>,
    /// Parameter names, by index.
    pub params: Vec<String>,
    /// Name of the declared constant input, if any.
    pub constant: Option<String>,
    /// Names of the carried states besides `h`, in packing order (`c`, then declared ones).
    pub states: Vec<&'static str>,
}

impl LeafNames {
    pub fn name(&self, leaf: Leaf) -> String {
        let letter = |slot: usize| self.letters[slot];
        match leaf {
            Leaf::Zx(s) => format!("zx_{}", letter(s)),
            Leaf::Zh(s) => format!("zh_{}", letter(s)),
            Leaf::BiasIh(s) => format!("b_ih_{}", letter(s)),
            Leaf::BiasHh(s) => format!("b_hh_{}", letter(s)),
            Leaf::Prev(s) => format!("{}_prev", self.states[s]),
            Leaf::HPrev => "h_prev".into(),
            Leaf::Param(p) => self.params[p].clone(),
            Leaf::GateParam(p, s) => format!("{}_{}", self.params[p], letter(s)),
            Leaf::Constant(s) => format!(
                "{}_{}",
                self.constant.as_deref().unwrap_or("constant"),
                letter(s)
            ),
            Leaf::Lit(bits) => format!("{:?}", f64::from_bits(bits)),
            Leaf::Units => "units".into(),
            Leaf::SeedH => "dh".into(),
            Leaf::Seed(s) => format!("d{}", self.states[s]),
        }
    }
}

#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    lookup: HashMap<Node, Id>,
    /// Readable names of computed nodes (`z_f`, `i`, `c`, `d_c`), unique.
    pub names: HashMap<Id, String>,
    taken: HashSet<String>,
    pub param_lanes: Vec<ParamLane>,
    pub leaf_names: LeafNames,
}

impl Graph {
    fn intern(&mut self, node: Node) -> Id {
        if let Some(&id) = self.lookup.get(&node) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(node.clone());
        self.lookup.insert(node, id);
        id
    }

    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[id]
    }

    pub fn lane(&self, id: Id) -> Lane {
        match &self.nodes[id] {
            Node::Leaf(Leaf::Lit(_) | Leaf::Units) => Lane::Row,
            Node::Leaf(Leaf::Param(p)) if self.param_lanes[*p] == ParamLane::Scalar => Lane::Row,
            Node::Leaf(_) => Lane::Unit,
            Node::Sum(_) => Lane::Row,
            node => {
                if node.inputs().iter().any(|&i| self.lane(i) == Lane::Unit) {
                    Lane::Unit
                } else {
                    Lane::Row
                }
            }
        }
    }

    pub fn leaf(&mut self, leaf: Leaf) -> Id {
        self.intern(Node::Leaf(leaf))
    }

    pub fn literal(&self, id: Id) -> Option<f64> {
        match self.nodes[id] {
            Node::Leaf(Leaf::Lit(bits)) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    fn is_lit(&self, id: Id, value: f64) -> bool {
        self.literal(id) == Some(value)
    }

    /// What a node is called: its given name, or a leaf's name; `None` for an unnamed
    /// computed node.
    pub fn label(&self, id: Id) -> Option<String> {
        match self.nodes[id] {
            Node::Leaf(leaf) => Some(self.leaf_names.name(leaf)),
            _ => self.names.get(&id).cloned(),
        }
    }

    /// Sum over the units of several per-unit nodes (zeros dropped).
    pub fn sum(&mut self, items: Vec<Id>) -> Id {
        let items: Vec<Id> = items
            .into_iter()
            .filter(|&i| !self.is_lit(i, 0.0))
            .collect();
        if items.is_empty() {
            return self.lit(0.0);
        }
        self.intern(Node::Sum(items))
    }

    /// Mean over the units of a group of nodes; the sum is named `{name}_sum`, the count of
    /// values `{name}_count`.
    pub fn mean(&mut self, items: Vec<Id>, name: &str) -> Id {
        let count = items.len() as f64;
        let total = self.sum(items);
        let units = self.leaf(Leaf::Units);
        let count = self.lit(count);
        let values = self.mul(units, count);
        self.name(total, format!("{name}_sum"));
        self.name(values, format!("{name}_count"));
        self.div(total, values)
    }

    /// Gives a computed node a readable name (the first one given wins; a name already taken
    /// by another node gets a numeric suffix, so generated `let`s never shadow each other).
    pub fn name(&mut self, id: Id, name: impl Into<String>) {
        if matches!(self.nodes[id], Node::Leaf(_)) || self.names.contains_key(&id) {
            return;
        }
        let base = name.into();
        let mut unique = base.clone();
        let mut k = 2;
        while self.taken.contains(&unique) {
            unique = format!("{base}_{k}");
            k += 1;
        }
        self.taken.insert(unique.clone());
        self.names.insert(id, unique);
    }
}

/// The simplifying constructors: every node of the graph is built through them.
impl Algebra for Graph {
    fn lit(&mut self, value: f64) -> Id {
        // One zero: -0.0 and 0.0 are the same literal for the code we emit.
        let value = if value == 0.0 { 0.0 } else { value };
        self.leaf(Leaf::Lit(value.to_bits()))
    }

    fn add(&mut self, a: Id, b: Id) -> Id {
        if let (Some(x), Some(y)) = (self.literal(a), self.literal(b)) {
            return self.lit(x + y);
        }
        if self.is_lit(a, 0.0) {
            return b;
        }
        if self.is_lit(b, 0.0) {
            return a;
        }
        if let Node::Neg(nb) = self.nodes[b] {
            return self.sub(a, nb);
        }
        if let Node::Neg(na) = self.nodes[a] {
            return self.sub(b, na);
        }
        self.intern(Node::Add(a.min(b), a.max(b)))
    }

    fn sub(&mut self, a: Id, b: Id) -> Id {
        if let (Some(x), Some(y)) = (self.literal(a), self.literal(b)) {
            return self.lit(x - y);
        }
        if self.is_lit(b, 0.0) {
            return a;
        }
        if self.is_lit(a, 0.0) {
            return self.neg(b);
        }
        if let Node::Neg(nb) = self.nodes[b] {
            return self.add(a, nb);
        }
        self.intern(Node::Sub(a, b))
    }

    fn mul(&mut self, a: Id, b: Id) -> Id {
        if let (Some(x), Some(y)) = (self.literal(a), self.literal(b)) {
            return self.lit(x * y);
        }
        if self.is_lit(a, 0.0) || self.is_lit(b, 0.0) {
            return self.lit(0.0);
        }
        if self.is_lit(a, 1.0) {
            return b;
        }
        if self.is_lit(b, 1.0) {
            return a;
        }
        if self.is_lit(a, -1.0) {
            return self.neg(b);
        }
        if self.is_lit(b, -1.0) {
            return self.neg(a);
        }
        match (self.nodes[a].clone(), self.nodes[b].clone()) {
            (Node::Neg(x), Node::Neg(y)) => self.mul(x, y),
            (Node::Neg(x), _) => {
                let m = self.mul(x, b);
                self.neg(m)
            }
            (_, Node::Neg(y)) => {
                let m = self.mul(a, y);
                self.neg(m)
            }
            _ => self.intern(Node::Mul(a.min(b), a.max(b))),
        }
    }

    fn div(&mut self, a: Id, b: Id) -> Id {
        if let (Some(x), Some(y)) = (self.literal(a), self.literal(b))
            && y != 0.0
        {
            return self.lit(x / y);
        }
        if self.is_lit(a, 0.0) {
            return self.lit(0.0);
        }
        if self.is_lit(b, 1.0) {
            return a;
        }
        self.intern(Node::Div(a, b))
    }

    fn call(&mut self, func: Func, args: Vec<Id>) -> Id {
        // x⁰ = 1 and x¹ = x, which `pow`'s derivative produces from p = 1 and p = 2.
        if func == Func::Pow {
            match self.literal(args[1]) {
                Some(0.0) => return self.lit(1.0),
                Some(1.0) => return args[0],
                _ => {}
            }
        }
        self.intern(Node::Call(func, args))
    }

    fn cmp(&mut self, op: Cmp, a: Id, b: Id) -> Id {
        if let (Some(x), Some(y)) = (self.literal(a), self.literal(b)) {
            return self.lit(if op.holds(x, y) { 1.0 } else { 0.0 });
        }
        self.intern(Node::Cmp(op, a, b))
    }
}

impl Graph {
    pub fn neg(&mut self, a: Id) -> Id {
        if let Some(x) = self.literal(a) {
            return self.lit(-x);
        }
        if let Node::Neg(inner) = self.nodes[a] {
            return inner;
        }
        self.intern(Node::Neg(a))
    }
}

/// The forward step's graph with its outputs.
pub struct Forward {
    pub graph: Graph,
    pub h: Id,
    /// The new value of each carried state, in packing order ([`LeafNames::states`]).
    pub states: Vec<Id>,
    /// The gates the step evaluates (written or defaulted, read by `c` or `h`), by letter in
    /// PyTorch's order (i, f, g, o): what a recording step writes besides `h` and `c`.
    pub gates: Vec<(&'static str, Id)>,
}

impl Forward {
    /// Letter of each gate slot (`f`, `g`, `o` for a coupled-gate cell).
    pub fn letters(&self) -> &[&'static str] {
        &self.graph.leaf_names.letters
    }
}

/// Lowers the checked spec to the forward graph.
pub fn lower(checked: &Checked) -> Forward {
    let spec = &checked.spec;
    let mut graph = Graph {
        param_lanes: spec
            .params
            .iter()
            .map(|p| match p.shape {
                ParamShape::PerUnit => ParamLane::PerUnit,
                ParamShape::Scalar => ParamLane::Scalar,
                ParamShape::Gates => ParamLane::Gates,
                ParamShape::Constant | ParamShape::State => ParamLane::Constant,
            })
            .collect(),
        leaf_names: LeafNames {
            letters: checked.gates.iter().map(|&k| GATE_LETTERS[k]).collect(),
            params: spec.params.iter().map(|p| p.ident.to_string()).collect(),
            constant: spec
                .params
                .iter()
                .find(|p| p.shape == ParamShape::Constant)
                .map(|p| p.ident.to_string()),
            states: checked.states.iter().map(|t| t.name()).collect(),
        },
        ..Graph::default()
    };
    let slots = checked.gates.len();
    let raw_zx: Vec<Id> = (0..slots).map(|s| graph.leaf(Leaf::Zx(s))).collect();
    let raw_zh: Vec<Id> = (0..slots).map(|s| graph.leaf(Leaf::Zh(s))).collect();
    let bias_ih: Vec<Id> = (0..slots).map(|s| graph.leaf(Leaf::BiasIh(s))).collect();
    let bias_hh: Vec<Id> = (0..slots).map(|s| graph.leaf(Leaf::BiasHh(s))).collect();

    let mut lowering = Lowering {
        graph,
        slots,
        zx: raw_zx.clone(),
        zh: raw_zh.clone(),
        z: Vec::new(),
        raw_zx,
        raw_zh,
        bias_ih,
        bias_hh,
        default_z: Vec::new(),
        gates: checked.gates.clone(),
        vars: HashMap::new(),
        states: checked.states.clone(),
    };
    if let Some(expr) = &checked.zx {
        lowering.zx = lowering.gatewise(expr);
    }
    if let Some(expr) = &checked.zh {
        lowering.zh = lowering.gatewise(expr);
    }
    // The defaults file always defines `z` (its test checks), so `default_z` is never empty.
    lowering.default_z = match default_expr(Target::Z) {
        Some(expr) => lowering.gatewise(&expr),
        None => Vec::new(),
    };
    lowering.z = match &checked.z {
        Some(expr) => lowering.gatewise(expr),
        None => lowering.default_z.clone(),
    };
    for (s, &k) in checked.gates.iter().enumerate() {
        let letter = GATE_LETTERS[k];
        let (z, zx, zh) = (lowering.z[s], lowering.zx[s], lowering.zh[s]);
        // Leaves keep their slice names (`zx_i`); overridden parts get names of their own.
        lowering.graph.name(z, format!("z_{letter}"));
        lowering.graph.name(zx, format!("new_zx_{letter}"));
        lowering.graph.name(zh, format!("new_zh_{letter}"));
    }
    for (target, expr) in &checked.order {
        let id = lowering.unit(expr);
        lowering.graph.name(id, target.name());
        lowering.vars.insert(*target, id);
    }
    let h = lowering.vars[&Target::H];
    let states = checked.states.iter().map(|t| lowering.vars[t]).collect();
    let mut gates: Vec<(usize, Id)> = checked
        .order
        .iter()
        .filter_map(|(target, _)| match target {
            Target::Gate(k) => Some((*k, lowering.vars[target])),
            _ => None,
        })
        .collect();
    gates.sort_unstable();
    let gates = gates
        .into_iter()
        .map(|(k, id)| (GATE_LETTERS[k], id))
        .collect();
    Forward {
        graph: lowering.graph,
        h,
        states,
        gates,
    }
}

struct Lowering {
    graph: Graph,
    slots: usize,
    gates: Vec<usize>,
    raw_zx: Vec<Id>,
    raw_zh: Vec<Id>,
    zx: Vec<Id>,
    zh: Vec<Id>,
    z: Vec<Id>,
    default_z: Vec<Id>,
    bias_ih: Vec<Id>,
    bias_hh: Vec<Id>,
    vars: HashMap<Target, Id>,
    /// The carried states, as in [`Checked::states`].
    states: Vec<Target>,
}

impl Lowering {
    /// The leaf of a state's previous value. validate made every state an equation reads
    /// one the cell carries.
    fn prev(&mut self, state: Target) -> Id {
        let s = self
            .states
            .iter()
            .position(|t| *t == state)
            .unwrap_or_default();
        self.graph.leaf(Leaf::Prev(s))
    }

    fn slot(&self, gate: usize) -> usize {
        // validate made every gate a per-unit equation reads a computed gate.
        self.gates
            .iter()
            .position(|&k| k == gate)
            .unwrap_or_default()
    }

    /// A gate-wise expression, evaluated for every gate slot.
    fn gatewise(&mut self, expr: &RExpr) -> Vec<Id> {
        match expr {
            RExpr::Lit(v) => vec![self.graph.lit(*v); self.slots],
            RExpr::Ref(r, _) => (0..self.slots).map(|s| self.gatewise_ref(*r, s)).collect(),
            RExpr::Neg(a) => {
                let a = self.gatewise(a);
                a.into_iter().map(|x| self.graph.neg(x)).collect()
            }
            RExpr::Binary(op, a, b) => {
                let a = self.gatewise(a);
                let b = self.gatewise(b);
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| self.binary(*op, x, y))
                    .collect()
            }
            RExpr::Call(func, args) => {
                let args: Vec<Vec<Id>> = args.iter().map(|a| self.gatewise(a)).collect();
                (0..self.slots)
                    .map(|s| {
                        let slot_args: Vec<Id> = args.iter().map(|a| a[s]).collect();
                        self.graph.call(*func, slot_args)
                    })
                    .collect()
            }
            RExpr::LayerNorm { arg, gain, bias } => {
                let items = self.gatewise(arg);
                let gains = gain.map(|p| (0..self.slots).map(|s| self.gate_param(p, s)).collect());
                let biases = bias.map(|p| (0..self.slots).map(|s| self.gate_param(p, s)).collect());
                self.layer_norm(items, gains, biases)
            }
        }
    }

    fn gate_param(&mut self, param: usize, slot: usize) -> Id {
        match self.graph.param_lanes[param] {
            ParamLane::Gates => self.graph.leaf(Leaf::GateParam(param, slot)),
            ParamLane::Constant => self.graph.leaf(Leaf::Constant(slot)),
            ParamLane::PerUnit | ParamLane::Scalar => self.graph.leaf(Leaf::Param(param)),
        }
    }

    fn gatewise_ref(&mut self, r: Ref, slot: usize) -> Id {
        match r {
            Ref::Pre(Pre::Z) => self.z[slot],
            Ref::Pre(Pre::Zx) => self.zx[slot],
            Ref::Pre(Pre::Zh) => self.zh[slot],
            Ref::Pre(Pre::RawZx) => self.raw_zx[slot],
            Ref::Pre(Pre::RawZh) => self.raw_zh[slot],
            Ref::Pre(Pre::DefaultZ) => self.default_z[slot],
            Ref::Pre(Pre::BiasIh) => self.bias_ih[slot],
            Ref::Pre(Pre::BiasHh) => self.bias_hh[slot],
            Ref::Param(p) => self.gate_param(p, slot),
            Ref::Constant => self.graph.leaf(Leaf::Constant(slot)),
            Ref::CPrev => self.prev(Target::C),
            Ref::StatePrev(name) => self.prev(Target::State(name)),
            Ref::HPrev => self.graph.leaf(Leaf::HPrev),
            // validate keeps per-unit names out of gate-wise equations.
            Ref::Var(_) | Ref::GatePre(..) | Ref::GateConstant(_) => self.graph.lit(0.0),
        }
    }

    /// A per-unit expression.
    fn unit(&mut self, expr: &RExpr) -> Id {
        match expr {
            RExpr::Lit(v) => self.graph.lit(*v),
            RExpr::Ref(r, _) => match *r {
                Ref::Var(t) => self.vars[&t],
                Ref::CPrev => self.prev(Target::C),
                Ref::StatePrev(name) => self.prev(Target::State(name)),
                Ref::HPrev => self.graph.leaf(Leaf::HPrev),
                Ref::GatePre(pre, k) => {
                    let s = self.slot(k);
                    match pre {
                        Pre::Zx => self.zx[s],
                        Pre::Zh => self.zh[s],
                        Pre::BiasIh => self.bias_ih[s],
                        Pre::BiasHh => self.bias_hh[s],
                        _ => self.z[s],
                    }
                }
                Ref::Param(p) => self.graph.leaf(Leaf::Param(p)),
                Ref::GateConstant(k) => {
                    let s = self.slot(k);
                    self.graph.leaf(Leaf::Constant(s))
                }
                // validate keeps gate-wise names out of per-unit equations.
                Ref::Pre(_) | Ref::Constant => self.graph.lit(0.0),
            },
            RExpr::Neg(a) => {
                let a = self.unit(a);
                self.graph.neg(a)
            }
            RExpr::Binary(op, a, b) => {
                let a = self.unit(a);
                let b = self.unit(b);
                self.binary(*op, a, b)
            }
            RExpr::Call(func, args) => {
                let args: Vec<Id> = args.iter().map(|a| self.unit(a)).collect();
                self.graph.call(*func, args)
            }
            RExpr::LayerNorm { arg, gain, bias } => {
                let item = self.unit(arg);
                let gain = gain.map(|p| vec![self.graph.leaf(Leaf::Param(p))]);
                let bias = bias.map(|p| vec![self.graph.leaf(Leaf::Param(p))]);
                self.layer_norm(vec![item], gain, bias)[0]
            }
        }
    }

    fn binary(&mut self, op: BinOp, a: Id, b: Id) -> Id {
        match op {
            BinOp::Add => self.graph.add(a, b),
            BinOp::Sub => self.graph.sub(a, b),
            BinOp::Mul => self.graph.mul(a, b),
            BinOp::Div => self.graph.div(a, b),
        }
    }

    /// `(x - mean) / sqrt(var + eps) * gain + bias` over the units of every item together,
    /// the biased variance as PyTorch's `nn.LayerNorm` computes it. The nodes are named after
    /// what is normalised: `zx_mean`, `zx_inv_std`, `zx_i_centred`, `ln_zx_i`.
    fn layer_norm(
        &mut self,
        items: Vec<Id>,
        gains: Option<Vec<Id>>,
        biases: Option<Vec<Id>>,
    ) -> Vec<Id> {
        let labels: Vec<String> = items
            .iter()
            .map(|&x| self.graph.label(x).unwrap_or_else(|| "ln".into()))
            .collect();
        let group = group_label(&labels, &self.graph.leaf_names.letters);
        let g = &mut self.graph;
        let mean = g.mean(items.clone(), &group);
        let centred: Vec<Id> = items.iter().map(|&x| g.sub(x, mean)).collect();
        let squares: Vec<Id> = centred.iter().map(|&d| g.mul(d, d)).collect();
        let var = g.mean(squares, &format!("{group}_sq"));
        let eps = g.lit(LAYER_NORM_EPS);
        let var_eps = g.add(var, eps);
        let std = g.call(Func::Sqrt, vec![var_eps]);
        let one = g.lit(1.0);
        let inv_std = g.div(one, std);
        g.name(mean, format!("{group}_mean"));
        g.name(var, format!("{group}_var"));
        g.name(std, format!("{group}_std"));
        g.name(inv_std, format!("{group}_inv_std"));
        for (&d, label) in centred.iter().zip(&labels) {
            g.name(d, format!("{label}_centred"));
        }
        centred
            .into_iter()
            .enumerate()
            .map(|(k, d)| {
                let normalised = g.mul(d, inv_std);
                let mut y = normalised;
                if let Some(gains) = &gains {
                    y = g.mul(y, gains[k]);
                }
                if let Some(biases) = &biases {
                    y = g.add(y, biases[k]);
                }
                g.name(y, format!("ln_{}", labels[k]));
                g.name(normalised, format!("{}_norm", labels[k]));
                y
            })
            .collect()
    }
}

/// The name of a group of normalised values: `zx` for `zx_i, zx_f, …` (one per gate slot),
/// the value's own name for a single one.
fn group_label(labels: &[String], letters: &[&str]) -> String {
    let stems: Vec<&str> = labels
        .iter()
        .zip(letters)
        .filter_map(|(label, letter)| label.strip_suffix(&format!("_{letter}")))
        .collect();
    match (labels, stems.first()) {
        ([single], _) => single.clone(),
        (_, Some(stem)) if stems.len() == labels.len() && stems.iter().all(|s| s == stem) => {
            (*stem).to_string()
        }
        _ => "ln".into(),
    }
}
