//! The pieces a training loop needs besides the layer: optimizers that turn gradients into
//! updated weights (`optim/`), losses that start backpropagation (`loss.rs`), and
//! [`Linear`](linear::Linear), the affine head that maps a layer's outputs to predictions
//! (`linear.rs`). The loop itself, its tasks and its checkpoints are the `lstm` facade's
//! (`src/train/`); checkpoints are written by `io/checkpoint.rs`.

pub(crate) mod linear;
pub mod loss;
pub mod optim;
