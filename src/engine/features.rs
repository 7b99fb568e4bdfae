//! Tap features of images on the host: one image's ([`ImageFeatures`]), many images' in memory
//! ([`FeatureTable`], f32 or f16), and the batch tensors the adapters read, cut from either.
//!
//! The backbone is frozen and the reference applies no augmentation, so an image's tap features
//! are a pure function of the image: computed once, they serve every epoch and every evaluated
//! checkpoint. At full size one image is 4 taps x 1,029 tokens x 1,024 channels (16.8 MB in f32).

use burn::tensor::{Device, Tensor, TensorData};
use half::f16;

use crate::backbone::TapFeatures;
use crate::experiment::FeatureDtype;
use crate::io::HostTensor;

/// One image's features, tap-major: `cls` is `[T, D]`, `patches` is `[T, HW, D]` (the
/// standardized patch rows of docs/method.md), both flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFeatures {
    pub taps: usize,
    pub dim: usize,
    pub cls: Vec<f32>,
    pub patches: Vec<f32>,
}

impl ImageFeatures {
    /// Splits the backbone's per-tap batch outputs (`cls [B, D]`, `patches [B, HW, D]`) into
    /// one value per image, each rounded to `dtype`.
    pub fn split_batch(taps: Vec<TapFeatures>, dtype: FeatureDtype) -> Vec<ImageFeatures> {
        let n_taps = taps.len();
        let host: Vec<(HostTensor, HostTensor)> = taps
            .into_iter()
            .map(|t| {
                (
                    HostTensor::from_tensor(t.cls),
                    HostTensor::from_tensor(t.patches),
                )
            })
            .collect();
        let Some((cls0, p0)) = host.first() else {
            return Vec::new();
        };
        let (b, d, hw) = (cls0.shape[0], cls0.shape[1], p0.shape[1]);
        (0..b)
            .map(|i| {
                let mut f = ImageFeatures {
                    taps: n_taps,
                    dim: d,
                    cls: Vec::with_capacity(n_taps * d),
                    patches: Vec::with_capacity(n_taps * hw * d),
                };
                for (cls, patches) in &host {
                    let (c, p) = (cls.as_f32().expect("f32"), patches.as_f32().expect("f32"));
                    f.cls.extend_from_slice(&c[i * d..(i + 1) * d]);
                    f.patches
                        .extend_from_slice(&p[i * hw * d..(i + 1) * hw * d]);
                }
                f.round(dtype);
                f
            })
            .collect()
    }

    /// Rounds every value to `dtype` (identity for f32), so that every store holds the same
    /// numbers whether it keeps f32 or f16.
    pub fn round(&mut self, dtype: FeatureDtype) {
        if dtype == FeatureDtype::F16 {
            for v in self.cls.iter_mut().chain(self.patches.iter_mut()) {
                *v = f16::from_f32(*v).to_f32();
            }
        }
    }

    /// Patch rows per tap (`HW`).
    pub fn tokens(&self) -> usize {
        self.patches.len() / (self.taps * self.dim).max(1)
    }
}

/// Host bytes of one image's features stored as `dtype`.
pub fn bytes_per_image(taps: usize, dim: usize, tokens: usize, dtype: FeatureDtype) -> u64 {
    (taps * dim * (tokens + 1) * dtype.bytes()) as u64
}

#[derive(Debug, Clone)]
enum Values {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Values {
    fn new(dtype: FeatureDtype) -> Self {
        match dtype {
            FeatureDtype::F32 => Values::F32(Vec::new()),
            FeatureDtype::F16 => Values::F16(Vec::new()),
        }
    }
    fn extend(&mut self, values: &[f32]) {
        match self {
            Values::F32(v) => v.extend_from_slice(values),
            Values::F16(v) => v.extend(values.iter().map(|&x| f16::from_f32(x))),
        }
    }
    fn copy_into(&self, start: usize, len: usize, out: &mut Vec<f32>) {
        match self {
            Values::F32(v) => out.extend_from_slice(&v[start..start + len]),
            Values::F16(v) => out.extend(v[start..start + len].iter().map(|x| x.to_f32())),
        }
    }
}

/// Many images' features in host memory (the `memory` training store).
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub dim: usize,
    pub grid: [usize; 2],
    pub n_taps: usize,
    cls: Values,
    patches: Values,
    len: usize,
}

