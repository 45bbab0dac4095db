//! A coupled-gate cell computes no input gate: its weights have three gate blocks.
use lstm::{Cell, Gate, lstm_cell};

#[lstm_cell(i = 1.0 - f)]
pub struct Coupled;

fn main() {
    let mut rng = rand::rng();
    let cell = Coupled::<f32>::new(5, 7, &mut rng);
    assert_eq!(cell.weight_ih.dim(), (21, 5));
    assert_eq!(cell.weight_hh.dim(), (21, 7));
    assert_eq!(Coupled::<f32>::SPEC.gates, &[Gate::Forget, Gate::Cell, Gate::Output]);
}
