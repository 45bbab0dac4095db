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

    /// `e^x` as the spec's `exp`: for `f32` a branch-free polynomial the compiler vectorises
    /// (within 2 ulp of the correctly rounded result), for `f64` the standard library's.
    fn exp_fused(self) -> Self;

    /// `tanh x` as the spec's `tanh`: branch-free and vectorisable for `f32`, the standard
    /// library's for `f64`.
    fn tanh_fused(self) -> Self;

    /// `ln(1 + x)` for `x > −1` as the spec's `logsigmoid` and `softplus` use it:
    /// branch-free and vectorisable for `f32`, the standard library's for `f64`.
    fn ln_1p_fused(self) -> Self;

    /// [`Self::ln_1p_fused`] by fused multiply-adds, as [`Self::exp_fma`].
    #[doc(hidden)]
    #[inline(always)]
    fn ln_1p_fma(self) -> Self {
        self.ln_1p_fused()
    }

    /// `1 / (1 + e^-x)` as the spec's `sigmoid`.
    #[inline(always)]
    fn sigmoid_fused(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_fused())
    }

    /// [`Self::exp_fused`] with its polynomial evaluated by fused multiply-adds: for generated
    /// kernels compiled for FMA (in code without FMA each `mul_add` is a library call).
    #[doc(hidden)]
    #[inline(always)]
    fn exp_fma(self) -> Self {
        self.exp_fused()
    }

    /// [`Self::tanh_fused`] by fused multiply-adds, as [`Self::exp_fma`].
    #[doc(hidden)]
    #[inline(always)]
    fn tanh_fma(self) -> Self {
        self.tanh_fused()
    }

    /// [`Self::sigmoid_fused`] by fused multiply-adds, as [`Self::exp_fma`].
    #[doc(hidden)]
    #[inline(always)]
    fn sigmoid_fma(self) -> Self {
        Self::one() / (Self::one() + (-self).exp_fma())
    }
}

#[cfg(test)]
mod tests {
    use super::Float;

    /// Every `step`-th f32 in `[lo, hi]`, and the edges.
    fn grid(lo: f32, hi: f32, count: usize) -> impl Iterator<Item = f32> {
        (0..=count).map(move |k| lo + (hi - lo) * k as f32 / count as f32)
    }

