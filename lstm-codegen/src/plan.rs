//! What each of the four step functions of the `Cell` impl (inference, training, backward,
//! and inference that records every gate) computes, reads and writes, as data: one [`Kernel`]
//! per function, which `expand` writes as Rust. What training caches for backward is `cache`'s decision.
//!
//! Each kernel is a *row function* (the fused loops over the hidden units of one batch row)
//! whose parameters are the row's slices: read-only inputs gate-stacked (`zx`, split into
//! `zx_i`, `zx_f`, … inside), every output a slice of its own, so that the compiler knows no
//! output aliases anything else and vectorises the loops.

use std::collections::HashMap;

use crate::cache;
use crate::grad::Backward;
use crate::ir::{Forward, Id, Lane, Leaf, Node};
use crate::schedule::{self, At, Load, RowPlan, Sink};
use crate::spec::ParamShape;
use crate::validate::Checked;

/// The four step functions.
pub struct Steps {
    pub inference: Kernel,
    pub training: Kernel,
    pub backward: Kernel,
    /// The inference step that also writes every gate's value (`step_record`).
    pub record: Kernel,
    /// The letters of the gates `record` writes, in record layout order.
    pub record_gates: Vec<&'static str>,
    /// Names of the cached per-unit values, in cache layout order (`cache_f`, …).
    pub cache_units: Vec<String>,
    /// Number of cached per-row values (after the per-unit ones).
    pub cache_rows: usize,
    /// Whether `dL/dzx` and `dL/dzh` are the same values (backward writes `dzx` only).
    pub shared_grad: bool,
    /// Whether no value of a unit depends on another unit's (no sum over the units, nor
    /// their count): the steps then run over any subset of the units as a cell of that size.
    pub unit_local: bool,
}

/// Which step function a kernel is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    Inference,
    Training,
    Backward,
    Record,
}

/// One step function: the row function's code and interface.
pub struct Kernel {
    pub step: Step,
    pub row: RowPlan,
    /// The row function's parameters after `hidden`, in order.
    pub params: Vec<Param>,
    /// Gate-stacked read-only parameters cut into blocks at the top of the row function.
    pub blocks: Vec<Blocks>,
    /// Mutable buffers cut into blocks once per call, before the loop over the batch rows.
    pub call_blocks: Vec<Blocks>,
    /// Mutable buffers cut into blocks for every batch row.
    pub row_blocks: Vec<Blocks>,
}

/// A parameter of a row function, and what the loop over the batch rows passes for it.
pub struct Param {
    pub name: String,
    pub kind: Kind,
    pub arg: Arg,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A value (a scalar parameter).
    Value,
    /// `&[F]`.
    Slice,
    /// `&mut [F]`.
    SliceMut,
}

/// A buffer cut into consecutive blocks of `hidden` values (`let [a, b] = blocks(…)`), and
/// what follows them, if it is used.
pub struct Blocks {
    /// The blocks' names in order; `None` for a block nothing reads.
    pub names: Vec<Option<String>>,
    pub rest: Option<String>,
    pub of: Arg,
    /// Whether the blocks are written (each then a `&mut` of its own).
    pub mutable: bool,
}

/// What the loop over the batch rows passes to the row function.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Arg {
    /// A name: a block cut before the call, or a row-function parameter.
    Name(String),
    /// `width` values of a buffer: the batch row's (`buffer[r * width..][..width]`) or, for a
    /// buffer the same for every row, its first (`buffer[..width]`).
    Slice {
        buffer: Buffer,
        per_row: bool,
        width: Width,
        mutable: bool,
    },
    /// The value of a scalar parameter.
    Scalar(String),
}

/// A buffer the loop over the batch rows reads or writes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Buffer {
    /// A field of the step's `StepIo` or `BackwardIo`.
    Io(&'static str),
    /// The training step's `cache` argument.
    Cache,
    /// The recording step's `record` argument.
    Record,
    /// A parameter of the cell.
    Param(String),
    /// The gradient of a parameter, in the backward step's `grads`.
    Grad(String),
}

/// How many values a slice holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Width {
    /// `hidden`: one value per unit.
    Hidden,
    /// `gates`: one value per gate and unit.
    Gates,
    /// `states`: one value per carried state (`c`, then the declared ones) and unit.
    State,
    /// One value.
    One,
    /// One batch row of the cache.
    Cache,
    /// One batch row of the record.
    Record,
    /// One batch row of scratch.
    Scratch,
}

