//! Plans the code of one batch row from the values it must produce: loops over the hidden
//! units, as few as the reductions allow, as data ([`RowPlan`]) that `expand` writes as Rust.
//!
//! Every needed node gets a *stage*: leaves and loaded values are at stage 0, an elementwise
//! node is at the latest stage of its inputs, and a sum over the units is available one stage
//! after its items. Per-unit nodes of stage `s` are computed in loop `s`; per-row nodes of
//! stage `s` just before it. A per-unit value needed in a later loop is spilled to scratch,
//! unless it is cheap arithmetic that the later loop recomputes. A row without reductions
//! would be one fused loop; where it evaluates several costly functions independently (the
//! standard LSTM's four gate activations), each gets a loop of its own and a last loop
//! combines them (`own_loops`).
//!
//! A value is bound by `let` when it has a name (`f`, `c`, `d_z_f`), is used twice or is
//! spilled; any other value is written where it is used, so the code reads like the equations.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::functions::{Cmp, Func};
use crate::ir::{Graph, Id, Lane, Leaf, Node};
use crate::names::{derived_name, unique};
use crate::spec::BinOp;

/// Where in a slice a value lives: `[j]` for the unit the loop is at, or a fixed index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum At {
    Unit,
    Index(usize),
}

/// Where a wanted value goes: `slice[at] = value`, or `+=` when accumulating.
#[derive(Clone)]
pub struct Sink {
    pub id: Id,
    pub slice: String,
    pub at: At,
    pub accumulate: bool,
}

/// A value that is loaded from a slice (a cache, a state buffer) instead of computed.
pub struct Load {
    pub slice: String,
    pub at: At,
}

/// An expression of the generated code.
#[derive(Clone, Debug)]
pub enum Value {
    /// A `let`-bound value, a per-row leaf (`units`, a scalar parameter).
    Name(String),
    Load(String, At),
    Lit(f64),
    Neg(Box<Value>),
    Binary(BinOp, Box<Value>, Box<Value>),
    Call(Func, Vec<Value>),
    Cmp(Cmp, Box<Value>, Box<Value>),
    /// The sum of a scratch row of per-unit terms.
    Sum(String),
}

pub enum Stmt {
    Let {
        name: String,
        value: Value,
    },
    Store {
        slice: String,
        at: At,
        accumulate: bool,
        value: Value,
    },
}

/// Statements run once per row, or once per unit in a loop over the units.
pub enum Block {
    Row(Vec<Stmt>),
    Units(Vec<Stmt>),
}

/// The code of one row, and what it reads.
pub struct RowPlan {
    pub blocks: Vec<Block>,
    /// Leaves the code reads (literals excluded).
    pub leaves: BTreeSet<Leaf>,
    /// Slices of loaded values the code reads.
    pub loads: BTreeSet<String>,
    /// Scratch rows of `hidden` values, in layout order: per-unit values kept for a later
    /// loop (`spill_c`) and the per-unit terms of each sum over the units (`c_sum_terms`).
    pub scratch: Vec<String>,
}

/// Plans the row that stores every sink, reading `sources` instead of computing them.
pub fn row(graph: &Graph, sinks: &[Sink], sources: &HashMap<Id, Load>) -> RowPlan {
    Planner::new(graph, sinks, sources).plan()
}

/// One step of the plan before values are written out: what a block computes or stores.
#[derive(Clone, Copy)]
enum Item {
    /// Compute a node (bound by `let`, or written inline at its one use).
    Compute(Id),
    /// `spill[j] = node`.
    Spill(Id),
    /// `terms[j] = item + item + …` for a sum over the units.
    Terms(Id),
    /// `let sum = Ops::sum(terms)` after the loop.
    Finish(Id),
    /// The sink with this index.
    Store(usize),
}

struct Planner<'a> {
    graph: &'a Graph,
    sinks: &'a [Sink],
    sources: &'a HashMap<Id, Load>,
    needed: Vec<Id>,
    stage: HashMap<Id, usize>,
    /// Cheap per-unit arithmetic recomputed where needed instead of spilled.
    remat: BTreeMap<Id, usize>,
    /// Scratch row of each spilled node and each sum.
    scratch: BTreeMap<Id, usize>,
    scratch_names: Vec<String>,
    /// Names of `let`-bound nodes that the graph leaves unnamed.
    derived: HashMap<Id, String>,
}

