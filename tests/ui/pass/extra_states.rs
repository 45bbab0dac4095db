//! A cell with a state of its own besides `c` (a running mean of `h`), and an h-only cell:
//! the carried states are `c` then the declared ones, and none for the h-only cell.
use lstm::{Cell, lstm_cell};

#[lstm_cell(
    a = 0.9 * a_prev + 0.1 * o * tanh(c),
    h = o * tanh(c) - a_prev
)]
pub struct Centred {
    /// The running mean of the cell's output.
    a: State,
}

#[lstm_cell(h = (1.0 - f) * g + f * h_prev)]
pub struct HOnly;

fn main() {
    assert_eq!(Centred::<f32>::SPEC.states, &["c", "a"]);
    assert_eq!(HOnly::<f32>::SPEC.states, &[] as &[&str]);
    assert!(!HOnly::<f32>::SPEC.carries_cell_state());
}
