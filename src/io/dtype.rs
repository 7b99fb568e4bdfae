//! Element types as stored in weight and tensor files, and the one decoding ladder from their
//! little-endian bytes to host tensors: floats become f32 (f16 and bf16 widened, f64 narrowed),
//! integers i64, u8 and bool stay bytes.
//!
//! Both readers (safetensors and PyTorch) go through [`decode`], so a dtype is converted the
//! same way whichever file it came from.

use burn::store::pytorch_reader::DType as PtDtype;
use safetensors::Dtype as StDtype;

use super::host::HostData;

/// An element type a file may store that the crate can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    U32,
    I16,
    U16,
    I8,
    U8,
    /// One byte, 0 or 1 (kept as a u8).
    Bool,
}

impl FileDtype {
    /// Bytes of one stored element.
    pub const fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The safetensors dtype, if decodable (8-bit and sub-byte floats, u64 and complex are not).
    pub fn from_safetensors(d: StDtype) -> Option<Self> {
        Some(match d {
            StDtype::F64 => Self::F64,
            StDtype::F32 => Self::F32,
            StDtype::F16 => Self::F16,
            StDtype::BF16 => Self::BF16,
            StDtype::I64 => Self::I64,
            StDtype::I32 => Self::I32,
            StDtype::U32 => Self::U32,
            StDtype::I16 => Self::I16,
            StDtype::U16 => Self::U16,
            StDtype::I8 => Self::I8,
            StDtype::U8 => Self::U8,
            StDtype::BOOL => Self::Bool,
            _ => return None,
        })
    }

    /// The PyTorch dtype, if decodable (u64 does not fit an i64).
    pub fn from_pytorch(d: PtDtype) -> Option<Self> {
        Some(match d {
            PtDtype::F64 => Self::F64,
            PtDtype::F32 => Self::F32,
            PtDtype::F16 => Self::F16,
            PtDtype::BF16 => Self::BF16,
            PtDtype::I64 => Self::I64,
            PtDtype::I32 => Self::I32,
            PtDtype::U32 => Self::U32,
            PtDtype::I16 => Self::I16,
            PtDtype::U16 => Self::U16,
            PtDtype::I8 => Self::I8,
            PtDtype::U8 => Self::U8,
            PtDtype::Bool => Self::Bool,
            PtDtype::U64 => return None,
        })
    }
}

/// Decodes little-endian `bytes` of `dtype`; `bytes.len()` must be a multiple of its size
/// (the readers check sizes against shapes before decoding).
pub fn decode(dtype: FileDtype, bytes: &[u8]) -> HostData {
    fn each<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect()
    }
    match dtype {
        FileDtype::F32 => HostData::F32(each(bytes, f32::from_le_bytes)),
        FileDtype::F64 => HostData::F32(each(bytes, |b| f64::from_le_bytes(b) as f32)),
        FileDtype::F16 => HostData::F32(each(bytes, |b| half::f16::from_le_bytes(b).to_f32())),
        FileDtype::BF16 => HostData::F32(each(bytes, |b| half::bf16::from_le_bytes(b).to_f32())),
        FileDtype::I64 => HostData::I64(each(bytes, i64::from_le_bytes)),
        FileDtype::I32 => HostData::I64(each(bytes, |b| i32::from_le_bytes(b) as i64)),
        FileDtype::U32 => HostData::I64(each(bytes, |b| u32::from_le_bytes(b) as i64)),
        FileDtype::I16 => HostData::I64(each(bytes, |b| i16::from_le_bytes(b) as i64)),
        FileDtype::U16 => HostData::I64(each(bytes, |b| u16::from_le_bytes(b) as i64)),
        FileDtype::I8 => HostData::I64(bytes.iter().map(|&b| b as i8 as i64).collect()),
        FileDtype::U8 | FileDtype::Bool => HostData::U8(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_decodes_little_endian() {
        let cases: [(FileDtype, Vec<u8>, HostData); 12] = [
            (
                FileDtype::F32,
                1.5f32.to_le_bytes().to_vec(),
                HostData::F32(vec![1.5]),
            ),
            (
                FileDtype::F64,
                (-2.25f64).to_le_bytes().to_vec(),
                HostData::F32(vec![-2.25]),
            ),
            (FileDtype::F16, vec![0x00, 0x3c], HostData::F32(vec![1.0])),
            (FileDtype::BF16, vec![0x80, 0x3f], HostData::F32(vec![1.0])),
            (
                FileDtype::I64,
                (-7i64).to_le_bytes().to_vec(),
                HostData::I64(vec![-7]),
            ),
            (
                FileDtype::I32,
                (-7i32).to_le_bytes().to_vec(),
                HostData::I64(vec![-7]),
            ),
            (
                FileDtype::U32,
                u32::MAX.to_le_bytes().to_vec(),
                HostData::I64(vec![u32::MAX as i64]),
            ),
            (FileDtype::I16, vec![0xff, 0xff], HostData::I64(vec![-1])),
            (FileDtype::U16, vec![0xff, 0xff], HostData::I64(vec![65535])),
            (FileDtype::I8, vec![0xff], HostData::I64(vec![-1])),
            (FileDtype::U8, vec![0xff], HostData::U8(vec![255])),
            (FileDtype::Bool, vec![1], HostData::U8(vec![1])),
        ];
        for (dtype, bytes, want) in cases {
            assert_eq!(bytes.len(), dtype.size(), "{dtype:?}");
            assert_eq!(decode(dtype, &bytes), want, "{dtype:?}");
        }
    }
}
