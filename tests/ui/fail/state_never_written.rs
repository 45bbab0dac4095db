use lstm::lstm_cell;

// A normaliser declared but never given an equation.
#[lstm_cell(h = o * c / n_prev)]
pub struct Cell {
    n: State,
}

fn main() {}