impl<'a> Planner<'a> {
    fn new(graph: &'a Graph, sinks: &'a [Sink], sources: &'a HashMap<Id, Load>) -> Self {
        let roots: Vec<Id> = sinks.iter().map(|s| s.id).collect();
        let needed = needed(graph, &roots, sources);
        let stage = stages(graph, &needed, sources);
        let mut planner = Planner {
            graph,
            sinks,
            sources,
            needed,
            stage,
            remat: BTreeMap::new(),
            scratch: BTreeMap::new(),
            scratch_names: Vec::new(),
            derived: HashMap::new(),
        };
        planner.own_loops();
        planner.choose_remat();
        planner.choose_scratch();
        planner
    }

    fn computed(&self, id: Id) -> bool {
        !self.sources.contains_key(&id) && !matches!(self.graph.node(id), Node::Leaf(_))
    }

    fn is_sum(&self, id: Id) -> bool {
        matches!(self.graph.node(id), Node::Sum(_))
    }

    fn unit(&self, id: Id) -> bool {
        self.graph.lane(id) == Lane::Unit
    }

    /// The loop in which a per-unit node is computed or a sum's terms are stored.
    fn loop_of(&self, id: Id) -> usize {
        if self.is_sum(id) {
            self.stage[&id] - 1
        } else {
            self.stage[&id]
        }
    }

    /// Gives each costly call of a row without sums a loop of its own, when the row computes
    /// two or more that do not depend on one another (the gates' activations): loop `k`
    /// computes the `k`-th such call, with the per-unit values it reads that no earlier loop
    /// computes (`z_g / temperature`), and spills it; one last loop computes everything that
    /// reads them. The fused loop evaluates all of them per unit, a chain too long and a loop
    /// too wide (a pointer per operand) for the core to overlap iterations; apart, each loop
    /// is a short chain over a few operands. Every value is computed by the same operations in
    /// the same order.
    fn own_loops(&mut self) {
        if self.stage.values().any(|&s| s > 0) {
            return;
        }
        let graph = self.graph;
        // The costly calls that read no other (`own`), and every node that reads a costly call.
        let mut reads_costly: BTreeSet<Id> = BTreeSet::new();
        let mut own: Vec<Id> = Vec::new();
        for &id in &self.needed {
            if !self.computed(id) {
                continue;
            }
            let inputs = graph.node(id).inputs();
            let reads = inputs.iter().any(|input| reads_costly.contains(input));
            let costly = matches!(graph.node(id), Node::Call(func, _) if func.row().costly);
            if costly && !reads && self.unit(id) {
                own.push(id);
            }
            if costly || reads {
                reads_costly.insert(id);
            }
        }
        if own.len() < 2 {
            return;
        }
        // Each call's loop, and the first of those loops for the per-unit values they read.
        let mut pinned: HashMap<Id, usize> = HashMap::new();
        for (k, &id) in own.iter().enumerate() {
            let mut stack = vec![id];
            while let Some(node) = stack.pop() {
                if self.computed(node) && self.unit(node) && !pinned.contains_key(&node) {
                    pinned.insert(node, k);
                    stack.extend(graph.node(node).inputs());
                }
            }
        }
        // The rest: as late as their inputs, and per-unit values that read a call in the last
        // loop.
        for &id in &self.needed {
            if !self.computed(id) {
                continue;
            }
            let s = match pinned.get(&id) {
                Some(&k) => k,
                None => {
                    let inputs = graph.node(id).inputs();
                    let latest = inputs.iter().map(|i| self.stage[i]).max().unwrap_or(0);
                    if reads_costly.contains(&id) && self.unit(id) {
                        latest.max(own.len())
                    } else {
                        latest
                    }
                }
            };
            self.stage.insert(id, s);
        }
    }

