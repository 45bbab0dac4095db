use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + forget_bias))]
pub struct Cell {
    #[init(uniform(1.0, -1.0))]
    forget_bias: PerUnit,
}

fn main() {}
