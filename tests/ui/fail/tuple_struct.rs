use lstm::lstm_cell;

#[lstm_cell]
pub struct Cell(PerUnit);

fn main() {}
