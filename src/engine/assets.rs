//! The frozen parts of a run: dataset registry (real or synthetic twins), DINOv3 backbone and
//! CLIP text features - real weights from the experiment's paths, or the embedded default
//! (seeded random backbones, synthetic twins). Built once per process and shared by its jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::Device;

use super::EngineError;
use crate::backbone::{Backbone, Precision, Spec};
use crate::data::{Registry, synth};
use crate::device::Backend;
use crate::experiment::schema::{
    BackboneConfig, DataConfig, EmbeddedText, Experiment, Source, TextConfig,
};
use crate::text::{ClipText, ClipTextConfig, TextFeatureCache, load_text_encoder};

/// Everything frozen that a job reads.
pub struct Assets {
    pub registry: Registry,
    pub backbone: Backbone,
    /// `sha256:<hex>` of the weights file, or `embedded:<shape>:<seed>`, with `@bf16` / `@f16`
    /// appended when the backbone computes in that dtype: part of every feature shard's key, so
    /// features of different precisions never mix (f32 keys are unchanged).
    pub backbone_id: String,
    /// What computes the features (part of every shard's key): the feature code's digest, the
    /// backend and the implementation of the backbone blocks.
    pub features_compute: String,
    pub text: TextFeatureCache,
    pub text_id: String,
    /// True when data and both backbones are the embedded default.
    pub embedded: bool,
    /// Images that went through the backbone so far in this process (features read back from
    /// shards are not counted): provenance records it per phase.
    pub backbone_images: AtomicU64,
}

/// The configuration sections the assets come from.
#[derive(Debug, Clone)]
pub struct AssetSpec<'a> {
    pub data: &'a DataConfig,
    pub backbone: &'a BackboneConfig,
    pub text: &'a TextConfig,
    pub device: Backend,
    /// Where text features are kept on disk (they are tiny and costly: 420 prompts per word).
    pub text_cache: PathBuf,
}

fn resolve(source: &Source, what: &str) -> Result<Option<PathBuf>, EngineError> {
    source.resolve().map_err(|var| EngineError::Asset {
        what: what.into(),
        message: format!(
            "environment variable {var} is not set; set it to the path, or use `embedded`"
        ),
    })
}

/// The backbone without its weights (the embedded shape, or the architecture beside real
/// weights): enough to check taps and image size, and to price a run, before any work.
pub fn backbone_spec(cfg: &BackboneConfig) -> Result<Spec, EngineError> {
    match resolve(&cfg.weights, "DINOv3 weights")? {
        None => Ok(embedded_spec(cfg)),
        Some(path) => Ok(Spec::from_weights(&path)?),
    }
}

/// The backbone's identity without loading it: `sha256:<hex>` of the weights file the loader
/// picks, or `embedded:<shape>:<seed>`, with `@bf16` / `@f16` for those compute dtypes. Part of
/// every feature shard's key and of every run's and training's identity.
pub fn backbone_id(cfg: &BackboneConfig) -> Result<String, EngineError> {
    let id = match resolve(&cfg.weights, "DINOv3 weights")? {
        None => {
            let e = &cfg.embedded;
            format!(
                "embedded:dinov3-{}x{}x{}p{}:{}",
                e.dim, e.depth, e.heads, e.patch, e.seed
            )
        }
        Some(path) => {
            if !path.exists() {
                return Err(crate::backbone::BackboneError::NotFound { path }.into());
            }
            let file = if path.is_dir() {
                crate::backbone::load::weights_in_dir(&path)?
            } else {
                path
            };
            let hash = crate::io::sha256_file_cached(&file)
                .map_err(|source| EngineError::Io { path: file, source })?;
            format!("sha256:{hash}")
        }
    };
    Ok(precision_id(id, cfg.dtype))
}

/// The text tower's identity without loading it: `sha256:<hex>` of its weights file, or
/// `embedded:<shape>:<seed>`.
pub fn text_id(cfg: &TextConfig) -> Result<String, EngineError> {
    match resolve(&cfg.weights, "CLIP weights")? {
        None => {
            let e = &cfg.embedded;
            Ok(format!(
                "embedded:clip-{}x{}x{}:{}",
                e.width, e.layers, e.embed_dim, e.seed
            ))
        }
        Some(path) => {
            let (file, _) = crate::text::load::weights_and_config(&path)?;
            let hash = crate::io::sha256_file_cached(&file).map_err(|source| EngineError::Io {
                path: file.clone(),
                source,
            })?;
            Ok(format!("sha256:{hash}"))
        }
    }
}

/// The text tower's projection width without building it (from the embedded shape, the weights'
/// `config.json`, or the weights' shapes when there is none): what the adapters' text projection
/// reads.
pub fn text_projection_dim(cfg: &TextConfig) -> Result<usize, EngineError> {
    match resolve(&cfg.weights, "CLIP weights")? {
        None => Ok(cfg.embedded.embed_dim),
        Some(path) => Ok(crate::text::load::config_of(&path)?.projection_dim),
    }
}