impl FeatureTable {
    pub fn new(dim: usize, grid: [usize; 2], n_taps: usize, dtype: FeatureDtype) -> Self {
        Self {
            dim,
            grid,
            n_taps,
            cls: Values::new(dtype),
            patches: Values::new(dtype),
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

    /// Appends one image.
    pub fn push(&mut self, f: &ImageFeatures) {
        assert_eq!(
            (f.taps, f.dim, f.patches.len()),
            (self.n_taps, self.dim, self.n_taps * self.patch_len()),
            "image features do not match the table"
        );
        self.cls.extend(&f.cls);
        self.patches.extend(&f.patches);
        self.len += 1;
    }

    /// Per tap `cls [B, D]` and `patches [B, h*w, D]` for the images `indices`, on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Vec<Tensor<2>>, Vec<Tensor<3>>) {
        let (d, pl) = (self.dim, self.patch_len());
        gather(
            self.n_taps,
            d,
            self.grid,
            indices.len(),
            device,
            |t, c, p| {
                for &i in indices {
                    assert!(i < self.len, "feature index {i} out of range {}", self.len);
                    let row = i * self.n_taps + t;
                    self.cls.copy_into(row * d, d, c);
                    self.patches.copy_into(row * pl, pl, p);
                }
            },
        )
    }
}

/// Per tap `cls [B, D]` and `patches [B, h*w, D]` of a list of images, on `device`.
pub fn batch_tensors(
    features: &[&ImageFeatures],
    grid: [usize; 2],
    device: &Device,
) -> (Vec<Tensor<2>>, Vec<Tensor<3>>) {
    let first = features.first().expect("a batch has at least one image");
    let (n_taps, d) = (first.taps, first.dim);
    let pl = grid[0] * grid[1] * d;
    gather(n_taps, d, grid, features.len(), device, |t, c, p| {
        for f in features {
            c.extend_from_slice(&f.cls[t * d..(t + 1) * d]);
            p.extend_from_slice(&f.patches[t * pl..(t + 1) * pl]);
        }
    })
}

/// Builds the per-tap tensors of a batch of `b` images; `fill(t, cls, patches)` appends tap
/// `t`'s rows of every image in order.
fn gather(
    n_taps: usize,
    d: usize,
    grid: [usize; 2],
    b: usize,
    device: &Device,
    mut fill: impl FnMut(usize, &mut Vec<f32>, &mut Vec<f32>),
) -> (Vec<Tensor<2>>, Vec<Tensor<3>>) {
    let hw = grid[0] * grid[1];
    let mut cls = Vec::with_capacity(n_taps);
    let mut patches = Vec::with_capacity(n_taps);
    for t in 0..n_taps {
        let mut c = Vec::with_capacity(b * d);
        let mut p = Vec::with_capacity(b * hw * d);
        fill(t, &mut c, &mut p);
        cls.push(Tensor::from_data(TensorData::new(c, [b, d]), device));
        patches.push(Tensor::from_data(TensorData::new(p, [b, hw, d]), device));
    }
    (cls, patches)
}

/// Binary ground-truth masks `[n, S, S]`, one bit per pixel (a 512 px mask is 32 KiB).
#[derive(Debug, Clone, Default)]
pub struct MaskTable {
    pub size: usize,
    bits: Vec<u64>,
    len: usize,
}

impl MaskTable {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            bits: Vec::new(),
            len: 0,
        }
    }

    fn words(&self) -> usize {
        (self.size * self.size).div_ceil(64)
    }

    /// Appends one mask (`S*S` values; non-zero = anomalous).
    pub fn push(&mut self, mask: &[u8]) {
        assert_eq!(mask.len(), self.size * self.size, "mask size");
        let start = self.bits.len();
        self.bits.resize(start + self.words(), 0);
        for (i, &m) in mask.iter().enumerate() {
            if m != 0 {
                self.bits[start + i / 64] |= 1 << (i % 64);
            }
        }
        self.len += 1;
    }

    /// Mask `i` as `S*S` values 0/1, appended to `out`.
    pub fn extend_into(&self, i: usize, out: &mut Vec<u8>) {
        assert!(i < self.len, "mask index {i} out of range {}", self.len);
        let w = &self.bits[i * self.words()..(i + 1) * self.words()];
        out.extend((0..self.size * self.size).map(|k| ((w[k / 64] >> (k % 64)) & 1) as u8));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(base: f32) -> ImageFeatures {
        ImageFeatures {
            taps: 2,
            dim: 2,
            cls: vec![base, base + 1.0, base + 2.0, base + 3.0],
            patches: [[base; 4], [base + 0.5; 4]].concat(),
        }
    }

    #[test]
    fn batches_gather_the_right_rows_in_both_dtypes_and_from_lists() {
        let device = Device::flex();
        for dtype in [FeatureDtype::F32, FeatureDtype::F16] {
            let mut t = FeatureTable::new(2, [1, 2], 2, dtype);
            let images: Vec<ImageFeatures> = (0..3).map(|i| image(i as f32 * 10.0)).collect();
            for f in &images {
                t.push(f);
            }
            let (cls, patches) = t.batch(&[2, 0], &device);
            let c1: Vec<f32> = cls[1].clone().into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(c1, vec![22.0, 23.0, 2.0, 3.0]);
            let p0: Vec<f32> = patches[0].clone().into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(p0, vec![20.0, 20.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0]);
            assert_eq!(patches[1].dims(), [2, 2, 2]);
            // The same batch cut from a list of images.
            let (cls2, patches2) = batch_tensors(&[&images[2], &images[0]], [1, 2], &device);
            for (a, b) in cls.iter().zip(&cls2) {
                assert_eq!(a.clone().into_data(), b.clone().into_data());
            }
            for (a, b) in patches.iter().zip(&patches2) {
                assert_eq!(a.clone().into_data(), b.clone().into_data());
            }
        }
    }

    #[test]
    fn masks_pack_to_bits_and_come_back() {
        let mut m = MaskTable::new(9);
        let a: Vec<u8> = (0..81).map(|i| u8::from(i % 7 == 0)).collect();
        let b: Vec<u8> = (0..81).map(|i| if i > 70 { 255 } else { 0 }).collect();
        m.push(&a);
        m.push(&b);
        let mut out = Vec::new();
        m.extend_into(1, &mut out);
        m.extend_into(0, &mut out);
        let want: Vec<u8> = b.iter().map(|&v| u8::from(v != 0)).chain(a).collect();
        assert_eq!(out, want);
        assert_eq!(m.len(), 2);
    }
}