    /// Cheap arithmetic over loads and per-row values is recomputed where it is needed
    /// rather than spilled to memory (`zx_i[j] - mean` costs less than a store and a load).
    fn choose_remat(&mut self) {
        for &id in &self.needed {
            if !self.computed(id) || !self.unit(id) {
                continue;
            }
            let cheap = matches!(
                self.graph.node(id),
                Node::Add(..) | Node::Sub(..) | Node::Mul(..) | Node::Neg(_)
            );
            let mut size = 1;
            let inputs_ok = self.graph.node(id).inputs().iter().all(|&input| {
                if !self.computed(input) || !self.unit(input) {
                    return true;
                }
                match self.remat.get(&input) {
                    Some(&inner) => {
                        size += inner;
                        true
                    }
                    None => false,
                }
            });
            if cheap && inputs_ok && size <= 4 {
                self.remat.insert(id, size);
            }
        }
    }

    /// Scratch rows: per-unit values kept for a later loop, and the terms of sums.
    fn choose_scratch(&mut self) {
        for &id in &self.needed {
            if !self.computed(id) {
                continue;
            }
            let spill = self.unit(id)
                && !self.remat.contains_key(&id)
                && self.needed.iter().any(|&user| {
                    self.computed(user)
                        && self.graph.node(user).inputs().contains(&id)
                        && (self.unit(user) || self.is_sum(user))
                        && self.loop_of(user) > self.stage[&id]
                });
            let name = if self.is_sum(id) {
                format!("{}_terms", self.var(id))
            } else if spill {
                format!("spill_{}", self.var(id))
            } else {
                continue;
            };
            self.scratch.insert(id, self.scratch_names.len());
            self.scratch_names.push(name);
        }
    }

    /// The name a `let` binds a node to: its own, or one derived from what it computes.
    fn var(&self, id: Id) -> String {
        if let Some(name) = self.graph.names.get(&id) {
            return name.clone();
        }
        if let Some(name) = self.derived.get(&id) {
            return name.clone();
        }
        derived_name(self.graph, id).unwrap_or_else(|| format!("t{id}"))
    }

    /// The blocks of the row, as items.
    fn items(&self) -> Vec<(bool, Vec<Item>)> {
        let max_stage = self
            .needed
            .iter()
            .map(|id| self.stage[id])
            .max()
            .unwrap_or(0);
        let mut blocks = Vec::new();
        for s in 0..=max_stage {
            // Per-row values of this stage (sums finished in the previous loop are bound).
            let row: Vec<Item> = self
                .needed
                .iter()
                .filter(|&&id| {
                    self.computed(id) && !self.unit(id) && !self.is_sum(id) && self.stage[&id] == s
                })
                .map(|&id| Item::Compute(id))
                .collect();
            if !row.is_empty() {
                blocks.push((false, row));
            }
            let mut units: Vec<Item> = self.recomputed(s).into_iter().map(Item::Compute).collect();
            let mut finished = Vec::new();
            for &id in &self.needed {
                if !self.computed(id) {
                    continue;
                }
                if self.is_sum(id) && self.loop_of(id) == s {
                    units.push(Item::Terms(id));
                    finished.push(Item::Finish(id));
                } else if self.unit(id) && self.stage[&id] == s {
                    units.push(Item::Compute(id));
                    if self.scratch.contains_key(&id) {
                        units.push(Item::Spill(id));
                    }
                }
            }
            for (k, sink) in self.sinks.iter().enumerate() {
                if sink.at == At::Unit && self.stage.get(&sink.id) == Some(&s) {
                    units.push(Item::Store(k));
                }
            }
            if !units.is_empty() {
                blocks.push((true, units));
                if !finished.is_empty() {
                    blocks.push((false, finished));
                }
            }
        }
        let row_sinks: Vec<Item> = (0..self.sinks.len())
            .filter(|&k| self.sinks[k].at != At::Unit)
            .map(Item::Store)
            .collect();
        if !row_sinks.is_empty() {
            blocks.push((false, row_sinks));
        }
        blocks
    }

