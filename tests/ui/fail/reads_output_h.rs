use lstm::lstm_cell;

#[lstm_cell(o = sigmoid(z_o + h))]
pub struct Cell;

fn main() {}
