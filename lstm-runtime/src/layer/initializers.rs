//! The weight initializers of the frameworks users come from, selectable per weight
//! ([`Initializers`] in [`LstmConfig::init`](super::config::LstmConfig::init)): PyTorch's
//! uniform `±1/√hidden` (every cell's own init, the default), Keras' `glorot_uniform` kernel and
//! `orthogonal` recurrent kernel, Flax's `lecun_normal` kernel and per-gate `orthogonal`
//! recurrent kernels, zeros.
//!
//! Every matrix here is in this crate's (PyTorch's) orientation, `(gates · hidden, in)`, the
//! transpose of the `(in, gates · hidden)` kernels Keras and Flax keep, so the fans are
//! `fan_in = in` (columns) and `fan_out = gates · hidden` (rows). Keras draws one initializer
//! over the whole kernel; Flax's `LSTMCell`/`OptimizedLSTMCell` draw one per gate
//! (`ii`, `if`, … `(in, hidden)`, `hi`, `hf`, … `(hidden, hidden)`), which matters only for
//! the orthogonal recurrent kernel: Keras' is orthogonal as one `(hidden, 4·hidden)` matrix,
//! Flax's is four orthogonal `(hidden, hidden)` blocks.

use rand::Rng;
use rand_distr::StandardNormal;

/// How one weight of a layer is initialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightInit {
    /// The cell's own init: PyTorch's uniform in `±1/√hidden_size` for the four LSTM weights
    /// (`nn.LSTM.reset_parameters`). Draws nothing beyond what the cell drew.
    #[default]
    PyTorch,
    /// All zeros (Keras' and Flax's `bias_initializer`).
    Zeros,
    /// Glorot/Xavier uniform over the whole matrix (Keras' `glorot_uniform`, the LSTM kernel's
    /// default): uniform in `±√(6 / (fan_in + fan_out))`.
    GlorotUniform,
    /// LeCun normal per gate (Flax's `lecun_normal`, its `LSTMCell` kernel default: JAX's
    /// `variance_scaling(1, "fan_in", "truncated_normal")`): a normal truncated at two standard
    /// deviations, scaled so that the variance is `1 / fan_in`.
    LecunNormal,
    /// Orthogonal over the whole matrix (Keras' `orthogonal`, the recurrent kernel's default,
    /// gain 1): the `(gates · hidden, in)` matrix has orthonormal columns (orthonormal rows when
    /// it is wider than tall), Haar-distributed.
    Orthogonal,
    /// Orthogonal per gate block `(hidden, in)` (Flax's `orthogonal` recurrent kernel init,
    /// applied to each gate's own `hi`, `hf`, … kernel).
    OrthogonalPerGate,
}

/// The initializer of each of a layer's weights: `weight_ih` (Keras' `kernel`), `weight_hh`
/// (`recurrent_kernel`) and both biases. Cells' extra parameters and LSTMP projections keep
/// their own inits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Initializers {
    /// `weight_ih`, `(gates · hidden, input)`.
    pub weight_ih: WeightInit,
    /// `weight_hh`, `(gates · hidden, recurrent)`.
    pub weight_hh: WeightInit,
    /// `bias_ih` and `bias_hh` (their sum is Keras' and Flax's one bias).
    pub bias: WeightInit,
}

impl Initializers {
    /// PyTorch's `nn.LSTM`: every weight uniform in `±1/√hidden_size` (the default).
    pub fn pytorch() -> Self {
        Initializers::default()
    }

    /// Keras 3's `LSTM` defaults: `glorot_uniform` kernel, `orthogonal` recurrent kernel, zeros
    /// bias. Keras also sets `unit_forget_bias=True`:
    /// [`Framework::Keras`] with [`LstmConfig::with_framework_init`](super::config::LstmConfig::with_framework_init)
    /// sets both.
    pub fn keras() -> Self {
        Initializers {
            weight_ih: WeightInit::GlorotUniform,
            weight_hh: WeightInit::Orthogonal,
            bias: WeightInit::Zeros,
        }
    }

    /// Flax's `LSTMCell`/`OptimizedLSTMCell` defaults: `lecun_normal` kernels, `orthogonal`
    /// recurrent kernels per gate, zeros bias.
    pub fn flax() -> Self {
        Initializers {
            weight_ih: WeightInit::LecunNormal,
            weight_hh: WeightInit::OrthogonalPerGate,
            bias: WeightInit::Zeros,
        }
    }
}

