//! The functions of the spec language, in one table: each row is everything the generator
//! knows about one function (its name, arity, meaning, derivative and PyTorch's convention
//! where it has none). `validate` looks names and arities up here, `ir` lowers calls to
//! [`Func`] nodes, `grad` differentiates them with the row's [`Function::partials`], and the
//! generated code calls the runtime's `ops` function of the same name. A few rows are
//! internal (`abs`, `sqrt`): derivatives and layer normalisation need them, a spec cannot
//! write them.

/// A function of the spec language, or one the generator uses internally.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Func {
    Sigmoid,
    Tanh,
    HardSigmoid,
    HardSigmoidKeras2,
    Relu,
    Softsign,
    Exp,
    Min,
    Max,
    Clip,
    /// Lowered by `ir` to means and arithmetic; never a node of the graph.
    LayerNorm,
    Abs,
    Sqrt,
}

/// Comparisons that yield 1 or 0: the derivatives of piecewise functions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Cmp {
    Lt,
    Le,
    Eq,
}

impl Cmp {
    /// The runtime's `ops` function that computes the comparison.
    pub fn ops_name(self) -> &'static str {
        match self {
            Cmp::Lt => "lt",
            Cmp::Le => "le",
            Cmp::Eq => "eq",
        }
    }

    /// The comparison as a mathematician writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "≤",
            Cmp::Eq => "=",
        }
    }

    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
        }
    }
}

/// The arithmetic derivatives are written in: the simplifying constructors of the step's
/// expression graph (`ir::Graph`), over node ids.
pub trait Algebra {
    fn lit(&mut self, value: f64) -> usize;
    fn add(&mut self, a: usize, b: usize) -> usize;
    fn sub(&mut self, a: usize, b: usize) -> usize;
    fn mul(&mut self, a: usize, b: usize) -> usize;
    fn div(&mut self, a: usize, b: usize) -> usize;
    fn call(&mut self, func: Func, args: Vec<usize>) -> usize;
    fn cmp(&mut self, op: Cmp, a: usize, b: usize) -> usize;
}

/// The derivatives of `f(args)` with respect to each argument, given the argument nodes and
/// the node `y = f(args)` itself (so `σ' = y(1 − y)` reuses the forward value).
pub type Partials = fn(&mut dyn Algebra, &[usize], usize) -> Vec<usize>;

/// One row of the table.
pub struct Function {
    pub func: Func,
    /// The name a spec writes and the runtime's `ops` function carries.
    pub name: &'static str,
    /// Fewest and most arguments.
    pub arity: (usize, usize),
    /// How the arity error spells the call: `clip(x, low, high)`.
    pub signature: &'static str,
    /// Whether a spec may call it (internal functions serve derivatives only).
    pub in_spec: bool,
    /// What it computes.
    pub doc: &'static str,
    /// PyTorch's choice where the derivative does not exist everywhere.
    pub convention: Option<&'static str>,
    pub partials: Partials,
}

