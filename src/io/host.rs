//! Host tensors: a shape and row-major elements in one of three families (f32, i64, u8), the
//! crate's currency between files and burn tensors. Conversion to and from burn tensors lives
//! here so that every room does it the same way.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// Element storage of a [`HostTensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

/// A tensor held in host memory: a shape and row-major elements.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HostTensor {
    /// A tensor of `shape` holding `data`.
    ///
    /// # Panics
    /// If `data` does not hold the shape's number of elements (a programming error: the readers
    /// check sizes against shapes before they build tensors).
    pub fn new(shape: Vec<usize>, data: HostData) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape/data mismatch"
        );
        Self { shape, data }
    }
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        Self::new(shape, HostData::F32(values))
    }
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        Self::new(shape, HostData::I64(values))
    }
    pub fn u8(shape: Vec<usize>, values: Vec<u8>) -> Self {
        Self::new(shape, HostData::U8(values))
    }

    /// Reads a float burn tensor back to the host as f32.
    pub fn from_tensor<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 after convert");
        Self::f32(shape, values)
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            HostData::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            HostData::I64(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_u8(&self) -> Option<&[u8]> {
        match &self.data {
            HostData::U8(v) => Some(v),
            _ => None,
        }
    }

    /// Values as f32 whatever the storage (labels and masks are often compared as floats).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The transpose of a rank-2 tensor (`[out, in]` ↔ burn's `[in, out]`), as f32.
    ///
    /// In bands of 32 output rows (one rayon task each): the task reads 32 consecutive inputs
    /// of each row and writes them to 32 output rows, so both sides stay within a few cache
    /// lines. The naive double loop strode a whole output row per element and was a tenth of the
    /// time of loading a ViT-L/16.
    pub fn transposed(&self) -> HostTensor {
        const BAND: usize = 32;
        assert_eq!(
            self.shape.len(),
            2,
            "transposed: rank {} tensor",
            self.shape.len()
        );
        let (r, c) = (self.shape[0], self.shape[1]);
        let owned;
        let v = match self.as_f32() {
            Some(v) => v,
            None => {
                owned = self.to_f32_vec();
                &owned
            }
        };
        let mut out = vec![0f32; r * c];
        if r > 0 && c > 0 {
            out.par_chunks_mut(BAND * r)
                .enumerate()
                .for_each(|(band, rows)| {
                    let j0 = band * BAND;
                    let cols = rows.len() / r;
                    for i in 0..r {
                        for (dj, &x) in v[i * c + j0..i * c + j0 + cols].iter().enumerate() {
                            rows[dj * r + i] = x;
                        }
                    }
                });
        }
        HostTensor::f32(vec![c, r], out)
    }

    /// Values as f32, moved out when they already are (no copy), converted otherwise.
    pub fn into_f32_vec(self) -> Vec<f32> {
        match self.data {
            HostData::F32(v) => v,
            _ => self.to_f32_vec(),
        }
    }

    /// A float burn tensor of rank `D` on `device` (int and u8 data are converted).
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Tensor<D> {
        float_tensor(self.to_f32_vec(), &self.shape, device)
    }

    /// As [`HostTensor::to_tensor`], consuming `self`: f32 data moves into the tensor uncopied
    /// (a ViT-L/16 holds 1.2 GB of weights; every copy is a page-faulting pass over them).
    pub fn into_tensor<const D: usize>(self, device: &Device) -> Tensor<D> {
        let shape = self.shape.clone();
        float_tensor(self.into_f32_vec(), &shape, device)
    }

    /// An int burn tensor of rank `D` on `device`.
    pub fn to_int_tensor<const D: usize>(&self, device: &Device) -> Tensor<D, Int> {
        assert_eq!(
            self.shape.len(),
            D,
            "rank mismatch: shape {:?} vs rank {D}",
            self.shape
        );
        let values: Vec<i64> = match &self.data {
            HostData::I64(v) => v.clone(),
            HostData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        };
        Tensor::from_data(TensorData::new(values, self.shape.clone()), device)
    }

    /// `f32`, `i64` or `u8`.
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            HostData::F32(_) => "f32",
            HostData::I64(_) => "i64",
            HostData::U8(_) => "u8",
        }
    }
}

/// A float burn tensor of rank `D` from row-major values.
fn float_tensor<const D: usize>(values: Vec<f32>, shape: &[usize], device: &Device) -> Tensor<D> {
    assert_eq!(shape.len(), D, "rank mismatch: shape {shape:?} vs rank {D}");
    Tensor::from_data(TensorData::new(values, shape.to_vec()), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_matches_the_definition() {
        // Shapes around the 32-column band: partial last band, one band, a single row/column.
        for (r, c) in [(37, 70), (64, 32), (1, 5), (5, 1), (0, 3)] {
            let v: Vec<f32> = (0..r * c).map(|k| k as f32 * 0.5 - 3.0).collect();
            let t = HostTensor::f32(vec![r, c], v.clone()).transposed();
            assert_eq!(t.shape, vec![c, r]);
            let out = t.as_f32().unwrap();
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(out[j * r + i], v[i * c + j], "({i}, {j}) of {r}x{c}");
                }
            }
        }
        let ints = HostTensor::i64(vec![2, 3], vec![1, 2, 3, 4, 5, 6]).transposed();
        assert_eq!(ints.as_f32().unwrap(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
