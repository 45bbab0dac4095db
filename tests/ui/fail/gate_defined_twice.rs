use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f), f = sigmoid(2.0 * z_f))]
pub struct Cell;

fn main() {}
