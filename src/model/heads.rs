//! Per-tap heads on the adapted features: cross-modal map, AACM and global logits.

use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, softmax};

use super::config::Protocol;
use super::upsample::Upsampler;

/// The two adapted prompts `a0`, `a1` `[B, E]` as the text matrix `[B, E, 2]`.
///
/// `Reference`: `cat([a0, a1], 1).view(B, E, 2)`, which **interleaves**: column j holds entries
/// j, j+2, j+4, ... of the 2E-vector `[a0, a1]` (column 0 is not `a0`). `Corrected`: `a0` and
/// `a1` are the two columns, as the paper says.
pub fn pair_prompts(a0: Tensor<2>, a1: Tensor<2>, protocol: Protocol) -> Tensor<3> {
    let [b, e] = a0.dims();
    match protocol {
        Protocol::Reference => Tensor::cat(vec![a0, a1], 1).reshape([b, e, 2]),
        Protocol::Corrected => Tensor::stack(vec![a0, a1], 2),
    }
}

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
    cls.unsqueeze_dim::<3>(1)
        .matmul(text.swap_dims(1, 2))
        .mul_scalar(100.0)
        .reshape([b, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn reference_pairing_interleaves() {
        let d = Device::flex();
        let a0 = Tensor::<2>::from_data(TensorData::new(vec![0f32, 1., 2.], [1, 3]), &d);
        let a1 = Tensor::<2>::from_data(TensorData::new(vec![10f32, 11., 12.], [1, 3]), &d);
        let col = |t: Tensor<3>, c: usize| {
            t.narrow(2, c, 1)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let r = pair_prompts(a0.clone(), a1.clone(), Protocol::Reference);
        assert_eq!(col(r.clone(), 0), vec![0., 2., 11.]);
        assert_eq!(col(r, 1), vec![1., 10., 12.]);
        let c = pair_prompts(a0, a1, Protocol::Corrected);
        assert_eq!(col(c.clone(), 0), vec![0., 1., 2.]);
        assert_eq!(col(c, 1), vec![10., 11., 12.]);
    }
}