/// The shape of the embedded random CLIP text tower (CLIP's switches, the configured sizes).
pub fn embedded_text_config(e: &EmbeddedText) -> ClipTextConfig {
    ClipTextConfig {
        intermediate_size: 4 * e.width,
        hidden_size: e.width,
        num_hidden_layers: e.layers,
        num_attention_heads: e.heads,
        projection_dim: e.embed_dim,
        ..ClipTextConfig::vitl14_336()
    }
}

/// The backbone's identity at `precision`: f32 (the reference) keeps the weights' id.
fn precision_id(weights_id: String, precision: Precision) -> String {
    match precision {
        Precision::F32 => weights_id,
        p => format!("{weights_id}@{p}"),
    }
}

fn embedded_spec(cfg: &BackboneConfig) -> Spec {
    let e = &cfg.embedded;
    Spec::embedded(e.dim, e.depth, e.heads, e.patch)
}

impl<'a> AssetSpec<'a> {
    /// The assets `exp` configures (text features cached beside the feature shards).
    pub fn of(exp: &'a Experiment) -> Self {
        AssetSpec {
            data: &exp.data,
            backbone: &exp.backbone,
            text: &exp.text,
            device: exp.device,
            text_cache: exp.cache.dir.with_file_name("text"),
        }
    }

    /// The key under which a process keeps one set of assets.
    fn key(&self) -> String {
        serde_json::to_string(&(
            &self.data.root,
            &self.data.registry,
            &self.data.synthetic,
            &self.backbone.weights,
            &self.backbone.embedded,
            self.backbone.dtype,
            self.text,
            self.device,
            &self.text_cache,
        ))
        .expect("asset config serializes")
    }
}

/// The assets of `spec`, built at most once per process.
pub fn shared_assets(
    spec: &AssetSpec,
    repo_root: &Path,
    device: &Device,
) -> Result<Arc<Assets>, EngineError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Assets>>>> = OnceLock::new();
    let key = spec.key();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(a) = cache.lock().expect("asset cache lock").get(&key) {
        return Ok(a.clone());
    }
    let assets = Arc::new(Assets::prepare(spec, repo_root, device)?);
    cache
        .lock()
        .expect("asset cache lock")
        .insert(key, assets.clone());
    Ok(assets)
}

impl Assets {
    /// Checks that the backbone takes `exp`'s image size and taps, before any image is read.
    pub fn check_input(&self, exp: &Experiment) -> Result<(), EngineError> {
        let size = exp.data.image_size;
        let channels = self.backbone.shape().channels;
        self.backbone
            .check_input([1, channels, size, size], &exp.backbone.taps)
            .map_err(|message| EngineError::Config {
                what: "backbone.taps / data.image_size".into(),
                message,
            })
    }

    pub fn prepare(
        spec: &AssetSpec,
        repo_root: &Path,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let registry = registry(spec.data, repo_root)?;
        let backbone = match resolve(&spec.backbone.weights, "DINOv3 weights")? {
            None => {
                let e = &spec.backbone.embedded;
                Backbone::random(&embedded_spec(spec.backbone), e.seed, device)
            }
            Some(path) => Backbone::load(&path, device)?,
        };
        let precision = spec.backbone.dtype;
        let backbone = backbone
            .with_precision(precision)
            .map_err(|e| EngineError::Asset {
                what: "backbone.dtype".into(),
                message: e.to_string(),
            })?;
        let backbone_id = backbone_id(spec.backbone)?;
        let activation = spec.text.activation;
        let clip = match resolve(&spec.text.weights, "CLIP weights")? {
            None => {
                let e = &spec.text.embedded;
                let cfg = embedded_text_config(e);
                ClipText::random(cfg, e.seed, device)?.with_activation(activation)
            }
            Some(path) => load_text_encoder(&path, activation, device)?,
        };
        let text_id = text_id(spec.text)?;
        let features_compute = format!(
            "{}@{}/{}",
            crate::build_info::CODE_FEATURES,
            spec.device.name(),
            backbone.kernels_family(device)
        );
        // Text features of other code or another backend are kept apart.
        let text_tag = format!(
            "{}-{}",
            &crate::build_info::CODE_TEXT[..8],
            spec.device.name()
        );
        Ok(Assets {
            registry,
            backbone,
            backbone_id,
            features_compute,
            text: TextFeatureCache::new(clip, Some(repo_root.join(&spec.text_cache)))
                .with_tag(text_tag),
            text_id,
            embedded: spec.data.root.is_embedded()
                && spec.backbone.weights.is_embedded()
                && spec.text.weights.is_embedded(),
            backbone_images: AtomicU64::new(0),
        })
    }
}

