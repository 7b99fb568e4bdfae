//! Row-wise LayerNorm on the rayon pool.

use rayon::prelude::*;

/// Rows per rayon task (a 1024-wide row is 4 KiB).
const ROWS_PER_TASK: usize = 16;

/// `Σ row` with 16 independent lanes (vectorises without reassociation licence).
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = (x − mean)/√(var + eps) · gamma + beta` over each row of `d` values (population
/// variance, as `nn.LayerNorm`). `x`, `out`: `[M, d]`.
pub fn layer_norm(
    x: &[f32],
    d: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    out: &mut [f32],
) {
    assert_eq!(x.len(), out.len(), "layer_norm: x and out differ in size");
    assert!(
        gamma.len() == d && beta.is_none_or(|b| b.len() == d),
        "layer_norm: affine size"
    );
    out.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(x.par_chunks(ROWS_PER_TASK * d))
        .for_each(|(out, x)| {
            for (o, r) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                let mean = lane_sum(r, |v| v) / d as f32;
                let var = lane_sum(r, |v| (v - mean) * (v - mean)) / d as f32;
                let rstd = 1.0 / (var + eps).sqrt();
                for (j, (o, &v)) in o.iter_mut().zip(r).enumerate() {
                    let y = (v - mean) * rstd * gamma[j];
                    *o = match beta {
                        Some(b) => y + b[j],
                        None => y,
                    };
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_layer_norm() {
        let (m, d) = (37, 45);
        let x: Vec<f32> = (0..m * d)
            .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 11.0)
            .collect();
        let g: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 * 0.01).collect();
        let b: Vec<f32> = (0..d).map(|j| j as f32 * -0.02).collect();
        let mut out = vec![0f32; m * d];
        layer_norm(&x, d, &g, Some(&b), 1e-5, &mut out);
        for i in 0..m {
            let r: Vec<f64> = x[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect();
            let mean = r.iter().sum::<f64>() / d as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (r[j] - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64;
                assert!((out[i * d + j] as f64 - want).abs() < 1e-5, "[{i},{j}]");
            }
        }
    }
}
