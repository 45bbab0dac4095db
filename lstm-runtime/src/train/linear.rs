//! [`Linear`], the affine layer `y = x · Wᵀ + b` (PyTorch `nn.Linear`, Keras `Dense` without
//! activation): the head that turns a recurrent layer's hidden states into predictions or
//! class logits. Forward and backward are one GEMM each (through [`crate::linalg`]); the
//! weights are exposed to optimizers and checkpoints through [`Parameters`] as `weight` and
//! `bias`.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewD, ArrayViewMutD, Axis};
use rand::Rng;

use crate::error::{Result, expect_shape};
use crate::float::Float;
use crate::linalg;
use crate::params::{Gradients, Parameters};

/// An affine layer: `output = input · weightᵀ + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<F> {
    /// `(out_features, in_features)`, PyTorch's layout.
    pub weight: Array2<F>,
    /// `(out_features,)`.
    pub bias: Array1<F>,
}

impl<F: Float> Linear<F> {
    /// A layer with PyTorch's default initialisation: weight and bias uniform in
    /// `±1/√in_features` (`nn.Linear.reset_parameters`: Kaiming-uniform with `a = √5` reduces
    /// to this bound for the weight, and the bias uses the same bound).
    pub fn new<R: Rng + ?Sized>(in_features: usize, out_features: usize, rng: &mut R) -> Self {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let mut uniform = || F::of(rng.random_range(-bound..bound));
        let weight = Array2::from_shape_fn((out_features, in_features), |_| uniform());
        let bias = Array1::from_shape_fn(out_features, |_| uniform());
        Linear { weight, bias }
    }

    /// A layer with every weight zero.
    pub fn zeros(in_features: usize, out_features: usize) -> Self {
        Linear {
            weight: Array2::zeros((out_features, in_features)),
            bias: Array1::zeros(out_features),
        }
    }

    /// Features each input row has.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// Features each output row has.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    /// `input · weightᵀ + bias` for `input: (rows, in_features)`; returns
    /// `(rows, out_features)`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) naming `input` if its width is
    /// not `in_features`, or `bias` if the bias does not match the weight.
    pub fn forward(&self, input: ArrayView2<'_, F>) -> Result<Array2<F>> {
        self.check_weights()?;
        let rows = input.nrows();
        expect_shape("input", &[rows, self.in_features()], input.shape())?;
        let mut output = Array2::zeros((rows, self.out_features()));
        for mut row in output.rows_mut() {
            row.assign(&self.bias);
        }
        linalg::matmul_nt(
            F::one(),
            input,
            self.weight.view(),
            F::one(),
            output.view_mut(),
        )?;
        Ok(output)
    }

    /// Gradients of a loss with respect to `weight`, `bias` and `input`, given the `input` of
    /// the forward pass and `grad_output = dL/d output`, `(rows, out_features)`.
    ///
    /// Returns [`Gradients`] with `weight` (`grad_outputᵀ · input`), `bias` (`grad_output`
    /// summed over rows) and `input` (`grad_output · weight`).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`](crate::error::Error::ShapeMismatch) naming `input` or `grad_output`
    /// if a shape does not fit.
    pub fn backward(
        &self,
        input: ArrayView2<'_, F>,
        grad_output: ArrayView2<'_, F>,
    ) -> Result<Gradients<F>> {
        self.check_weights()?;
        let rows = input.nrows();
        expect_shape("input", &[rows, self.in_features()], input.shape())?;
        expect_shape(
            "grad_output",
            &[rows, self.out_features()],
            grad_output.shape(),
        )?;
        let mut weight = Array2::zeros(self.weight.raw_dim());
        linalg::matmul_tn(F::one(), grad_output, input, F::zero(), weight.view_mut())?;
        let bias = grad_output.sum_axis(Axis(0));
        let mut grad_input = Array2::zeros(input.raw_dim());
        linalg::matmul_nn(
            F::one(),
            grad_output,
            self.weight.view(),
            F::zero(),
            grad_input.view_mut(),
        )?;
        let mut grads = Gradients::new();
        grads.insert("weight", weight.into_dyn());
        grads.insert("bias", bias.into_dyn());
        grads.insert("input", grad_input.into_dyn());
        Ok(grads)
    }

    /// `Ok` if the bias has one value per output feature (the fields are public, so a user
    /// may have replaced one of them).
    fn check_weights(&self) -> Result<()> {
        expect_shape("bias", &[self.out_features()], self.bias.shape())
    }
}