    /// The plain and the fused (FMA) variants of each function, as the kernels call them.
    type Variants = [(&'static str, fn(f32) -> f32); 2];

    const EXP: Variants = [("exp_fused", f32::exp_fused), ("exp_fma", f32::exp_fma)];
    const TANH: Variants = [("tanh_fused", f32::tanh_fused), ("tanh_fma", f32::tanh_fma)];
    const SIGMOID: Variants = [
        ("sigmoid_fused", f32::sigmoid_fused),
        ("sigmoid_fma", f32::sigmoid_fma),
    ];

    #[test]
    fn f32_ln_1p_is_within_three_ulp_of_the_f64_result() {
        let variants: Variants = [
            ("ln_1p_fused", f32::ln_1p_fused),
            ("ln_1p_fma", f32::ln_1p_fma),
        ];
        for (name, ln_1p) in variants {
            let tiny = (0..200).map(|k| 1e-30f32 * 1.5f32.powi(k));
            let points = grid(0.0, 1.0, 400_000)
                .chain(grid(-0.999, 0.0, 100_000))
                .chain(grid(1.0, 1e9, 100_000))
                .chain(tiny);
            for y in points {
                let exact = f64::from(y).ln_1p();
                let found = f64::from(ln_1p(y));
                let ulp = f64::from(f32::EPSILON) * exact.abs();
                assert!(
                    (found - exact).abs() <= 3.0 * ulp + 1e-45,
                    "{name}({y}) = {found}, exact {exact}"
                );
            }
        }
    }

    #[test]
    fn f32_exp_is_within_two_ulp_of_the_f64_result() {
        for (name, exp) in EXP {
            for x in grid(-87.0, 88.0, 400_000) {
                let exact = f64::from(x).exp();
                let found = f64::from(exp(x));
                let ulp = f64::from(f32::EPSILON) * exact;
                assert!(
                    (found - exact).abs() <= 2.0 * ulp,
                    "{name}({x}) = {found}, exact {exact}"
                );
            }
            assert!(exp(100.0).is_finite() && exp(-100.0) >= 0.0, "{name}");
        }
    }

    #[test]
    fn f32_tanh_and_sigmoid_match_f64_closely() {
        for ((name, tanh_of), (sigmoid_name, sigmoid_of)) in TANH.into_iter().zip(SIGMOID) {
            for x in grid(-20.0, 20.0, 400_000).chain(grid(-1e-3, 1e-3, 1000)) {
                let tanh = f64::from(x).tanh();
                let found = f64::from(tanh_of(x));
                assert!(
                    (found - tanh).abs()
                        <= 2.5 * f64::from(f32::EPSILON) * tanh.abs().max(1e-30) + 1e-45
                        || (found - tanh).abs() <= 1.5e-7,
                    "{name}({x}) = {found}, exact {tanh}"
                );
                let sigmoid = 1.0 / (1.0 + (-f64::from(x)).exp());
                let found = f64::from(sigmoid_of(x));
                assert!(
                    (found - sigmoid).abs() <= 2e-7,
                    "{sigmoid_name}({x}) = {found}, exact {sigmoid}"
                );
            }
            assert_eq!(tanh_of(0.0), 0.0, "{name}");
            assert_eq!(tanh_of(50.0), 1.0, "{name}");
            assert_eq!(tanh_of(-50.0), -1.0, "{name}");
        }
    }

    /// The fused variants as the AVX2 and AVX-512 kernels run them: compiled for FMA, where
    /// `mul_add` is one instruction rather than a library call, and vectorised 8 or 16 lanes
    /// wide. Same results as the library's `fmaf`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fused_variants_compiled_for_fma_match_the_portable_ones() {
        #[target_feature(enable = "avx2,fma")]
        fn fma_kernel(xs: &[f32], out: &mut [f32]) {
            for (y, &x) in out.iter_mut().zip(xs) {
                *y = x.exp_fma() + x.tanh_fma() + x.sigmoid_fma();
            }
        }
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
        fn avx512_kernel(xs: &[f32], out: &mut [f32]) {
            for (y, &x) in out.iter_mut().zip(xs) {
                *y = x.exp_fma() + x.tanh_fma() + x.sigmoid_fma();
            }
        }
        use crate::isa::Isa;
        let xs: Vec<f32> = grid(-30.0, 30.0, 100_000).collect();
        let check = |out: &[f32], level: Isa| {
            for (&x, &y) in xs.iter().zip(out) {
                let portable = x.exp_fma() + x.tanh_fma() + x.sigmoid_fma();
                assert_eq!(y.to_bits(), portable.to_bits(), "{level} at {x}");
            }
        };
        let mut out = vec![0.0; xs.len()];
        if Isa::Avx2.supported() {
            // SAFETY: the CPU has AVX2 and FMA, checked above.
            unsafe { fma_kernel(&xs, &mut out) };
            check(&out, Isa::Avx2);
        } else {
            eprintln!("skipped: this CPU has no AVX2 and FMA");
        }
        if Isa::Avx512.supported() {
            // SAFETY: the CPU has AVX-512, checked above.
            unsafe { avx512_kernel(&xs, &mut out) };
            check(&out, Isa::Avx512);
        } else {
            eprintln!("skipped: this CPU has no AVX-512");
        }
    }
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

    #[inline(always)]
    fn exp_fused(self) -> Self {
        fast_f32::exp::<false>(self)
    }

    #[inline(always)]
    fn tanh_fused(self) -> Self {
        fast_f32::tanh::<false>(self)
    }

    #[inline(always)]
    fn exp_fma(self) -> Self {
        fast_f32::exp::<true>(self)
    }

    #[inline(always)]
    fn ln_1p_fused(self) -> Self {
        fast_f32::ln_1p::<false>(self)
    }

    #[inline(always)]
    fn ln_1p_fma(self) -> Self {
        fast_f32::ln_1p::<true>(self)
    }

    #[inline(always)]
    fn tanh_fma(self) -> Self {
        fast_f32::tanh::<true>(self)
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

    #[inline(always)]
    fn exp_fused(self) -> Self {
        self.exp()
    }

    #[inline(always)]
    fn tanh_fused(self) -> Self {
        self.tanh()
    }

    #[inline(always)]
    fn ln_1p_fused(self) -> Self {
        self.ln_1p()
    }
}

/// `exp`, `tanh` and `ln_1p` for `f32` from arithmetic, comparisons and bit casts only, so
/// that a loop calling them vectorises (libm's `expf`/`tanhf`/`log1pf` are opaque calls, one
/// element at a time). `ln` is Cephes' `logf`: the mantissa in `[√½, √2)` and a degree-8
/// polynomial; `ln_1p(y)` corrects `ln(1 + y)` for the rounding of `1 + y`
/// (`ln(u) · y / (u − 1)`, Goldberg's trick), which keeps its relative precision for tiny `y`.
/// `exp` is Cephes' (S. Moshier): range reduction by `ln 2` and a degree-5 polynomial.
/// `tanh |x|` is `m / (m + 2)` with `m = e^{2|x|} − 1` computed as `2^n (e^r − 1) + (2^n − 1)`
/// after the same reduction, `e^r − 1` by its Taylor polynomial: one formula over the whole
/// range that keeps the relative precision near zero, where `1 − 2/(e^{2|x|} + 1)` cancels.
/// (Cephes' `tanh` needs an odd polynomial near zero besides that formula; computing both
/// branches and selecting, as vectorised code must, cost 1.6× as much: 24 against 15 cycles
/// per 8 values here. This one stays within 1.6 ε of the f64 result on a dense grid.)
///
/// With `FMA` the polynomials and the reduction run on fused multiply-adds: shorter dependency
/// chains and fewer instructions where the caller is compiled for FMA (a generated kernel's
/// AVX2 variant), one rounding less per step; elsewhere `FMA = false` keeps plain products.
// The coefficients are written as Cephes publishes them; they round to the same f32 values.
#[allow(clippy::excessive_precision)]
mod fast_f32 {
    /// `1.5 · 2^23`: adding it rounds an `f32` of magnitude < 2^22 to an integer, which then
    /// sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;

    #[inline(always)]
    fn select(condition: bool, yes: f32, no: f32) -> f32 {
        if condition { yes } else { no }
    }

    /// `a · b + c`, fused when `FMA`.
    #[inline(always)]
    fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
        if FMA { a.mul_add(b, c) } else { a * b + c }
    }

    /// `(r, 2^n)` with `x = n·ln 2 + r`, `n` the integer nearest `x / ln 2`, `|r| ≤ ln 2 / 2`:
    /// `e^x = 2^n · e^r`. `x` keeps `2^n` a normal f32 (the callers clamp it).
    #[inline(always)]
    fn reduce<const FMA: bool>(x: f32) -> (f32, f32) {
        let shifted = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
        let n = shifted - ROUND;
        // x − n·ln 2 in two parts (Cody–Waite), so the reduction loses no precision.
        let r = if FMA {
            n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x))
        } else {
            x - n * 0.693_359_4 - n * -2.121_944_4e-4
        };
        // 2^n from n's integer value in `shifted`'s low bits.
        let n_int = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
        (r, f32::from_bits(((n_int + 127) << 23) as u32))
    }

    #[inline(always)]
    pub fn exp<const FMA: bool>(x: f32) -> f32 {
        // Beyond these bounds e^x is not a normal f32; clamping keeps 2^n representable.
        let x = select(x > 88.376_26, 88.376_26, x);
        let x = select(x < -87.336_55, -87.336_55, x);
        let (r, scale) = reduce::<FMA>(x);
        let p = 1.987_569_1e-4;
        let p = madd::<FMA>(p, r, 1.398_199_9e-3);
        let p = madd::<FMA>(p, r, 8.333_452e-3);
        let p = madd::<FMA>(p, r, 4.166_579_6e-2);
        let p = madd::<FMA>(p, r, 1.666_666_5e-1);
        let p = madd::<FMA>(p, r, 5.000_000_1e-1);
        let e_r = madd::<FMA>(p * r, r, r) + 1.0;
        e_r * scale
    }

    /// `ln x` for a positive normal `x` (the only arguments `ln_1p` gives it).
    #[inline(always)]
    fn ln<const FMA: bool>(x: f32) -> f32 {
        let bits = x.to_bits();
        // x = m · 2^e with m in [0.5, 1), then m moved into [√½, √2) by one exponent step.
        let e = ((bits >> 23) as i32 - 126) as f32;
        let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F00_0000);
        let small = m < std::f32::consts::FRAC_1_SQRT_2;
        let e = select(small, e - 1.0, e);
        let x = select(small, m + m - 1.0, m - 1.0);
        let z = x * x;
        let p = 7.037_683_6e-2;
        let p = madd::<FMA>(p, x, -1.151_461_031e-1);
        let p = madd::<FMA>(p, x, 1.167_699_874e-1);
        let p = madd::<FMA>(p, x, -1.242_014_084_6e-1);
        let p = madd::<FMA>(p, x, 1.424_932_278_7e-1);
        let p = madd::<FMA>(p, x, -1.666_805_766_5e-1);
        let p = madd::<FMA>(p, x, 2.000_071_476_5e-1);
        let p = madd::<FMA>(p, x, -2.499_999_399_3e-1);
        let p = madd::<FMA>(p, x, 3.333_333_117_4e-1);
        let y = p * x * z;
        let y = madd::<FMA>(e, -2.121_944_4e-4, y);
        let y = madd::<FMA>(z, -0.5, y);
        madd::<FMA>(e, 0.693_359_4, x + y)
    }

    /// `ln(1 + y)` for `y > −1` whose `1 + y` is a normal `f32` below infinity.
    #[inline(always)]
    pub fn ln_1p<const FMA: bool>(y: f32) -> f32 {
        let u = 1.0 + y;
        let d = u - 1.0;
        // Where 1 + y rounds to 1, ln(1 + y) = y to within rounding.
        select(d == 0.0, y, ln::<FMA>(u) * (y / d))
    }

    #[inline(always)]
    pub fn tanh<const FMA: bool>(x: f32) -> f32 {
        // tanh |x| = m / (m + 2) with m = e^{2|x|} − 1, one formula from zero (where m ≈ 2|x|
        // keeps the relative precision) to 10, past which tanh rounds to 1.
        let y = 2.0 * select(x.abs() > 10.0, 10.0, x.abs());
        let (r, scale) = reduce::<FMA>(y);
        // e^r − 1 = r + r² · q(r) on |r| ≤ ln 2 / 2, Taylor to r⁷.
        let q = 1.0 / 5040.0;
        let q = madd::<FMA>(q, r, 1.0 / 720.0);
        let q = madd::<FMA>(q, r, 1.0 / 120.0);
        let q = madd::<FMA>(q, r, 1.0 / 24.0);
        let q = madd::<FMA>(q, r, 1.0 / 6.0);
        let q = madd::<FMA>(q, r, 0.5);
        let em1_r = madd::<FMA>(q * r, r, r);
        // e^y − 1 = 2^n (e^r − 1) + (2^n − 1), exact for n = 0.
        let m = madd::<FMA>(scale, em1_r, scale - 1.0);
        let t = m / (m + 2.0);
        f32::from_bits(t.to_bits() | (x.to_bits() & 0x8000_0000))
    }
}
