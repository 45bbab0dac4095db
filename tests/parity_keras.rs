//! Parity with Keras 3: every `keras_*` fixture (written by `scripts/fixtures.py` with Keras'
//! own `LSTM` and `Bidirectional`) loaded from its Keras-named weights and run through
//! `Lstm` with Keras' semantics (masks, `go_backwards`, merge modes, `return_sequences`) —
//! output, `h_n`, `c_n` and all gradients, 1e-5 relative in f64 and 1e-4 in f32.

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

        /// Every Keras fixture on disk has a test above.
        #[test]
        fn every_keras_fixture_is_checked() {
            let checked = [$(stringify!($case)),*];
            for name in all_cases() {
                if name.starts_with("keras_") {
                    assert!(checked.contains(&name.as_str()), "fixture {name} has no test");
                }
            }
        }
    };
}

cases!(
    keras_lstm,
    keras_mask,
    keras_mask_zero_output,
    keras_go_backwards,
    keras_bidirectional_concat,
    keras_bidirectional_sum,
    keras_bidirectional_ave,
    keras_bidirectional_mul,
    keras_bidirectional_none,
    keras_bidirectional_mask,
    keras_last_output,
    keras_bidirectional_last_output,
    keras_unit_forget_bias,
    keras_hard_sigmoid,
    keras_no_bias,
    keras_stacked,
    keras_initial_state,
    keras_mask_f32,
    keras_from_pytorch,
);
