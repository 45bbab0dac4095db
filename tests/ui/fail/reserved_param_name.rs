use lstm::lstm_cell;

#[lstm_cell(f = sigmoid(z_f + c_prev_scale * c_prev))]
pub struct Cell {
    c_prev: PerUnit,
    c_prev_scale: PerUnit,
}

fn main() {}
