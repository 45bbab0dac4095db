use lstm::lstm_cell;

// A GRU-like cell whose `c` nothing reads: an h-only cell leaves `c` out.
#[lstm_cell(c = c_prev, h = (1.0 - f) * g + f * h_prev)]
pub struct Cell;

fn main() {}
