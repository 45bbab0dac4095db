//! The scalar functions of the spec language, as generated steps call them.
//!
//! Each function of the spec (`sigmoid`, `tanh`, `hard_sigmoid`, …) is one `#[inline(always)]`
//! function here; derivatives are not here: the macro derives them symbolically from the
//! spec and expresses them with these same functions and the comparison helpers below.
//!
//! Conventions where a function has no derivative everywhere follow PyTorch (the table of
//! spec functions in `lstm-codegen`'s `functions.rs` states each): `relu'(0) = 0`, `clip`
//! passes the gradient where `lo <= x <= hi`, `hard_sigmoid` passes it where `-3 < x < 3`,
//! `min`/`max` split it equally between tied arguments, `softplus` is linear past 20, and
//! `stop_gradient` passes none. The forward values follow PyTorch's definitions too
//! (`logsigmoid` and `softplus` in their stable forms, `gelu` exact with `erf`).

use crate::float::Float;

/// Logistic sigmoid, `1 / (1 + exp(-x))`.
#[inline(always)]
pub fn sigmoid<F: Float>(x: F) -> F {
    x.sigmoid_fused()
}

/// Hyperbolic tangent.
#[inline(always)]
pub fn tanh<F: Float>(x: F) -> F {
    x.tanh_fused()
}

/// Hard sigmoid as Keras 3 and PyTorch define it: `relu6(x + 3) / 6`.
#[inline(always)]
pub fn hard_sigmoid<F: Float>(x: F) -> F {
    // In the definition's own order of operations, so results match both frameworks bit for
    // bit (`x / 6 + 0.5` rounds differently).
    clip(x + F::of(3.0), F::zero(), F::of(6.0)) / F::of(6.0)
}

/// Hard sigmoid as Keras 2 defined it: `clip(0.2 x + 0.5, 0, 1)`.
#[inline(always)]
pub fn hard_sigmoid_keras2<F: Float>(x: F) -> F {
    clip(F::of(0.2) * x + F::of(0.5), F::zero(), F::one())
}

/// Rectified linear unit, `max(x, 0)`.
#[inline(always)]
pub fn relu<F: Float>(x: F) -> F {
    if x > F::zero() { x } else { F::zero() }
}

/// Softsign, `x / (1 + |x|)`.
#[inline(always)]
pub fn softsign<F: Float>(x: F) -> F {
    x / (F::one() + x.abs())
}

/// Exponential.
#[inline(always)]
pub fn exp<F: Float>(x: F) -> F {
    x.exp_fused()
}

/// Smaller of two values.
#[inline(always)]
pub fn min<F: Float>(a: F, b: F) -> F {
    if b < a { b } else { a }
}

/// Larger of two values.
#[inline(always)]
pub fn max<F: Float>(a: F, b: F) -> F {
    if b > a { b } else { a }
}

/// `x` clamped to `[lo, hi]`.
#[inline(always)]
pub fn clip<F: Float>(x: F, lo: F, hi: F) -> F {
    min(max(x, lo), hi)
}

/// Absolute value.
#[inline(always)]
pub fn abs<F: Float>(x: F) -> F {
    x.abs()
}

/// Square root (layer normalisation).
#[inline(always)]
pub fn sqrt<F: Float>(x: F) -> F {
    x.sqrt()
}

/// Natural logarithm.
#[inline(always)]
pub fn log<F: Float>(x: F) -> F {
    x.ln()
}

/// `log(sigmoid(x))` as PyTorch computes it, `min(x, 0) − log1p(e^{−|x|})`: no overflow and
/// no cancellation at either end.
#[inline(always)]
pub fn logsigmoid<F: Float>(x: F) -> F {
    min(x, F::zero()) - (-x.abs()).exp_fused().ln_1p_fused()
}

/// PyTorch's `softplus` (beta 1, threshold 20): `log1p(e^x)`, and `x` itself where `x > 20`,
/// where the two agree to rounding.
#[inline(always)]
pub fn softplus<F: Float>(x: F) -> F {
    if x > F::of(SOFTPLUS_THRESHOLD) {
        x
    } else {
        x.exp_fused().ln_1p_fused()
    }
}

/// PyTorch's `softplus` threshold: above it `softplus(x)` is `x` (the derivative the macro
/// derives uses the same number).
const SOFTPLUS_THRESHOLD: f64 = 20.0;

/// Sigmoid linear unit (swish), `x · sigmoid(x)`.
#[inline(always)]
pub fn silu<F: Float>(x: F) -> F {
    x * sigmoid(x)
}

/// Gaussian error linear unit, exact: `x · Φ(x) = x (1 + erf(x / √2)) / 2` (PyTorch's
/// `gelu` with `approximate = "none"`).
#[inline(always)]
pub fn gelu<F: Float>(x: F) -> F {
    F::of(0.5) * x * (F::one() + erf(x * F::of(std::f64::consts::FRAC_1_SQRT_2)))
}

