use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + gain))]
pub struct Cell {
    gain: Gates,
}

fn main() {}
