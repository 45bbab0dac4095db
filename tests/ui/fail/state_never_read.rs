use lstm::lstm_cell;

// `n` is carried from step to step, but nothing ever reads it.
#[lstm_cell(n = f * c_prev)]
pub struct Cell {
    n: State,
}

fn main() {}
