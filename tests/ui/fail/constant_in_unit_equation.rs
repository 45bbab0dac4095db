use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + context))]
pub struct Cell {
    context: Constant,
}

fn main() {}
