//! What one (layer, direction)'s time loop applies of the regularisers inside the recurrence
//! in one call ([`InRecurrence`]): in a training call the masks, in an inference call only
//! zoneout's expectation; and the operations the loops apply them with ([`Zoneout::blend`]
//! and its backward [`Zoneout::split`], [`mask_rows`]).

use ndarray::{Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Zip};

use super::masks::DirectionMasks;
use crate::float::Float;

/// How zoneout acts on one state in one call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Zoneout<'a, F> {
    /// No zoneout.
    Off,
    /// Inference: `rate · previous + (1 − rate) · new`.
    Expectation(F),
    /// Training: the indicators `(seq_len, batch, width)`; 1 keeps the previous value.
    Mask(ArrayView3<'a, F>),
}

impl<F: Float> Zoneout<'_, F> {
    /// Whether the state is zoned out at all.
    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, Zoneout::Off)
    }

    /// Step `t`'s new state `new ← d ⊙ previous + (1 − d) ⊙ new`.
    pub(crate) fn blend(&self, t: usize, previous: ArrayView2<'_, F>, new: ArrayViewMut2<'_, F>) {
        match self {
            Zoneout::Off => {}
            Zoneout::Expectation(rate) => {
                let rate = *rate;
                Zip::from(new)
                    .and(previous)
                    .for_each(|new, &previous| *new += rate * (previous - *new));
            }
            Zoneout::Mask(mask) => {
                Zip::from(new)
                    .and(previous)
                    .and(mask.index_axis(Axis(0), t))
                    .for_each(|new, &previous, &d| *new += d * (previous - *new));
            }
        }
    }

    /// The backward of [`Zoneout::blend`] at step `t`: given `seed = dL/d(blended state)`,
    /// writes `carry = d ⊙ seed` (the part that reaches the previous state directly) and
    /// leaves `seed = (1 − d) ⊙ seed` (the part that reaches the cell's new state).
    pub(crate) fn split(&self, t: usize, seed: ArrayViewMut2<'_, F>, carry: ArrayViewMut2<'_, F>) {
        match self {
            Zoneout::Off => {}
            Zoneout::Expectation(rate) => {
                let rate = *rate;
                Zip::from(seed).and(carry).for_each(|seed, carry| {
                    *carry = rate * *seed;
                    *seed -= *carry;
                });
            }
            Zoneout::Mask(mask) => {
                Zip::from(seed)
                    .and(carry)
                    .and(mask.index_axis(Axis(0), t))
                    .for_each(|seed, carry, &d| {
                        *carry = d * *seed;
                        *seed -= *carry;
                    });
            }
        }
    }
}

/// What one (layer, direction)'s time loop applies of the regularisers for one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InRecurrence<'a, F> {
    /// Input dropout multipliers `(batch, input features)`.
    pub(crate) input: Option<ArrayView2<'a, F>>,
    /// Recurrent dropout multipliers `(batch, output_size)`.
    pub(crate) recurrent: Option<ArrayView2<'a, F>>,
    /// Weight-drop multipliers of `weight_hh`.
    pub(crate) weight_hh: Option<ArrayView2<'a, F>>,
    pub(crate) zoneout_c: Zoneout<'a, F>,
    pub(crate) zoneout_h: Zoneout<'a, F>,
}

impl<'a, F: Float> InRecurrence<'a, F> {
    /// Nothing applied.
    pub(crate) fn off() -> Self {
        InRecurrence {
            input: None,
            recurrent: None,
            weight_hh: None,
            zoneout_c: Zoneout::Off,
            zoneout_h: Zoneout::Off,
        }
    }

    /// What a training call applies: its masks (checked or drawn by the caller; `None` for
    /// a layer without these regularisers).
    pub(crate) fn training(masks: Option<&'a DirectionMasks<F>>) -> Self {
        let Some(masks) = masks else {
            return Self::off();
        };
        let zoneout = |mask: Option<&'a Array3<F>>| match mask {
            Some(mask) => Zoneout::Mask(mask.view()),
            None => Zoneout::Off,
        };
        InRecurrence {
            input: masks.input.as_ref().map(|m| m.view()),
            recurrent: masks.recurrent.as_ref().map(|m| m.view()),
            weight_hh: masks.weight_hh.as_ref().map(|m| m.view()),
            zoneout_c: zoneout(masks.zoneout_c.as_ref()),
            zoneout_h: zoneout(masks.zoneout_h.as_ref()),
        }
    }

    /// What an inference call applies: zoneout's expectation at the config's rates of `c`
    /// and `h`, nothing else.
    pub(crate) fn inference(zoneout_c: f64, zoneout_h: f64) -> Self {
        let zoneout = |rate: f64| {
            if rate > 0.0 {
                Zoneout::Expectation(F::of(rate))
            } else {
                Zoneout::Off
            }
        };
        InRecurrence {
            zoneout_c: zoneout(zoneout_c),
            zoneout_h: zoneout(zoneout_h),
            ..Self::off()
        }
    }
}

/// `rows: (steps · batch, features)` with row `r` multiplied by `mask` row `r mod batch`,
/// each product handed to `write` with its place in `out` (of the same shape): `*out = x`
/// to store, `*out += x` to accumulate.
pub(crate) fn mask_rows<F: Float>(
    rows: ArrayView2<'_, F>,
    mask: ArrayView2<'_, F>,
    mut out: ArrayViewMut2<'_, F>,
    write: impl Fn(&mut F, F),
) {
    let batch = mask.nrows();
    for (r, (mut out, row)) in out
        .axis_iter_mut(Axis(0))
        .zip(rows.axis_iter(Axis(0)))
        .enumerate()
    {
        Zip::from(&mut out)
            .and(&row)
            .and(&mask.row(r % batch))
            .for_each(|out, &x, &m| write(out, x * m));
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    #[test]
    fn expectation_blends_and_splits_consistently() {
        let previous = ndarray::arr2(&[[1.0, -2.0]]);
        let mut new = ndarray::arr2(&[[3.0, 4.0]]);
        Zoneout::Expectation(0.25).blend(0, previous.view(), new.view_mut());
        assert_eq!(new, ndarray::arr2(&[[0.25 + 2.25, -0.5 + 3.0]]));
        let mut seed = ndarray::arr2(&[[4.0, 8.0]]);
        let mut carry = Array2::zeros((1, 2));
        Zoneout::Expectation(0.25).split(0, seed.view_mut(), carry.view_mut());
        assert_eq!(carry, ndarray::arr2(&[[1.0, 2.0]]));
        assert_eq!(seed, ndarray::arr2(&[[3.0, 6.0]]));
    }
}
