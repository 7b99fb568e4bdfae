//! Per-tap heads on the adapted features: cross-modal map, AACM and global logits.

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::Tensor;

use super::upsample::Upsampler;

/// `F.normalize(x, dim)`: `x / max(||x||_2, 1e-12)`.
pub fn l2_normalize<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let norm = (x.clone() * x.clone()).sum_dim(dim).sqrt().clamp_min(1e-12);
    x / norm
}

/// Tokens `[B, h*w, C]` (row-major grid) -> `[B, C, h, w]`, as `x.permute(0,2,1).view(B,C,h,w)`.
fn to_grid(x: Tensor<3>, grid: [usize; 2]) -> Tensor<4> {
    let [b, _, c] = x.dims();
    x.swap_dims(1, 2).reshape([b, c, grid[0], grid[1]])
}

/// Cross-modal map: `softmax_c(up(100 p'·T~))`; `patches [B, N, D]` normalized,
/// `text [B, 2, D]` (T~ transposed) -> `[B, 2, S, S]`.
pub fn cross_modal_map(patches: Tensor<3>, text: Tensor<3>, up: &Upsampler) -> Tensor<4> {
    let logits = patches.matmul(text.swap_dims(1, 2)).mul_scalar(100.0);
    softmax(up.forward(to_grid(logits, up.grid())), 1)
}

/// Anomaly-aware calibration map: `a = sigmoid(up(10 p'·cls'))` -> `[1 - a, a]` `[B, 2, S, S]`.
pub fn aacm(patches: Tensor<3>, cls: Tensor<2>, up: &Upsampler) -> Tensor<4> {
    let logits = patches.matmul(cls.unsqueeze_dim::<3>(2)).mul_scalar(10.0);
    let a = sigmoid(up.forward(to_grid(logits, up.grid())));
    Tensor::cat(vec![a.clone().neg().add_scalar(1.0), a], 1)
}

/// Global logits `100 cls'·T~`: `cls [B, D]`, `text [B, 2, D]` -> `[B, 2]`.
pub fn global_logits(cls: Tensor<2>, text: Tensor<3>) -> Tensor<2> {
    let [b, _, _] = text.dims();
    cls.unsqueeze_dim::<3>(1).matmul(text.swap_dims(1, 2)).mul_scalar(100.0).reshape([b, 2])
}