/// The framework whose whole initialisation scheme a layer copies
/// ([`LstmConfig::with_framework_init`](super::config::LstmConfig::with_framework_init),
/// `lstm train --init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framework {
    /// [`Initializers::pytorch`], no forget-bias init.
    #[default]
    PyTorch,
    /// [`Initializers::keras`] and `unit_forget_bias`.
    Keras,
    /// [`Initializers::flax`].
    Flax,
}

impl Framework {
    /// The per-weight initializers of this framework.
    pub fn initializers(self) -> Initializers {
        match self {
            Framework::PyTorch => Initializers::pytorch(),
            Framework::Keras => Initializers::keras(),
            Framework::Flax => Initializers::flax(),
        }
    }

    /// Whether the framework starts the forget gate's bias at 1 (Keras' `unit_forget_bias`).
    pub fn unit_forget_bias(self) -> bool {
        self == Framework::Keras
    }
}

/// The standard deviation of a standard normal truncated to `[−2, 2]`; JAX divides by it so
/// that the truncated draws have the variance asked for.
const TRUNCATED_NORMAL_STDDEV: f64 = 0.879_625_661_034_239_8;

impl WeightInit {
    /// The values of a row-major `(rows, cols)` matrix of a cell with `gates` gate blocks of
    /// `rows / gates` rows each, or `None` for [`WeightInit::PyTorch`] (the cell's own values
    /// stay). A bias is a `(rows, 1)` matrix.
    pub(crate) fn draw<R: Rng + ?Sized>(
        self,
        rows: usize,
        cols: usize,
        gates: usize,
        rng: &mut R,
    ) -> Option<Vec<f64>> {
        let fan_in = cols.max(1) as f64;
        let fan_out = rows.max(1) as f64;
        match self {
            WeightInit::PyTorch => None,
            WeightInit::Zeros => Some(vec![0.0; rows * cols]),
            WeightInit::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out)).sqrt();
                Some(
                    (0..rows * cols)
                        .map(|_| rng.random_range(-limit..=limit))
                        .collect(),
                )
            }
            WeightInit::LecunNormal => {
                let scale = (1.0 / fan_in).sqrt() / TRUNCATED_NORMAL_STDDEV;
                Some(
                    (0..rows * cols)
                        .map(|_| scale * truncated_standard_normal(rng))
                        .collect(),
                )
            }
            WeightInit::Orthogonal => Some(orthogonal(rows, cols, rng)),
            WeightInit::OrthogonalPerGate => {
                let block = rows / gates.max(1);
                let mut values = Vec::with_capacity(rows * cols);
                for _ in 0..gates {
                    values.extend(orthogonal(block, cols, rng));
                }
                Some(values)
            }
        }
    }
}

/// A standard normal draw conditioned on `[−2, 2]` (rejection: 95.4% of draws are kept).
fn truncated_standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    loop {
        let x: f64 = rng.sample(StandardNormal);
        if x.abs() <= 2.0 {
            return x;
        }
    }
}

