//! What [`Lstm::new`](super::Lstm::new) initialises besides each cell's own init: the LSTMP
//! projections, as PyTorch does, the config's [`Initializers`] (Keras' or Flax's instead of the
//! cell's PyTorch uniform), and the bias initialisations for long memory when the config asks: Keras' `unit_forget_bias` ([`LstmConfig::unit_forget_bias`]) and the chrono
//! initialisation of Tallec & Ollivier (2018, "Can recurrent neural networks warp time?")
//! ([`LstmConfig::chrono_t_max`]).
//!
//! Gate blocks are the rows `g·hidden .. (g+1)·hidden` of `bias_ih`/`bias_hh`, `g` the gate's
//! position in [`CellSpec::gates`](crate::cell::CellSpec::gates). The layer adds both biases,
//! so their sum is what Keras calls the bias.

use std::ops::Range;

use ndarray::{Array1, Array2, s};
use rand::Rng;

use super::config::LstmConfig;
use super::initializers::Initializers;
use crate::cell::{Cell, Gate, Init};
use crate::float::Float;

/// A fresh LSTMP projection `(proj_size, hidden_size)`, uniform in `±1/√hidden_size` as
/// PyTorch initialises it; `None` without projection.
pub(super) fn projection<F: Float, R: Rng + ?Sized>(
    config: &LstmConfig,
    rng: &mut R,
) -> Option<Array2<F>> {
    (config.proj_size > 0).then(|| {
        let mut values = vec![F::zero(); config.proj_size * config.hidden_size];
        Init::Default.fill(&mut values, config.hidden_size, rng);
        Array2::from_shape_vec((config.proj_size, config.hidden_size), values)
            // proj_size · hidden_size values: infallible.
            .expect("one value per element")
    })
}

/// Replaces the cell's own values of each weight whose initializer in
/// [`LstmConfig::init`] is not [`WeightInit::PyTorch`](super::initializers::WeightInit::PyTorch).
///
/// Under a block-diagonal recurrence of `heads > 1` heads, `weight_hh` is drawn head by head:
/// each head's rows, `(gates · d, d)`, as the recurrent kernel of a layer of `d = hidden /
/// heads` units (Keras' orthogonal over that matrix, Flax's per gate `(d, d)` block, fans
/// `d` and `gates · d`), so that every head starts as the dense layer it is.
pub(super) fn init_weights<C: Cell, R: Rng + ?Sized>(
    cells: &mut [C],
    init: &Initializers,
    heads: usize,
    rng: &mut R,
) {
    for cell in cells {
        let hidden = cell.dims().hidden_size.max(1);
        let weights = cell.weights_mut();
        let gates = weights.weight_ih.nrows() / hidden;
        let (rows, cols) = weights.weight_ih.dim();
        if let Some(values) = init.weight_ih.draw(rows, cols, gates, rng) {
            weights
                .weight_ih
                .iter_mut()
                .zip(values)
                .for_each(|(w, v)| *w = C::Elem::of(v));
        }
        if heads > 1 {
            draw_by_head(weights.weight_hh, init, gates, hidden, heads, rng);
        } else {
            let (rows, cols) = weights.weight_hh.dim();
            if let Some(values) = init.weight_hh.draw(rows, cols, gates, rng) {
                weights
                    .weight_hh
                    .iter_mut()
                    .zip(values)
                    .for_each(|(w, v)| *w = C::Elem::of(v));
            }
        }
        for bias in [weights.bias_ih, weights.bias_hh].into_iter().flatten() {
            if let Some(values) = init.bias.draw(bias.len(), 1, gates, rng) {
                bias.iter_mut()
                    .zip(values)
                    .for_each(|(b, v)| *b = C::Elem::of(v));
            }
        }
    }
}

/// Draws a block-diagonal `weight_hh` `(gates · hidden, d)` head by head (see
/// [`init_weights`]): head `k`'s rows `g·hidden + k·d ..` for `d` rows of every gate `g`, as
/// one `(gates · d, d)` matrix.
fn draw_by_head<F: Float, R: Rng + ?Sized>(
    weight_hh: &mut Array2<F>,
    init: &Initializers,
    gates: usize,
    hidden: usize,
    heads: usize,
    rng: &mut R,
) {
    let d = weight_hh.ncols();
    for k in 0..heads {
        let Some(values) = init.weight_hh.draw(gates * d, d, gates, rng) else {
            return;
        };
        for (index, row) in values.chunks(d.max(1)).enumerate() {
            let (g, unit) = (index / d, index % d);
            let mut target = weight_hh.row_mut(g * hidden + k * d + unit);
            target.iter_mut().zip(row).for_each(|(w, &v)| *w = F::of(v));
        }
    }
}

