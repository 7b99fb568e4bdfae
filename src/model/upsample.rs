//! Bilinear upsampling with `align_corners=True` as two matmuls with interpolation matrices.
//!
//! burn's `interpolate` has no bilinear backward on GPU backends; `Ry · X · Rxᵀ` is exact,
//! differentiable on every backend and as fast.

use burn::tensor::{Device, Tensor, TensorData};

/// 1-D interpolation matrix `[out, in]` of `align_corners=True` bilinear resampling.
/// Computed in f32 like PyTorch's CPU kernel (`scale = (in-1)/(out-1)`, `src = scale * o`).
pub fn interp_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut r = vec![0f32; output * input];
    let scale = if output > 1 { (input as f32 - 1.0) / (output as f32 - 1.0) } else { 0.0 };
    for o in 0..output {
        let src = scale * o as f32;
        let i0 = (src.floor() as usize).min(input - 1);
        let i1 = (i0 + 1).min(input - 1);
        let f = src - i0 as f32;
        r[o * input + i0] += 1.0 - f;
        r[o * input + i1] += f;
    }
    r
}

/// Upsampler from an `h x w` grid to `S x S`.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// `[S, h]`.
    ry: Tensor<2>,
    /// `[w, S]` (`Rxᵀ`).
    rxt: Tensor<2>,
    grid: [usize; 2],
    size: usize,
}

impl Upsampler {
    pub fn new(grid: [usize; 2], size: usize, device: &Device) -> Self {
        let [h, w] = grid;
        let ry = Tensor::from_data(TensorData::new(interp_matrix(h, size), [size, h]), device);
        let rx: Tensor<2> = Tensor::from_data(TensorData::new(interp_matrix(w, size), [size, w]), device);
        Self { ry, rxt: rx.transpose(), grid, size }
    }

    pub fn grid(&self) -> [usize; 2] {
        self.grid
    }

    /// `[B, C, h, w] -> [B, C, S, S]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let s = self.size;
        // Along x: [B*C*h, w] @ [w, S].
        let xs = x.reshape([b * c * h, w]).matmul(self.rxt.clone()).reshape([b * c, h, s]);
        // Along y: [S, h] @ [h, S] per (B, C).
        let ry = self.ry.clone().unsqueeze_dim::<3>(0).expand([b * c, s, h]);
        ry.matmul(xs).reshape([b, c, s, s])
    }
}
