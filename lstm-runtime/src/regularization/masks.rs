//! The masks of the regularisers inside the recurrence, Keras' variational `dropout` and
//! `recurrent_dropout`, AWD-LSTM's weight drop (DropConnect on `weight_hh`) and zoneout, that
//! one call uses ([`RecurrentMasks`]): drawn from the call's seed, or injected by the caller
//! and checked here. What the time loop reads of them is `in_recurrence.rs`.
//!
//! A training call draws its masks from one seed taken from the layer's generator
//! (`LstmConfig::seed`), each (layer, direction, kind) from its own stream of that seed, so a
//! cloned layer draws the same masks, and `Lstm::sample_masks` shows the masks the next call
//! would draw. A caller can also inject masks (`Call::masks`), which is how the tests compare
//! against naive references and gradcheck with fixed masks.
//!
//! Dropout masks hold multipliers (`0`, or `1 / (1 − rate)` where kept); zoneout masks hold
//! indicators (`1` where the unit keeps its previous value, else `0`).

use ndarray::{Array2, Array3, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, expect_shape};
use crate::float::Float;

/// The masks of one (layer, direction) for one call. Each is present exactly when its rate
/// in the config is above 0.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionMasks<F> {
    /// Multipliers of the layer's input features, `(batch, input features of the layer)`:
    /// Keras `dropout` (`LstmConfig::input_dropout`), the same at every step.
    pub input: Option<Array2<F>>,
    /// Multipliers of `h_prev`, `(batch, output_size)`: Keras `recurrent_dropout`, the same
    /// at every step.
    pub recurrent: Option<Array2<F>>,
    /// Multipliers of `weight_hh`, `(gates · hidden_size, output_size / heads)`: weight
    /// drop.
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

/// The rates of the regularisers inside the recurrence, as the layer's config sets them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rates {
    /// Keras `dropout` on the layer's input.
    pub(crate) input_dropout: f64,
    /// Keras `recurrent_dropout` on `h_prev`.
    pub(crate) recurrent_dropout: f64,
    /// DropConnect on `weight_hh`.
    pub(crate) weight_drop: f64,
    /// Zoneout of `c`.
    pub(crate) zoneout_c: f64,
    /// Zoneout of `h`.
    pub(crate) zoneout_h: f64,
}

/// The sizes of one (layer, direction)'s masks in one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MaskShapes {
    /// Steps of the call.
    pub(crate) seq_len: usize,
    /// Batch rows of the call.
    pub(crate) batch: usize,
    /// Features of the layer's input.
    pub(crate) input_size: usize,
    /// Width of `h` (the output size).
    pub(crate) output_size: usize,
    /// Hidden units (the width of `c`).
    pub(crate) hidden_size: usize,
    /// Rows of `weight_hh`: gates · hidden units.
    pub(crate) gate_rows: usize,
    /// Columns of `weight_hh`: the output size, divided by the heads of a block-diagonal
    /// recurrence.
    pub(crate) weight_hh_width: usize,
}

/// Stream numbers of the in-recurrence masks start here; streams below are the between-layer
/// dropout boundaries of `layer/dropout.rs`.
const STREAM_BASE: u64 = 1 << 32;

/// Mask kinds per (layer, direction), for stream numbering.
const KINDS: u64 = 5;

