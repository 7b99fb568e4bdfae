//! The one entry point for model weight files, whatever their format: safetensors or a PyTorch
//! checkpoint (`.pth`, `.pt`, `.bin`), told apart by their first bytes, not their extension.
//! Both readers check their budget before reading tensor data (see [`super::pth`] and
//! [`super::tensors`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::pth::{PthError, read_pth};
use super::tensors::{TensorFile, TensorFileError};

/// Why a weights file could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error(transparent)]
    Safetensors(#[from] TensorFileError),
    #[error(transparent)]
    Pth(#[from] PthError),
}

/// A safetensors file starts with a little-endian u64 header length and a JSON object.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() > 8 && head[8] == b'{' && !head.starts_with(b"PK\x03\x04")
}

/// Every tensor of a safetensors or PyTorch weights file, decoded to host tensors.
pub fn read_weights(path: &Path) -> Result<TensorFile, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)
        .and_then(|f| f.take(9).read_to_end(&mut head))
        .map_err(|source| TensorFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if looks_like_safetensors(&head) {
        return Ok(TensorFile::read(path)?);
    }
    Ok(TensorFile {
        path: path.to_path_buf(),
        tensors: read_pth(path)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{HostTensor, PthValue, write_pth};

    #[test]
    fn both_formats_are_recognized_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let t = HostTensor::f32(vec![2], vec![1.0, -1.0]);
        // Extensions that say nothing (or lie) do not matter.
        let st = dir.path().join("w.bin");
        let mut f = TensorFile::new(&st);
        f.insert("a", t.clone());
        f.write(&st).unwrap();
        let pt = dir.path().join("w.safetensors");
        write_pth(
            &pt,
            &PthValue::Dict {
                entries: vec![("a".into(), PthValue::Tensor(t.clone()))],
                ordered: true,
            },
        )
        .unwrap();
        for p in [&st, &pt] {
            assert_eq!(read_weights(p).unwrap().tensors["a"], t, "{}", p.display());
        }
        let missing = dir.path().join("none.pth");
        let msg = read_weights(&missing).unwrap_err().to_string();
        assert!(
            msg.contains("none.pth") && msg.contains("no such file"),
            "{msg}"
        );
    }
}
