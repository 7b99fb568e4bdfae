//! Safetensors files as plain host tensors.
//!
//! Fixtures, feature dumps, checkpoints and caches are all safetensors. This module reads them into
//! [`HostTensor`]s (f32 / i64 / u8 families, decoded by [`super::dtype::decode`]) and writes them
//! back atomically. Conversion to and from burn tensors lives here too so that every room does it
//! the same way.
//!
//! Reading checks the header before the body: its length, its tensors' dtypes, and that the data
//! it declares is exactly what the file holds (so a truncated or mislabelled multi-GB file fails
//! before it is read; safetensors tensors are contiguous and never overlap, so what is decoded is
//! at most [`super::pth::MAX_EXPANSION`] times the file).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use super::dtype::{FileDtype, decode};

/// Errors reading or writing tensor files. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a valid safetensors file ({reason}); re-export it with safetensors.torch.save_file"
    )]
    Format { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` is missing (present: {present})")]
    Missing {
        path: PathBuf,
        name: String,
        present: String,
    },
    #[error("{path}: tensor `{name}` has dtype {found}, expected {expected}")]
    Dtype {
        path: PathBuf,
        name: String,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected rank {rank}")]
    Rank {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        rank: usize,
    },
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    Unsupported {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

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

impl HostTensor {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "shape/data mismatch"
        );
        Self {
            shape,
            data: HostData::F32(values),
        }
    }
    pub fn i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "shape/data mismatch"
        );
        Self {
            shape,
            data: HostData::I64(values),
        }
    }
    pub fn u8(shape: Vec<usize>, values: Vec<u8>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "shape/data mismatch"
        );
        Self {
            shape,
            data: HostData::U8(values),
        }
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

    /// Reads an int burn tensor back to the host as i64.
    pub fn from_int_tensor<const D: usize>(t: Tensor<D, Int>) -> Self {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("i64 after convert");
        Self::i64(shape, values)
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

    fn dtype_name(&self) -> &'static str {
        match self.data {
            HostData::F32(_) => "f32",
            HostData::I64(_) => "i64",
            HostData::U8(_) => "u8",
        }
    }
}

/// The tensors of one safetensors file, by name, with the file's path for error messages.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, HostTensor>,
}

/// Largest header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Reads and checks the header of the safetensors file `f` of `len` bytes without reading the
/// body: the length prefix, the JSON (offsets contiguous and matching shapes x dtype sizes, as
/// the safetensors crate validates them), the declared body size against the file, the dtypes.
fn check_header(path: &Path, f: &mut std::fs::File, len: u64) -> Result<(), TensorFileError> {
    let format = |reason: String| TensorFileError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| TensorFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(format(format!(
            "{len} bytes, shorter than the 8-byte header length"
        )));
    }
    f.read_exact(&mut prefix).map_err(io)?;
    let n = u64::from_le_bytes(prefix);
    if n > MAX_HEADER || n > len - 8 {
        return Err(format(format!(
            "header length {n} does not fit a {len}-byte file"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let meta: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| format(format!("header: {e}")))?;
    let body = len - 8 - n;
    if meta.data_len() as u64 != body {
        return Err(format(format!(
            "the header declares {} data bytes, the file holds {body}",
            meta.data_len()
        )));
    }
    let mut infos: Vec<_> = meta.tensors().into_iter().collect();
    infos.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info) in infos {
        if FileDtype::from_safetensors(info.dtype).is_none() {
            return Err(TensorFileError::Unsupported {
                path: path.to_path_buf(),
                name,
                dtype: format!("{:?}", info.dtype),
            });
        }
    }
    f.rewind().map_err(io)?;
    Ok(())
}

impl TensorFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            tensors: BTreeMap::new(),
        }
    }

    /// Reads every tensor of a safetensors file, checking its header before its body.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, TensorFileError> {
        let path = path.as_ref();
        let io = |source| TensorFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        check_header(path, &mut f, len)?;
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes).map_err(io)?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses safetensors bytes; `path` is only used in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, TensorFileError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| TensorFileError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut views = st.tensors();
        views.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dtypes = Vec::with_capacity(views.len());
        for (name, view) in &views {
            dtypes.push(FileDtype::from_safetensors(view.dtype()).ok_or_else(|| {
                TensorFileError::Unsupported {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                }
            })?);
        }
        let mut tensors = BTreeMap::new();
        for ((name, view), dtype) in views.into_iter().zip(dtypes) {
            let t = HostTensor {
                shape: view.shape().to_vec(),
                data: decode(dtype, view.data()),
            };
            tensors.insert(name, t);
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, or an error listing what the file holds.
    pub fn get(&self, name: &str) -> Result<&HostTensor, TensorFileError> {
        self.tensors.get(name).ok_or_else(|| {
            let mut present: Vec<&str> = self.tensors.keys().map(String::as_str).take(12).collect();
            if self.tensors.len() > 12 {
                present.push("...");
            }
            TensorFileError::Missing {
                path: self.path.clone(),
                name: name.to_string(),
                present: present.join(", "),
            }
        })
    }

    /// The f32 tensor `name` checked to have rank `rank`.
    pub fn f32(&self, name: &str, rank: usize) -> Result<&HostTensor, TensorFileError> {
        let t = self.get(name)?;
        if t.as_f32().is_none() {
            return Err(self.dtype_error(name, t, "f32"));
        }
        self.check_rank(name, t, rank)
    }

    /// The integer tensor `name` checked to have rank `rank`.
    pub fn i64(&self, name: &str, rank: usize) -> Result<&HostTensor, TensorFileError> {
        let t = self.get(name)?;
        if t.as_i64().is_none() {
            return Err(self.dtype_error(name, t, "i64"));
        }
        self.check_rank(name, t, rank)
    }

    /// The u8 tensor `name` checked to have rank `rank`.
    pub fn u8(&self, name: &str, rank: usize) -> Result<&HostTensor, TensorFileError> {
        let t = self.get(name)?;
        if t.as_u8().is_none() {
            return Err(self.dtype_error(name, t, "u8"));
        }
        self.check_rank(name, t, rank)
    }

    /// A float burn tensor straight from the file.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        device: &Device,
    ) -> Result<Tensor<D>, TensorFileError> {
        Ok(self.f32(name, D)?.to_tensor::<D>(device))
    }

    fn dtype_error(&self, name: &str, t: &HostTensor, expected: &'static str) -> TensorFileError {
        TensorFileError::Dtype {
            path: self.path.clone(),
            name: name.to_string(),
            found: t.dtype_name().to_string(),
            expected,
        }
    }

    fn check_rank<'a>(
        &self,
        name: &str,
        t: &'a HostTensor,
        rank: usize,
    ) -> Result<&'a HostTensor, TensorFileError> {
        if t.shape.len() != rank {
            return Err(TensorFileError::Rank {
                path: self.path.clone(),
                name: name.to_string(),
                found: t.shape.clone(),
                rank,
            });
        }
        Ok(t)
    }

    pub fn insert(&mut self, name: impl Into<String>, t: HostTensor) {
        self.tensors.insert(name.into(), t);
    }

    /// Serializes to safetensors bytes (f32 / i64 / u8 little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        struct Raw<'a>(&'a HostTensor, Vec<u8>);
        impl safetensors::View for &Raw<'_> {
            fn dtype(&self) -> Dtype {
                match self.0.data {
                    HostData::F32(_) => Dtype::F32,
                    HostData::I64(_) => Dtype::I64,
                    HostData::U8(_) => Dtype::U8,
                }
            }
            fn shape(&self) -> &[usize] {
                &self.0.shape
            }
            fn data(&self) -> std::borrow::Cow<'_, [u8]> {
                std::borrow::Cow::Borrowed(&self.1)
            }
            fn data_len(&self) -> usize {
                self.1.len()
            }
        }
        let raws: Vec<(String, Raw)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let bytes = match &t.data {
                    HostData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    HostData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    HostData::U8(v) => v.clone(),
                };
                (n.clone(), Raw(t, bytes))
            })
            .collect();
        safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), None)
            .expect("in-memory safetensors serialization cannot fail for well-formed tensors")
    }

    /// Writes the file atomically to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), TensorFileError> {
        let path = path.as_ref();
        crate::io::write_atomic(path, &self.to_bytes()).map_err(|source| TensorFileError::Write {
            path: path.to_path_buf(),
            source,
        })
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

    #[test]
    fn round_trip_all_families() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let mut f = TensorFile::new(&path);
        f.insert("a", HostTensor::f32(vec![2, 2], vec![1.0, -2.5, 3.25, 0.0]));
        f.insert("b", HostTensor::i64(vec![3], vec![5, -1, 1 << 40]));
        f.insert("c", HostTensor::u8(vec![1, 2], vec![0, 255]));
        f.write(&path).unwrap();
        let back = TensorFile::read(&path).unwrap();
        assert_eq!(back.tensors, f.tensors);
        assert!(matches!(
            back.f32("b", 1),
            Err(TensorFileError::Dtype { .. })
        ));
        assert!(matches!(
            back.f32("a", 3),
            Err(TensorFileError::Rank { .. })
        ));
        let msg = back.get("zzz").unwrap_err().to_string();
        assert!(
            msg.contains("t.safetensors") && msg.contains("zzz") && msg.contains("a, b, c"),
            "{msg}"
        );
    }

    /// Writes a safetensors file from a header JSON and `body` bytes.
    fn raw_file(path: &Path, header: &str, body: &[u8]) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(body);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn header_is_checked_against_the_file_before_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let h = r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        // Truncated: the header declares more data than the file holds.
        raw_file(&p, h, &[0u8; 12]);
        let msg = TensorFile::read(&p).unwrap_err().to_string();
        assert!(
            msg.contains("w.safetensors")
                && msg.contains("declares 16 data bytes, the file holds 12"),
            "{msg}"
        );
        // A header length beyond the file.
        std::fs::write(&p, 1u64.wrapping_shl(40).to_le_bytes()).unwrap();
        let msg = TensorFile::read(&p).unwrap_err().to_string();
        assert!(msg.contains("does not fit a 8-byte file"), "{msg}");
        // A dtype the ladder cannot decode is named before the body is read.
        let h = r#"{"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#;
        raw_file(&p, h, &[0u8; 2]);
        let e = TensorFile::read(&p).unwrap_err();
        assert!(matches!(e, TensorFileError::Unsupported { .. }), "{e}");
        // Shapes that disagree with the offsets (the safetensors crate's validation).
        let h = r#"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#;
        raw_file(&p, h, &[0u8; 16]);
        assert!(matches!(
            TensorFile::read(&p).unwrap_err(),
            TensorFileError::Format { .. }
        ));
    }

    #[test]
    fn garbage_is_a_format_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a tensor file").unwrap();
        let msg = TensorFile::read(&path).unwrap_err().to_string();
        assert!(msg.contains("bad.safetensors"), "{msg}");
    }
}
