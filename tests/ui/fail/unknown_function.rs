use lstm::lstm_cell;

#[lstm_cell(f = sigmod(z_f))]
pub struct Cell;

fn main() {}