impl<F: Float> RecurrentMasks<F> {
    /// The masks of batch rows `rows` alone; `weight_hh`'s, which no row owns, whole.
    pub(crate) fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        let by_row = |mask: &Option<Array2<F>>| {
            mask.as_ref()
                .map(|mask| mask.slice(s![rows.clone(), ..]).to_owned())
        };
        let by_step = |mask: &Option<Array3<F>>| {
            mask.as_ref()
                .map(|mask| mask.slice(s![.., rows.clone(), ..]).to_owned())
        };
        RecurrentMasks {
            directions: self
                .directions
                .iter()
                .map(|masks| DirectionMasks {
                    input: by_row(&masks.input),
                    recurrent: by_row(&masks.recurrent),
                    weight_hh: masks.weight_hh.clone(),
                    zoneout_c: by_step(&masks.zoneout_c),
                    zoneout_h: by_step(&masks.zoneout_h),
                })
                .collect(),
        }
    }

    /// Draws the masks of one call from the call's seed: one entry per (layer, direction),
    /// of `shapes`, each mask present exactly when its rate is above 0.
    pub(crate) fn draw(rates: &Rates, shapes: &[MaskShapes], call_seed: u64) -> Self {
        let directions = shapes
            .iter()
            .enumerate()
            .map(|(index, shape)| {
                let stream = |kind: u64| {
                    let mut rng = ChaCha8Rng::seed_from_u64(call_seed);
                    rng.set_stream(STREAM_BASE + index as u64 * KINDS + kind);
                    rng
                };
                let (batch, width, hidden) = (shape.batch, shape.output_size, shape.hidden_size);
                let steps = (shape.seq_len, batch);
                DirectionMasks {
                    input: (rates.input_dropout > 0.0).then(|| {
                        let shape = (batch, shape.input_size);
                        dropout_mask(&mut stream(0), shape, rates.input_dropout)
                    }),
                    recurrent: (rates.recurrent_dropout > 0.0).then(|| {
                        dropout_mask(&mut stream(1), (batch, width), rates.recurrent_dropout)
                    }),
                    weight_hh: (rates.weight_drop > 0.0).then(|| {
                        let shape = (shape.gate_rows, shape.weight_hh_width);
                        dropout_mask(&mut stream(2), shape, rates.weight_drop)
                    }),
                    zoneout_c: (rates.zoneout_c > 0.0).then(|| {
                        let shape = (steps.0, steps.1, hidden);
                        zoneout_mask(&mut stream(3), shape, rates.zoneout_c)
                    }),
                    zoneout_h: (rates.zoneout_h > 0.0).then(|| {
                        let shape = (steps.0, steps.1, width);
                        zoneout_mask(&mut stream(4), shape, rates.zoneout_h)
                    }),
                }
            })
            .collect();
        RecurrentMasks { directions }
    }

    /// Checks injected masks against the rates and the call's `shapes`: one per (layer,
    /// direction), each present exactly when its rate is above 0, each of its shape.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `masks` (count) or the mask (`masks[1].zoneout_c`) present
    /// without its rate or absent with it; [`Error::ShapeMismatch`] naming the mask.
    pub(crate) fn check(&self, rates: &Rates, shapes: &[MaskShapes]) -> Result<()> {
        let expected = shapes.len();
        if self.directions.len() != expected {
            return Err(Error::Config {
                option: "masks".into(),
                reason: format!(
                    "expected one entry per layer and direction ({expected}), found {}",
                    self.directions.len()
                ),
            });
        }
        for (index, (masks, shape)) in self.directions.iter().zip(shapes).enumerate() {
            let (seq_len, batch) = (shape.seq_len, shape.batch);
            let (width, hidden) = (shape.output_size, shape.hidden_size);
            let name = |kind: &str| format!("masks[{index}].{kind}");
            let shape2 = |mask: &Option<Array2<F>>| mask.as_ref().map(|m| m.shape().to_vec());
            let shape3 = |mask: &Option<Array3<F>>| mask.as_ref().map(|m| m.shape().to_vec());
            check_mask(
                &name("input"),
                ("input_dropout", rates.input_dropout),
                shape2(&masks.input),
                &[batch, shape.input_size],
            )?;
            check_mask(
                &name("recurrent"),
                ("recurrent_dropout", rates.recurrent_dropout),
                shape2(&masks.recurrent),
                &[batch, width],
            )?;
            check_mask(
                &name("weight_hh"),
                ("weight_drop", rates.weight_drop),
                shape2(&masks.weight_hh),
                &[shape.gate_rows, shape.weight_hh_width],
            )?;
            check_mask(
                &name("zoneout_c"),
                ("zoneout_c", rates.zoneout_c),
                shape3(&masks.zoneout_c),
                &[seq_len, batch, hidden],
            )?;
            check_mask(
                &name("zoneout_h"),
                ("zoneout_h", rates.zoneout_h),
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
}
