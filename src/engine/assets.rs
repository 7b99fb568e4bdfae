//! The frozen parts of a run: dataset registry (real or synthetic twins), DINOv3 backbone and
//! CLIP text features - real weights from the experiment's paths, or the embedded default
//! (seeded random backbones, synthetic twins). Built once per process and shared by its jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::Device;

use super::EngineError;
use crate::backbone::{DinoV3, DinoV3Config, load_backbone};
use crate::data::{Registry, synth};
use crate::engine::cache::sha256_file;
use crate::experiment::schema::{Experiment, Source};
use crate::text::{ClipText, ClipTextConfig, TextFeatureCache, load_text_encoder};

/// Everything frozen that a job reads.
pub struct Assets {
    pub registry: Registry,
    pub backbone: DinoV3,
    /// `sha256:<hex>` of the weights file, or `embedded:<shape>:<seed>`.
    pub backbone_id: String,
    pub text: TextFeatureCache,
    pub text_id: String,
    /// True when data and both backbones are the embedded default.
    pub embedded: bool,
}

fn resolve(source: &Source, what: &str) -> Result<Option<PathBuf>, EngineError> {
    source.resolve().map_err(|var| EngineError::Asset {
        what: what.into(),
        message: format!(
            "environment variable {var} is not set; set it to the path, or use `embedded`"
        ),
    })
}

/// The key under which a process keeps one set of assets (the asset-related config).
fn asset_key(exp: &Experiment) -> String {
    serde_json::to_string(&(
        &exp.data.root,
        &exp.data.registry,
        &exp.data.synthetic,
        &exp.backbone.weights,
        &exp.backbone.embedded,
        &exp.text,
        exp.device,
    ))
    .expect("asset config serializes")
}

/// The assets of `exp`, built at most once per process.
pub fn shared_assets(
    exp: &Experiment,
    repo_root: &Path,
    device: &Device,
) -> Result<Arc<Assets>, EngineError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Assets>>>> = OnceLock::new();
    let key = asset_key(exp);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(a) = cache.lock().expect("asset cache lock").get(&key) {
        return Ok(a.clone());
    }
    let assets = Arc::new(Assets::prepare(exp, repo_root, device)?);
    cache
        .lock()
        .expect("asset cache lock")
        .insert(key, assets.clone());
    Ok(assets)
}

impl Assets {
    pub fn prepare(
        exp: &Experiment,
        repo_root: &Path,
        device: &Device,
    ) -> Result<Self, EngineError> {
        let registry = registry(exp, repo_root)?;
        let (backbone, backbone_id) = match resolve(&exp.backbone.weights, "DINOv3 weights")? {
            None => {
                let e = &exp.backbone.embedded;
                let cfg = DinoV3Config::tiny(e.dim, e.depth, e.heads, e.patch, 4);
                (
                    DinoV3::random(&cfg, e.seed, device),
                    format!(
                        "embedded:dinov3-{}x{}x{}p{}:{}",
                        e.dim, e.depth, e.heads, e.patch, e.seed
                    ),
                )
            }
            Some(path) => {
                let model = load_backbone(&path, device)?;
                let file = if path.is_dir() {
                    crate::backbone::load::weights_in_dir(&path)?
                } else {
                    path.clone()
                };
                (model, format!("sha256:{}", sha256_file(&file)?))
            }
        };
        let activation = exp.text.activation;
        let (clip, text_id) = match resolve(&exp.text.weights, "CLIP weights")? {
            None => {
                let e = &exp.text.embedded;
                let cfg = ClipTextConfig {
                    intermediate_size: 4 * e.width,
                    hidden_size: e.width,
                    num_hidden_layers: e.layers,
                    num_attention_heads: e.heads,
                    projection_dim: e.embed_dim,
                    ..ClipTextConfig::vitl14_336()
                };
                let model = ClipText::random(cfg, e.seed, device)?.with_activation(activation);
                let id = format!(
                    "embedded:clip-{}x{}x{}:{}",
                    e.width, e.layers, e.embed_dim, e.seed
                );
                (model, id)
            }
            Some(path) => {
                let model = load_text_encoder(&path, activation, device)?;
                let id = format!("sha256:{}", model.weights_hash());
                (model, id)
            }
        };
        let text_cache_dir = exp
            .cache
            .disk
            .then(|| repo_root.join(&exp.cache.dir).with_file_name("text"));
        Ok(Assets {
            registry,
            backbone,
            backbone_id,
            text: TextFeatureCache::new(clip, text_cache_dir),
            text_id,
            embedded: exp.data.root.is_embedded()
                && exp.backbone.weights.is_embedded()
                && exp.text.weights.is_embedded(),
        })
    }
}

/// The dataset registry; with `data.root: embedded` the synthetic twins are written first (once).
fn registry(exp: &Experiment, repo_root: &Path) -> Result<Registry, EngineError> {
    let path = repo_root.join(&exp.data.registry);
    let reg = if path.is_file() {
        Registry::load(&path)?
    } else {
        Registry::load_default()?
    };
    match resolve(&exp.data.root, "data root")? {
        Some(root) => Ok(reg.with_data_root(root)),
        None => {
            let dir = repo_root.join(&exp.data.synthetic.dir);
            let marker = dir.join(".synth-complete");
            let stamp = format!(
                "seed={}\ngenerator={}\n",
                exp.data.synthetic.seed,
                synth::GENERATOR_VERSION
            );
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(stamp.as_str()) {
                synth::write_all(&dir, exp.data.synthetic.seed)?;
                crate::io::write_atomic(&marker, stamp.as_bytes()).map_err(|source| {
                    EngineError::Io {
                        path: marker.clone(),
                        source,
                    }
                })?;
            }
            Ok(reg.with_fixed_root(dir))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twins are written once per (seed, generator version): a marker from an older generator
    /// (or another seed) makes them be written again, a current one is trusted.
    #[test]
    fn twins_are_regenerated_when_the_generator_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut exp = Experiment::default();
        exp.data.root = Source::Embedded;
        exp.data.synthetic.dir = PathBuf::from("twins");
        let dir = tmp.path().join("twins");
        let marker = dir.join(".synth-complete");

        registry(&exp, tmp.path()).unwrap();
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
        registry(&exp, tmp.path()).unwrap();
        assert_eq!(written(), first);

        // The marker of the first generator (seed only): the twins are written again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&marker, "seed=0\n").unwrap();
        registry(&exp, tmp.path()).unwrap();
        assert!(written() > first);
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), current);
    }
}
