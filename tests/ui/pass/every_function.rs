//! Every function and operator of the spec language, scalar parameters, h_prev, a gate-wise
//! `z` override and an explicit runtime crate path.
use lstm::{Cell, lstm_cell};

#[lstm_cell(
    crate = "::lstm",
    z = z + alpha * h_prev,
    i = hard_sigmoid_keras2(z_i) * clip(exp(-relu(z_f)), 0.0, 1.0),
    f = max(min(sigmoid(z_f), 0.99), 0.01),
    g = softsign(z_g) / (1.0 + exp(beta)),
    o = hard_sigmoid(-z_o) * exp(logsigmoid(z_o)) + stop_gradient(silu(z_o)) * 0.01,
    c = f * c_prev + i * g * pow(sqrt(abs(softplus(z_g)) + 1.0), -1.5) + 0.1 * log(1.0 + gelu(z_g) * gelu(z_g)),
    h = o * tanh(c) + elu(c) * 0.1 + elu(c, beta) * 0.1
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
