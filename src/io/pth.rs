//! PyTorch `.pth` (zip + pickle) reading with a memory budget, and writing.
//!
//! Reading goes through burn-store's `PytorchReader` (which parses the pickle and reads storages
//! lazily) behind checks made before any tensor byte is read, so that a small crafted file cannot
//! make the loader allocate more than the file holds:
//!
//! - a zip archive must be what `torch.save` writes: every entry stored (not compressed) and
//!   inside the file; a TorchScript archive is refused with the conversion to use instead;
//! - every tensor's dtype must be decodable ([`FileDtype`]) before anything is read;
//! - the tensors' declared bytes (elements x element size), summed, must not exceed the bytes
//!   the file stores for them (its `data/` entries, or the whole file for the pre-1.6
//!   containers): stride-0 or overlapping views and tied storages, which would materialize more
//!   than the file holds, are refused, as are declarations no stored byte backs.
//!
//! Decoding is [`super::dtype::decode`], little-endian, like the safetensors reader's. So the
//! memory a read holds is the decoded tensors (at most [`MAX_EXPANSION`] times the stored bytes,
//! for i8 widened to i64) plus one tensor's raw bytes and the parsed pickle.
//!
//! Writing produces what `torch.save` writes for a (nested) dict of ints and f32 tensors:
//! a zip with `<name>/data.pkl` (pickle protocol 2, tensors as persistent ids to storages),
//! `<name>/data/<k>` raw little-endian storages, `<name>/byteorder` and `<name>/version`.
//! Only globals that `torch.load(weights_only=True)` allows are used
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::PytorchReader;

use super::dtype::{FileDtype, decode};
use super::host::{HostData, HostTensor};

/// The largest ratio of decoded to stored bytes (an i8 element becomes an 8-byte i64).
pub const MAX_EXPANSION: u64 = 8;

/// Parsed pickle objects per pickle byte, at most (a 2-byte `(t` makes a tuple object).
const PARSE_EXPANSION: u64 = 64;

/// Fixed allowance: zip index, read buffers, the reader's own tables.
const MEMORY_SLACK: u64 = 16 << 20;

/// The most heap a [`read_pth`] of a `len`-byte file holds at once: the decoded tensors
/// ([`MAX_EXPANSION`] x the stored bytes), one tensor's raw bytes and storage window (each at
/// most the file), the parsed pickle, and a fixed allowance. `tests/fuzz_pth.rs` checks every
/// mutant it reads against it.
pub fn memory_bound(len: u64) -> u64 {
    len.saturating_mul(MAX_EXPANSION + 2 + PARSE_EXPANSION)
        .saturating_add(MEMORY_SLACK)
}

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
    #[error(
        "{path}: tensor `{name}` has dtype {dtype}, which cannot be decoded (floats, ints up to \
         32 bits unsigned, u8 and bool can); convert it before saving"
    )]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error(
        "{path}: its tensors declare {declared} bytes but the file stores only {stored} for them \
         (views sharing or broadcasting one storage, or sizes no stored byte backs); re-save it \
         with contiguous copies: torch.save({{k: v.contiguous().clone() for k, v in sd.items()}}, path)"
    )]
    Budget {
        path: PathBuf,
        declared: u64,
        stored: u64,
    },
    #[error(
        "{path}: not what torch.save writes: {reason}; re-save it with torch.save(state_dict, path)"
    )]
    Container { path: PathBuf, reason: String },
    #[error(
        "{path}: a TorchScript archive, not a state dict; convert it once with \
         torch.jit.load(path).state_dict() and safetensors.torch.save_file"
    )]
    TorchScript { path: PathBuf },
    #[error("{path}: cannot write the PyTorch checkpoint: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("pth writer: tensor `{0}` is not f32; convert it before saving")]
    NotF32(String),
}