/// Every function, the spec's first in the order error messages list them.
pub const FUNCTIONS: [Function; 13] = [
    Function {
        func: Func::Sigmoid,
        name: "sigmoid",
        arity: (1, 1),
        signature: "sigmoid(x)",
        in_spec: true,
        doc: "logistic sigmoid 1 / (1 + e^(-x))",
        convention: None,
        partials: |g, _, y| {
            let one = g.lit(1.0);
            let one_minus = g.sub(one, y);
            vec![g.mul(y, one_minus)]
        },
    },
    Function {
        func: Func::Tanh,
        name: "tanh",
        arity: (1, 1),
        signature: "tanh(x)",
        in_spec: true,
        doc: "hyperbolic tangent",
        convention: None,
        partials: |g, _, y| {
            let one = g.lit(1.0);
            let square = g.mul(y, y);
            vec![g.sub(one, square)]
        },
    },
    Function {
        func: Func::HardSigmoid,
        name: "hard_sigmoid",
        arity: (1, 1),
        signature: "hard_sigmoid(x)",
        in_spec: true,
        doc: "Keras 3 / PyTorch hard sigmoid relu6(x + 3) / 6",
        convention: Some("the gradient passes where -3 < x < 3"),
        partials: |g, x, _| vec![window(g, x[0], 3.0, Cmp::Lt, 1.0 / 6.0)],
    },
    Function {
        func: Func::HardSigmoidKeras2,
        name: "hard_sigmoid_keras2",
        arity: (1, 1),
        signature: "hard_sigmoid_keras2(x)",
        in_spec: true,
        doc: "Keras 2 hard sigmoid clip(0.2 x + 0.5, 0, 1)",
        convention: Some("the gradient passes where -2.5 <= x <= 2.5 (TensorFlow's clip_by_value)"),
        partials: |g, x, _| vec![window(g, x[0], 2.5, Cmp::Le, 0.2)],
    },
    Function {
        func: Func::Relu,
        name: "relu",
        arity: (1, 1),
        signature: "relu(x)",
        in_spec: true,
        doc: "rectified linear unit max(x, 0)",
        convention: Some("relu'(0) = 0"),
        partials: |g, x, _| {
            let zero = g.lit(0.0);
            vec![g.cmp(Cmp::Lt, zero, x[0])]
        },
    },
    Function {
        func: Func::Softsign,
        name: "softsign",
        arity: (1, 1),
        signature: "softsign(x)",
        in_spec: true,
        doc: "softsign x / (1 + |x|)",
        convention: None,
        partials: |g, x, _| {
            let one = g.lit(1.0);
            let magnitude = g.call(Func::Abs, vec![x[0]]);
            let denominator = g.add(one, magnitude);
            let square = g.mul(denominator, denominator);
            vec![g.div(one, square)]
        },
    },
    Function {
        func: Func::Exp,
        name: "exp",
        arity: (1, 1),
        signature: "exp(x)",
        in_spec: true,
        doc: "exponential",
        convention: None,
        partials: |_, _, y| vec![y],
    },
    Function {
        func: Func::Min,
        name: "min",
        arity: (2, 2),
        signature: "min(a, b)",
        in_spec: true,
        doc: "the smaller argument",
        convention: Some("tied arguments share the gradient equally"),
        partials: |g, args, _| tie_split(g, args[0], args[1], |g, a, b| g.cmp(Cmp::Lt, a, b)),
    },
    Function {
        func: Func::Max,
        name: "max",
        arity: (2, 2),
        signature: "max(a, b)",
        in_spec: true,
        doc: "the larger argument",
        convention: Some("tied arguments share the gradient equally"),
        partials: |g, args, _| tie_split(g, args[0], args[1], |g, a, b| g.cmp(Cmp::Lt, b, a)),
    },
    Function {
        func: Func::Clip,
        name: "clip",
        arity: (3, 3),
        signature: "clip(x, low, high)",
        in_spec: true,
        doc: "x clamped to [low, high]",
        convention: Some(
            "the gradient passes to x where low <= x <= high, to low below, to high above",
        ),
        partials: |g, args, _| {
            let (x, low, high) = (args[0], args[1], args[2]);
            let above_low = g.cmp(Cmp::Le, low, x);
            let below_high = g.cmp(Cmp::Le, x, high);
            let inside = g.mul(above_low, below_high);
            let under = g.cmp(Cmp::Lt, x, low);
            let over = g.cmp(Cmp::Lt, high, x);
            vec![inside, under, over]
        },
    },
    Function {
        func: Func::LayerNorm,
        name: "layer_norm",
        arity: (1, 3),
        signature: "layer_norm(x, gain, bias)",
        in_spec: true,
        doc: "normalisation across the hidden units (and gates, gate-wise), PyTorch's eps = 1e-5 \
              and biased variance, then the optional gain and bias",
        convention: None,
        // Lowered to means and arithmetic by `ir`, which `grad` differentiates instead.
        partials: |_, _, _| Vec::new(),
    },
    Function {
        func: Func::Abs,
        name: "abs",
        arity: (1, 1),
        signature: "abs(x)",
        in_spec: false,
        doc: "absolute value",
        convention: Some("abs'(0) = 0"),
        partials: |g, x, _| {
            let zero = g.lit(0.0);
            let positive = g.cmp(Cmp::Lt, zero, x[0]);
            let negative = g.cmp(Cmp::Lt, x[0], zero);
            vec![g.sub(positive, negative)]
        },
    },
    Function {
        func: Func::Sqrt,
        name: "sqrt",
        arity: (1, 1),
        signature: "sqrt(x)",
        in_spec: false,
        doc: "square root",
        convention: None,
        partials: |g, _, y| {
            let one = g.lit(1.0);
            let two = g.lit(2.0);
            let twice = g.mul(two, y);
            vec![g.div(one, twice)]
        },
    },
];

