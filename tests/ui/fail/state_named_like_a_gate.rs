use lstm::lstm_cell;

#[lstm_cell(g = tanh(z_g) + g_prev)]
pub struct Cell {
    g: State,
}

fn main() {}