impl<F: Float> Parameters<F> for Linear<F> {
    fn visit_parameters(&self, visitor: &mut dyn FnMut(&str, ArrayViewD<'_, F>)) {
        visitor("weight", self.weight.view().into_dyn());
        visitor("bias", self.bias.view().into_dyn());
    }

    fn visit_parameters_mut(&mut self, visitor: &mut dyn FnMut(&str, ArrayViewMutD<'_, F>)) {
        visitor("weight", self.weight.view_mut().into_dyn());
        visitor("bias", self.bias.view_mut().into_dyn());
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::error::Error;

    fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
    }

    /// `Σ_ij weights_ij · output_ij`: a scalar loss whose `dL/d output` is `weights`.
    fn weighted_sum(output: &Array2<f64>, weights: &Array2<f64>) -> f64 {
        (output * weights).sum()
    }

    #[test]
    fn init_is_bounded_by_one_over_sqrt_fan_in() {
        let layer = Linear::<f64>::new(16, 5, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(layer.weight.dim(), (5, 16));
        assert_eq!(layer.bias.dim(), 5);
        assert!(
            layer
                .weight
                .iter()
                .chain(&layer.bias)
                .all(|v| v.abs() < 0.25)
        );
        assert!(layer.weight.iter().any(|v| v.abs() > 0.2));
        let same = Linear::<f64>::new(16, 5, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(layer, same);
    }

    #[test]
    fn forward_matches_loops() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let layer = Linear::<f64>::new(4, 3, &mut rng);
        let input = random(&mut rng, 5, 4);
        let output = layer.forward(input.view()).unwrap();
        for row in 0..5 {
            for out in 0..3 {
                let mut expected = layer.bias[out];
                for inp in 0..4 {
                    expected += input[[row, inp]] * layer.weight[[out, inp]];
                }
                assert!((output[[row, out]] - expected).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let layer = Linear::<f64>::new(4, 3, &mut rng);
        let input = random(&mut rng, 5, 4);
        let loss_weights = random(&mut rng, 5, 3);
        let grads = layer.backward(input.view(), loss_weights.view()).unwrap();
        let eps = 1e-6;
        let loss = |layer: &Linear<f64>, input: &Array2<f64>| {
            weighted_sum(&layer.forward(input.view()).unwrap(), &loss_weights)
        };

        let mut names = Vec::new();
        layer.visit_parameters(&mut |name, _| names.push(name.to_string()));
        for name in names {
            let analytic = grads.get(&name).unwrap().clone();
            for index in 0..analytic.len() {
                let shifted = |delta: f64| {
                    let mut moved = layer.clone();
                    moved.visit_parameters_mut(&mut |visited, mut values| {
                        if visited == name {
                            values.as_slice_mut().unwrap()[index] += delta;
                        }
                    });
                    loss(&moved, &input)
                };
                let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
                let found = analytic.as_slice().unwrap()[index];
                assert!((found - numeric).abs() < 1e-7, "{name}[{index}]");
            }
        }
        let analytic = grads.get("input").unwrap();
        for (index, found) in analytic.iter().enumerate() {
            let shifted = |delta: f64| {
                let mut moved = input.clone();
                moved.as_slice_mut().unwrap()[index] += delta;
                loss(&layer, &moved)
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!((found - numeric).abs() < 1e-7, "input[{index}]");
        }
    }

    #[test]
    fn parameters_are_weight_then_bias() {
        let layer = Linear::<f32>::zeros(3, 2);
        assert_eq!(
            layer.parameter_shapes(),
            vec![
                ("weight".to_string(), vec![2, 3]),
                ("bias".to_string(), vec![2])
            ]
        );
        assert_eq!(layer.num_parameters(), 8);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut layer = Linear::<f64>::zeros(3, 2);
        let input = Array2::zeros((4, 2));
        assert_eq!(
            layer.forward(input.view()),
            Err(Error::shape_mismatch("input", &[4, 3], &[4, 2]))
        );
        let input = Array2::zeros((4, 3));
        let grad = Array2::zeros((3, 2));
        assert_eq!(
            layer.backward(input.view(), grad.view()),
            Err(Error::shape_mismatch("grad_output", &[4, 2], &[3, 2]))
        );
        layer.bias = Array1::zeros(5);
        assert_eq!(
            layer.forward(input.view()),
            Err(Error::shape_mismatch("bias", &[2], &[5]))
        );
    }
}
