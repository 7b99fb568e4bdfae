//! Safetensors files as plain host tensors.
//!
//! Fixtures, feature dumps, checkpoints and caches are all safetensors. This module reads them into
//! [`HostTensor`]s (f32 / i64 / u8 families, decoded by [`super::dtype::decode`]) and writes them
//! back atomically.
//!
//! Reading checks the header before the body: its length, its tensors' dtypes, and that the data
//! it declares is exactly what the file holds (so a truncated or mislabelled multi-GB file fails
//! before it is read; safetensors tensors are contiguous and never overlap, so what is decoded is
//! at most [`super::pth::MAX_EXPANSION`] times the file).

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::dtype::{FileDtype, decode};
use super::host::{HostData, HostTensor};

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

#[cfg(test)]
mod tests {
    use super::*;

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