/// A row-major `(rows, cols)` matrix with orthonormal columns (rows when `rows < cols`),
/// distributed as Keras' and JAX's `orthogonal`: the Q of a Gaussian matrix's QR
/// decomposition with `diag(R)` made positive.
///
/// Gram–Schmidt yields exactly that Q (it is the QR with a positive diagonal); it runs twice
/// per vector ("twice is enough", Giraud et al. 2005) so the columns are orthonormal to
/// rounding. A linear-algebra crate would do the same; faer is only an optional dependency here
/// because of its compile time.
fn orthogonal<R: Rng + ?Sized>(rows: usize, cols: usize, rng: &mut R) -> Vec<f64> {
    let (tall, short) = (rows.max(cols), rows.min(cols));
    // `short` vectors of length `tall`, each the column of a tall Gaussian matrix.
    let mut vectors: Vec<Vec<f64>> = (0..short)
        .map(|_| (0..tall).map(|_| rng.sample(StandardNormal)).collect())
        .collect();
    for j in 0..short {
        let (done, rest) = vectors.split_at_mut(j);
        let v = &mut rest[0];
        for _ in 0..2 {
            for q in done.iter() {
                let dot: f64 = q.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(q).for_each(|(x, q)| *x -= dot * q);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    }
    let mut values = vec![0.0; rows * cols];
    for (j, vector) in vectors.iter().enumerate() {
        for (i, &x) in vector.iter().enumerate() {
            // Tall: vector j is column j. Wide: vector j is row j.
            let index = if rows >= cols {
                i * cols + j
            } else {
                j * cols + i
            };
            values[index] = x;
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn gram(values: &[f64], rows: usize, cols: usize, of_columns: bool) -> Vec<Vec<f64>> {
        let at = |i: usize, j: usize| values[i * cols + j];
        let (n, len) = if of_columns {
            (cols, rows)
        } else {
            (rows, cols)
        };
        (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| {
                        (0..len)
                            .map(|k| {
                                if of_columns {
                                    at(k, a) * at(k, b)
                                } else {
                                    at(a, k) * at(b, k)
                                }
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    fn assert_identity(gram: &[Vec<f64>], tolerance: f64) {
        for (a, row) in gram.iter().enumerate() {
            for (b, &value) in row.iter().enumerate() {
                let expected = f64::from(u8::from(a == b));
                assert!(
                    (value - expected).abs() < tolerance,
                    "Gram matrix [{a}][{b}] = {value}"
                );
            }
        }
    }

    #[test]
    fn orthogonal_tall_has_orthonormal_columns_and_wide_orthonormal_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let tall = WeightInit::Orthogonal.draw(48, 12, 4, &mut rng).unwrap();
        assert_identity(&gram(&tall, 48, 12, true), 1e-12);
        let wide = WeightInit::Orthogonal.draw(5, 9, 1, &mut rng).unwrap();
        assert_identity(&gram(&wide, 5, 9, false), 1e-12);
    }

    #[test]
    fn orthogonal_per_gate_makes_each_gate_block_orthogonal_not_the_whole() {
        let (hidden, gates) = (8, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let values = WeightInit::OrthogonalPerGate
            .draw(gates * hidden, hidden, gates, &mut rng)
            .unwrap();
        for block in values.chunks(hidden * hidden) {
            assert_identity(&gram(block, hidden, hidden, true), 1e-12);
        }
        // Four stacked orthogonal blocks: every column has squared norm 4, not 1.
        let whole = gram(&values, gates * hidden, hidden, true);
        assert!((whole[0][0] - 4.0).abs() < 1e-12);
    }

    /// Sample mean and variance.
    fn moments(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, variance)
    }

    #[test]
    fn glorot_uniform_is_bounded_with_the_variance_of_its_limit() {
        let (rows, cols) = (4 * 64, 48);
        let values = WeightInit::GlorotUniform
            .draw(rows, cols, 4, &mut ChaCha8Rng::seed_from_u64(3))
            .unwrap();
        let limit = (6.0 / (rows + cols) as f64).sqrt();
        assert!(values.iter().all(|x| x.abs() <= limit));
        let (mean, variance) = moments(&values);
        let expected = limit * limit / 3.0;
        // n = 12,288 draws of U(−a, a): the sample variance has relative standard deviation
        // √((μ₄/σ⁴ − 1)/n) = √(0.8/n) ≈ 0.8% (μ₄/σ⁴ = 1.8 for a uniform), and the mean has
        // standard deviation σ/√n; 5 standard deviations of each.
        let n = values.len() as f64;
        assert!(
            (variance / expected - 1.0).abs() < 5.0 * (0.8 / n).sqrt(),
            "{variance} vs {expected}"
        );
        assert!(mean.abs() < 5.0 * (expected / n).sqrt(), "mean {mean}");
    }

    #[test]
    fn lecun_normal_has_variance_one_over_fan_in_and_no_draw_past_two_sigma() {
        let (rows, cols) = (4 * 64, 40);
        let values = WeightInit::LecunNormal
            .draw(rows, cols, 4, &mut ChaCha8Rng::seed_from_u64(4))
            .unwrap();
        let expected = 1.0 / cols as f64;
        let bound = 2.0 * (1.0 / cols as f64).sqrt() / TRUNCATED_NORMAL_STDDEV;
        assert!(values.iter().all(|x| x.abs() <= bound));
        let (mean, variance) = moments(&values);
        // A standard normal truncated to [−2, 2], Z = Φ(2) − Φ(−2), has σ² = 1 − 4φ(2)/Z
        // = 0.7737 and μ₄ = 3 − 2(2³ + 3·2)φ(2)/Z = 1.4162, kurtosis μ₄/σ⁴ = 2.366, so with
        // n = 10,240 the sample variance has relative standard deviation √(1.366/n) ≈ 1.2%;
        // 5 of them.
        let n = values.len() as f64;
        assert!(
            (variance / expected - 1.0).abs() < 5.0 * (1.366 / n).sqrt(),
            "{variance} vs {expected}"
        );
        assert!(mean.abs() < 5.0 * (expected / n).sqrt(), "mean {mean}");
    }

    #[test]
    fn pytorch_draws_nothing_and_zeros_are_zeros() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert_eq!(WeightInit::PyTorch.draw(4, 3, 1, &mut rng), None);
        assert_eq!(
            WeightInit::Zeros.draw(4, 1, 4, &mut rng),
            Some(vec![0.0; 4])
        );
    }
}
