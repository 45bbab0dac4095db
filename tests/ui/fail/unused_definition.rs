use lstm::lstm_cell;

#[lstm_cell(c = f * c_prev + (1.0 - f) * g, i = sigmoid(2.0 * z_i))]
pub struct Cell;

fn main() {}
