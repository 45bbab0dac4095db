use lstm::lstm_cell;

#[lstm_cell(i = sigmoid(z_i + c))]
pub struct Cell;

fn main() {}
