//! The typed model of a cell spec, as parsed from `#[lstm_cell(...)]` and the struct it is
//! attached to. Names are still unresolved identifiers here; `validate` resolves them.

use syn::{Attribute, Ident, Visibility};

/// A whole cell spec: the struct and the equations written in the attribute.
pub struct Spec {
    /// Attributes on the struct (doc comments and derives the user wrote), passed through.
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// Equations in the order written.
    pub defs: Vec<Def>,
    pub params: Vec<Param>,
    /// Recurrent states the spec declares besides `h` and `c` (`n: State`), in declaration
    /// order: each is written by the equation of its name and read as `{name}_prev`.
    pub states: Vec<Param>,
    /// Path of the runtime crate the generated code names (`::lstm` unless `crate = "…"`).
    pub krate: syn::Path,
}

/// One equation `name = expr` of the attribute.
pub struct Def {
    pub name: Ident,
    pub expr: Expr,
}

/// A parameter declared as a struct field.
pub struct Param {
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub shape: ParamShape,
    pub init: Init,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ParamShape {
    PerUnit,
    Scalar,
    Gates,
    /// Not a parameter but the declaration of the per-sequence constant input; its learned
    /// projection `weight_{name}` is the weight.
    Constant,
    /// Not a parameter but an extra recurrent state (`n: State`); parsing moves these to
    /// [`Spec::states`].
    State,
}

impl ParamShape {
    pub fn variant(self) -> &'static str {
        match self {
            ParamShape::PerUnit => "PerUnit",
            ParamShape::Scalar => "Scalar",
            ParamShape::Gates => "Gates",
            ParamShape::Constant => "Constant",
            ParamShape::State => "State",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Init {
    Default,
    Zeros,
    Ones,
    Constant(f64),
    Uniform(f64, f64),
}

/// An expression of the spec language, names unresolved.
pub enum Expr {
    Lit(f64),
    Name(Ident),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Ident, Vec<Expr>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl Expr {
    /// Binding strength, for printing with the fewest parentheses.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(BinOp::Add | BinOp::Sub, ..) => 1,
            Expr::Binary(BinOp::Mul | BinOp::Div, ..) => 2,
            Expr::Neg(_) => 3,
            Expr::Lit(_) | Expr::Name(_) | Expr::Call(..) => 4,
        }
    }
}

/// Prints an expression the way the spec language writes it: `sigmoid(1.5 * z_f)`.
impl std::fmt::Display for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let operand = |f: &mut std::fmt::Formatter<'_>, e: &Expr, min: u8| {
            if e.precedence() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::Lit(v) => write!(f, "{v:?}"),
            Expr::Name(ident) => write!(f, "{ident}"),
            Expr::Neg(inner) => {
                f.write_str("-")?;
                operand(f, inner, 4)
            }
            Expr::Binary(op, left, right) => {
                let (symbol, prec) = match op {
                    BinOp::Add => ("+", 1),
                    BinOp::Sub => ("-", 1),
                    BinOp::Mul => ("*", 2),
                    BinOp::Div => ("/", 2),
                };
                operand(f, left, prec)?;
                write!(f, " {symbol} ")?;
                // Right operands of - and / bind tighter: a - (b - c) keeps its parentheses.
                let right_min = if matches!(op, BinOp::Sub | BinOp::Div) {
                    prec + 1
                } else {
                    prec
                };
                operand(f, right, right_min)
            }
            Expr::Call(func, args) => {
                write!(f, "{func}(")?;
                for (k, arg) in args.iter().enumerate() {
                    if k > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
        }
    }
}