    /// Cheap values of earlier stages that loop `s` recomputes.
    fn recomputed(&self, s: usize) -> BTreeSet<Id> {
        let mut wanted: BTreeSet<Id> = BTreeSet::new();
        for &id in &self.needed {
            let here =
                self.computed(id) && self.loop_of(id) == s && (self.unit(id) || self.is_sum(id));
            if here {
                wanted.extend(self.graph.node(id).inputs());
            }
        }
        for sink in self.sinks {
            if sink.at == At::Unit && self.stage.get(&sink.id) == Some(&s) {
                wanted.insert(sink.id);
            }
        }
        let mut recompute = BTreeSet::new();
        let mut stack: Vec<Id> = wanted.into_iter().collect();
        while let Some(id) = stack.pop() {
            if self.remat.contains_key(&id) && self.stage[&id] < s && recompute.insert(id) {
                stack.extend(self.graph.node(id).inputs());
            }
        }
        recompute
    }

    /// The nodes an item reads.
    fn reads(&self, item: Item) -> Vec<Id> {
        match item {
            Item::Compute(id) | Item::Terms(id) => self.graph.node(id).inputs(),
            Item::Spill(id) => vec![id],
            Item::Finish(_) => Vec::new(),
            Item::Store(k) => vec![self.sinks[k].id],
        }
    }

    fn plan(mut self) -> RowPlan {
        let mut blocks = self.items();
        let uses = self.prune(&mut blocks);
        // Names a `let` may not take: the graph's, and every slice the row reads or writes.
        let mut taken: BTreeSet<String> = self.graph.names.values().cloned().collect();
        taken.extend(self.graph.leaf_names.params.iter().cloned());
        taken.extend(self.graph.leaf_names.constant.iter().cloned());
        taken.extend(self.sinks.iter().map(|sink| sink.slice.clone()));
        taken.extend(self.sources.values().map(|load| load.slice.clone()));
        taken.extend(self.scratch_names.iter().cloned());
        let bound = BoundLoads::choose(&self, &blocks, &uses, &mut taken);
        // Unnamed nodes that stay `let`-bound get derived names, unique in the row.
        for (k, (_, items)) in blocks.iter().enumerate() {
            for &item in items {
                if let Item::Compute(id) = item
                    && uses.bound(&self, id, k)
                    && !self.graph.names.contains_key(&id)
                    && !self.derived.contains_key(&id)
                {
                    let name = unique(self.var(id), &mut taken);
                    self.derived.insert(id, name);
                }
            }
        }
        // Loaded per-row values are bound once, before everything else.
        if !bound.rows.is_empty() {
            blocks.insert(0, (false, Vec::new()));
        }
        let mut writer = Writer {
            planner: &self,
            uses: &uses,
            bound: &bound,
            leaves: BTreeSet::new(),
            loads: BTreeSet::new(),
        };
        let offset = usize::from(!bound.rows.is_empty());
        let mut planned = Vec::new();
        for (k, (units, items)) in blocks.iter().enumerate() {
            let block = k.wrapping_sub(offset);
            let loaded: Vec<Id> = if k < offset {
                bound.rows.iter().map(|(&id, _)| id).collect()
            } else {
                bound.units.get(&block).cloned().unwrap_or_default()
            };
            let mut stmts: Vec<Stmt> = loaded.into_iter().map(|id| writer.bound_load(id)).collect();
            let stage = items
                .iter()
                .map(|&item| writer.stage_of(item))
                .max()
                .unwrap_or(0);
            let context = Context {
                block,
                stage,
                units: *units,
            };
            stmts.extend(items.iter().filter_map(|&item| writer.stmt(item, &context)));
            if stmts.is_empty() {
                continue;
            }
            planned.push(if *units {
                Block::Units(stmts)
            } else {
                Block::Row(stmts)
            });
        }
        let (leaves, loads) = (writer.leaves, writer.loads);
        RowPlan {
            blocks: planned,
            leaves,
            loads,
            scratch: self.scratch_names,
        }
    }
}

