//! Regularisation inside the recurrence: Keras' variational `dropout` and
//! `recurrent_dropout`, AWD-LSTM's weight drop (DropConnect on `weight_hh`) and zoneout, as the
//! masks one call uses ([`RecurrentMasks`]) and as what the time loop reads of them
//! ([`InRecurrence`]).
//!
//! A training call draws its masks from one seed taken from the layer's generator
//! ([`crate::LstmConfig::seed`]), each (layer, direction, kind) from its own stream of that
//! seed, so a cloned layer draws the same masks, and [`crate::Lstm::sample_masks`] shows the
//! masks the next call would draw. A caller can also inject masks ([`crate::Call::masks`]),
//! which is how the tests compare against naive references and gradcheck with fixed masks.
//!
//! Dropout masks hold multipliers (`0`, or `1 / (1 − rate)` where kept); zoneout masks hold
//! indicators (`1` where the unit keeps its previous value, else `0`).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, Axis, Zip};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, expect_shape};
use crate::{Cell, Float, LstmConfig};

/// The masks of one (layer, direction) for one call. Each is present exactly when its rate
/// in the config is above 0.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionMasks<F> {
    /// Multipliers of the layer's input features, `(batch, input features of the layer)`:
    /// Keras `dropout` ([`LstmConfig::input_dropout`]), the same at every step.
    pub input: Option<Array2<F>>,
    /// Multipliers of `h_prev`, `(batch, output_size)`: Keras `recurrent_dropout`, the same
    /// at every step.
    pub recurrent: Option<Array2<F>>,
    /// Multipliers of `weight_hh`, `(gates · hidden_size, output_size)`: weight drop.
    pub weight_hh: Option<Array2<F>>,
    /// Zoneout indicators of `c`, `(seq_len, batch, hidden_size)`, by the time index of the
    /// sequence the layer reads (after `go_backwards` reversed it): `1` keeps `c_prev`.
    pub zoneout_c: Option<Array3<F>>,
    /// Zoneout indicators of `h`, `(seq_len, batch, output_size)`, as `zoneout_c`.
    pub zoneout_h: Option<Array3<F>>,
}

/// The masks of every (layer, direction) of one call, in PyTorch's order (layer-major,
/// forward before reverse).
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentMasks<F> {
    /// One per (layer, direction), index `layer · num_directions + direction`.
    pub directions: Vec<DirectionMasks<F>>,
}

/// Stream numbers of the in-recurrence masks start here; streams below are the between-layer
/// dropout boundaries of `dropout.rs`.
const STREAM_BASE: u64 = 1 << 32;

/// Mask kinds per (layer, direction), for stream numbering.
const KINDS: u64 = 5;

impl<F: Float> RecurrentMasks<F> {
    /// Draws the masks of a `(seq_len, batch)` call of a layer configured by `config` with
    /// cells of `gates` gate blocks, from the call's seed.
    pub(crate) fn draw(
        config: &LstmConfig,
        gates: usize,
        seq_len: usize,
        batch: usize,
        call_seed: u64,
    ) -> Self {
        let directions = config.num_directions();
        let width = config.output_size();
        let hidden = config.hidden_size;
        let mut all = Vec::new();
        for index in 0..config.num_layers * directions {
            let layer = index / directions;
            let stream = |kind: u64| {
                let mut rng = ChaCha8Rng::seed_from_u64(call_seed);
                rng.set_stream(STREAM_BASE + index as u64 * KINDS + kind);
                rng
            };
            let input_size = config.layer_input_size(layer);
            all.push(DirectionMasks {
                input: (config.input_dropout > 0.0).then(|| {
                    dropout_mask(&mut stream(0), (batch, input_size), config.input_dropout)
                }),
                recurrent: (config.recurrent_dropout > 0.0).then(|| {
                    dropout_mask(&mut stream(1), (batch, width), config.recurrent_dropout)
                }),
                weight_hh: (config.weight_drop > 0.0).then(|| {
                    dropout_mask(&mut stream(2), (gates * hidden, width), config.weight_drop)
                }),
                zoneout_c: (config.zoneout_c > 0.0).then(|| {
                    zoneout_mask(&mut stream(3), (seq_len, batch, hidden), config.zoneout_c)
                }),
                zoneout_h: (config.zoneout_h > 0.0).then(|| {
                    zoneout_mask(&mut stream(4), (seq_len, batch, width), config.zoneout_h)
                }),
            });
        }
        RecurrentMasks { directions: all }
    }

