//! Bottleneck adapter: `h = LeakyReLU(W1 x)`, `y = LeakyReLU(W2 h)`, no biases, slope 0.01.
//!
//! Weights are kept in PyTorch's `[out, in]` layout so checkpoints (ours and the reference's
//! `fc1.0.weight` / `fc2.0.weight`) need no transposition.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::leaky_relu;

/// LeakyReLU slope of `nn.LeakyReLU()`.
pub const LEAKY_SLOPE: f64 = 0.01;

#[derive(Module, Debug)]
pub struct Adapter {
    /// `[bottleneck, c]` (PyTorch `fc1.0.weight`).
    pub fc1: Param<Tensor<2>>,
    /// `[c, bottleneck]` (PyTorch `fc2.0.weight`).
    pub fc2: Param<Tensor<2>>,
}

/// `x W^T` for a PyTorch-layout weight `[out, in]`, on any rank (`[..., in] -> [..., out]`).
pub fn linear_t<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    burn::tensor::module::linear(x, weight.transpose(), None)
}

impl Adapter {
    /// Hidden activation `h` `[..., b]` (what the prompt adapters' output is).
    pub fn hidden<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        leaky_relu(linear_t(x, self.fc1.val()), LEAKY_SLOPE)
    }

    /// Adapter output `y` `[..., c]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        leaky_relu(linear_t(self.hidden(x), self.fc2.val()), LEAKY_SLOPE)
    }
}