impl Planner<'_> {
    /// Drops per-unit values a loop computes but does not read (cheap values recomputed by a
    /// later loop), until none is left, and counts the uses of what remains.
    fn prune(&self, blocks: &mut [(bool, Vec<Item>)]) -> Uses {
        loop {
            let uses = Uses::count(self, blocks);
            let mut pruned = false;
            for (k, (_, items)) in blocks.iter_mut().enumerate() {
                let before = items.len();
                items.retain(|&item| match item {
                    Item::Compute(id) => !self.unit(id) || uses.in_block(id, k) > 0,
                    _ => true,
                });
                pruned |= items.len() < before;
            }
            if !pruned {
                return uses;
            }
        }
    }
}

/// Loaded values read under a name of their own (`let o = cache_o[j];`): per-row ones
/// (`cache_rows[2]`) once per row, per-unit ones in each loop that reads them twice or more.
struct BoundLoads {
    rows: BTreeMap<Id, String>,
    /// Per block: the per-unit loads it binds.
    units: HashMap<usize, Vec<Id>>,
    names: HashMap<Id, String>,
}

impl BoundLoads {
    fn choose(
        planner: &Planner,
        blocks: &[(bool, Vec<Item>)],
        uses: &Uses,
        taken: &mut BTreeSet<String>,
    ) -> BoundLoads {
        let mut bound = BoundLoads {
            rows: BTreeMap::new(),
            units: HashMap::new(),
            names: HashMap::new(),
        };
        let mut sources: Vec<Id> = planner.sources.keys().copied().collect();
        sources.sort_unstable();
        let mut name = |id: Id, names: &mut HashMap<Id, String>| {
            names
                .entry(id)
                .or_insert_with(|| match planner.graph.names.get(&id) {
                    // A graph name belongs to this node alone.
                    Some(own) => own.clone(),
                    None => {
                        let base =
                            derived_name(planner.graph, id).unwrap_or_else(|| format!("t{id}"));
                        unique(base, taken)
                    }
                })
                .clone()
        };
        for &id in &sources {
            if planner.unit(id) {
                for (k, (units, _)) in blocks.iter().enumerate() {
                    if *units && uses.in_block(id, k) >= 2 {
                        name(id, &mut bound.names);
                        bound.units.entry(k).or_default().push(id);
                    }
                }
            } else if uses.row.get(&id).is_some_and(|&n| n > 0) {
                let name = name(id, &mut bound.names);
                bound.rows.insert(id, name);
            }
        }
        bound
    }

    /// The name block `block` reads a loaded value by, if it binds one.
    fn name(&self, id: Id, block: usize) -> Option<&String> {
        let here = self.rows.contains_key(&id)
            || self
                .units
                .get(&block)
                .is_some_and(|loaded| loaded.contains(&id));
        here.then(|| &self.names[&id])
    }
}

/// How often each node is read, per block and over the whole row, and which block computes
/// each per-row node.
struct Uses {
    per_block: Vec<HashMap<Id, usize>>,
    row: HashMap<Id, usize>,
    home: HashMap<Id, usize>,
}

impl Uses {
    fn count(planner: &Planner, blocks: &[(bool, Vec<Item>)]) -> Uses {
        let mut row = HashMap::new();
        let mut home = HashMap::new();
        let per_block = blocks
            .iter()
            .enumerate()
            .map(|(k, (_, items))| {
                let mut uses = HashMap::new();
                for &item in items {
                    if let Item::Compute(id) = item {
                        home.entry(id).or_insert(k);
                    }
                    for id in planner.reads(item) {
                        *uses.entry(id).or_insert(0) += 1;
                        *row.entry(id).or_insert(0) += 1;
                    }
                }
                uses
            })
            .collect();
        Uses {
            per_block,
            row,
            home,
        }
    }

    fn in_block(&self, id: Id, block: usize) -> usize {
        self.per_block[block].get(&id).copied().unwrap_or(0)
    }

    /// Whether a computed node is written where it is used rather than bound by `let`: an
    /// unnamed node read once in the block that computes it. (A per-row value is never
    /// written into a loop, where it would be recomputed for every unit.)
    fn inlined(&self, planner: &Planner, id: Id, block: usize) -> bool {
        let once = if planner.unit(id) {
            self.in_block(id, block) == 1
        } else {
            self.home.get(&id) == Some(&block)
                && self.in_block(id, block) == 1
                && self.row.get(&id) == Some(&1)
        };
        once && !planner.graph.names.contains_key(&id) && !planner.is_sum(id)
    }

