use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_x))]
pub struct Cell;

fn main() {}
