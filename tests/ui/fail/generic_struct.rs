use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + alpha))]
pub struct Cell<T> {
    alpha: PerUnit,
}

fn main() {}
