//! The layer-norm LSTM of Ba et al. (2016) as haste's LayerNormLSTM defines it, in a few
//! lines: normalised input and recurrent projections, normalised cell state inside h.
use lstm::{Cell, CellDims, lstm_cell};
use rand::SeedableRng;

#[lstm_cell(
    zx = layer_norm(zx, gamma_x),
    zh = layer_norm(zh, gamma_h),
    h = o * tanh(layer_norm(c, gamma_c, beta_c))
)]
pub struct LayerNormLstm {
    #[init(ones)]
    gamma_x: Gates,
    #[init(ones)]
    gamma_h: Gates,
    #[init(ones)]
    gamma_c: PerUnit,
    #[init(zeros)]
    beta_c: PerUnit,
}

fn main() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let cell = LayerNormLstm::<f64>::init(CellDims::new(3, 4), &mut rng);
    assert_eq!(cell.gamma_x.len(), 16);
    assert_eq!(cell.gamma_c.len(), 4);
    assert!(!LayerNormLstm::<f32>::SPEC.shared_preactivation_grad);
    assert!(LayerNormLstm::<f32>::SPEC.cache.per_row > 0);
}
