//! Bilinear upsampling with `align_corners=True` as two matmuls with interpolation matrices.
//!
//! burn's `interpolate` has no bilinear backward on GPU backends; `Ry · X · Rxᵀ` is exact,
//! differentiable on every backend and as fast.

use burn::tensor::{Device, Tensor, TensorData};

/// Per output index `o`, the two inputs it blends and the weight of the second:
/// `out[o] = (1 - f)·in[i0] + f·in[i1]` (`align_corners=True`). Computed in f32 like PyTorch's
/// CPU kernel (`scale = (in-1)/(out-1)`, `src = scale * o`). One definition for the matrix form
/// below and the CPU kernels' direct form ([`super::fused`]).
pub fn blend_weights(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = if output > 1 {
        (input as f32 - 1.0) / (output as f32 - 1.0)
    } else {
        0.0
    };
    (0..output)
        .map(|o| {
            let src = scale * o as f32;
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// 1-D interpolation matrix `[out, in]` of `align_corners=True` bilinear resampling.
pub fn interp_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut r = vec![0f32; output * input];
    for (o, (i0, i1, f)) in blend_weights(input, output).into_iter().enumerate() {
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
        let rx: Tensor<2> =
            Tensor::from_data(TensorData::new(interp_matrix(w, size), [size, w]), device);
        Self {
            ry,
            rxt: rx.transpose(),
            grid,
            size,
        }
    }

    pub fn grid(&self) -> [usize; 2] {
        self.grid
    }

    /// `[B, C, h, w] -> [B, C, S, S]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let s = self.size;
        // Along x: [B*C*h, w] @ [w, S].
        let xs = x
            .reshape([b * c * h, w])
            .matmul(self.rxt.clone())
            .reshape([b * c, h, s]);
        // Along y: [S, h] @ [h, S] per (B, C).
        let ry = self.ry.clone().unsqueeze_dim::<3>(0).expand([b * c, s, h]);
        ry.matmul(xs).reshape([b, c, s, s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

    #[test]
    fn rows_sum_to_one_and_corners_align() {
        for (i, o) in [(4, 16), (3, 12), (32, 512), (5, 5), (1, 7)] {
            let r = interp_matrix(i, o);
            for row in r.chunks(i) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
            assert_eq!(r[0], 1.0);
            assert_eq!(
                r[(o - 1) * i + i - 1],
                1.0,
                "last output sits on the last input"
            );
        }
    }

    #[test]
    fn matches_burn_bilinear_align_corners() {
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 2, 3, 5], Distribution::Normal(0.0, 1.0), &device);
        let got = Upsampler::new([3, 5], 11, &device).forward(x.clone());
        let opts = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(true)
            .with_output_size([11, 11]);
        let want = interpolate(x, opts);
        let diff = (got - want).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "max diff {diff}");
    }
}
