use lstm::lstm_cell;

// States start from zeros or the call's initial state, not from an init.
#[lstm_cell(n = f * n_prev + i, h = o * c / n)]
pub struct Cell {
    #[init(ones)]
    n: State,
}

fn main() {}