    /// Checks injected masks against the config and the call: one per (layer, direction),
    /// each present exactly when its rate is above 0, each of its shape.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `masks` (count) or the mask (`masks[1].zoneout_c`) present
    /// without its rate or absent with it; [`Error::ShapeMismatch`] naming the mask.
    pub(crate) fn check<C: Cell<Elem = F>>(
        &self,
        config: &LstmConfig,
        seq_len: usize,
        batch: usize,
    ) -> Result<()> {
        let directions = config.num_directions();
        let expected = config.num_layers * directions;
        if self.directions.len() != expected {
            return Err(Error::Config {
                option: "masks".into(),
                reason: format!(
                    "expected one entry per layer and direction ({expected}), found {}",
                    self.directions.len()
                ),
            });
        }
        let width = config.output_size();
        let hidden = config.hidden_size;
        let gate_rows = C::SPEC.num_gates() * hidden;
        for (index, masks) in self.directions.iter().enumerate() {
            let layer = index / directions;
            let input_size = config.layer_input_size(layer);
            let name = |kind: &str| format!("masks[{index}].{kind}");
            let shape2 = |mask: &Option<Array2<F>>| mask.as_ref().map(|m| m.shape().to_vec());
            let shape3 = |mask: &Option<Array3<F>>| mask.as_ref().map(|m| m.shape().to_vec());
            check_mask(
                &name("input"),
                ("input_dropout", config.input_dropout),
                shape2(&masks.input),
                &[batch, input_size],
            )?;
            check_mask(
                &name("recurrent"),
                ("recurrent_dropout", config.recurrent_dropout),
                shape2(&masks.recurrent),
                &[batch, width],
            )?;
            check_mask(
                &name("weight_hh"),
                ("weight_drop", config.weight_drop),
                shape2(&masks.weight_hh),
                &[gate_rows, width],
            )?;
            check_mask(
                &name("zoneout_c"),
                ("zoneout_c", config.zoneout_c),
                shape3(&masks.zoneout_c),
                &[seq_len, batch, hidden],
            )?;
            check_mask(
                &name("zoneout_h"),
                ("zoneout_h", config.zoneout_h),
                shape3(&masks.zoneout_h),
                &[seq_len, batch, width],
            )?;
        }
        Ok(())
    }
}

/// Checks the mask `name`: present exactly when its config option (`option`: name and rate)
/// is above 0, and then of shape `expected`.
fn check_mask(
    name: &str,
    (option, rate): (&str, f64),
    found: Option<Vec<usize>>,
    expected: &[usize],
) -> Result<()> {
    match (rate > 0.0, found) {
        (true, Some(found)) => expect_shape(name, expected, &found),
        (false, None) => Ok(()),
        (true, None) => Err(Error::Config {
            option: name.into(),
            reason: format!("missing, but the config's {option} is {rate}"),
        }),
        (false, Some(_)) => Err(Error::Config {
            option: name.into(),
            reason: format!("given, but the config's {option} is 0"),
        }),
    }
}

/// Dropout multipliers: `1 / (1 − rate)` with probability `1 − rate`, else 0.
fn dropout_mask<F: Float>(rng: &mut ChaCha8Rng, shape: (usize, usize), rate: f64) -> Array2<F> {
    let keep = 1.0 - rate;
    let scale = F::of(1.0 / keep);
    Array2::from_shape_simple_fn(shape, || {
        if rng.random::<f64>() < keep {
            scale
        } else {
            F::zero()
        }
    })
}

/// Zoneout indicators: 1 (keep the previous value) with probability `rate`, else 0.
fn zoneout_mask<F: Float>(
    rng: &mut ChaCha8Rng,
    shape: (usize, usize, usize),
    rate: f64,
) -> Array3<F> {
    Array3::from_shape_simple_fn(shape, || {
        if rng.random::<f64>() < rate {
            F::one()
        } else {
            F::zero()
        }
    })
}

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

    /// What a call applies: in training the masks (checked or drawn by the caller), in
    /// inference only zoneout's expectation.
    pub(crate) fn of(
        config: &LstmConfig,
        masks: Option<&'a DirectionMasks<F>>,
        training: bool,
    ) -> Self {
        let zoneout = |rate: f64, mask: Option<&'a Array3<F>>| match (training, mask) {
            (true, Some(mask)) => Zoneout::Mask(mask.view()),
            (false, _) if rate > 0.0 => Zoneout::Expectation(F::of(rate)),
            _ => Zoneout::Off,
        };
        let masks = masks.filter(|_| training);
        InRecurrence {
            input: masks.and_then(|m| m.input.as_ref()).map(|m| m.view()),
            recurrent: masks.and_then(|m| m.recurrent.as_ref()).map(|m| m.view()),
            weight_hh: masks.and_then(|m| m.weight_hh.as_ref()).map(|m| m.view()),
            zoneout_c: zoneout(config.zoneout_c, masks.and_then(|m| m.zoneout_c.as_ref())),
            zoneout_h: zoneout(config.zoneout_h, masks.and_then(|m| m.zoneout_h.as_ref())),
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
    use super::*;

    #[test]
    fn rates_of_one_and_zero_are_exact() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dropped: Array2<f64> = dropout_mask(&mut rng, (4, 5), 1.0);
        assert!(dropped.iter().all(|&m| m == 0.0));
        let kept: Array2<f64> = dropout_mask(&mut rng, (4, 5), 0.0);
        assert!(kept.iter().all(|&m| m == 1.0));
        let frozen: Array3<f64> = zoneout_mask(&mut rng, (2, 4, 5), 1.0);
        assert!(frozen.iter().all(|&d| d == 1.0));
    }

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
