use lstm::lstm_cell;

#[lstm_cell(i = 0.5, f = sigmoid(c_prev), g = c_prev, o = 0.5)]
pub struct Cell;

fn main() {}
