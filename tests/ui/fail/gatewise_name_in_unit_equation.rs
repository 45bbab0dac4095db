use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(zx))]
pub struct Cell;

fn main() {}
