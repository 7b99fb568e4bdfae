//! Feature cache: the frozen backbone's tap features are a pure function of (weights, image,
//! preprocessing, taps), so they are computed once and reused by every epoch, every checkpoint
//! evaluated and every variant sharing the taps.
//!
//! Two layers: an in-memory map (f32, bounded by a byte budget, oldest entries evicted first)
//! and optional on-disk f16 shards `<dir>/<2 hex>/<sha256 of the key>.safetensors`, written
//! atomically, each carrying its full key in the safetensors metadata so a reader can verify it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use half::f16;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::io::{HostData, HostTensor};

/// Named feature tensors of one image (e.g. `cls.5` [D], `patches.5` [N, D]), f32 on the host.
pub type Features = BTreeMap<String, HostTensor>;

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
            return Ok(ImageId::Content(hex::encode(Sha256::digest(&bytes))));
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

/// SHA-256 (hex) of a file, streamed: the weights hash of the cache key and of the provenance.
pub fn sha256_file(path: &Path) -> Result<String, CacheError> {
    use std::io::Read;
    let err = |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The full cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureKey {
    /// Hash of the backbone weights (or `embedded:<config>:<seed>`).
    pub weights: String,
    pub image: ImageId,
    /// Everything that changes the pixels fed to the backbone, e.g. `resize512-pil-bilinear-aa/imagenet`.
    pub preprocessing: String,
    /// Blocks whose outputs are stored.
    pub taps: Vec<usize>,
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
            "v1|weights={}|image={image}|pre={}|taps={}",
            self.weights,
            self.preprocessing,
            taps.join(",")
        )
    }

    /// SHA-256 hex of the canonical text.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
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
    #[error("feature cache: tensor `{name}` is not f32; features are stored as f32 on the host")]
    NotF32 { name: String },
}

/// Hit and miss counts (for the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

#[derive(Default)]
struct Memory {
    map: HashMap<String, Arc<Features>>,
    order: VecDeque<String>,
    bytes: usize,
}

/// The two-layer cache. Shared between threads.
pub struct FeatureCache {
    dir: Option<PathBuf>,
    memory_budget: Option<usize>,
    memory: Mutex<Memory>,
    stats: Mutex<CacheStats>,
}

fn features_bytes(f: &Features) -> usize {
    f.values().map(|t| t.numel() * 4).sum()
}

