//! Feature shards on disk: the frozen backbone's tap features are a pure function of (weights,
//! image, preprocessing, taps), so they are computed once and read back by every epoch, every
//! job that trains on the same set, and every later run.
//!
//! One safetensors file per image, `<dir>/<2 hex>/<sha256 of the key>.safetensors`, holding
//! `cls` `[T, D]` and `patches` `[T, HW, D]` in the configured precision (f32 exact, or f16),
//! written atomically, with its full key in the metadata so that a reader can verify it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::features::ImageFeatures;
use crate::experiment::FeatureDtype;

/// How an image is identified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageId {
    /// Path, size and modification time: cheap, and a changed file gets a new key.
    File {
        path: PathBuf,
        size: u64,
        mtime_ns: u128,
    },
    /// SHA-256 of the file's bytes: survives moves and copies.
    Content(String),
}

impl ImageId {
    /// Identifies `path` by its metadata (`by_content = false`) or its bytes.
    pub fn of_file(path: &Path, by_content: bool) -> Result<ImageId, CacheError> {
        let err = |source| CacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        if by_content {
            let bytes = std::fs::read(path).map_err(err)?;
            return Ok(ImageId::Content(crate::io::sha256_hex(&bytes)));
        }
        let meta = std::fs::metadata(path).map_err(err)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(ImageId::File {
            path,
            size: meta.len(),
            mtime_ns,
        })
    }
}

/// The full key of one image's shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureKey {
    /// Hash of the backbone weights (or `embedded:<config>:<seed>`).
    pub weights: String,
    pub image: ImageId,
    /// Everything that changes the pixels fed to the backbone.
    pub preprocessing: String,
    /// Blocks whose outputs are stored.
    pub taps: Vec<usize>,
    pub dtype: FeatureDtype,
    /// What computed them: the digest of the feature code (`crate::build_info::CODE_FEATURES`),
    /// the backend and the implementation of the blocks. Features from other code, another
    /// backend or other kernels differ in their last bits and are never mixed with ours.
    pub compute: String,
}

impl FeatureKey {
    /// The canonical text of the key (stored in each shard's metadata).
    pub fn canonical(&self) -> String {
        let image = match &self.image {
            ImageId::File {
                path,
                size,
                mtime_ns,
            } => format!("file:{}:{size}:{mtime_ns}", path.display()),
            ImageId::Content(h) => format!("sha256:{h}"),
        };
        let taps: Vec<String> = self.taps.iter().map(|t| t.to_string()).collect();
        format!(
            "v3|weights={}|image={image}|pre={}|taps={}|dtype={}|compute={}",
            self.weights,
            self.preprocessing,
            taps.join(","),
            self.dtype.name(),
            self.compute
        )
    }

