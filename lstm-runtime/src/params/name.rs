//! The names of a layer's tensors, PyTorch's `state_dict` names of `nn.LSTM` extended to
//! custom cells: `{param}_l{layer}`, plus `_reverse` in the reverse direction
//! (`weight_ih_l0`, `bias_hh_l1_reverse`, `weight_hr_l0`, `forget_bias_l0`).
//!
//! [`ParamName`] is the one place that builds and parses them: the layer names its tensors
//! with it, the regularizers read a tensor's role off it, and the PyTorch and Keras layouts
//! (`io/`) map file keys through it.

use std::fmt;

use crate::direction::Direction;

/// What PyTorch appends to the reverse direction's tensors.
const REVERSE: &str = "_reverse";

/// One tensor's name in PyTorch's layout: `{param}_l{layer}[_reverse]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamName {
    /// The tensor within its cell: `weight_ih`, `bias_hh`, `weight_hr`, `forget_bias`.
    pub param: String,
    /// The layer, counting from the input: PyTorch's `l{k}`.
    pub layer: usize,
    /// The direction of a bidirectional layer it belongs to (`_reverse` for the reverse).
    pub direction: Direction,
}

impl ParamName {
    /// The name of `param` in `layer` and `direction`.
    pub fn new(param: impl Into<String>, layer: usize, direction: Direction) -> Self {
        ParamName {
            param: param.into(),
            layer,
            direction,
        }
    }

    /// Parses `weight_ih_l0`, `peephole_i_l1_reverse`; `None` for a name without a layer
    /// suffix.
    pub fn parse(key: &str) -> Option<Self> {
        let (rest, direction) = match key.strip_suffix(REVERSE) {
            Some(rest) => (rest, Direction::Reverse),
            None => (key, Direction::Forward),
        };
        let (param, layer) = rest.rsplit_once("_l")?;
        let all_digits = !layer.is_empty() && layer.bytes().all(|b| b.is_ascii_digit());
        if param.is_empty() || !all_digits {
            return None;
        }
        Some(ParamName::new(param, layer.parse().ok()?, direction))
    }

    /// What every tensor name of (`layer`, `direction`) ends with: `_l{layer}`, plus
    /// `_reverse` in the reverse direction.
    pub fn suffix(layer: usize, direction: Direction) -> String {
        match direction {
            Direction::Forward => format!("_l{layer}"),
            Direction::Reverse => format!("_l{layer}{REVERSE}"),
        }
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.param,
            ParamName::suffix(self.layer, self.direction)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_format() {
        for key in [
            "weight_ih_l0",
            "bias_hh_l1_reverse",
            "weight_hr_l12",
            "peephole_i_l0_reverse",
            "gamma_x_l3",
        ] {
            let name = ParamName::parse(key).unwrap();
            assert_eq!(name.to_string(), key);
        }
        assert_eq!(
            ParamName::parse("peephole_i_l0_reverse"),
            Some(ParamName::new("peephole_i", 0, Direction::Reverse))
        );
        for bad in [
            "weight_ih",
            "weight_ih_l",
            "weight_ih_lx",
            "_l0",
            "kernel",
            "l0",
        ] {
            assert_eq!(ParamName::parse(bad), None, "{bad}");
        }
        assert_eq!(ParamName::suffix(1, Direction::Reverse), "_l1_reverse");
    }
}
