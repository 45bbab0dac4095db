//! The standard LSTM (PyTorch's `nn.LSTM`) in the spec language: the one place its equations
//! are written. Every equation a spec leaves out defaults to the one here; validation resolves
//! it, the generated rustdoc and `CellSpec::equations` print it, and the macro's own rustdoc
//! includes the file.

use crate::errors::Errors;
use crate::parse;
use crate::spec::Expr;

/// `name = rhs`, one equation a line (`z` gate-wise, the others per unit).
pub const STANDARD_LSTM: &str = include_str!("standard_lstm.txt");

/// The right-hand side the standard LSTM gives `name`: `sigmoid(z_f)` for `f`.
pub fn rhs(name: &str) -> Option<&'static str> {
    STANDARD_LSTM.lines().find_map(|line| {
        let (defined, rhs) = line.split_once(" = ")?;
        (defined == name).then_some(rhs)
    })
}

/// The standard LSTM's equation for `name`, parsed into the spec model.
pub fn expr(name: &str) -> Option<Expr> {
    let syntax: syn::Expr = syn::parse_str(rhs(name)?).ok()?;
    let mut errors = Errors::default();
    let expr = parse::expr(&syntax, &mut errors);
    // The file is in the spec language (the test below parses every line), so nothing is
    // ever collected here.
    errors.finish().ok()?;
    expr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_equation_parses_back_to_its_text() {
        let names: Vec<&str> = STANDARD_LSTM
            .lines()
            .filter_map(|line| line.split_once(" = ").map(|(name, _)| name))
            .collect();
        assert_eq!(names, ["z", "i", "f", "g", "o", "c", "h"]);
        for name in names {
            let expr = expr(name).unwrap_or_else(|| panic!("`{name}` does not parse"));
            assert_eq!(Some(expr.to_string().as_str()), rhs(name));
        }
    }
}
