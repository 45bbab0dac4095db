use lstm::lstm_cell;

#[lstm_cell(f = clip(z_f, 0.0))]
pub struct Cell;

fn main() {}