    /// SHA-256 hex of the canonical text.
    pub fn digest(&self) -> String {
        crate::io::sha256_hex(self.canonical().as_bytes())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("feature cache {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("feature cache shard {path} is unreadable ({message}); delete it and it is recomputed")]
    Corrupt { path: PathBuf, message: String },
}

/// Room a shard's file takes beyond its values: the safetensors header (two tensor entries,
/// about 180 bytes) and the key in its metadata (about 80 bytes plus the image's path), rounded
/// up for long paths. The plan prices a shard as its values plus this.
pub const SHARD_HEADER_BYTES: u64 = 512;

/// The shard directory.
#[derive(Debug, Clone)]
pub struct ShardCache {
    dir: PathBuf,
}

const KEY_META: &str = "ava_dino_feature_key";

impl ShardCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ShardCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The shard file of `key`.
    pub fn shard_path(&self, key: &FeatureKey) -> PathBuf {
        let digest = key.digest();
        self.dir
            .join(&digest[..2])
            .join(format!("{digest}.safetensors"))
    }

    /// Whether `key` has a shard (without reading it).
    pub fn contains(&self, key: &FeatureKey) -> bool {
        self.shard_path(key).is_file()
    }

    /// The features of `key`, if a shard holds them.
    pub fn get(&self, key: &FeatureKey) -> Result<Option<ImageFeatures>, CacheError> {
        let path = self.shard_path(key);
        if !path.is_file() {
            return Ok(None);
        }
        read_shard(&path, key).map(Some)
    }

    /// Writes the shard of `key` (values already rounded to `key.dtype`).
    pub fn put(&self, key: &FeatureKey, f: &ImageFeatures) -> Result<(), CacheError> {
        let path = self.shard_path(key);
        let corrupt = |message: String| CacheError::Corrupt {
            path: path.clone(),
            message,
        };
        let encode = |v: &[f32]| -> Vec<u8> {
            match key.dtype {
                FeatureDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                FeatureDtype::F16 => v
                    .iter()
                    .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                    .collect(),
            }
        };
        let dtype = match key.dtype {
            FeatureDtype::F32 => Dtype::F32,
            FeatureDtype::F16 => Dtype::F16,
        };
        let (t, d) = (f.taps, f.dim);
        let hw = f.patches.len() / (t * d).max(1);
        let cls = encode(&f.cls);
        let patches = encode(&f.patches);
        let views = vec![
            (
                "cls".to_string(),
                TensorView::new(dtype, vec![t, d], &cls).map_err(|e| corrupt(e.to_string()))?,
            ),
            (
                "patches".to_string(),
                TensorView::new(dtype, vec![t, hw, d], &patches)
                    .map_err(|e| corrupt(e.to_string()))?,
            ),
        ];
        let meta = HashMap::from([(KEY_META.to_string(), key.canonical())]);
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| corrupt(e.to_string()))?;
        crate::io::write_atomic(&path, &bytes).map_err(|source| CacheError::Io {
            path: path.clone(),
            source,
        })
    }
}

