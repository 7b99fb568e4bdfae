//! 2-D rotary position embedding of DINOv3 (Meta `RopePositionEmbedding`, eval mode).
//!
//! Head dims `[0, dh/4)` and `[dh/2, 3dh/4)` rotate with the patch row (y) frequencies, the other
//! two quarters with the column (x) frequencies; the rotation is "rotate-half" (NeoX), applied to
//! q and k of patch tokens only.

use burn::tensor::{Device, Tensor, TensorData};

/// RoPE periods `p_j = base^(2j / (dh/2))`, j < dh/4, computed in f32 and rounded to bf16
/// (round-to-nearest-even), which is what the released Meta checkpoints store.
pub fn bf16_periods(head_dim: usize, base: f64) -> Vec<f32> {
    let half = (head_dim / 2) as f32;
    (0..head_dim / 4)
        .map(|j| {
            let p = (base as f32).powf(2.0 * j as f32 / half);
            half::bf16::from_f32(p).to_f32()
        })
        .collect()
}

/// Patch-centre coordinates in [-1, 1], `separate` normalization: `2·(i+0.5)/n − 1` in f32.
fn coords(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 2.0 * ((i as f32 + 0.5) / n as f32) - 1.0)
        .collect()
}

/// cos/sin values, each `[Hp·Wp, dh]` row-major (patch order), for a `hp × wp` patch grid.
///
/// Angles are `(2π·coord) / p_j` in f32, the order of operations of Meta's code.
pub fn table_values(periods: &[f32], hp: usize, wp: usize) -> (Vec<f32>, Vec<f32>) {
    let f = periods.len();
    let dh = 4 * f;
    let (ys, xs) = (coords(hp), coords(wp));
    let two_pi = std::f32::consts::TAU;
    let mut cos = Vec::with_capacity(hp * wp * dh);
    let mut sin = Vec::with_capacity(hp * wp * dh);
    let mut row = vec![0f32; dh];
    for &y in &ys {
        for &x in &xs {
            for (j, &p) in periods.iter().enumerate() {
                let ay = (two_pi * y) / p;
                let ax = (two_pi * x) / p;
                // a = [θy_0..F, θx_0..F], tiled twice.
                row[j] = ay;
                row[f + j] = ax;
                row[2 * f + j] = ay;
                row[3 * f + j] = ax;
            }
            cos.extend(row.iter().map(|a| a.cos()));
            sin.extend(row.iter().map(|a| a.sin()));
        }
    }
    (cos, sin)
}

/// [`table_values`] as `[Hp·Wp, dh]` tensors on `device`.
pub fn tables(periods: &[f32], hp: usize, wp: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let (cos, sin) = table_values(periods, hp, wp);
    let shape = vec![hp * wp, 4 * periods.len()];
    (
        Tensor::from_data(TensorData::new(cos, shape.clone()), device),
        Tensor::from_data(TensorData::new(sin, shape), device),
    )
}

/// Rotates the patch tokens of `x` and leaves the first `prefix` tokens unchanged.
///
/// `x`: `[B, H, N, dh]`; `cos`, `sin`: `[N − prefix, dh]`. Returns `[B, H, N, dh]`.
pub fn apply(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>, prefix: usize) -> Tensor<4> {
    let [b, h, n, dh] = x.dims();
    let head = x.clone().slice([0..b, 0..h, 0..prefix, 0..dh]);
    let patches = x.slice([0..b, 0..h, prefix..n, 0..dh]);
    let half = dh / 2;
    let lo = patches.clone().slice([0..b, 0..h, 0..n - prefix, 0..half]);
    let hi = patches.clone().slice([0..b, 0..h, 0..n - prefix, half..dh]);
    let rotated = Tensor::cat(vec![hi.neg(), lo], 3);
    let cos = cos.clone().unsqueeze::<4>();
    let sin = sin.clone().unsqueeze::<4>();
    let out = patches * cos + rotated * sin;
    Tensor::cat(vec![head, out], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_the_released_bf16_values() {
        let want = [
            1.0, 1.3359375, 1.78125, 2.375, 3.15625, 4.21875, 5.625, 7.5, 10.0, 13.3125, 17.75,
            23.75, 31.625, 42.25, 56.25, 75.0,
        ];
        assert_eq!(bf16_periods(64, 100.0), want);
    }

    #[test]
    fn rotation_preserves_norm_and_skips_prefix() {
        let dev = Device::flex();
        let (cos, sin) = tables(&bf16_periods(8, 100.0), 2, 3, &dev);
        let x = Tensor::<4>::random(
            [1, 2, 7, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let y = apply(x.clone(), &cos, &sin, 1);
        let nx: Vec<f32> = x
            .clone()
            .powf_scalar(2.0)
            .sum_dim(3)
            .into_data()
            .try_to_vec()
            .unwrap();
        let ny: Vec<f32> = y
            .clone()
            .powf_scalar(2.0)
            .sum_dim(3)
            .into_data()
            .try_to_vec()
            .unwrap();
        for (a, b) in nx.iter().zip(&ny) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        let x0: Vec<f32> = x
            .slice([0..1, 0..2, 0..1, 0..8])
            .into_data()
            .try_to_vec()
            .unwrap();
        let y0: Vec<f32> = y
            .slice([0..1, 0..2, 0..1, 0..8])
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(x0, y0);
    }
}