impl FeatureCache {
    /// `dir`: shard directory (`None`: memory only). `memory_budget`: bytes kept in memory
    /// (`None`: no memory layer; `Some(usize::MAX)`: unbounded).
    pub fn new(dir: Option<PathBuf>, memory_budget: Option<usize>) -> Self {
        FeatureCache {
            dir,
            memory_budget,
            memory: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// From the experiment's `cache` section, with a memory budget in bytes.
    pub fn from_config(cfg: &crate::experiment::schema::CacheConfig, memory_budget: usize) -> Self {
        FeatureCache::new(
            cfg.disk.then(|| cfg.dir.clone()),
            cfg.in_memory.then_some(memory_budget),
        )
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().expect("cache stats lock")
    }

    /// The shard file of `key` (when the disk layer is on).
    pub fn shard_path(&self, key: &FeatureKey) -> Option<PathBuf> {
        let digest = key.digest();
        self.dir
            .as_ref()
            .map(|d| d.join(&digest[..2]).join(format!("{digest}.safetensors")))
    }

    /// Looks `key` up in memory, then on disk (promoting a disk hit to memory).
    pub fn get(&self, key: &FeatureKey) -> Result<Option<Arc<Features>>, CacheError> {
        let digest = key.digest();
        if let Some(f) = self
            .memory
            .lock()
            .expect("cache lock")
            .map
            .get(&digest)
            .cloned()
        {
            self.stats.lock().expect("cache stats lock").memory_hits += 1;
            return Ok(Some(f));
        }
        if let Some(path) = self.shard_path(key).filter(|p| p.is_file()) {
            let features = read_shard(&path, &key.canonical())?;
            self.stats.lock().expect("cache stats lock").disk_hits += 1;
            return Ok(Some(self.remember(digest, features)));
        }
        self.stats.lock().expect("cache stats lock").misses += 1;
        Ok(None)
    }

    /// Stores `features` under `key` in both layers; returns the shared copy.
    pub fn put(&self, key: &FeatureKey, features: Features) -> Result<Arc<Features>, CacheError> {
        if let Some(path) = self.shard_path(key) {
            write_shard(&path, &key.canonical(), &features)?;
        }
        Ok(self.remember(key.digest(), features))
    }

    /// The cached features of `key`, computing and storing them on a miss.
    pub fn get_or_compute<E: From<CacheError>>(
        &self,
        key: &FeatureKey,
        compute: impl FnOnce() -> Result<Features, E>,
    ) -> Result<Arc<Features>, E> {
        if let Some(f) = self.get(key)? {
            return Ok(f);
        }
        let features = compute()?;
        Ok(self.put(key, features)?)
    }

    fn remember(&self, digest: String, features: Features) -> Arc<Features> {
        let features = Arc::new(features);
        let Some(budget) = self.memory_budget else {
            return features;
        };
        let size = features_bytes(&features);
        if size > budget {
            return features;
        }
        let mut mem = self.memory.lock().expect("cache lock");
        let mut evicted = 0;
        while mem.bytes + size > budget {
            let Some(old) = mem.order.pop_front() else {
                break;
            };
            if let Some(f) = mem.map.remove(&old) {
                mem.bytes -= features_bytes(&f);
                evicted += 1;
            }
        }
        if let Some(prev) = mem.map.insert(digest.clone(), features.clone()) {
            mem.bytes -= features_bytes(&prev);
            mem.order.retain(|d| d != &digest);
        }
        mem.order.push_back(digest);
        mem.bytes += size;
        drop(mem);
        self.stats.lock().expect("cache stats lock").evictions += evicted;
        features
    }
}

const KEY_META: &str = "ava_dino_feature_key";

/// Writes an f16 shard atomically.
pub fn write_shard(
    path: &Path,
    canonical_key: &str,
    features: &Features,
) -> Result<(), CacheError> {
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(features.len());
    for (name, t) in features {
        let HostData::F32(v) = &t.data else {
            return Err(CacheError::NotF32 { name: name.clone() });
        };
        let bytes: Vec<u8> = v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect();
        raw.push((name.clone(), t.shape.clone(), bytes));
    }
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(n, shape, bytes)| {
            (
                n.clone(),
                TensorView::new(Dtype::F16, shape.clone(), bytes).expect("shape matches the data"),
            )
        })
        .collect();
    let meta = HashMap::from([(KEY_META.to_string(), canonical_key.to_string())]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| CacheError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    crate::io::write_atomic(path, &bytes).map_err(|source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads an f16 shard back to f32, checking that it belongs to `canonical_key`.
pub fn read_shard(path: &Path, canonical_key: &str) -> Result<Features, CacheError> {
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
    if stored != canonical_key {
        return Err(corrupt(format!(
            "it holds key `{stored}`, expected `{canonical_key}` (hash collision or a foreign file)"
        )));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut out = Features::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F16 {
            return Err(corrupt(format!(
                "tensor `{name}` is {:?}, expected F16",
                view.dtype()
            )));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        out.insert(name, HostTensor::f32(view.shape().to_vec(), values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(seed: f32) -> Features {
        let mut f = Features::new();
        f.insert(
            "cls.5".into(),
            HostTensor::f32(vec![4], vec![seed, -1.5, 0.25, 3.0]),
        );
        f.insert(
            "patches.5".into(),
            HostTensor::f32(vec![2, 3], (0..6).map(|i| seed * i as f32 / 7.0).collect()),
        );
        f
    }

    fn key(dir: &Path, name: &str) -> FeatureKey {
        let img = dir.join(name);
        std::fs::write(&img, name.as_bytes()).unwrap();
        FeatureKey {
            weights: "w1".into(),
            image: ImageId::of_file(&img, false).unwrap(),
            preprocessing: "r64".into(),
            taps: vec![5],
        }
    }

    #[test]
    fn disk_shards_round_trip_in_f16_and_are_found_by_a_fresh_cache() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "a.png");
        let cache = FeatureCache::new(Some(dir.path().join("cache")), Some(usize::MAX));
        let mut computed = 0;
        let f1 = cache
            .get_or_compute::<CacheError>(&k, || {
                computed += 1;
                Ok(feats(1.1))
            })
            .unwrap();
        let f2 = cache
            .get_or_compute::<CacheError>(&k, || {
                computed += 1;
                Ok(feats(9.0))
            })
            .unwrap();
        assert_eq!(computed, 1);
        assert!(Arc::ptr_eq(&f1, &f2), "second lookup must hit memory");
        assert_eq!(
            cache.stats(),
            CacheStats {
                memory_hits: 1,
                disk_hits: 0,
                misses: 1,
                evictions: 0
            }
        );

        // A new process: memory is empty, the shard on disk answers, values within f16 rounding.
        let fresh = FeatureCache::new(Some(dir.path().join("cache")), Some(usize::MAX));
        let back = fresh.get(&k).unwrap().expect("disk hit");
        assert_eq!(fresh.stats().disk_hits, 1);
        for (name, t) in feats(1.1) {
            let got = back[&name].as_f32().unwrap();
            assert_eq!(back[&name].shape, t.shape);
            for (a, b) in got.iter().zip(t.as_f32().unwrap()) {
                assert!((a - b).abs() <= b.abs() * 1e-3 + 1e-6, "{name}: {a} vs {b}");
            }
        }
        // No temporary files were left next to the shard.
        let shard = fresh.shard_path(&k).unwrap();
        assert_eq!(
            std::fs::read_dir(shard.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn every_key_part_changes_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "a.png");
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
            key(dir.path(), "b.png"),
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
    fn file_hash_is_the_sha256_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        std::fs::write(&p, b"abc").unwrap();
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn foreign_shard_is_reported_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path(), "a.png");
        let cache = FeatureCache::new(Some(dir.path().join("cache")), None);
        let path = cache.shard_path(&k).unwrap();
        write_shard(&path, "some other key", &feats(1.0)).unwrap();
        let err = cache.get(&k).unwrap_err();
        assert!(err.to_string().contains("delete it"), "{err}");
    }

    #[test]
    fn memory_budget_evicts_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let one = features_bytes(&feats(1.0));
        let cache = FeatureCache::new(None, Some(one * 2));
        let keys: Vec<_> = ["a", "b", "c"].iter().map(|n| key(dir.path(), n)).collect();
        for k in &keys {
            cache.put(k, feats(1.0)).unwrap();
        }
        assert_eq!(cache.stats().evictions, 1);
        assert!(cache.get(&keys[0]).unwrap().is_none());
        assert!(cache.get(&keys[2]).unwrap().is_some());
    }
}