/// Reads a shard back to f32, checking that it belongs to `key`.
fn read_shard(path: &Path, key: &FeatureKey) -> Result<ImageFeatures, CacheError> {
    let corrupt = |message: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let stored = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(KEY_META))
        .cloned()
        .unwrap_or_default();
    let canonical = key.canonical();
    if stored != canonical {
        return Err(corrupt(format!(
            "it holds key `{stored}`, expected `{canonical}` (hash collision or a foreign file)"
        )));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let read = |name: &str| -> Result<(Vec<usize>, Vec<f32>), CacheError> {
        let view = st.tensor(name).map_err(|e| corrupt(e.to_string()))?;
        let values = match (view.dtype(), key.dtype) {
            (Dtype::F32, FeatureDtype::F32) => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            (Dtype::F16, FeatureDtype::F16) => view
                .data()
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            (found, _) => {
                return Err(corrupt(format!(
                    "tensor `{name}` is {found:?}, expected {}",
                    key.dtype.name()
                )));
            }
        };
        Ok((view.shape().to_vec(), values))
    };
    let (cls_shape, cls) = read("cls")?;
    let (patch_shape, patches) = read("patches")?;
    let [t, d] = cls_shape[..] else {
        return Err(corrupt(format!(
            "cls has shape {cls_shape:?}, expected [T, D]"
        )));
    };
    if patch_shape.len() != 3 || patch_shape[0] != t || patch_shape[2] != d {
        return Err(corrupt(format!(
            "patches has shape {patch_shape:?}, expected [{t}, HW, {d}]"
        )));
    }
    Ok(ImageFeatures {
        taps: t,
        dim: d,
        cls,
        patches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(seed: f32) -> ImageFeatures {
        ImageFeatures {
            taps: 2,
            dim: 3,
            cls: (0..6).map(|i| seed - i as f32 / 3.0).collect(),
            patches: (0..12).map(|i| seed * i as f32 / 7.0).collect(),
        }
    }

    fn key(dir: &Path, name: &str, dtype: FeatureDtype) -> FeatureKey {
        let img = dir.join(name);
        std::fs::write(&img, name.as_bytes()).unwrap();
        FeatureKey {
            weights: "w1".into(),
            image: ImageId::of_file(&img, false).unwrap(),
            preprocessing: "r64".into(),
            taps: vec![5, 7],
            dtype,
            compute: "c1@cpu/kernels".into(),
        }
    }

    #[test]
    fn f32_shards_round_trip_exactly_f16_within_rounding() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ShardCache::new(dir.path().join("cache"));
        let f = feats(1.1);
        let k32 = key(dir.path(), "a.png", FeatureDtype::F32);
        assert!(cache.get(&k32).unwrap().is_none());
        cache.put(&k32, &f).unwrap();
        assert_eq!(cache.get(&k32).unwrap().unwrap(), f, "f32 is exact");

        let k16 = FeatureKey {
            dtype: FeatureDtype::F16,
            ..k32.clone()
        };
        assert_ne!(cache.shard_path(&k16), cache.shard_path(&k32));
        cache.put(&k16, &f).unwrap();
        let back = cache.get(&k16).unwrap().unwrap();
        for (a, b) in back.patches.iter().zip(&f.patches) {
            assert!((a - b).abs() <= b.abs() * 1e-3 + 1e-6, "{a} vs {b}");
            assert_eq!(*a, f16::from_f32(*b).to_f32());
        }
        // Two shards and no temporary files under the cache directory.
        let files: Vec<_> = walkdir::WalkDir::new(dir.path().join("cache"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
    }

    #[test]
    fn every_key_part_changes_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "a.png", FeatureDtype::F32);
        let variants = [
            FeatureKey {
                weights: "w2".into(),
                ..k.clone()
            },
            FeatureKey {
                preprocessing: "r512".into(),
                ..k.clone()
            },
            FeatureKey {
                taps: vec![23],
                ..k.clone()
            },
            FeatureKey {
                dtype: FeatureDtype::F16,
                ..k.clone()
            },
            FeatureKey {
                compute: "c2@cpu/kernels".into(),
                ..k.clone()
            },
            FeatureKey {
                compute: "c1@wgpu/burn".into(),
                ..k.clone()
            },
            key(dir.path(), "b.png", FeatureDtype::F32),
        ];
        for v in &variants {
            assert_ne!(v.digest(), k.digest(), "{}", v.canonical());
        }
        // Rewriting the image changes its size/mtime identity.
        std::fs::write(dir.path().join("a.png"), b"different content").unwrap();
        let k2 = FeatureKey {
            image: ImageId::of_file(&dir.path().join("a.png"), false).unwrap(),
            ..k.clone()
        };
        assert_ne!(k2.digest(), k.digest());
        // Content identity ignores where the file is.
        std::fs::copy(dir.path().join("a.png"), dir.path().join("c.png")).unwrap();
        assert_eq!(
            ImageId::of_file(&dir.path().join("a.png"), true).unwrap(),
            ImageId::of_file(&dir.path().join("c.png"), true).unwrap()
        );
    }

    #[test]
    fn foreign_or_truncated_shard_is_reported_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ShardCache::new(dir.path().join("cache"));
        let k = key(dir.path(), "a.png", FeatureDtype::F32);
        let other = key(dir.path(), "b.png", FeatureDtype::F32);
        cache.put(&other, &feats(1.0)).unwrap();
        std::fs::create_dir_all(cache.shard_path(&k).parent().unwrap()).unwrap();
        std::fs::copy(cache.shard_path(&other), cache.shard_path(&k)).unwrap();
        let err = cache.get(&k).unwrap_err();
        assert!(err.to_string().contains("delete it"), "{err}");
        let bytes = std::fs::read(cache.shard_path(&other)).unwrap();
        std::fs::write(cache.shard_path(&other), &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(cache.get(&other), Err(CacheError::Corrupt { .. })));
    }
}