/// The dataset registry; with `data.root: embedded` the synthetic twins are written first (once
/// per generator setting: a marker records what was written, and other settings rewrite them).
/// The twins are checked and written under a lock beside their folder, so that two processes
/// starting on a fresh checkout (two array tasks) never write them at the same time.
pub fn registry(data: &DataConfig, repo_root: &Path) -> Result<Registry, EngineError> {
    let reg = Registry::load_or_default(&repo_root.join(&data.registry))?;
    match resolve(&data.root, "data root")? {
        Some(root) => Ok(reg.with_data_root(root)),
        None => {
            // A size for a dataset the registry does not have would silently do nothing.
            for key in data.synthetic.per_dataset.keys() {
                reg.get(key).map_err(|e| EngineError::Config {
                    what: format!("data.synthetic.per_dataset.{key}"),
                    message: e.to_string(),
                })?;
            }
            let dir = repo_root.join(&data.synthetic.dir);
            let marker = dir.join(".synth-complete");
            let opts = data.synthetic.options();
            let stamp = opts.stamp();
            let current =
                || std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str());
            if !current() {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "twins".into());
                let lock_path = dir.with_file_name(format!(".{name}.lock"));
                let _lock = crate::io::lock(&lock_path, || {
                    super::progress::say(&format!(
                        "waiting for another process writing the twins in {}",
                        dir.display()
                    ))
                })
                .map_err(|source| EngineError::Io {
                    path: lock_path.clone(),
                    source,
                })?;
                // Another process may have written them while we waited.
                if !current() {
                    remove_twins(&dir)?;
                    synth::write_with(&dir, &opts)?;
                    crate::io::write_atomic(&marker, stamp.as_bytes()).map_err(|source| {
                        EngineError::Io {
                            path: marker.clone(),
                            source,
                        }
                    })?;
                }
            }
            Ok(reg.with_fixed_root(dir))
        }
    }
}

/// Removes the dataset folders of earlier twins under `dir` (each holds the generator's
/// `synth.json`), so that twins with fewer images leave no stale ones behind. Nothing else in
/// `dir` is touched.
fn remove_twins(dir: &Path) -> Result<(), EngineError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.join(synth::SYNTH_MARKER).is_file() {
            std::fs::remove_dir_all(&p).map_err(|source| EngineError::Io {
                path: p.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each compute dtype has its own backbone id (and so its own feature shards); f32 keeps the
    /// weights' own id. The backbone is built at the configured dtype.
    #[test]
    fn backbone_dtype_changes_the_backbone_and_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let mut exp = Experiment::default();
        exp.data.root = Source::Embedded;
        exp.backbone.weights = Source::Embedded;
        exp.text.weights = Source::Embedded;
        let device = Device::flex();
        let ids: Vec<String> = Precision::ALL
            .into_iter()
            .map(|p| {
                exp.backbone.dtype = p;
                let a = Assets::prepare(&AssetSpec::of(&exp), tmp.path(), &device).unwrap();
                assert_eq!(Precision::of(a.backbone.dtype()), Some(p));
                a.backbone_id
            })
            .collect();
        assert_eq!(ids[0], "embedded:dinov3-64x8x4p16:0");
        assert_eq!(ids[1], "embedded:dinov3-64x8x4p16:0@bf16");
        assert_eq!(ids[2], "embedded:dinov3-64x8x4p16:0@f16");
    }

    /// Twins are written once per (seed, generator version): a marker from an older generator
    /// (or another seed) makes them be written again, a current one is trusted.
    #[test]
    fn twins_are_regenerated_when_the_generator_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut data = DataConfig {
            root: Source::Embedded,
            ..Default::default()
        };
        data.synthetic.dir = PathBuf::from("twins");
        let dir = tmp.path().join("twins");
        let marker = dir.join(".synth-complete");

        registry(&data, tmp.path()).unwrap();
        let current = std::fs::read_to_string(&marker).unwrap();
        assert!(
            current.contains(&format!("generator={}", synth::GENERATOR_VERSION)),
            "{current}"
        );

        // A current marker: nothing is written again.
        let written = || {
            let any = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.path().join(synth::SYNTH_MARKER))
                .find(|p| p.is_file())
                .unwrap();
            std::fs::metadata(any).unwrap().modified().unwrap()
        };
        let first = written();
        registry(&data, tmp.path()).unwrap();
        assert_eq!(written(), first);

        // The marker of the first generator (seed only): the twins are written again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&marker, "seed=0\n").unwrap();
        registry(&data, tmp.path()).unwrap();
        assert!(written() > first);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), current);

        // Fewer images per category: the earlier twins are removed, not left beside the new.
        let bottle = dir.join("MVTecAD/bottle/test");
        let count = || {
            walkdir::WalkDir::new(&bottle)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .count()
        };
        assert_eq!(count(), 6, "smoke twins: 2 normal + 4 anomalous");
        std::fs::write(dir.join("keep.txt"), b"mine").unwrap();
        data.synthetic.per_category = crate::experiment::schema::PerCategory::Count(3);
        registry(&data, tmp.path()).unwrap();
        assert_eq!(count(), 3, "1 normal + 2 anomalous");
        assert!(dir.join("keep.txt").is_file(), "only twins are removed");
        assert!(
            std::fs::read_to_string(&marker)
                .unwrap()
                .contains("PerCategory(3)")
        );
    }
}
