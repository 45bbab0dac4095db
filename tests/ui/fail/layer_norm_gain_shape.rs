use lstm::lstm_cell;

#[lstm_cell(h = o * tanh(layer_norm(c, gain)))]
pub struct Cell {
    gain: Gates,
}

fn main() {}
