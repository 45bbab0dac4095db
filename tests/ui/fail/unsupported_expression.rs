use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(if true { z_f } else { z_i }))]
pub struct Cell;

fn main() {}