impl Steps {
    pub fn plan(checked: &Checked, forward: &Forward, backward: &Backward) -> Steps {
        let graph = &forward.graph;
        let state_names = &graph.leaf_names.states;
        let mut outputs = vec![unit_sink(forward.h, "h_out", false)];
        for (&id, name) in forward.states.iter().zip(state_names) {
            outputs.push(unit_sink(id, &format!("{name}_out"), false));
        }
        let inference = schedule::row(graph, &outputs, &HashMap::new());
        let mut record_sinks = outputs.clone();
        for (letter, id) in &forward.gates {
            record_sinks.push(unit_sink(*id, &format!("record_{letter}"), false));
        }
        let record = schedule::row(graph, &record_sinks, &HashMap::new());

        let shared_grad = backward.dzx == backward.dzh;
        let backward_sinks = backward_sinks(checked, forward, backward, shared_grad);
        let roots: Vec<Id> = backward_sinks.iter().map(|s| s.id).collect();
        let frontier = cache::frontier(graph, &roots, &forward.states);
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
        let cache_units = cache::names(graph, &cached_units);

        let mut training_sinks = outputs;
        let mut sources = HashMap::new();
        for (&id, name) in cached_units.iter().zip(&cache_units) {
            training_sinks.push(unit_sink(id, name, false));
            sources.insert(
                id,
                Load {
                    slice: name.clone(),
                    at: At::Unit,
                },
            );
        }
        for (k, &id) in cached_rows.iter().enumerate() {
            training_sinks.push(Sink {
                id,
                slice: "cache_rows".into(),
                at: At::Index(k),
                accumulate: false,
            });
            sources.insert(
                id,
                Load {
                    slice: "cache_rows".into(),
                    at: At::Index(k),
                },
            );
        }
        let training = schedule::row(graph, &training_sinks, &HashMap::new());
        for (&id, name) in forward.states.iter().zip(state_names) {
            sources.insert(
                id,
                Load {
                    slice: format!("{name}_new"),
                    at: At::Unit,
                },
            );
        }
        let backward_row = schedule::row(graph, &backward_sinks, &sources);

        let cache = CacheLayout {
            units: &cache_units,
            rows: !cached_rows.is_empty(),
        };
        let interface = Interface {
            checked,
            forward,
            cache,
            shared_grad,
        };
        Steps {
            inference: interface.kernel(Step::Inference, inference),
            training: interface.kernel(Step::Training, training),
            backward: interface.kernel(Step::Backward, backward_row),
            record: interface.kernel(Step::Record, record),
            record_gates: forward.gates.iter().map(|(letter, _)| *letter).collect(),
            cache_rows: cached_rows.len(),
            cache_units: cache_units.clone(),
            shared_grad,
            unit_local: !graph
                .nodes
                .iter()
                .any(|node| matches!(node, Node::Sum(_) | Node::Leaf(Leaf::Units))),
        }
    }
}

fn unit_sink(id: Id, slice: &str, accumulate: bool) -> Sink {
    Sink {
        id,
        slice: slice.into(),
        at: At::Unit,
        accumulate,
    }
}

