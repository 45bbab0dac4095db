//! Parity with PyTorch: every `pytorch_*` and `cell_*` fixture (written by
//! `scripts/fixtures.py` with `nn.LSTM` itself, or with the reference loop it checks against
//! `nn.LSTM`; `cell_gru*` by `torch.nn.GRU` itself; `cell_slstm*`, `cell_lstm_heads`,
//! `cell_lstm_diagonal` by the headed loop, checked against the unstabilised sLSTM and against
//! `nn.LSTM` on the dense block-diagonal `weight_hh`) run through `Lstm` — output, `h_n`, `c_n`
//! (and the sLSTM's `n_n`, `m_n`) and all gradients, 1e-5 relative in f64 and 1e-4 in f32.

mod common;

use common::fixtures::all_cases;
use common::parity::check_case;

/// One test per case, named after it.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                check_case(stringify!($case));
            }
        )*

        /// Every PyTorch-semantics fixture on disk has a test above.
        #[test]
        fn every_pytorch_fixture_is_checked() {
            let checked = [$(stringify!($case)),*];
            for name in all_cases() {
                if name.starts_with("pytorch_") || name.starts_with("cell_") {
                    assert!(checked.contains(&name.as_str()), "fixture {name} has no test");
                }
            }
        }
    };
}

cases!(
    pytorch_lstm,
    pytorch_lstm_f32,
    pytorch_stacked,
    pytorch_bidirectional,
    pytorch_lengths,
    pytorch_batch_first,
    pytorch_proj,
    pytorch_no_bias,
    pytorch_initial_state,
    pytorch_stacked_bidirectional_lengths,
    pytorch_bidirectional_lengths_f32,
    cell_forget_bias,
    cell_scaled_forget,
    cell_peephole,
    cell_cifg,
    cell_hard_sigmoid,
    cell_peephole_stacked_bidirectional,
    cell_cifg_bidirectional,
    cell_forget_bias_f32,
    cell_layer_norm,
    cell_layer_norm_bidirectional,
    cell_gru,
    cell_gru_f32,
    cell_gru_stacked_bidirectional,
    cell_janet,
    cell_janet_stacked_bidirectional,
    cell_slstm,
    cell_slstm_heads,
    cell_slstm_stacked_bidirectional,
    cell_slstm_f32,
    cell_slstm_initial_state,
    cell_lstm_heads,
    cell_lstm_diagonal,
);
