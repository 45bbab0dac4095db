use lstm::lstm_cell;

#[lstm_cell(g = pow(tanh(z_g), alpha))]
pub struct Cell {
    alpha: Scalar,
}

fn main() {}
