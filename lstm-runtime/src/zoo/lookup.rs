//! Choosing a zoo cell at run time by its snake_case name (`--cell peephole`), and the
//! element type by a file's dtype: code generic over `C: Cell` is written once as a
//! [`CellVisitor`] and [`visit_zoo_cell`] instantiates it for the named cell.

use crate::cell::Cell;
use crate::error::{Error, Result};
use crate::float::Float;

/// Work to do with one cell type, chosen at run time.
pub trait CellVisitor<F: Float> {
    /// What the work produces.
    type Output;

    /// Does the work with the cell type `C`.
    fn visit<C: Cell<Elem = F>>(self) -> Self::Output;
}

/// Runs `visitor` with the zoo cell called `name` (its `SPEC.name`, as `lstm cells` lists
/// them), in precision `F`.
///
/// # Errors
///
/// [`Error::Config`] naming the option `cell` and listing the zoo's names if no zoo cell is
/// called `name`.
pub fn visit_zoo_cell<F: Float, V: CellVisitor<F>>(name: &str, visitor: V) -> Result<V::Output> {
    // One arm per cell of `zoo::all()`; the test below keeps the two lists equal.
    let output = match name {
        "lstm" => visitor.visit::<super::Lstm<F>>(),
        "forget_bias" => visitor.visit::<super::ForgetBias<F>>(),
        "scaled_forget" => visitor.visit::<super::ScaledForget<F>>(),
        "peephole" => visitor.visit::<super::Peephole<F>>(),
        "cifg" => visitor.visit::<super::Cifg<F>>(),
        "hard_sigmoid" => visitor.visit::<super::HardSigmoid<F>>(),
        "layer_norm" => visitor.visit::<super::LayerNorm<F>>(),
        "gru" => visitor.visit::<super::Gru<F>>(),
        "janet" => visitor.visit::<super::Janet<F>>(),
        "slstm" => visitor.visit::<super::Slstm<F>>(),
        unknown => {
            let names: Vec<&str> = super::all().iter().map(|spec| spec.name).collect();
            return Err(Error::Config {
                option: "cell".into(),
                reason: format!(
                    "no zoo cell is called `{unknown}`; expected one of {}",
                    names.join(", ")
                ),
            });
        }
    };
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports the name of the cell it was run with.
    struct SpecName;

    impl<F: Float> CellVisitor<F> for SpecName {
        type Output = &'static str;

        fn visit<C: Cell<Elem = F>>(self) -> &'static str {
            C::SPEC.name
        }
    }

    #[test]
    fn every_zoo_cell_is_reachable_by_its_name() {
        for spec in crate::zoo::all() {
            assert_eq!(visit_zoo_cell::<f32, _>(spec.name, SpecName), Ok(spec.name));
            assert_eq!(visit_zoo_cell::<f64, _>(spec.name, SpecName), Ok(spec.name));
        }
    }

    #[test]
    fn unknown_names_list_the_zoo() {
        let err = visit_zoo_cell::<f64, _>("mgu", SpecName).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("invalid `cell`: no zoo cell is called `mgu`"),
            "{message}"
        );
        assert!(message.contains("lstm, forget_bias"), "{message}");
    }
}
