use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + forget_bias))]
pub struct Cell {
    forget_bias: PerUnit,
    unused_scale: Scalar,
}

fn main() {}
