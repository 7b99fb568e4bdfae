//! Text features per class word, computed once: an in-memory map, and optionally files on disk keyed
//! by weights hash + activation + what computes them (code digest, backend: the caller's tag) +
//! class word (so a changed checkpoint, activation or code never reuses stale features). Disk
//! writes are atomic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::TextError;
use super::model::ClipText;
use super::prompts::{TextFeatures, encode_class_word};
use super::tokenizer::Tokenizer;
use crate::io::{HostTensor, TensorFile, sha256_hex};

/// Where a [`TextFeatureCache::get_or_compute`] answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Memory,
    Disk,
    Computed,
}

/// Counters of a cache's answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: usize,
    pub disk_hits: usize,
    pub computed: usize,
}

/// The text-feature cache the engine asks per class word.
#[derive(Debug)]
pub struct TextFeatureCache {
    model: ClipText,
    tokenizer: Tokenizer,
    disk: Option<PathBuf>,
    /// Names what computes the features (code digest, backend) in the disk files' names.
    tag: String,
    memory: Mutex<HashMap<String, TextFeatures>>,
    stats: Mutex<CacheStats>,
}

impl TextFeatureCache {
    /// A cache over `model`; with `disk_dir`, features are also read from and written to files there.
    pub fn new(model: ClipText, disk_dir: Option<PathBuf>) -> Self {
        Self {
            model,
            tokenizer: Tokenizer::new(),
            disk: disk_dir,
            tag: String::new(),
            memory: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// Names what computes the features (e.g. the text code's digest and the backend) in the
    /// disk files' names, so that features computed otherwise are never read back as these.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    pub fn model(&self) -> &ClipText {
        &self.model
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The features of `class_word`: from memory, else from disk, else encoded (420 prompts) and
    /// stored. Each answer is logged on stderr with its source.
    pub fn get_or_compute(&self, class_word: &str) -> Result<TextFeatures, TextError> {
        self.get_with_source(class_word).map(|(f, _)| f)
    }

    /// [`get_or_compute`](Self::get_or_compute) that also says where the answer came from.
    pub fn get_with_source(&self, class_word: &str) -> Result<(TextFeatures, Source), TextError> {
        let act = self.model.activation();
        if let Some(f) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(class_word)
        {
            eprintln!("text features: `{class_word}` ({act}) from the memory cache");
            self.count(Source::Memory);
            return Ok((f.clone(), Source::Memory));
        }
        let file = self
            .disk
            .as_ref()
            .map(|d| d.join(self.file_name(class_word)));
        let (features, source) = match file.as_deref().filter(|p| p.is_file()) {
            Some(path) => {
                let f = self.read_entry(path, class_word)?;
                eprintln!(
                    "text features: `{class_word}` ({act}) from the disk cache {}",
                    path.display()
                );
                (f, Source::Disk)
            }
            None => {
                let start = Instant::now();
                let f = encode_class_word(&self.model, &self.tokenizer, class_word)?;
                eprintln!(
                    "text features: `{class_word}` encoded (420 prompts, activation {act}) in {:.2}s",
                    start.elapsed().as_secs_f64()
                );
                if let Some(path) = &file {
                    self.write_entry(path, class_word, &f)?;
                }
                (f, Source::Computed)
            }
        };
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(class_word.to_string(), features.clone());
        self.count(source);
        Ok((features, source))
    }

    fn count(&self, source: Source) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        match source {
            Source::Memory => s.memory_hits += 1,
            Source::Disk => s.disk_hits += 1,
            Source::Computed => s.computed += 1,
        }
    }

    /// `text-<weights hash>-<activation>[-<tag>]-<hash of the word>.safetensors`: any word is a
    /// safe name.
    fn file_name(&self, class_word: &str) -> String {
        let word = sha256_hex(class_word.as_bytes());
        let weights = self.model.weights_hash();
        let tag = if self.tag.is_empty() {
            String::new()
        } else {
            format!(
                "-{}",
                sha256_hex(self.tag.as_bytes()).get(..12).unwrap_or("")
            )
        };
        format!(
            "text-{}-{}{tag}-{}.safetensors",
            &weights[..weights.len().min(16)],
            self.model.activation(),
            &word[..16]
        )
    }

    fn write_entry(
        &self,
        path: &Path,
        class_word: &str,
        f: &TextFeatures,
    ) -> Result<(), TextError> {
        let mut file = TensorFile::new(path);
        file.insert(
            "normal",
            HostTensor::f32(vec![f.normal.len()], f.normal.clone()),
        );
        file.insert(
            "anomaly",
            HostTensor::f32(vec![f.anomaly.len()], f.anomaly.clone()),
        );
        let meta = format!(
            "{}\n{}\n{}",
            self.model.weights_hash(),
            self.model.activation(),
            class_word
        )
        .into_bytes();
        file.insert("key", HostTensor::u8(vec![meta.len()], meta));
        file.write(path)?;
        Ok(())
    }

    fn read_entry(&self, path: &Path, class_word: &str) -> Result<TextFeatures, TextError> {
        let bad = |reason: String| TextError::Cache {
            path: path.to_path_buf(),
            reason,
        };
        let file = TensorFile::read(path).map_err(|e| bad(e.to_string()))?;
        let key = file.u8("key", 1).map_err(|e| bad(e.to_string()))?;
        let want = format!(
            "{}\n{}\n{}",
            self.model.weights_hash(),
            self.model.activation(),
            class_word
        );
        if key.as_u8().unwrap() != want.as_bytes() {
            return Err(bad(
                "its key (weights hash, activation, class word) is not this request's".into(),
            ));
        }
        let e = self.model.config().projection_dim;
        let vec = |name: &str| -> Result<Vec<f32>, TextError> {
            let t = file.f32(name, 1).map_err(|err| bad(err.to_string()))?;
            if t.shape != [e] {
                return Err(bad(format!(
                    "`{name}` has shape {:?}, expected [{e}]",
                    t.shape
                )));
            }
            Ok(t.as_f32().unwrap().to_vec())
        };
        Ok(TextFeatures {
            normal: vec("normal")?,
            anomaly: vec("anomaly")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Activation, ClipTextConfig};
    use burn::tensor::Device;

    fn tiny_full_vocab() -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            max_position_embeddings: 77,
            projection_dim: 6,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::Gelu,
        }
    }

    #[test]
    fn memory_then_disk_then_recompute_on_other_activation() {
        let dev = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let model = ClipText::random(tiny_full_vocab(), 9, &dev).unwrap();
        let cache = TextFeatureCache::new(model.clone(), Some(dir.path().to_path_buf()));
        let (a, s1) = cache.get_with_source("bottle").unwrap();
        let (b, s2) = cache.get_with_source("bottle").unwrap();
        assert_eq!((s1, s2), (Source::Computed, Source::Memory));
        assert_eq!(a, b);
        let norm: f32 = a.normal.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && a.normal != a.anomaly);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let fresh = TextFeatureCache::new(model.clone(), Some(dir.path().to_path_buf()));
        let (c, s3) = fresh.get_with_source("bottle").unwrap();
        assert_eq!((s3, &c), (Source::Disk, &a));

        let quick = TextFeatureCache::new(
            model.with_activation(Activation::QuickGelu),
            Some(dir.path().to_path_buf()),
        );
        let (d, s4) = quick.get_with_source("bottle").unwrap();
        assert_eq!(s4, Source::Computed);
        assert_ne!(d, a);
        assert_eq!(
            quick.stats(),
            CacheStats {
                memory_hits: 0,
                disk_hits: 0,
                computed: 1
            }
        );
    }
}
