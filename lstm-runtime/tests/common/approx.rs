//! Comparisons to 1e-12 for results the same arithmetic produces along different paths: the
//! GEMM kernels may round differently for operands in other allocations (alignment decides
//! their blocking), so two equal computations can differ in the last bit.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use ndarray::ArrayViewD;

use lstm_runtime::{LstmGradients, LstmOutput};

/// Same shape and every value within 1e-12.
pub fn close(a: ArrayViewD<'_, f64>, b: ArrayViewD<'_, f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-12)
}

/// Every part of two outputs close, and present in both or neither.
pub fn outputs_close(a: &LstmOutput<f64>, b: &LstmOutput<f64>) -> bool {
    let both = |x: Option<ArrayViewD<'_, f64>>, y: Option<ArrayViewD<'_, f64>>| match (x, y) {
        (Some(x), Some(y)) => close(x, y),
        (None, None) => true,
        _ => false,
    };
    close(a.output.view(), b.output.view())
        && both(
            a.output_reverse.as_ref().map(|o| o.view()),
            b.output_reverse.as_ref().map(|o| o.view()),
        )
        && both(
            a.h_n.as_ref().map(|h| h.view().into_dyn()),
            b.h_n.as_ref().map(|h| h.view().into_dyn()),
        )
        && both(
            a.c_n.as_ref().map(|c| c.view().into_dyn()),
            b.c_n.as_ref().map(|c| c.view().into_dyn()),
        )
}

/// Every gradient of two backward passes close, under the same names.
pub fn gradients_close(a: &LstmGradients<f64>, b: &LstmGradients<f64>) -> bool {
    a.params.len() == b.params.len()
        && a.params.iter().all(|(name, values)| {
            b.params
                .get(name)
                .is_some_and(|other| close(values.view(), other.view()))
        })
        && close(a.input.view().into_dyn(), b.input.view().into_dyn())
        && close(a.h0.view().into_dyn(), b.h0.view().into_dyn())
        && close(a.c0.view().into_dyn(), b.c0.view().into_dyn())
}
