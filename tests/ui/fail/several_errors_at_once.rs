use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_q), g = tanhh(z_g), o = clip(z_o))]
pub struct Cell;

fn main() {}
