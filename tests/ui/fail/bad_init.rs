use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + forget_bias))]
pub struct Cell {
    #[init(gaussian)]
    forget_bias: PerUnit,
}

fn main() {}