/// Exponential linear unit: `x` where `x > 0`, else `alpha (e^x − 1)` (PyTorch's `elu`,
/// through `expm1` as PyTorch, which keeps the precision near 0).
#[inline(always)]
pub fn elu<F: Float>(x: F, alpha: F) -> F {
    if x > F::zero() { x } else { alpha * x.exp_m1() }
}

/// `x^p` for a `p` the spec wrote: whole powers by multiplication (`x²` is `x · x`, as
/// PyTorch computes it, and defined for negative `x`), others as `powf`.
#[inline(always)]
pub fn pow<F: Float>(x: F, p: F) -> F {
    let whole = p.round();
    if whole == p && whole.abs() <= F::of(64.0) {
        // `whole` is an integer within ±64, so the conversion is exact.
        x.powi(whole.to_f64_lossy() as i32)
    } else {
        x.powf(p)
    }
}

/// `x` itself: the macro gives it a zero derivative, which is all it does.
#[inline(always)]
pub fn stop_gradient<F: Float>(x: F) -> F {
    x
}

/// The error function (for `gelu` and its derivative), libm's, in `f64` for both precisions:
/// the `f32` result is then correctly rounded nearly always.
#[inline(always)]
pub fn erf<F: Float>(x: F) -> F {
    F::of(libm::erf(x.to_f64_lossy()))
}

/// Sum of a row of per-unit partials (the reductions of layer normalisation and of its
/// gradient). Eight independent accumulators let the compiler vectorise; the order of
/// additions is fixed, so results do not depend on anything but the values.
#[inline(always)]
pub fn sum<F: Float>(values: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane += value;
        }
    }
    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for &value in rest {
        total += value;
    }
    total
}

/// `1` where `a < b`, else `0` (derivatives of piecewise functions).
#[inline(always)]
pub fn lt<F: Float>(a: F, b: F) -> F {
    if a < b { F::one() } else { F::zero() }
}

/// `1` where `a <= b`, else `0` (derivatives of piecewise functions).
#[inline(always)]
pub fn le<F: Float>(a: F, b: F) -> F {
    if a <= b { F::one() } else { F::zero() }
}