/// Where the backward step writes each gradient, in the order it stores them.
fn backward_sinks(
    checked: &Checked,
    forward: &Forward,
    backward: &Backward,
    shared_grad: bool,
) -> Vec<Sink> {
    let mut sinks = Vec::new();
    for (s, letter) in forward.letters().iter().enumerate() {
        sinks.push(unit_sink(backward.dzx[s], &format!("dzx_{letter}"), false));
        if !shared_grad {
            sinks.push(unit_sink(backward.dzh[s], &format!("dzh_{letter}"), false));
        }
        sinks.push(unit_sink(
            backward.dbias_ih[s],
            &format!("db_ih_{letter}"),
            true,
        ));
        sinks.push(unit_sink(
            backward.dbias_hh[s],
            &format!("db_hh_{letter}"),
            true,
        ));
    }
    let state_names = &forward.graph.leaf_names.states;
    for (&id, name) in backward.dstate_prev.iter().zip(state_names) {
        sinks.push(unit_sink(id, &format!("d{name}_prev_out"), false));
    }
    if checked.reads_h_prev {
        sinks.push(unit_sink(backward.dh_prev, "dh_prev_out", false));
    }
    for (p, param) in checked.spec.params.iter().enumerate() {
        let grads = &backward.dparams[p];
        let name = &param.ident;
        match param.shape {
            ParamShape::PerUnit => sinks.push(unit_sink(grads[0], &format!("grad_{name}"), true)),
            ParamShape::Scalar => sinks.push(Sink {
                id: grads[0],
                slice: format!("grad_{name}"),
                at: At::Index(0),
                accumulate: true,
            }),
            // The constant's gradient is `dconstant`, sunk below; states are not parameters.
            ParamShape::Constant | ParamShape::State => {}
            ParamShape::Gates => {
                for (s, letter) in forward.letters().iter().enumerate() {
                    sinks.push(unit_sink(grads[s], &format!("grad_{name}_{letter}"), true));
                }
            }
        }
    }
    for (s, letter) in forward.letters().iter().enumerate() {
        if let Some(&id) = backward.dconstant.get(s) {
            sinks.push(unit_sink(id, &format!("dconst_{letter}"), true));
        }
    }
    sinks
}

struct CacheLayout<'a> {
    units: &'a [String],
    /// Whether per-row values follow the per-unit ones (as `cache_rows`).
    rows: bool,
}

/// Builds the row functions' parameters from what their code reads and writes.
struct Interface<'a> {
    checked: &'a Checked,
    forward: &'a Forward,
    cache: CacheLayout<'a>,
    shared_grad: bool,
}

