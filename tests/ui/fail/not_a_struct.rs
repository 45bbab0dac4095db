use lstm::lstm_cell;

#[lstm_cell]
pub enum Cell {
    A,
}

fn main() {}
