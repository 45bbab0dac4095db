//! The functions of the spec language, in one table: each row is everything the generator
//! knows about one function (its name, arity, meaning, derivative and PyTorch's convention
//! where it has none). `validate` looks names and arities up here, `ir` lowers calls to
//! [`Func`] nodes, `grad` differentiates them with the row's [`Function::partials`], and the
//! generated code calls the runtime's `ops` function of the same name. One row is internal
//! (`erf`): `gelu`'s derivative needs it, a spec cannot write it.
//!
//! Derivatives follow PyTorch's autograd, including its choices at kinks and thresholds
//! (each row's `convention`), so a cell's gradients match PyTorch's bit for bit in spirit and
//! to rounding in fact.

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
    Log,
    LogSigmoid,
    Softplus,
    Silu,
    Gelu,
    Elu,
    Pow,
    StopGradient,
    /// The error function, for `gelu`'s derivative.
    Erf,
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
    /// Whether the runtime evaluates it by a polynomial (and mostly a division): tens of
    /// vector instructions with a long dependency chain. A row computing several such calls
    /// independently gives each a loop of its own (`schedule`).
    pub costly: bool,
    /// What it computes.
    pub doc: &'static str,
    /// PyTorch's choice where the derivative does not exist everywhere.
    pub convention: Option<&'static str>,
    /// Values of trailing arguments a call may leave out (`elu(x)` is `elu(x, 1.0)`), so
    /// every call the generator sees has the full arity.
    pub defaults: &'static [f64],
    /// Arguments that must be numbers written in the spec (`pow`'s exponent), by position.
    pub literal_args: &'static [usize],
    pub partials: Partials,
}