impl Interface<'_> {
    fn kernel(&self, step: Step, row: RowPlan) -> Kernel {
        let mut kernel = Kernel {
            step,
            params: Vec::new(),
            blocks: Vec::new(),
            call_blocks: Vec::new(),
            row_blocks: Vec::new(),
            row,
        };
        self.inputs(&mut kernel);
        self.outputs(&mut kernel);
        kernel
    }

    fn letters(&self) -> &[&'static str] {
        self.forward.letters()
    }

    /// Per-gate names `{stem}_{letter}`, `None` where the code reads none of them.
    fn gate_names(&self, stem: &str, read: impl Fn(usize) -> bool) -> Vec<Option<String>> {
        self.letters()
            .iter()
            .enumerate()
            .map(|(s, letter)| read(s).then(|| format!("{stem}_{letter}")))
            .collect()
    }

    /// Per-state names `{prefix}{state}{suffix}`, `None` where `read` says the code reads
    /// none.
    fn state_names(
        &self,
        read: impl Fn(usize) -> bool,
        prefix: &str,
        suffix: &str,
    ) -> Vec<Option<String>> {
        let states = &self.forward.graph.leaf_names.states;
        (0..states.len())
            .map(|s| read(s).then(|| format!("{prefix}{}{suffix}", states[s])))
            .collect()
    }

    /// The read-only parameters, in a fixed order: the pre-activations and biases, the
    /// state, the spec's parameters, then what backward reads.
    fn inputs(&self, kernel: &mut Kernel) {
        let leaves = kernel.row.leaves.clone();
        let reads = |leaf: Leaf| leaves.contains(&leaf);
        /// A gate-stacked input: its field, the stem of its gates' names, its leaves.
        type Stacked = (&'static str, &'static str, fn(usize) -> Leaf);
        let gatewise: [Stacked; 4] = [
            ("zx", "zx", Leaf::Zx),
            ("zh", "zh", Leaf::Zh),
            ("bias_ih", "b_ih", Leaf::BiasIh),
            ("bias_hh", "b_hh", Leaf::BiasHh),
        ];
        for (name, stem, leaf) in gatewise {
            let names = self.gate_names(stem, |s| reads(leaf(s)));
            stacked_input(
                kernel,
                name,
                names,
                None,
                io_slice(name, Width::Gates, false),
            );
        }
        if let Some(constant) = &self.forward.graph.leaf_names.constant {
            let names = self.gate_names(constant, |s| reads(Leaf::Constant(s)));
            let of = io_slice("constant", Width::Gates, false);
            stacked_input(kernel, constant, names, None, of);
        }
        let names = self.state_names(|s| reads(Leaf::Prev(s)), "", "_prev");
        let of = io_slice("c_prev", Width::State, false);
        stacked_input(kernel, "states_prev", names, None, of);
        if reads(Leaf::HPrev) {
            input(
                kernel,
                "h_prev",
                Kind::Slice,
                io_slice("h_prev", Width::Hidden, false),
            );
        }
        for (p, param) in self.checked.spec.params.iter().enumerate() {
            let name = param.ident.to_string();
            match param.shape {
                ParamShape::PerUnit if reads(Leaf::Param(p)) => {
                    let arg = param_slice(&name, Width::Hidden);
                    input(kernel, &name, Kind::Slice, arg);
                }
                ParamShape::Scalar if reads(Leaf::Param(p)) => {
                    input(kernel, &name, Kind::Value, Arg::Scalar(name.clone()));
                }
                ParamShape::Gates => {
                    let names = self.gate_names(&name, |s| reads(Leaf::GateParam(p, s)));
                    let of = param_slice(&name, Width::Gates);
                    stacked_input(kernel, &name, names, None, of);
                }
                _ => {}
            }
        }
        if reads(Leaf::SeedH) {
            input(
                kernel,
                "dh",
                Kind::Slice,
                io_slice("dh", Width::Hidden, false),
            );
        }
        let names = self.state_names(|s| reads(Leaf::Seed(s)), "d", "");
        let of = io_slice("dc", Width::State, false);
        stacked_input(kernel, "dstates", names, None, of);
        let loads = kernel.row.loads.clone();
        let names = self.state_names(
            |s| loads.contains(&format!("{}_new", self.forward.graph.leaf_names.states[s])),
            "",
            "_new",
        );
        let of = io_slice("c", Width::State, false);
        stacked_input(kernel, "states_new", names, None, of);
        let names: Vec<Option<String>> = self
            .cache
            .units
            .iter()
            .map(|name| loads.contains(name).then(|| name.clone()))
            .collect();
        let rest = loads
            .contains("cache_rows")
            .then(|| "cache_rows".to_string());
        let of = io_slice("cache", Width::Cache, false);
        stacked_input(kernel, "cache", names, rest, of);
    }

    /// The mutable parameters: what the step writes, then its scratch.
    fn outputs(&self, kernel: &mut Kernel) {
        let all = |stem: &str| self.gate_names(stem, |_| true);
        match kernel.step {
            Step::Inference | Step::Training | Step::Record => {
                output(kernel, "h_out", io_slice("h", Width::Hidden, true));
                let names = self.state_names(|_| true, "", "_out");
                row_blocks(kernel, names, None, io_slice("c", Width::State, true));
            }
            Step::Backward => {
                row_blocks(
                    kernel,
                    all("dzx"),
                    None,
                    io_slice("dzx", Width::Gates, true),
                );
                if !self.shared_grad {
                    row_blocks(
                        kernel,
                        all("dzh"),
                        None,
                        io_slice("dzh", Width::Gates, true),
                    );
                }
                let bias = |field| call_slice(Buffer::Io(field), Width::Gates);
                call_blocks(kernel, all("db_ih"), bias("dbias_ih"));
                call_blocks(kernel, all("db_hh"), bias("dbias_hh"));
                let names = self.state_names(|_| true, "d", "_prev_out");
                row_blocks(kernel, names, None, io_slice("dc_prev", Width::State, true));
                if self.checked.reads_h_prev {
                    output(
                        kernel,
                        "dh_prev_out",
                        io_slice("dh_prev", Width::Hidden, true),
                    );
                }
                self.gradients(kernel);
                if self.forward.graph.leaf_names.constant.is_some() {
                    let of = io_slice("dconstant", Width::Gates, true);
                    row_blocks(kernel, all("dconst"), None, of);
                }
            }
        }
        if kernel.step == Step::Training {
            let names = self.cache.units.iter().cloned().map(Some).collect();
            let rest = self.cache.rows.then(|| "cache_rows".to_string());
            let of = Arg::Slice {
                buffer: Buffer::Cache,
                per_row: true,
                width: Width::Cache,
                mutable: true,
            };
            row_blocks(kernel, names, rest, of);
        }
        if kernel.step == Step::Record {
            let names = self
                .forward
                .gates
                .iter()
                .map(|(letter, _)| Some(format!("record_{letter}")))
                .collect();
            let of = Arg::Slice {
                buffer: Buffer::Record,
                per_row: true,
                width: Width::Record,
                mutable: true,
            };
            row_blocks(kernel, names, None, of);
        }
        let scratch = kernel.row.scratch.iter().cloned().map(Some).collect();
        row_blocks(
            kernel,
            scratch,
            None,
            io_slice("scratch", Width::Scratch, true),
        );
    }

    /// The backward step's accumulators of the spec's parameter gradients.
    fn gradients(&self, kernel: &mut Kernel) {
        for param in &self.checked.spec.params {
            let name = param.ident.to_string();
            let grad = format!("grad_{name}");
            match param.shape {
                ParamShape::PerUnit => {
                    output(kernel, &grad, call_slice(Buffer::Grad(name), Width::Hidden));
                }
                ParamShape::Scalar => {
                    output(kernel, &grad, call_slice(Buffer::Grad(name), Width::One));
                }
                ParamShape::Gates => {
                    let names = self.gate_names(&grad, |_| true);
                    call_blocks(kernel, names, call_slice(Buffer::Grad(name), Width::Gates));
                }
                // The runtime turns the constant's `dconstant` into its weight's gradient;
                // states are not parameters.
                ParamShape::Constant | ParamShape::State => {}
            }
        }
    }
}

