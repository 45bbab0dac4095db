//! Every function and operator of the spec language, scalar parameters, h_prev, a gate-wise
//! `z` override and an explicit runtime crate path.
use lstm::{Cell, lstm_cell};

#[lstm_cell(
    crate = "::lstm",
    z = z + alpha * h_prev,
    i = hard_sigmoid_keras2(z_i) * clip(exp(-relu(z_f)), 0.0, 1.0),
    f = max(min(sigmoid(z_f), 0.99), 0.01),
    g = softsign(z_g) / (1.0 + exp(beta)),
    o = hard_sigmoid(-z_o)
)]
pub struct Everything {
    #[init(constant(0.5))]
    alpha: Scalar,
    #[init(uniform(-0.1, 0.1))]
    beta: Scalar,
}

fn main() {
    assert!(Everything::<f64>::SPEC.reads_h_prev);
    assert_eq!(Everything::<f64>::SPEC.params.len(), 2);
    assert_eq!(Everything::<f64>::SPEC.name, "everything");
}