/// The bytes a zip `.pth` stores for its tensors (the sum of its `data/` entries), after
/// checking the archive is what `torch.save` writes: every entry stored uncompressed and inside
/// the file, no TorchScript code.
fn stored_zip_bytes(path: &Path, file_len: u64) -> Result<u64, PthError> {
    let container = |reason: String| PthError::Container {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| PthError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| container(format!("unreadable zip archive ({e})")))?;
    let mut stored = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| container(format!("zip entry {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| container(format!("zip entry {i}: {e}")))?
            .into_owned();
        if name.ends_with("/constants.pkl") || name.contains("/code/__torch__") {
            return Err(PthError::TorchScript {
                path: path.to_path_buf(),
            });
        }
        if entry.compression() != zip::CompressionMethod::Stored
            || entry.compressed_size() != entry.size()
        {
            return Err(container(format!("zip entry `{name}` is compressed")));
        }
        let inside = entry
            .data_start()
            .and_then(|start| start.checked_add(entry.size()))
            .is_some_and(|end| end <= file_len);
        if !inside {
            return Err(container(format!(
                "zip entry `{name}` ({} bytes) does not lie inside the file",
                entry.size()
            )));
        }
        if name.split('/').rev().nth(1) == Some("data") {
            stored = stored.saturating_add(entry.size());
        }
    }
    Ok(stored)
}

/// Every tensor of a `.pth` file, keyed by its dotted path (`module.0.fc1.0.weight`), decoded
/// (floats as f32, integers as i64, u8/bool as u8), within the budget described in the module
/// documentation.
pub fn read_pth(path: &Path) -> Result<BTreeMap<String, HostTensor>, PthError> {
    let err = |reason: String| PthError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let mut head = [0u8; 4];
    let file_len = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let n = f.read(&mut head).map_err(|e| err(e.to_string()))?;
        if n < head.len() {
            return Err(err("the file is too short to be a checkpoint".into()));
        }
        f.metadata().map_err(|e| err(e.to_string()))?.len()
    };
    // The pre-1.6 containers keep their storages in the file itself.
    let stored = if head == *b"PK\x03\x04" {
        stored_zip_bytes(path, file_len)?
    } else {
        file_len
    };
    let reader = PytorchReader::new(path).map_err(|e| err(e.to_string()))?;
    let mut tensors: Vec<_> = reader.into_tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut declared = 0u64;
    let mut dtypes = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let dtype = FileDtype::from_pytorch(t.dtype()).ok_or_else(|| PthError::Dtype {
            path: path.to_path_buf(),
            name: name.clone(),
            dtype: format!("{:?}", t.dtype()),
        })?;
        dtypes.push(dtype);
        declared = declared.saturating_add(t.byte_len() as u64);
    }
    if declared > stored {
        return Err(PthError::Budget {
            path: path.to_path_buf(),
            declared,
            stored,
        });
    }
    let mut out = BTreeMap::new();
    for ((name, t), dtype) in tensors.into_iter().zip(dtypes) {
        let mut bytes = t.read().map_err(|e| err(e.to_string()))?;
        if bytes.len() != t.byte_len() {
            return Err(err(format!(
                "tensor `{name}` read {} bytes for shape {:?}",
                bytes.len(),
                t.shape()
            )));
        }
        // The reader hands out native-endian bytes; the ladder reads little-endian.
        if cfg!(target_endian = "big") {
            bytes
                .chunks_exact_mut(dtype.size())
                .for_each(|c| c.reverse());
        }
        let data = decode(dtype, &bytes);
        drop(bytes);
        out.insert(
            name,
            HostTensor {
                shape: t.shape().to_vec(),
                data,
            },
        );
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

    fn crafted(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/pth")
            .join(name)
    }

    #[test]
    fn every_dtype_of_both_containers_decodes() {
        let m = read_pth(&crafted("mixed.pth")).unwrap();
        let f = |k: &str| m[k].to_f32_vec();
        assert_eq!(f("h"), [1.5, -2.0]);
        assert_eq!(
            (m["b"].shape.clone(), f("b")),
            (vec![2, 1], vec![0.25, -8.0])
        );
        assert_eq!(f("d"), [0.5, 1e-3]);
        assert_eq!(m["i"].as_i64().unwrap(), &[-3, 1 << 40]);
        assert_eq!(m["j"].as_i64().unwrap(), &[-7, 7]);
        assert_eq!(m["u"].as_u8().unwrap(), &[0, 255]);
        assert_eq!(m["m"].as_u8().unwrap(), &[1, 0, 1]);
        // The pre-1.6 container: nested names, the non-tensor `epoch` left out.
        let l = read_pth(&crafted("legacy.pth")).unwrap();
        assert_eq!(l.keys().collect::<Vec<_>>(), ["nested.h", "nested.i"]);
        assert_eq!(l["nested.h"].to_f32_vec(), [1.5, -2.0]);
        assert_eq!(l["nested.i"].as_i64().unwrap(), &[-3, 1 << 40]);
    }

    /// Issue 13: a small file declaring views far larger than its storage is refused before any
    /// tensor is read (a read of `stride0.pth` would materialize 4 x 8 GiB).
    #[test]
    fn views_larger_than_the_stored_bytes_are_refused_unread() {
        for (name, declared, stored) in [
            ("stride0.pth", 4u64 << 33, 4u64),
            ("overlap.pth", 32 * 4, 16 * 4),
        ] {
            let start = std::time::Instant::now();
            let e = read_pth(&crafted(name)).unwrap_err();
            assert!(start.elapsed().as_secs_f64() < 1.0, "{name}");
            match &e {
                PthError::Budget {
                    declared: d,
                    stored: s,
                    ..
                } => assert_eq!((*d, *s), (declared, stored), "{name}"),
                other => panic!("{name}: {other}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains("contiguous"), "{msg}");
        }
    }

    #[test]
    fn undecodable_dtypes_and_repacked_zips_are_named() {
        let msg = read_pth(&crafted("uint64.pth")).unwrap_err().to_string();
        assert!(
            msg.contains("uint64.pth") && msg.contains("`ids`") && msg.contains("U64"),
            "{msg}"
        );
        let msg = read_pth(&crafted("compressed.pth"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("compressed.pth") && msg.contains("is compressed"),
            "{msg}"
        );
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