/// Applies the config's long-memory inits to every cell (a config that asks for one was
/// validated to have biases and a forget gate; cells without them are left alone).
pub(super) fn init_long_memory<C: Cell, R: Rng + ?Sized>(
    cells: &mut [C],
    config: &LstmConfig,
    rng: &mut R,
) {
    if config.unit_forget_bias {
        cells.iter_mut().for_each(unit_forget_bias);
    }
    if let Some(t_max) = config.chrono_t_max {
        for cell in cells {
            chrono(cell, t_max, rng);
        }
    }
}

/// Keras' `unit_forget_bias` with its default `bias_initializer="zeros"`: the forget block of
/// the bias is 1, every other value 0. The ones go into `bias_ih`, so `bias_ih + bias_hh` is
/// Keras' bias. (Keras fills the other blocks with its `bias_initializer`, zeros unless
/// changed; the cell's own init, PyTorch's uniform, is overwritten here.)
fn unit_forget_bias<C: Cell>(cell: &mut C) {
    let Some(forget) = gate_rows::<C>(Gate::Forget, cell.dims().hidden_size) else {
        return;
    };
    let weights = cell.weights_mut();
    let (Some(bias_ih), Some(bias_hh)) = (weights.bias_ih, weights.bias_hh) else {
        return;
    };
    bias_ih.fill(C::Elem::of(0.0));
    bias_hh.fill(C::Elem::of(0.0));
    bias_ih.slice_mut(s![forget]).fill(C::Elem::of(1.0));
}

/// Chrono initialisation (Tallec & Ollivier 2018, eq. 16): per unit, forget bias
/// `log u` with `u ~ U(1, T_max − 1)`, input bias `−log u`; set in `bias_ih` with the same
/// blocks of `bias_hh` zeroed, the other blocks keeping the cell's init. A cell without an
/// input gate (CIFG, whose input gate is `1 − f`) gets the forget bias only.
fn chrono<C: Cell, R: Rng + ?Sized>(cell: &mut C, t_max: f64, rng: &mut R) {
    let hidden = cell.dims().hidden_size;
    let Some(forget) = gate_rows::<C>(Gate::Forget, hidden) else {
        return;
    };
    let input = gate_rows::<C>(Gate::Input, hidden);
    let weights = cell.weights_mut();
    let (Some(bias_ih), Some(bias_hh)) = (weights.bias_ih, weights.bias_hh) else {
        return;
    };
    let forget_bias: Array1<f64> = (0..hidden)
        .map(|_| (1.0 + (t_max - 2.0) * rng.random::<f64>()).ln())
        .collect();
    bias_ih
        .slice_mut(s![forget.clone()])
        .assign(&forget_bias.mapv(C::Elem::of));
    bias_hh.slice_mut(s![forget]).fill(C::Elem::of(0.0));
    if let Some(input) = input {
        bias_ih
            .slice_mut(s![input.clone()])
            .assign(&forget_bias.mapv(|b| C::Elem::of(-b)));
        bias_hh.slice_mut(s![input]).fill(C::Elem::of(0.0));
    }
}

/// The bias rows of `gate` in a cell of type `C` with `hidden` units, if it computes it.
fn gate_rows<C: Cell>(gate: Gate, hidden: usize) -> Option<Range<usize>> {
    let index = C::SPEC.gates.iter().position(|&g| g == gate)?;
    Some(index * hidden..(index + 1) * hidden)
}

#[cfg(test)]
mod tests {
    use lstm_macros::lstm_cell;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::direction::Direction;
    use crate::error::Error;
    use crate::layer::Lstm;
    use crate::zoo;

    /// The forget gate coupled to the input gate: no forget-gate weights at all.
    #[lstm_cell(f = 1.0 - i)]
    pub struct NoForget;

