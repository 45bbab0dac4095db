//! Dropout between stacked layers (PyTorch `nn.LSTM(dropout=p)`): in training mode, each
//! input of layers `1..num_layers` is zeroed with probability `p` and the rest are scaled by
//! `1 / (1 − p)` (inverted dropout, so inference needs no rescaling).
//!
//! Masks are reproducible: every call that drops draws one seed from the layer's generator,
//! and each layer boundary draws its mask from its own stream of that seed, element by element
//! in `(time, batch, feature)` order. So a chunked inference pass and a whole-sequence
//! training pass apply the same mask, and a cloned layer repeats its original's masks. The
//! dropout inside the recurrence is `regularization/`'s.

use ndarray::{Array3, ArrayViewMut3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::float::Float;

/// The mask stream of one layer boundary for one call.
pub(crate) struct Dropout {
    rng: ChaCha8Rng,
    /// Probability of keeping a value.
    keep: f64,
}

impl Dropout {
    /// The stream of boundary `boundary` (between layers `boundary` and `boundary + 1`) for a
    /// call whose dropout seed is `call_seed`, dropping with probability `probability`.
    pub(crate) fn new(call_seed: u64, boundary: usize, probability: f64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(call_seed);
        rng.set_stream(boundary as u64);
        Dropout {
            rng,
            keep: 1.0 - probability,
        }
    }

    /// The next multiplier: `1 / keep` with probability `keep`, else 0.
    fn next<F: Float>(&mut self) -> F {
        let draw: f64 = self.rng.random();
        if draw < self.keep {
            F::of(1.0 / self.keep)
        } else {
            F::zero()
        }
    }

    /// The next `shape` multipliers, in logical order.
    pub(crate) fn mask<F: Float>(&mut self, shape: (usize, usize, usize)) -> Array3<F> {
        let mut mask = Array3::zeros(shape);
        mask.iter_mut().for_each(|value| *value = self.next());
        mask
    }

    /// Multiplies `values` by the next multipliers, in logical order (the same ones
    /// [`Dropout::mask`] would give for the same position in the stream).
    pub(crate) fn apply<F: Float>(&mut self, mut values: ArrayViewMut3<'_, F>) {
        values
            .iter_mut()
            .for_each(|value| *value *= self.next::<F>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_see_the_mask_of_the_whole() {
        let whole: Array3<f64> = Dropout::new(7, 1, 0.5).mask((6, 2, 3));
        let mut chunked = Array3::from_elem((6, 2, 3), 1.0);
        let mut stream = Dropout::new(7, 1, 0.5);
        stream.apply(chunked.slice_mut(ndarray::s![..4, .., ..]));
        stream.apply(chunked.slice_mut(ndarray::s![4.., .., ..]));
        assert_eq!(whole, chunked);
        assert!(whole.iter().all(|&m| m == 0.0 || m == 2.0));
        assert!(whole.iter().any(|&m| m == 0.0) && whole.iter().any(|&m| m == 2.0));
        let other: Array3<f64> = Dropout::new(7, 2, 0.5).mask((6, 2, 3));
        assert_ne!(whole, other, "boundaries draw independent masks");
    }

    #[test]
    fn probability_one_drops_everything() {
        let mask: Array3<f32> = Dropout::new(1, 0, 1.0).mask((2, 2, 2));
        assert!(mask.iter().all(|&m| m == 0.0));
    }
}
