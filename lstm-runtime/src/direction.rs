//! [`Direction`]: which way a pass of a layer walks time. A unidirectional layer walks each
//! sequence forward; a bidirectional one walks it a second time in reverse, with cells of its
//! own. The time loops (`recurrence/`) walk by it, and parameter names (`params/name.rs`)
//! carry it as PyTorch's `_reverse`.

/// The direction of one pass over a sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Steps `t = 0, 1, …, T−1`: a unidirectional layer, and the first direction of a
    /// bidirectional one.
    #[default]
    Forward,
    /// Steps `t = T−1, …, 0`: the second direction of a bidirectional layer (PyTorch's
    /// `_reverse` tensors, Keras' `backward_layer`).
    Reverse,
}

impl Direction {
    /// Both directions, in PyTorch's order: forward, then reverse.
    pub const BOTH: [Direction; 2] = [Direction::Forward, Direction::Reverse];

    /// The direction's place among a layer's directions: 0 forward, 1 reverse (PyTorch's
    /// order of `h_n`, `c_n` and the weights).
    pub fn index(self) -> usize {
        match self {
            Direction::Forward => 0,
            Direction::Reverse => 1,
        }
    }

    /// The direction at place `index` (0 or 1) among a layer's directions, the inverse of
    /// [`Direction::index`].
    pub fn at(index: usize) -> Direction {
        if index == 0 {
            Direction::Forward
        } else {
            Direction::Reverse
        }
    }

    /// The time index of the `s`-th step of a walk over `len` steps in this direction. The
    /// map is its own inverse: it also gives the walk position of time index `s`.
    pub fn time_of(self, s: usize, len: usize) -> usize {
        match self {
            Direction::Forward => s,
            Direction::Reverse => len - 1 - s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_walks_back_and_inverts_itself() {
        let walk: Vec<usize> = (0..4).map(|s| Direction::Reverse.time_of(s, 4)).collect();
        assert_eq!(walk, [3, 2, 1, 0]);
        assert_eq!(Direction::Forward.time_of(2, 4), 2);
        for direction in Direction::BOTH {
            assert_eq!(Direction::at(direction.index()), direction);
            assert_eq!(direction.time_of(direction.time_of(1, 5), 5), 1);
        }
    }
}