    /// Whether a `Compute` item of `block` binds its node by `let`: it is read there (or,
    /// per row, anywhere) and not written inline.
    fn bound(&self, planner: &Planner, id: Id, block: usize) -> bool {
        let read = if planner.unit(id) {
            self.in_block(id, block) > 0
        } else {
            self.row.get(&id).copied().unwrap_or(0) > 0
        };
        read && !self.inlined(planner, id, block)
    }
}

/// Where the items of one block are.
struct Context {
    block: usize,
    stage: usize,
    units: bool,
}

/// Turns items into statements, recording what they read.
struct Writer<'p, 'a> {
    planner: &'p Planner<'a>,
    uses: &'p Uses,
    bound: &'p BoundLoads,
    leaves: BTreeSet<Leaf>,
    loads: BTreeSet<String>,
}

impl Writer<'_, '_> {
    /// `let o = cache_o[j];` for a loaded value read by name.
    fn bound_load(&mut self, id: Id) -> Stmt {
        let load = &self.planner.sources[&id];
        self.loads.insert(load.slice.clone());
        Stmt::Let {
            name: self.bound.names[&id].clone(),
            value: Value::Load(load.slice.clone(), load.at),
        }
    }

    fn stage_of(&self, item: Item) -> usize {
        let p = self.planner;
        match item {
            Item::Compute(id) | Item::Spill(id) => p.stage[&id],
            Item::Terms(id) => p.loop_of(id),
            Item::Finish(id) => p.stage[&id],
            Item::Store(k) => p.stage.get(&p.sinks[k].id).copied().unwrap_or(0),
        }
    }

    fn stmt(&mut self, item: Item, context: &Context) -> Option<Stmt> {
        let p = self.planner;
        Some(match item {
            Item::Compute(id) => {
                if !self.uses.bound(p, id, context.block) {
                    return None;
                }
                Stmt::Let {
                    name: p.var(id),
                    value: self.expression(id, context),
                }
            }
            Item::Spill(id) => Stmt::Store {
                slice: p.scratch_names[p.scratch[&id]].clone(),
                at: At::Unit,
                accumulate: false,
                value: self.operand(id, context),
            },
            Item::Terms(id) => {
                let Node::Sum(items) = p.graph.node(id) else {
                    return None;
                };
                let mut terms = items.iter().map(|&item| self.operand(item, context));
                let first = terms.next().unwrap_or(Value::Lit(0.0));
                let value = terms.fold(first, |total, term| {
                    Value::Binary(BinOp::Add, Box::new(total), Box::new(term))
                });
                Stmt::Store {
                    slice: p.scratch_names[p.scratch[&id]].clone(),
                    at: At::Unit,
                    accumulate: false,
                    value,
                }
            }
            Item::Finish(id) => Stmt::Let {
                name: p.var(id),
                value: Value::Sum(p.scratch_names[p.scratch[&id]].clone()),
            },
            Item::Store(k) => {
                let sink = &p.sinks[k];
                Stmt::Store {
                    slice: sink.slice.clone(),
                    at: sink.at,
                    accumulate: sink.accumulate,
                    value: self.operand(sink.id, context),
                }
            }
        })
    }

    /// How a block refers to a node: a load, a name, or its whole expression when inlined.
    fn operand(&mut self, id: Id, context: &Context) -> Value {
        let p = self.planner;
        if let Some(load) = p.sources.get(&id) {
            self.loads.insert(load.slice.clone());
            if let Some(name) = self.bound.name(id, context.block) {
                return Value::Name(name.clone());
            }
            return Value::Load(load.slice.clone(), load.at);
        }
        if let Node::Leaf(leaf) = *p.graph.node(id) {
            if let Some(value) = p.graph.literal(id) {
                return Value::Lit(value);
            }
            self.leaves.insert(leaf);
            let name = p.graph.leaf_names.name(leaf);
            return if p.unit(id) {
                Value::Load(name, At::Unit)
            } else {
                Value::Name(name)
            };
        }
        let earlier = p.unit(id) && p.stage[&id] < context.stage && !p.remat.contains_key(&id);
        if earlier && let Some(&k) = p.scratch.get(&id) {
            return Value::Load(p.scratch_names[k].clone(), At::Unit);
        }
        let writable_here = p.unit(id) || !context.units;
        if writable_here && self.uses.inlined(p, id, context.block) {
            return self.expression(id, context);
        }
        Value::Name(p.var(id))
    }

