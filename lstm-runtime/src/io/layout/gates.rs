//! How a hand-written cell lays out its gates and columns: the order of the gate blocks
//! ([`GateOrder`], from a string like `ifog` or `ijfo`) and the order of the input and hidden
//! columns of a matrix over their concatenation ([`Columns`], `x,h` or `h,x`).
//!
//! These are the two facts a generic layout (`combined`, `per-gate`) needs besides key
//! names; everything else (transposing, splitting, reordering) follows from them.

use std::fmt;
use std::str::FromStr;

use crate::cell::Gate;
use crate::error::Error;

/// The gates of a layout in the order its blocks are stored: four or fewer of i, f, g, o,
/// each at most once, with Keras' `c` and TensorFlow 1's `j` accepted for `g`.
///
/// The letters are kept as written, because per-gate key patterns substitute them
/// (`Wc`, not `Wg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateOrder {
    letters: Vec<char>,
    gates: Vec<Gate>,
}

impl GateOrder {
    /// The gates in storage order.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The letters as written (`c` stays `c`), in storage order.
    pub fn letters(&self) -> &[char] {
        &self.letters
    }

    /// Number of gate blocks.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// Whether there is no gate (never true of a parsed order).
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// The storage positions of the gates in PyTorch's order (i, f, g, o, skipping absent
    /// gates): the blocks to take, one after another, to get PyTorch's layout.
    pub fn pytorch_positions(&self) -> Vec<usize> {
        Gate::ALL
            .iter()
            .filter_map(|gate| self.gates.iter().position(|g| g == gate))
            .collect()
    }
}

impl FromStr for GateOrder {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::Config {
            option: "gates".into(),
            reason,
        };
        let mut letters = Vec::new();
        let mut gates: Vec<Gate> = Vec::new();
        for letter in text.chars() {
            let gate = match letter {
                'i' => Gate::Input,
                'f' => Gate::Forget,
                'g' | 'c' | 'j' => Gate::Cell,
                'o' => Gate::Output,
                other => {
                    return Err(invalid(format!(
                        "`{text}` has `{other}`; expected letters from i, f, g, o (c or j for g)"
                    )));
                }
            };
            if gates.contains(&gate) {
                return Err(invalid(format!(
                    "`{text}` names gate `{}` twice",
                    gate.letter()
                )));
            }
            letters.push(letter);
            gates.push(gate);
        }
        if gates.is_empty() {
            return Err(invalid(
                "no gate given; expected up to four letters from i, f, g, o".into(),
            ));
        }
        Ok(GateOrder { letters, gates })
    }
}

impl fmt::Display for GateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.letters
            .iter()
            .try_for_each(|letter| write!(f, "{letter}"))
    }
}

/// Which columns come first in a matrix over the concatenated input and hidden state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Columns {
    /// `cat([x, h])`: the input's columns, then the hidden state's (TF1, seed-style PyTorch).
    InputHidden,
    /// `cat([h, x])`: the hidden state's columns first.
    HiddenInput,
}

impl FromStr for Columns {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "x,h" => Ok(Columns::InputHidden),
            "h,x" => Ok(Columns::HiddenInput),
            other => Err(Error::Config {
                option: "columns".into(),
                reason: format!("`{other}`; expected `x,h` or `h,x`"),
            }),
        }
    }
}

impl fmt::Display for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Columns::InputHidden => "x,h",
            Columns::HiddenInput => "h,x",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parse_with_aliases_for_the_candidate() {
        let order: GateOrder = "ijfo".parse().unwrap();
        assert_eq!(
            order.gates(),
            [Gate::Input, Gate::Cell, Gate::Forget, Gate::Output]
        );
        assert_eq!(order.letters(), ['i', 'j', 'f', 'o']);
        assert_eq!(order.pytorch_positions(), [0, 2, 1, 3]);
        let seed_000: GateOrder = "ifog".parse().unwrap();
        assert_eq!(seed_000.pytorch_positions(), [0, 1, 3, 2]);
        let cifg: GateOrder = "ogf".parse().unwrap();
        assert_eq!(cifg.pytorch_positions(), [2, 1, 0]);
        assert_eq!(cifg.to_string(), "ogf");
    }

    #[test]
    fn bad_orders_say_what_is_wrong() {
        let err = "ifgc".parse::<GateOrder>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `gates`: `ifgc` names gate `g` twice"
        );
        let err = "ifxo".parse::<GateOrder>().unwrap_err();
        assert!(err.to_string().contains("has `x`"), "{err}");
        assert!("".parse::<GateOrder>().is_err());
        assert!("ifgoi".parse::<GateOrder>().is_err());
    }

    #[test]
    fn columns_parse_both_orders_only() {
        assert_eq!("x,h".parse::<Columns>().unwrap(), Columns::InputHidden);
        assert_eq!("h,x".parse::<Columns>().unwrap(), Columns::HiddenInput);
        assert!("x, h".parse::<Columns>().is_err());
        assert_eq!(Columns::HiddenInput.to_string(), "h,x");
    }
}
