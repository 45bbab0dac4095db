use lstm::lstm_cell;

#[lstm_cell(z = z + first + second)]
pub struct Cell {
    first: Constant,
    second: Constant,
}

fn main() {}
