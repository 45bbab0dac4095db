use lstm::lstm_cell;

#[lstm_cell(i = 1.0 - f, f = 1.0 - i)]
pub struct Cell;

fn main() {}