    /// What a computed node evaluates.
    fn expression(&mut self, id: Id, context: &Context) -> Value {
        let p = self.planner;
        let mut op = |input: Id| Box::new(self.operand(input, context));
        match p.graph.node(id).clone() {
            Node::Leaf(_) => *op(id),
            Node::Add(a, b) => Value::Binary(BinOp::Add, op(a), op(b)),
            Node::Sub(a, b) => Value::Binary(BinOp::Sub, op(a), op(b)),
            Node::Mul(a, b) => Value::Binary(BinOp::Mul, op(a), op(b)),
            Node::Div(a, b) => Value::Binary(BinOp::Div, op(a), op(b)),
            Node::Neg(a) => Value::Neg(op(a)),
            Node::Call(func, args) => Value::Call(func, args.into_iter().map(|a| *op(a)).collect()),
            Node::Cmp(cmp, a, b) => Value::Cmp(cmp, op(a), op(b)),
            // Sums are accumulated by `Item::Terms` and bound by `Item::Finish`.
            Node::Sum(_) => Value::Name(p.var(id)),
        }
    }
}

/// Nodes the sinks need, ascending, not looking through loaded values.
fn needed(graph: &Graph, roots: &[Id], sources: &HashMap<Id, Load>) -> Vec<Id> {
    let mut seen = BTreeSet::new();
    let mut stack = roots.to_vec();
    while let Some(id) = stack.pop() {
        if seen.insert(id) && !sources.contains_key(&id) {
            stack.extend(graph.node(id).inputs());
        }
    }
    seen.into_iter().collect()
}

fn stages(graph: &Graph, needed: &[Id], sources: &HashMap<Id, Load>) -> HashMap<Id, usize> {
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

#[cfg(test)]
mod tests {
    /// The loops over the units in the inference step of the cell `source` defines, and
    /// whether that step spills the value named `spilled`.
    fn step(source: &str, spilled: &str) -> (usize, bool) {
        let cells = crate::cells(source).expect("the cell compiles");
        let code = cells[0].expand();
        let start = code.find("fn step(").expect("an inference step");
        let end = code.find("fn step_train(").expect("a training step");
        let step = &code[start..end];
        let spill = format!("spill_{spilled}[j] =");
        (
            step.matches("for j in 0..hidden").count(),
            step.contains(&spill),
        )
    }

    #[test]
    fn each_independent_activation_gets_a_loop_and_what_reads_them_the_last() {
        // i, f, g and o apart, then `c` and `h = o · tanh(c)`.
        assert_eq!(step("#[lstm_cell] pub struct Plain;", "f"), (5, true));
        // `z_g / temperature` is computed in g's loop, which alone reads it; `o` reads `c`.
        let own = "#[lstm_cell(i = 1.0 - f, g = tanh(z_g / temperature), \
                   o = sigmoid(z_o + peep * c))] \
                   pub struct Own { temperature: Scalar, peep: PerUnit }";
        assert_eq!(step(own, "f"), (3, true));
        assert!(!step(own, "z_g_over_temperature").1);
        // The GRU's candidate reads its reset gate: it waits for the last loop.
        let gru = "#[lstm_cell(zx = zx + b_ih, zh = zh + b_hh, z = zx + zh, \
                   g = tanh(zx_g + i * zh_g), h = (1.0 - f) * g + f * h_prev)] \
                   pub struct Gru;";
        assert_eq!(step(gru, "i"), (3, true));
        // With cheap gates one costly call is left (`tanh(z_g)`): one fused loop.
        let hard = "#[lstm_cell(i = hard_sigmoid(z_i), f = hard_sigmoid(z_f), \
                    o = hard_sigmoid(z_o))] pub struct Hard;";
        assert_eq!(step(hard, "g"), (1, false));
    }
}
