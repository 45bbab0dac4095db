//! The element types a cell computes in (`f32`, `f64`) and the scalar functions the spec
//! language offers, in one trait so generated code is generic over precision.
//!
//! Generated steps never call `f32`/`f64` methods directly: they go through [`crate::ops`],
//! which forwards here, so a faster (vectorisable) implementation can replace any function
//! without touching the macro.

use std::fmt::{Debug, Display};
use std::iter::Sum;

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::{Float as NumFloat, FromPrimitive, NumAssign};

/// A floating-point element type for weights, activations and gradients.
///
/// Implemented for `f32` and `f64`. Gradient checks run in `f64`; training usually in `f32`.
///
/// The trait is sealed: the matrix products ([`crate::linalg`]) run on the `gemm` crate, which
/// has kernels for exactly these two real types, so no other type could be multiplied.
pub trait Float:
    sealed::Sealed
    + NumFloat
    + NumAssign
    + FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + Sum
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// Name of the type as numpy and safetensors spell it (`"f32"` / `"f64"`).
    const DTYPE: &'static str;

    /// Converts an `f64` (a literal from a spec, an init bound) to this type.
    fn of(x: f64) -> Self;

    /// Converts to `f64` (for reports and reference comparisons).
    fn to_f64_lossy(self) -> f64;
}

mod sealed {
    /// Restricts [`super::Float`] to the types the GEMM backend supports.
    pub trait Sealed {}

    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Float for f32 {
    const DTYPE: &'static str = "f32";

    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }

    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const DTYPE: &'static str = "f64";

    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }

    #[inline(always)]
    fn to_f64_lossy(self) -> f64 {
        self
    }
}