/// A slice of a `StepIo`/`BackwardIo` field: the batch row's, except for the biases (shared
/// by every row) and the scratch (every row reuses the first row's: its values are dead once
/// the row is done, and one row's worth stays in the L1 cache from row to row).
fn io_slice(field: &'static str, width: Width, mutable: bool) -> Arg {
    Arg::Slice {
        buffer: Buffer::Io(field),
        per_row: !matches!(field, "bias_ih" | "bias_hh" | "scratch"),
        width,
        mutable,
    }
}

fn param_slice(name: &str, width: Width) -> Arg {
    Arg::Slice {
        buffer: Buffer::Param(name.to_string()),
        per_row: false,
        width,
        mutable: false,
    }
}

/// A mutable buffer the same for every batch row (an accumulator).
fn call_slice(buffer: Buffer, width: Width) -> Arg {
    Arg::Slice {
        buffer,
        per_row: false,
        width,
        mutable: true,
    }
}

fn input(kernel: &mut Kernel, name: &str, kind: Kind, arg: Arg) {
    kernel.params.push(Param {
        name: name.to_string(),
        kind,
        arg,
    });
}

/// A gate-stacked read-only parameter cut into `names` inside the row function, if the code
/// reads any of them.
fn stacked_input(
    kernel: &mut Kernel,
    name: &str,
    names: Vec<Option<String>>,
    rest: Option<String>,
    of: Arg,
) {
    if names.iter().all(Option::is_none) && rest.is_none() {
        return;
    }
    input(kernel, name, Kind::Slice, of);
    kernel.blocks.push(Blocks {
        names,
        rest,
        of: Arg::Name(name.to_string()),
        mutable: false,
    });
}

fn output(kernel: &mut Kernel, name: &str, arg: Arg) {
    kernel.params.push(Param {
        name: name.to_string(),
        kind: Kind::SliceMut,
        arg,
    });
}

/// Mutable blocks cut from each batch row of `of`, one parameter each.
fn row_blocks(kernel: &mut Kernel, names: Vec<Option<String>>, rest: Option<String>, of: Arg) {
    if names.is_empty() && rest.is_none() {
        return;
    }
    for name in names.iter().flatten().chain(&rest) {
        output(kernel, name, Arg::Name(name.clone()));
    }
    kernel.row_blocks.push(Blocks {
        names,
        rest,
        of,
        mutable: true,
    });
}

/// Mutable blocks cut once per call from `of`, one parameter each.
fn call_blocks(kernel: &mut Kernel, names: Vec<Option<String>>, of: Arg) {
    for name in names.iter().flatten() {
        output(kernel, name, Arg::Name(name.clone()));
    }
    kernel.call_blocks.push(Blocks {
        names,
        rest: None,
        of,
        mutable: true,
    });
}
