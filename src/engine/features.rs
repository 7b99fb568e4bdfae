//! Tap features of many images held in host memory, and batches cut from them.
//!
//! The backbone is frozen and the reference applies no augmentation, so an image's tap features are
//! a pure function of the image: they are extracted once and reused by every epoch, every evaluated
//! checkpoint and every variant sharing the taps. Storage is f32 (exact) or f16 (half the memory:
//! full-size VisA is 36 GB in f32); training always reads the same representation, so a resumed
//! run and a fresh one see identical inputs.

use burn::tensor::{Device, Tensor, TensorData};
use half::f16;

use crate::io::HostTensor;

/// Element type of stored features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    #[default]
    F32,
    F16,
}

#[derive(Debug, Clone)]
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Store {
    fn new(dtype: FeatureDtype) -> Self {
        match dtype {
            FeatureDtype::F32 => Store::F32(Vec::new()),
            FeatureDtype::F16 => Store::F16(Vec::new()),
        }
    }
    fn extend(&mut self, values: &[f32]) {
        match self {
            Store::F32(v) => v.extend_from_slice(values),
            Store::F16(v) => v.extend(values.iter().map(|&x| f16::from_f32(x))),
        }
    }
    fn copy_into(&self, start: usize, len: usize, out: &mut Vec<f32>) {
        match self {
            Store::F32(v) => out.extend_from_slice(&v[start..start + len]),
            Store::F16(v) => out.extend(v[start..start + len].iter().map(|x| x.to_f32())),
        }
    }
}

/// Per-image tap features: for each image and tap, the CLS row `[D]` and the standardized patch
/// rows `[h*w, D]`.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub dim: usize,
    pub grid: [usize; 2],
    pub n_taps: usize,
    cls: Store,
    patches: Store,
    len: usize,
}

impl FeatureTable {
    pub fn new(dim: usize, grid: [usize; 2], n_taps: usize, dtype: FeatureDtype) -> Self {
        Self {
            dim,
            grid,
            n_taps,
            cls: Store::new(dtype),
            patches: Store::new(dtype),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn patch_len(&self) -> usize {
        self.grid[0] * self.grid[1] * self.dim
    }

    /// Appends one image: `cls[t]` has `D` values, `patches[t]` has `h*w*D` values.
    pub fn push(&mut self, cls: &[&[f32]], patches: &[&[f32]]) {
        assert_eq!(cls.len(), self.n_taps, "one CLS row per tap");
        assert_eq!(patches.len(), self.n_taps, "one patch block per tap");
        for (c, p) in cls.iter().zip(patches) {
            assert_eq!(c.len(), self.dim, "CLS width");
            assert_eq!(p.len(), self.patch_len(), "patch block size");
            self.cls.extend(c);
            self.patches.extend(p);
        }
        self.len += 1;
    }

    /// Appends a batch from the backbone's per-tap outputs `cls [B, D]` and `patches [B, h*w, D]`.
    pub fn push_batch(&mut self, cls: &[Tensor<2>], patches: &[Tensor<3>]) {
        let cls: Vec<Vec<f32>> = cls
            .iter()
            .map(|t| HostTensor::from_tensor(t.clone()).to_f32_vec())
            .collect();
        let patches: Vec<Vec<f32>> = patches
            .iter()
            .map(|t| HostTensor::from_tensor(t.clone()).to_f32_vec())
            .collect();
        let batch = cls.first().map_or(0, |c| c.len() / self.dim);
        let pl = self.patch_len();
        for b in 0..batch {
            let c: Vec<&[f32]> = cls
                .iter()
                .map(|v| &v[b * self.dim..(b + 1) * self.dim])
                .collect();
            let p: Vec<&[f32]> = patches.iter().map(|v| &v[b * pl..(b + 1) * pl]).collect();
            self.push(&c, &p);
        }
    }

    /// Per tap `cls [B, D]` and `patches [B, h*w, D]` for the images `indices`, on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Vec<Tensor<2>>, Vec<Tensor<3>>) {
        let (d, pl, hw) = (self.dim, self.patch_len(), self.grid[0] * self.grid[1]);
        let b = indices.len();
        let mut cls = Vec::with_capacity(self.n_taps);
        let mut patches = Vec::with_capacity(self.n_taps);
        for t in 0..self.n_taps {
            let mut c = Vec::with_capacity(b * d);
            let mut p = Vec::with_capacity(b * pl);
            for &i in indices {
                assert!(i < self.len, "feature index {i} out of range {}", self.len);
                let row = i * self.n_taps + t;
                self.cls.copy_into(row * d, d, &mut c);
                self.patches.copy_into(row * pl, pl, &mut p);
            }
            cls.push(Tensor::from_data(TensorData::new(c, [b, d]), device));
            patches.push(Tensor::from_data(TensorData::new(p, [b, hw, d]), device));
        }
        (cls, patches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_gather_the_right_rows_in_both_dtypes() {
        let device = Device::flex();
        for dtype in [FeatureDtype::F32, FeatureDtype::F16] {
            let mut t = FeatureTable::new(2, [1, 2], 2, dtype);
            for i in 0..3 {
                let base = i as f32 * 10.0;
                let cls = [[base, base + 1.0], [base + 2.0, base + 3.0]];
                let pat = [[base; 4], [base + 0.5; 4]];
                t.push(&[&cls[0], &cls[1]], &[&pat[0], &pat[1]]);
            }
            let (cls, patches) = t.batch(&[2, 0], &device);
            let c1: Vec<f32> = cls[1].clone().into_data().try_into_vec().unwrap();
            assert_eq!(c1, vec![22.0, 23.0, 2.0, 3.0]);
            let p0: Vec<f32> = patches[0].clone().into_data().try_into_vec().unwrap();
            assert_eq!(p0, vec![20.0, 20.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0]);
            assert_eq!(patches[1].dims(), [2, 2, 2]);
        }
    }
}
