use lstm::lstm_cell;

#[lstm_cell(q = sigmoid(z_f))]
pub struct Cell;

fn main() {}
