use lstm::lstm_cell;

// The new `n` is computed from `i`, which reads the new `n`: `n_prev` was meant.
#[lstm_cell(i = sigmoid(z_i) / n, n = n_prev + i, h = o * tanh(c) / n)]
pub struct Cell {
    n: State,
}

fn main() {}