/// `1` where `a == b`, else `0` (ties of `min`/`max`).
#[inline(always)]
pub fn eq<F: Float>(a: F, b: F) -> F {
    if a == b { F::one() } else { F::zero() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_sigmoids_match_their_definitions() {
        for &x in &[-4.0f64, -3.0, -2.5, -1.0, 0.0, 0.7, 2.5, 3.0, 9.0] {
            let relu6 = (x + 3.0f64).clamp(0.0, 6.0);
            assert_eq!(hard_sigmoid(x), relu6 / 6.0);
            assert_eq!(hard_sigmoid_keras2(x), (0.2 * x + 0.5).clamp(0.0, 1.0));
        }
    }

    #[test]
    fn sigmoid_is_symmetric_and_bounded() {
        for &x in &[-30.0f64, -2.0, 0.0, 1.5, 30.0] {
            let s = sigmoid(x);
            assert!((s + sigmoid(-x) - 1.0).abs() < 1e-15);
            assert!((0.0..=1.0).contains(&s));
        }
        assert_eq!(sigmoid(0.0f32), 0.5);
    }

    #[test]
    fn sum_adds_every_value_whatever_the_length() {
        for len in [0usize, 1, 7, 8, 9, 17, 64, 100] {
            let values: Vec<f64> = (0..len).map(|k| (k as f64) * 0.5 - 3.0).collect();
            let naive: f64 = values.iter().sum();
            assert!((sum(&values) - naive).abs() < 1e-12, "length {len}");
        }
    }

    #[test]
    fn piecewise_helpers() {
        assert_eq!(relu(-1.0f64), 0.0);
        assert_eq!(relu(2.0f64), 2.0);
        assert_eq!(softsign(1.0f64), 0.5);
        assert_eq!(clip(5.0f64, -1.0, 1.0), 1.0);
        assert_eq!(min(1.0f64, 2.0), 1.0);
        assert_eq!(max(1.0f64, 2.0), 2.0);
        assert_eq!(lt(1.0f64, 2.0) + le(2.0f64, 2.0) + eq(3.0f64, 3.0), 3.0);
    }
}

/// How a generated kernel computes the spec's functions. A kernel is one generic body over
/// a flavour, `ops.sigmoid(z_f)`; its ISA variants are thin wrappers that compile that body
/// for a target feature and pick a flavour: [`Portable`] at the baseline, [`Fma`] in the AVX2
/// and AVX-512 variants, where `sigmoid`, `tanh`, `exp`, `logsigmoid` and `softplus`
/// evaluate their polynomials by
/// fused multiply-adds (see [`Float::exp_fma`]). Every other function is this module's own in
/// both (compiled without FMA, each fused multiply-add would be a library call).
pub trait Flavour: Copy {
    /// [`sigmoid`].
    #[inline(always)]
    fn sigmoid<F: Float>(self, x: F) -> F {
        sigmoid(x)
    }

    /// [`tanh`].
    #[inline(always)]
    fn tanh<F: Float>(self, x: F) -> F {
        tanh(x)
    }

    /// [`exp`].
    #[inline(always)]
    fn exp<F: Float>(self, x: F) -> F {
        exp(x)
    }

    /// [`hard_sigmoid`].
    #[inline(always)]
    fn hard_sigmoid<F: Float>(self, x: F) -> F {
        hard_sigmoid(x)
    }

    /// [`hard_sigmoid_keras2`].
    #[inline(always)]
    fn hard_sigmoid_keras2<F: Float>(self, x: F) -> F {
        hard_sigmoid_keras2(x)
    }

    /// [`relu`].
    #[inline(always)]
    fn relu<F: Float>(self, x: F) -> F {
        relu(x)
    }

    /// [`softsign`].
    #[inline(always)]
    fn softsign<F: Float>(self, x: F) -> F {
        softsign(x)
    }

    /// [`min`].
    #[inline(always)]
    fn min<F: Float>(self, a: F, b: F) -> F {
        min(a, b)
    }

    /// [`max`].
    #[inline(always)]
    fn max<F: Float>(self, a: F, b: F) -> F {
        max(a, b)
    }

    /// [`clip`].
    #[inline(always)]
    fn clip<F: Float>(self, x: F, lo: F, hi: F) -> F {
        clip(x, lo, hi)
    }

    /// [`abs`].
    #[inline(always)]
    fn abs<F: Float>(self, x: F) -> F {
        abs(x)
    }

    /// [`sqrt`].
    #[inline(always)]
    fn sqrt<F: Float>(self, x: F) -> F {
        sqrt(x)
    }

    /// [`log`].
    #[inline(always)]
    fn log<F: Float>(self, x: F) -> F {
        log(x)
    }

    /// [`logsigmoid`].
    #[inline(always)]
    fn logsigmoid<F: Float>(self, x: F) -> F {
        logsigmoid(x)
    }

    /// [`softplus`].
    #[inline(always)]
    fn softplus<F: Float>(self, x: F) -> F {
        softplus(x)
    }

    /// [`silu`].
    #[inline(always)]
    fn silu<F: Float>(self, x: F) -> F {
        silu(x)
    }

    /// [`gelu`].
    #[inline(always)]
    fn gelu<F: Float>(self, x: F) -> F {
        gelu(x)
    }

    /// [`elu`].
    #[inline(always)]
    fn elu<F: Float>(self, x: F, alpha: F) -> F {
        elu(x, alpha)
    }

    /// [`pow`].
    #[inline(always)]
    fn pow<F: Float>(self, x: F, p: F) -> F {
        pow(x, p)
    }

    /// [`stop_gradient`].
    #[inline(always)]
    fn stop_gradient<F: Float>(self, x: F) -> F {
        stop_gradient(x)
    }

    /// [`erf`].
    #[inline(always)]
    fn erf<F: Float>(self, x: F) -> F {
        erf(x)
    }

    /// [`sum`].
    #[inline(always)]
    fn sum<F: Float>(self, values: &[F]) -> F {
        sum(values)
    }

    /// [`lt`].
    #[inline(always)]
    fn lt<F: Float>(self, a: F, b: F) -> F {
        lt(a, b)
    }

    /// [`le`].
    #[inline(always)]
    fn le<F: Float>(self, a: F, b: F) -> F {
        le(a, b)
    }

    /// [`eq`].
    #[inline(always)]
    fn eq<F: Float>(self, a: F, b: F) -> F {
        eq(a, b)
    }
}

/// The functions of this module as they are, for code compiled for any CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable;

impl Flavour for Portable {}

/// `sigmoid`, `tanh` and `exp` by fused multiply-adds, for code compiled with FMA.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fma;

impl Flavour for Fma {
    #[inline(always)]
    fn sigmoid<F: Float>(self, x: F) -> F {
        x.sigmoid_fma()
    }

    #[inline(always)]
    fn tanh<F: Float>(self, x: F) -> F {
        x.tanh_fma()
    }

    #[inline(always)]
    fn exp<F: Float>(self, x: F) -> F {
        x.exp_fma()
    }

    #[inline(always)]
    fn logsigmoid<F: Float>(self, x: F) -> F {
        min(x, F::zero()) - (-x.abs()).exp_fma().ln_1p_fma()
    }

    #[inline(always)]
    fn softplus<F: Float>(self, x: F) -> F {
        if x > F::of(SOFTPLUS_THRESHOLD) {
            x
        } else {
            x.exp_fma().ln_1p_fma()
        }
    }
}