/// Every function, the spec's first in the order error messages list them.
pub const FUNCTIONS: [Function; 22] = [
    Function {
        func: Func::Sigmoid,
        name: "sigmoid",
        arity: (1, 1),
        signature: "sigmoid(x)",
        in_spec: true,
        costly: true,
        doc: "logistic sigmoid 1 / (1 + e^(-x))",
        convention: None,
        defaults: &[],
        literal_args: &[],
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
        costly: true,
        doc: "hyperbolic tangent",
        convention: None,
        defaults: &[],
        literal_args: &[],
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
        costly: false,
        doc: "Keras 3 / PyTorch hard sigmoid relu6(x + 3) / 6",
        convention: Some("the gradient passes where -3 < x < 3"),
        defaults: &[],
        literal_args: &[],
        partials: |g, x, _| vec![window(g, x[0], 3.0, Cmp::Lt, 1.0 / 6.0)],
    },
    Function {
        func: Func::HardSigmoidKeras2,
        name: "hard_sigmoid_keras2",
        arity: (1, 1),
        signature: "hard_sigmoid_keras2(x)",
        in_spec: true,
        costly: false,
        doc: "Keras 2 hard sigmoid clip(0.2 x + 0.5, 0, 1)",
        convention: Some("the gradient passes where -2.5 <= x <= 2.5 (TensorFlow's clip_by_value)"),
        defaults: &[],
        literal_args: &[],
        partials: |g, x, _| vec![window(g, x[0], 2.5, Cmp::Le, 0.2)],
    },
    Function {
        func: Func::Relu,
        name: "relu",
        arity: (1, 1),
        signature: "relu(x)",
        in_spec: true,
        costly: false,
        doc: "rectified linear unit max(x, 0)",
        convention: Some("relu'(0) = 0"),
        defaults: &[],
        literal_args: &[],
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
        costly: false,
        doc: "softsign x / (1 + |x|)",
        convention: None,
        defaults: &[],
        literal_args: &[],
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
        costly: true,
        doc: "exponential",
        convention: None,
        defaults: &[],
        literal_args: &[],
        partials: |_, _, y| vec![y],
    },
    Function {
        func: Func::Min,
        name: "min",
        arity: (2, 2),
        signature: "min(a, b)",
        in_spec: true,
        costly: false,
        doc: "the smaller argument",
        convention: Some("tied arguments share the gradient equally"),
        defaults: &[],
        literal_args: &[],
        partials: |g, args, _| tie_split(g, args[0], args[1], |g, a, b| g.cmp(Cmp::Lt, a, b)),
    },
    Function {
        func: Func::Max,
        name: "max",
        arity: (2, 2),
        signature: "max(a, b)",
        in_spec: true,
        costly: false,
        doc: "the larger argument",
        convention: Some("tied arguments share the gradient equally"),
        defaults: &[],
        literal_args: &[],
        partials: |g, args, _| tie_split(g, args[0], args[1], |g, a, b| g.cmp(Cmp::Lt, b, a)),
    },
    Function {
        func: Func::Clip,
        name: "clip",
        arity: (3, 3),
        signature: "clip(x, low, high)",
        in_spec: true,
        costly: false,
        doc: "x clamped to [low, high]",
        convention: Some(
            "the gradient passes to x where low <= x <= high, to low below, to high above",
        ),
        defaults: &[],
        literal_args: &[],
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
        costly: false,
        doc: "normalisation across the hidden units (and gates, gate-wise), PyTorch's eps = 1e-5 \
              and biased variance, then the optional gain and bias",
        convention: None,
        // Lowered to means and arithmetic by `ir`, which `grad` differentiates instead.
        defaults: &[],
        literal_args: &[],
        partials: |_, _, _| Vec::new(),
    },
    Function {
        func: Func::Abs,
        name: "abs",
        arity: (1, 1),
        signature: "abs(x)",
        in_spec: true,
        costly: false,
        doc: "absolute value",
        convention: Some("abs'(0) = 0"),
        defaults: &[],
        literal_args: &[],
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
        in_spec: true,
        costly: false,
        doc: "square root",
        convention: Some("sqrt'(0) = inf, as PyTorch's 1 / (2 sqrt(x))"),
        defaults: &[],
        literal_args: &[],
        partials: |g, _, y| {
            let one = g.lit(1.0);
            let two = g.lit(2.0);
            let twice = g.mul(two, y);
            vec![g.div(one, twice)]
        },
    },
    Function {
        func: Func::Log,
        name: "log",
        arity: (1, 1),
        signature: "log(x)",
        in_spec: true,
        costly: true,
        doc: "natural logarithm",
        convention: Some("log'(x) = 1 / x, so log'(0) = inf (log(0) = -inf)"),
        defaults: &[],
        literal_args: &[],
        partials: |g, x, _| {
            let one = g.lit(1.0);
            vec![g.div(one, x[0])]
        },
    },
    Function {
        func: Func::LogSigmoid,
        name: "logsigmoid",
        arity: (1, 1),
        signature: "logsigmoid(x)",
        in_spec: true,
        costly: true,
        doc: "log(sigmoid(x)), computed as PyTorch's F.logsigmoid: min(x, 0) - log1p(e^(-|x|))",
        convention: None,
        defaults: &[],
        literal_args: &[],
        // d/dx log σ(x) = 1 − σ(x) = σ(−x), the form that keeps its precision for large x.
        partials: |g, x, _| {
            let zero = g.lit(0.0);
            let minus_x = g.sub(zero, x[0]);
            vec![g.call(Func::Sigmoid, vec![minus_x])]
        },
    },
    Function {
        func: Func::Softplus,
        name: "softplus",
        arity: (1, 1),
        signature: "softplus(x)",
        in_spec: true,
        costly: true,
        doc: "log(1 + e^x), and x itself where x > 20 (PyTorch's F.softplus, beta 1, threshold 20)",
        convention: Some("softplus'(x) = sigmoid(x), and 1 where x > 20 (PyTorch's threshold)"),
        defaults: &[],
        literal_args: &[],
        partials: |g, x, _| {
            let threshold = g.lit(SOFTPLUS_THRESHOLD);
            let linear = g.cmp(Cmp::Lt, threshold, x[0]);
            let one = g.lit(1.0);
            let curved = g.sub(one, linear);
            let slope = g.call(Func::Sigmoid, vec![x[0]]);
            let curved_slope = g.mul(curved, slope);
            vec![g.add(linear, curved_slope)]
        },
    },
    Function {
        func: Func::Silu,
        name: "silu",
        arity: (1, 1),
        signature: "silu(x)",
        in_spec: true,
        costly: true,
        doc: "sigmoid linear unit (swish) x * sigmoid(x)",
        convention: None,
        defaults: &[],
        literal_args: &[],
        // PyTorch's silu_backward: σ(x) (1 + x (1 − σ(x))).
        partials: |g, x, _| {
            let s = g.call(Func::Sigmoid, vec![x[0]]);
            let one = g.lit(1.0);
            let complement = g.sub(one, s);
            let x_complement = g.mul(x[0], complement);
            let factor = g.add(one, x_complement);
            vec![g.mul(s, factor)]
        },
    },
    Function {
        func: Func::Gelu,
        name: "gelu",
        arity: (1, 1),
        signature: "gelu(x)",
        in_spec: true,
        costly: true,
        doc: "Gaussian error linear unit x * Φ(x) = x (1 + erf(x / √2)) / 2 (PyTorch's \
              F.gelu, approximate = 'none')",
        convention: None,
        defaults: &[],
        literal_args: &[],
        // Φ(x) + x φ(x), as PyTorch's gelu_backward.
        partials: |g, x, _| {
            let half = g.lit(0.5);
            let one = g.lit(1.0);
            let inv_sqrt2 = g.lit(std::f64::consts::FRAC_1_SQRT_2);
            let scaled = g.mul(x[0], inv_sqrt2);
            let erf = g.call(Func::Erf, vec![scaled]);
            let one_plus = g.add(one, erf);
            let cdf = g.mul(half, one_plus);
            let square = g.mul(x[0], x[0]);
            let minus_half = g.lit(-0.5);
            let minus_half_square = g.mul(minus_half, square);
            let gauss = g.call(Func::Exp, vec![minus_half_square]);
            let norm = g.lit(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            let pdf = g.mul(norm, gauss);
            let x_pdf = g.mul(x[0], pdf);
            vec![g.add(cdf, x_pdf)]
        },
    },
    Function {
        func: Func::Elu,
        name: "elu",
        arity: (1, 2),
        signature: "elu(x, alpha)",
        in_spec: true,
        costly: true,
        doc: "exponential linear unit: x where x > 0, else alpha (e^x - 1); alpha defaults to \
              1 (PyTorch's F.elu)",
        convention: Some(
            "elu'(x) = 1 where x > 0, else alpha e^x (PyTorch's elu_backward; at 0 that is \
             alpha); the gradient reaches alpha as e^x - 1 where x <= 0",
        ),
        defaults: &[1.0],
        literal_args: &[],
        partials: |g, args, _| {
            let (x, alpha) = (args[0], args[1]);
            let zero = g.lit(0.0);
            let one = g.lit(1.0);
            let positive = g.cmp(Cmp::Lt, zero, x);
            let negative = g.sub(one, positive);
            let e = g.call(Func::Exp, vec![x]);
            let alpha_e = g.mul(alpha, e);
            let negative_slope = g.mul(negative, alpha_e);
            let e_minus_one = g.sub(e, one);
            vec![
                g.add(positive, negative_slope),
                g.mul(negative, e_minus_one),
            ]
        },
    },
    Function {
        func: Func::Pow,
        name: "pow",
        arity: (2, 2),
        signature: "pow(x, p)",
        in_spec: true,
        costly: false,
        doc: "x to the power p, a number written in the spec (integer powers by repeated \
              multiplication, others as e^(p log x))",
        convention: Some(
            "pow'(x) = p x^(p-1), and 0 where p = 0 (PyTorch's pow_backward); x^(p-1) at \
             x = 0 follows IEEE (inf for p < 1)",
        ),
        defaults: &[],
        literal_args: &[1],
        partials: |g, args, _| {
            let (x, p) = (args[0], args[1]);
            let one = g.lit(1.0);
            let lowered = g.sub(p, one);
            let power = g.call(Func::Pow, vec![x, lowered]);
            vec![g.mul(p, power), g.lit(0.0)]
        },
    },
    Function {
        func: Func::StopGradient,
        name: "stop_gradient",
        arity: (1, 1),
        signature: "stop_gradient(x)",
        in_spec: true,
        costly: false,
        doc: "x itself, through which no gradient flows (PyTorch's x.detach(), JAX's \
              lax.stop_gradient)",
        convention: Some("the gradient is 0: x is a constant to everything after it"),
        defaults: &[],
        literal_args: &[],
        partials: |g, _, _| vec![g.lit(0.0)],
    },
    Function {
        func: Func::Erf,
        name: "erf",
        arity: (1, 1),
        signature: "erf(x)",
        in_spec: false,
        costly: true,
        doc: "error function",
        convention: None,
        defaults: &[],
        literal_args: &[],
        partials: |g, x, _| {
            let square = g.mul(x[0], x[0]);
            let zero = g.lit(0.0);
            let minus_square = g.sub(zero, square);
            let gauss = g.call(Func::Exp, vec![minus_square]);
            let scale = g.lit(std::f64::consts::FRAC_2_SQRT_PI);
            vec![g.mul(scale, gauss)]
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

/// PyTorch's `softplus` threshold (beta 1): above it, `softplus(x)` is `x`.
pub const SOFTPLUS_THRESHOLD: f64 = 20.0;

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
            Func::Log,
            Func::LogSigmoid,
            Func::Softplus,
            Func::Silu,
            Func::Gelu,
            Func::Elu,
            Func::Pow,
            Func::StopGradient,
            Func::Erf,
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
             clip, layer_norm, abs, sqrt, log, logsigmoid, softplus, silu, gelu, elu, pow, \
             stop_gradient"
        );
        assert!(Func::in_spec("erf").is_none());
    }
}
