//! Off x86_64 there are no packed kernels: [`Panels`] cannot be made, and every step product
//! runs on the `gemm` crate.

use std::ops::Range;

/// Depth of one pass of the packed kernels (none here).
pub(super) const DEPTH_PER_PASS: usize = 0;

/// Always `false`: no kernels for this architecture.
pub(crate) fn one_row_sums_in_order() -> bool {
    false
}

/// Always `false`: no kernels for this architecture.
pub(crate) fn sums_in_order() -> bool {
    false
}

/// Never constructed off x86_64.
pub(crate) enum Panels {}

impl Panels {
    /// Always `None`: no kernels for this architecture.
    pub(crate) fn transposed(_w: &[f32], _n: usize, _k: usize) -> Option<Self> {
        None
    }

    /// Always `None`: no kernels for this architecture.
    pub(crate) fn plain(_w: &[f32], _k: usize, _n: usize) -> Option<Self> {
        None
    }

    pub(crate) fn depth(&self) -> usize {
        match *self {}
    }

    pub(crate) fn width(&self) -> usize {
        match *self {}
    }

    pub(crate) fn panel_count(&self) -> usize {
        match *self {}
    }

    /// # Safety
    ///
    /// Unreachable: no value exists.
    pub(crate) unsafe fn product(
        &self,
        _: &[f32],
        _: usize,
        _: *mut f32,
        _: bool,
        _: (Range<usize>, bool),
    ) {
        match *self {}
    }
}
