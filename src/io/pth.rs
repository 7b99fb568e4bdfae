//! Minimal PyTorch `.pth` (zip + pickle) reading and writing, independent of any model.
//!
//! Writing produces what `torch.save` writes for a (nested) dict of ints and f32 tensors:
//! a zip with `<name>/data.pkl` (pickle protocol 2, tensors as persistent ids to storages),
//! `<name>/data/<k>` raw little-endian storages, `<name>/byteorder` and `<name>/version`.
//! Only globals that `torch.load(weights_only=True)` allows are used
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`).
//! Reading goes through burn-store's `PytorchReader`, which flattens nested dicts with dots.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{DType, PytorchReader};

use super::tensors::{HostData, HostTensor};

/// A value of a `.pth` dict tree.
#[derive(Debug, Clone)]
pub enum PthValue {
    Int(i64),
    /// An f32 tensor.
    Tensor(HostTensor),
    /// An ordered dict (written as `collections.OrderedDict` when `ordered`, else a plain dict).
    Dict {
        entries: Vec<(String, PthValue)>,
        ordered: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("{path}: cannot read the PyTorch checkpoint: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}, only float tensors are supported here")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{path}: cannot write the PyTorch checkpoint: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("pth writer: tensor `{0}` is not f32; convert it before saving")]
    NotF32(String),
}

/// Every tensor of a `.pth` file as f32, keyed by its dotted path (`module.0.fc1.0.weight`).
pub fn read_pth(path: &Path) -> Result<BTreeMap<String, HostTensor>, PthError> {
    let err = |reason: String| PthError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let reader = PytorchReader::new(path).map_err(|e| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in reader.tensors() {
        let bytes = t.read().map_err(|e| err(e.to_string()))?;
        let values: Vec<f32> = match t.dtype() {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_ne_bytes(c.try_into().unwrap()))
                .collect(),
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_ne_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_ne_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_ne_bytes(c.try_into().unwrap()).to_f32())
                .collect(),
            other => {
                return Err(PthError::Dtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        out.insert(name.clone(), HostTensor::f32(t.shape().to_vec(), values));
    }
    Ok(out)
}

/// Pickle protocol-2 writer for the few opcodes a state dict needs.
struct Pickler {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
}

impl Pickler {
    fn op(&mut self, b: u8) {
        self.out.push(b);
    }
    fn string(&mut self, s: &str) {
        self.op(b'X'); // BINUNICODE
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if let Ok(v32) = i32::try_from(v) {
            self.op(b'J'); // BININT
            self.out.extend_from_slice(&v32.to_le_bytes());
        } else {
            self.op(0x8a); // LONG1
            self.op(8);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.out.extend_from_slice(module.as_bytes());
        self.op(b'\n');
        self.out.extend_from_slice(name.as_bytes());
        self.op(b'\n');
    }
    fn tuple_of_ints(&mut self, v: &[usize]) {
        self.op(b'(');
        for &x in v {
            self.int(x as i64);
        }
        self.op(b't');
    }
    fn ordered_dict_empty(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')'); // EMPTY_TUPLE
        self.op(b'R'); // REDUCE
    }
    fn value(&mut self, name: &str, v: &PthValue) -> Result<(), PthError> {
        match v {
            PthValue::Int(i) => self.int(*i),
            PthValue::Dict { entries, ordered } => {
                if *ordered {
                    self.ordered_dict_empty();
                } else {
                    self.op(b'}'); // EMPTY_DICT
                }
                if !entries.is_empty() {
                    self.op(b'(');
                    for (k, v) in entries {
                        self.string(k);
                        self.value(&format!("{name}.{k}"), v)?;
                    }
                    self.op(b'u'); // SETITEMS
                }
            }
            PthValue::Tensor(t) => {
                let HostData::F32(values) = &t.data else {
                    return Err(PthError::NotF32(name.to_string()));
                };
                let key = self.storages.len().to_string();
                self.storages
                    .push(values.iter().flat_map(|x| x.to_le_bytes()).collect());
                // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)
                self.global("torch._utils", "_rebuild_tensor_v2");
                self.op(b'(');
                // persistent id ('storage', FloatStorage, key, 'cpu', numel)
                self.op(b'(');
                self.string("storage");
                self.global("torch", "FloatStorage");
                self.string(&key);
                self.string("cpu");
                self.int(values.len() as i64);
                self.op(b't');
                self.op(b'Q'); // BINPERSID
                self.int(0);
                self.tuple_of_ints(&t.shape);
                let mut stride = vec![1usize; t.shape.len()];
                for i in (0..t.shape.len().saturating_sub(1)).rev() {
                    stride[i] = stride[i + 1] * t.shape[i + 1];
                }
                self.tuple_of_ints(&stride);
                self.op(0x89); // NEWFALSE
                self.ordered_dict_empty();
                self.op(b't');
                self.op(b'R');
            }
        }
        Ok(())
    }
}

/// Serializes `root` as `torch.save` would; `archive` is the zip's top folder (torch uses the
/// file stem).
pub fn pth_bytes(root: &PthValue, archive: &str) -> Result<Vec<u8>, PthError> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        storages: Vec::new(),
    };
    p.value("", root)?;
    p.op(b'.');
    let werr = |e: &dyn std::fmt::Display| PthError::Write {
        path: PathBuf::from(archive),
        reason: e.to_string(),
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    // Stored, 64-byte aligned entries: what torch writes, and what its mmap loader expects.
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let mut entry = |name: String, bytes: &[u8]| -> Result<(), PthError> {
        zip.start_file(name, opts).map_err(|e| werr(&e))?;
        zip.write_all(bytes).map_err(|e| werr(&e))
    };
    entry(format!("{archive}/data.pkl"), &p.out)?;
    entry(format!("{archive}/byteorder"), b"little")?;
    for (i, s) in p.storages.iter().enumerate() {
        entry(format!("{archive}/data/{i}"), s)?;
    }
    entry(format!("{archive}/version"), b"3\n")?;
    let cursor = zip.finish().map_err(|e| werr(&e))?;
    Ok(cursor.into_inner())
}

/// Writes `root` to `path` atomically.
pub fn write_pth(path: &Path, root: &PthValue) -> Result<(), PthError> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let bytes = pth_bytes(root, &stem).map_err(|e| match e {
        PthError::Write { reason, .. } => PthError::Write {
            path: path.to_path_buf(),
            reason,
        },
        other => other,
    })?;
    super::write_atomic(path, &bytes).map_err(|e| PthError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_dict_round_trips_through_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epoch_1.pth");
        let a = HostTensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let b = HostTensor::f32(vec![4], vec![0.25, 0.5, 0.75, 1.0]);
        let root = PthValue::Dict {
            ordered: false,
            entries: vec![
                ("epoch".into(), PthValue::Int(1)),
                (
                    "m".into(),
                    PthValue::Dict {
                        ordered: true,
                        entries: vec![
                            ("0.w".into(), PthValue::Tensor(a.clone())),
                            ("1.b".into(), PthValue::Tensor(b.clone())),
                        ],
                    },
                ),
            ],
        };
        write_pth(&path, &root).unwrap();
        let back = read_pth(&path).unwrap();
        assert_eq!(back.len(), 2, "{:?}", back.keys());
        assert_eq!(back["m.0.w"], a);
        assert_eq!(back["m.1.b"], b);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pth");
        std::fs::write(&path, b"nope").unwrap();
        let msg = read_pth(&path).unwrap_err().to_string();
        assert!(msg.contains("bad.pth"), "{msg}");
    }
}