    fn layer<C: Cell<Elem = f64>>(config: LstmConfig) -> Lstm<C> {
        Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(3)).unwrap()
    }

    fn biases<C: Cell<Elem = f64>>(cell: &C) -> (Array1<f64>, Array1<f64>) {
        let weights = cell.weights();
        (
            weights.bias_ih.unwrap().clone(),
            weights.bias_hh.unwrap().clone(),
        )
    }

    fn option<C: Cell>(config: LstmConfig) -> String {
        match config.validate_for::<C>() {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a config error, found {other:?}"),
        }
    }

    #[test]
    fn unit_forget_bias_is_ones_on_the_forget_block_only() {
        let config = LstmConfig::new(3, 4)
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_unit_forget_bias(true);
        let lstm = layer::<zoo::Lstm<f64>>(config.clone());
        let expected: Array1<f64> = (0..16).map(|row| f64::from(row / 4 == 1)).collect();
        for layer_index in [0, 1] {
            for direction in Direction::BOTH {
                let (bias_ih, bias_hh) = biases(lstm.cell(layer_index, direction).unwrap());
                assert_eq!(bias_ih, expected);
                assert!(bias_hh.iter().all(|&b| b == 0.0));
            }
        }
        // CIFG's blocks are f, g, o: the forget block comes first.
        let cifg = layer::<zoo::Cifg<f64>>(config);
        let (bias_ih, _) = biases(cifg.cell(1, Direction::Reverse).unwrap());
        let expected: Array1<f64> = (0..12).map(|row| f64::from(row < 4)).collect();
        assert_eq!(bias_ih, expected);
    }

    #[test]
    fn chrono_draws_log_uniform_forget_biases_and_keeps_the_rest() {
        let (hidden, t_max) = (2000, 50.0);
        let config = LstmConfig::new(2, hidden).with_bidirectional(true);
        let plain = layer::<zoo::Lstm<f64>>(config.clone());
        let chrono = layer::<zoo::Lstm<f64>>(config.with_chrono_t_max(t_max));
        let block = |bias: &Array1<f64>, gate: usize| {
            bias.slice(s![gate * hidden..(gate + 1) * hidden])
                .to_owned()
        };
        let mut draws = Vec::new();
        for direction in Direction::BOTH {
            let (bias_ih, bias_hh) = biases(chrono.cell(0, direction).unwrap());
            let (plain_ih, plain_hh) = biases(plain.cell(0, direction).unwrap());
            let forget = block(&bias_ih, 1);
            assert_eq!(block(&bias_ih, 0), -&forget);
            for gate in [0, 1] {
                assert!(block(&bias_hh, gate).iter().all(|&b| b == 0.0));
            }
            for gate in [2, 3] {
                assert_eq!(block(&bias_ih, gate), block(&plain_ih, gate));
                assert_eq!(block(&bias_hh, gate), block(&plain_hh, gate));
            }
            assert_eq!(
                chrono.cell(0, direction).unwrap().weights().weight_ih,
                plain.cell(0, direction).unwrap().weights().weight_ih
            );
            draws.extend(forget.iter().copied());
        }
        let upper = (t_max - 1.0).ln();
        assert!(draws.iter().all(|&b| (0.0..upper).contains(&b)));
        // `exp(b)` is uniform on [1, 49]: mean 25, standard deviation 48/√12 ≈ 13.9, so the
        // mean of 4000 draws is within 1 of 25 by more than 4 standard errors.
        let mean = draws.iter().map(|b| b.exp()).sum::<f64>() / draws.len() as f64;
        assert!((mean - t_max / 2.0).abs() < 1.0, "mean of exp(b) = {mean}");
        let below_half = draws.iter().filter(|&&b| b.exp() < t_max / 2.0).count();
        assert!(
            (1800..2200).contains(&below_half),
            "{below_half} of 4000 below the median"
        );
    }

    #[test]
    fn chrono_sets_only_the_forget_gate_of_cifg() {
        let config = LstmConfig::new(2, 5);
        let plain = layer::<zoo::Cifg<f64>>(config.clone());
        let chrono = layer::<zoo::Cifg<f64>>(config.with_chrono_t_max(10.0));
        let (bias_ih, bias_hh) = biases(chrono.cell(0, Direction::Forward).unwrap());
        let (plain_ih, plain_hh) = biases(plain.cell(0, Direction::Forward).unwrap());
        let forget = bias_ih.slice(s![0..5]);
        assert!(forget.iter().all(|&b| (0.0..9f64.ln()).contains(&b)));
        assert!(bias_hh.slice(s![0..5]).iter().all(|&b| b == 0.0));
        assert_eq!(bias_ih.slice(s![5..]), plain_ih.slice(s![5..]));
        assert_eq!(bias_hh.slice(s![5..]), plain_hh.slice(s![5..]));
    }

    #[test]
    fn impossible_inits_are_named() {
        let config = LstmConfig::new(2, 3);
        assert_eq!(
            option::<zoo::Lstm<f64>>(config.clone().with_chrono_t_max(2.0)),
            "chrono_t_max"
        );
        assert_eq!(
            option::<zoo::Lstm<f64>>(config.clone().with_chrono_t_max(f64::INFINITY)),
            "chrono_t_max"
        );
        assert_eq!(
            option::<zoo::Lstm<f64>>(
                config
                    .clone()
                    .with_chrono_t_max(10.0)
                    .with_unit_forget_bias(true)
            ),
            "unit_forget_bias"
        );
        let no_bias = config.clone().with_bias(false);
        assert_eq!(
            option::<zoo::Lstm<f64>>(no_bias.clone().with_unit_forget_bias(true)),
            "unit_forget_bias"
        );
        assert_eq!(
            option::<zoo::Lstm<f64>>(no_bias.with_chrono_t_max(10.0)),
            "chrono_t_max"
        );
        assert!(!<NoForget<f64> as Cell>::SPEC.gates.contains(&Gate::Forget));
        assert_eq!(
            option::<NoForget<f64>>(config.clone().with_unit_forget_bias(true)),
            "unit_forget_bias"
        );
        assert_eq!(
            option::<NoForget<f64>>(config.clone().with_chrono_t_max(10.0)),
            "chrono_t_max"
        );
        assert!(Lstm::<NoForget<f64>>::new(config, &mut rand::rng()).is_ok());
    }

    /// The largest entry of `WᵀW − I` over `W`'s columns (`W` tall).
    fn column_orthogonality_error<F: Float>(w: ndarray::ArrayView2<F>) -> f64 {
        let w = w.mapv(|x| x.to_f64_lossy());
        let gram = w.t().dot(&w);
        gram.indexed_iter()
            .map(|((a, b), &g)| (g - f64::from(u8::from(a == b))).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn keras_init_gives_orthogonal_recurrent_kernels_glorot_kernels_and_unit_forget_bias() {
        let (input, hidden) = (5, 6);
        let config = LstmConfig::new(input, hidden)
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_framework_init(crate::Framework::Keras);
        let lstm: Lstm<zoo::Lstm<f32>> =
            Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let forget: Array1<f32> = (0..4 * hidden)
            .map(|row| f32::from(u8::from(row / hidden == 1)))
            .collect();
        for layer_index in [0, 1] {
            let fan_in = if layer_index == 0 { input } else { 2 * hidden };
            let limit = (6.0 / (fan_in + 4 * hidden) as f64).sqrt();
            for direction in Direction::BOTH {
                let weights = lstm.cell(layer_index, direction).unwrap().weights();
                // (4H, H) in PyTorch's orientation: Keras' (H, 4H) has orthonormal rows.
                let error = column_orthogonality_error(weights.weight_hh.view());
                assert!(error < 1e-5, "layer {layer_index}: WᵀW − I up to {error}");
                assert!(
                    weights
                        .weight_ih
                        .iter()
                        .all(|&w| f64::from(w).abs() <= limit)
                );
                assert_eq!(weights.bias_ih.unwrap(), &forget);
                assert!(weights.bias_hh.unwrap().iter().all(|&b| b == 0.0));
            }
        }
    }

    #[test]
    fn flax_init_gives_an_orthogonal_block_per_gate_and_zero_biases() {
        let hidden = 7;
        let config = LstmConfig::new(3, hidden).with_framework_init(crate::Framework::Flax);
        let lstm: Lstm<zoo::Lstm<f64>> =
            Lstm::new(config, &mut ChaCha8Rng::seed_from_u64(8)).unwrap();
        let weights = lstm.cell(0, Direction::Forward).unwrap().weights();
        for gate in 0..4 {
            let block = weights
                .weight_hh
                .slice(s![gate * hidden..(gate + 1) * hidden, ..]);
            let error = column_orthogonality_error(block);
            assert!(error < 1e-12, "gate {gate}: {error}");
        }
        let bound = 2.0 / 3f64.sqrt() / 0.879_625_661_034_239_8;
        assert!(weights.weight_ih.iter().all(|w| w.abs() <= bound));
        assert!(weights.bias_ih.unwrap().iter().all(|&b| b == 0.0));
        assert!(!lstm.config().unit_forget_bias);
    }

    #[test]
    fn pytorch_init_keeps_every_value_the_cells_drew() {
        let config = LstmConfig::new(3, 4).with_num_layers(2);
        let default = layer::<zoo::Lstm<f64>>(config.clone());
        let pytorch =
            layer::<zoo::Lstm<f64>>(config.with_framework_init(crate::Framework::PyTorch));
        for layer_index in [0, 1] {
            let (a, b) = (
                default
                    .cell(layer_index, Direction::Forward)
                    .unwrap()
                    .weights(),
                pytorch
                    .cell(layer_index, Direction::Forward)
                    .unwrap()
                    .weights(),
            );
            assert_eq!(a.weight_ih, b.weight_ih);
            assert_eq!(a.weight_hh, b.weight_hh);
        }
        let bound = 0.5;
        assert!(
            default
                .cell(1, Direction::Forward)
                .unwrap()
                .weights()
                .weight_hh
                .iter()
                .all(|w| w.abs() <= bound)
        );
    }
}
