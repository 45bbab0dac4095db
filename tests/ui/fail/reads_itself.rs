use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f) * f)]
pub struct Cell;

fn main() {}
