use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f % 2.0))]
pub struct Cell;

fn main() {}