impl Func {
    /// The function's row of [`FUNCTIONS`].
    pub fn row(self) -> &'static Function {
        // Every variant has a row (the table test checks it), so the search always succeeds;
        // a missing row would be caught by that test, not by a user.
        FUNCTIONS
            .iter()
            .find(|row| row.func == self)
            .unwrap_or(&FUNCTIONS[0])
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The function a spec names `name`, if the spec language has one.
    pub fn in_spec(name: &str) -> Option<&'static Function> {
        FUNCTIONS.iter().find(|row| row.in_spec && row.name == name)
    }

    /// The names a spec may call, in table order: `sigmoid, tanh, …, layer_norm`.
    pub fn spec_names() -> impl Iterator<Item = &'static str> {
        FUNCTIONS
            .iter()
            .filter(|row| row.in_spec)
            .map(|row| row.name)
    }
}

/// `slope` where `-edge < x < edge` (or `<=` with `Cmp::Le`), else 0.
fn window(g: &mut dyn Algebra, x: usize, edge: f64, cmp: Cmp, slope: f64) -> usize {
    let low = g.lit(-edge);
    let high = g.lit(edge);
    let above = g.cmp(cmp, low, x);
    let below = g.cmp(cmp, x, high);
    let inside = g.mul(above, below);
    let slope = g.lit(slope);
    g.mul(inside, slope)
}

/// The weights of `min`/`max`'s gradient: 1 to the winner, ½ each on a tie; `beats(a, b)` is
/// 1 where `a` wins over `b`.
fn tie_split(
    g: &mut dyn Algebra,
    a: usize,
    b: usize,
    beats: fn(&mut dyn Algebra, usize, usize) -> usize,
) -> Vec<usize> {
    let half = g.lit(0.5);
    let tie = g.cmp(Cmp::Eq, a, b);
    let half_tie = g.mul(half, tie);
    let a_wins = beats(g, a, b);
    let b_wins = beats(g, b, a);
    vec![g.add(a_wins, half_tie), g.add(b_wins, half_tie)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_has_one_row() {
        let all = [
            Func::Sigmoid,
            Func::Tanh,
            Func::HardSigmoid,
            Func::HardSigmoidKeras2,
            Func::Relu,
            Func::Softsign,
            Func::Exp,
            Func::Min,
            Func::Max,
            Func::Clip,
            Func::LayerNorm,
            Func::Abs,
            Func::Sqrt,
        ];
        assert_eq!(all.len(), FUNCTIONS.len());
        for func in all {
            assert_eq!(FUNCTIONS.iter().filter(|row| row.func == func).count(), 1);
            assert_eq!(func.row().func, func);
        }
    }

    #[test]
    fn spec_names_are_listed_in_table_order() {
        let names: Vec<&str> = Func::spec_names().collect();
        assert_eq!(
            names.join(", "),
            "sigmoid, tanh, hard_sigmoid, hard_sigmoid_keras2, relu, softsign, exp, min, max, \
             clip, layer_norm"
        );
        assert!(Func::in_spec("abs").is_none());
    }
}
