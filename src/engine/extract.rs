//! Frozen-backbone features of a whole dataset: images listed by the data room, decoded and
//! resized in parallel, run through DINOv3 in batches once, kept in a [`FeatureTable`] with the
//! labels, masks and class words a run needs. Shards on disk (f16, see [`super::cache`]) make a
//! second process skip the backbone; within a process each dataset is extracted once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use burn::tensor::{Device, Tensor};
use half::f16;

use super::EngineError;
use super::assets::Assets;
use super::cache::{FeatureCache, FeatureKey, Features, ImageId};
use super::features::{FeatureDtype, FeatureTable};
use super::progress::Progress;
use super::train::{ImageSet, MaskTable, TextPair};
use crate::data::{
    ListOptions, Sample, SkippedFile, list_samples_with_skipped, load_batch, load_mask,
};
use crate::experiment::schema::Experiment;
use crate::io::HostTensor;

/// One dataset ready for training or evaluation.
pub struct DatasetFeatures {
    pub key: String,
    pub samples: Vec<Sample>,
    pub table: FeatureTable,
    pub labels: Vec<u8>,
    pub masks: MaskTable,
    pub categories: Vec<String>,
    /// Index into `words` / `prompts` per image.
    pub text: Vec<usize>,
    pub words: Vec<String>,
    pub prompts: Vec<TextPair>,
    /// Files left out (only with `data.skip_bad`).
    pub skipped: Vec<SkippedFile>,
}

impl DatasetFeatures {
    pub fn set(&self) -> ImageSet<'_> {
        ImageSet {
            features: &self.table,
            labels: &self.labels,
            masks: &self.masks,
            text: &self.text,
            prompts: &self.prompts,
        }
    }
}

/// Images decoded and run through the backbone per chunk: bounds host memory at full size.
const CHUNK: usize = 64;

fn preprocessing_id(size: usize) -> String {
    format!("pil-bilinear-antialias-{size}+imagenet-norm")
}

/// `dataset` of `exp` through the backbone of `assets`, extracted at most once per process.
pub fn dataset_features(
    assets: &Assets,
    exp: &Experiment,
    dataset: &str,
    repo_root: &Path,
    device: &Device,
    quiet: bool,
) -> Result<Arc<DatasetFeatures>, EngineError> {
    static MEMO: OnceLock<Mutex<HashMap<String, Arc<DatasetFeatures>>>> = OnceLock::new();
    let key = format!(
        "{}|{}|{dataset}|{}|{}|{:?}|{}|{}",
        assets.backbone_id,
        assets.text_id,
        exp.protocol,
        exp.data.image_size,
        exp.backbone.taps,
        exp.cache.disk,
        exp.text.activation
    );
    let memo = MEMO.get_or_init(Default::default);
    if let Some(f) = memo.lock().expect("feature memo lock").get(&key) {
        return Ok(f.clone());
    }
    let f = Arc::new(extract(assets, exp, dataset, repo_root, device, quiet)?);
    memo.lock()
        .expect("feature memo lock")
        .insert(key, f.clone());
    Ok(f)
}

fn extract(
    assets: &Assets,
    exp: &Experiment,
    dataset: &str,
    repo_root: &Path,
    device: &Device,
    quiet: bool,
) -> Result<DatasetFeatures, EngineError> {
    let size = exp.data.image_size;
    let taps = &exp.backbone.taps;
    let opts = ListOptions {
        skip_bad: exp.data.skip_bad,
        ..ListOptions::default()
    };
    let (samples, mut skipped) =
        list_samples_with_skipped(&assets.registry, dataset, exp.protocol, &opts)?;
    if samples.is_empty() {
        return Err(EngineError::Asset {
            what: format!("dataset {dataset}"),
            message: "no images found".into(),
        });
    }
    let cache = FeatureCache::new(exp.cache.disk.then(|| repo_root.join(&exp.cache.dir)), None);
    // Features are rounded to f16 whenever shards are on disk, so a run that reads them back and
    // a run that computed them see the same numbers (resume gives identical results).
    let dtype = if exp.cache.disk {
        FeatureDtype::F16
    } else {
        FeatureDtype::F32
    };
    let cfg = &assets.backbone.config;
    let grid = [size / cfg.patch_size, size / cfg.patch_size];
    let mut table = FeatureTable::new(cfg.hidden_size, grid, taps.len(), dtype);
    let mut masks = MaskTable::new(size);
    let mut kept: Vec<Sample> = Vec::with_capacity(samples.len());
    let mut progress = Progress::new(
        &format!("extract {dataset}"),
        samples.len() as u64,
        quiet,
        exp.train.log_every as u64,
    );
    for chunk in samples.chunks(CHUNK) {
        let keys: Vec<FeatureKey> = chunk
            .iter()
            .map(|s| {
                Ok(FeatureKey {
                    weights: assets.backbone_id.clone(),
                    image: ImageId::of_file(&s.image, false)?,
                    preprocessing: preprocessing_id(size),
                    taps: taps.clone(),
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let mut found: Vec<Option<Arc<Features>>> = keys
            .iter()
            .map(|k| cache.get(k))
            .collect::<Result<_, _>>()?;
        let mut chunk_masks: Vec<Option<HostTensor>> = vec![None; chunk.len()];
        let misses: Vec<usize> = (0..chunk.len()).filter(|&i| found[i].is_none()).collect();
        if !misses.is_empty() {
            let miss_samples: Vec<Sample> = misses.iter().map(|&i| chunk[i].clone()).collect();
            let (loaded, bad) = load_batch(&miss_samples, size, exp.data.skip_bad)?;
            skipped.extend(bad);
            for batch in loaded.chunks(exp.train.extract_batch_size.max(1)) {
                let pixels: Vec<Tensor<4>> = batch
                    .iter()
                    .map(|(_, img, _)| img.to_tensor::<3>(device).unsqueeze::<4>())
                    .collect();
                let taps_out = assets.backbone.forward_taps(Tensor::cat(pixels, 0), taps);
                let per_tap: Vec<(HostTensor, HostTensor)> = taps_out
                    .into_iter()
                    .map(|t| {
                        (
                            HostTensor::from_tensor(t.cls),
                            HostTensor::from_tensor(t.patches),
                        )
                    })
                    .collect();
                for (b, (j, _, mask)) in batch.iter().enumerate() {
                    let i = misses[*j];
                    let mut f: Features = BTreeMap::new();
                    for (t, (cls, patches)) in taps.iter().zip(&per_tap) {
                        let d = cls.shape[1];
                        let n = patches.shape[1];
                        let c = round(&cls.as_f32().unwrap()[b * d..(b + 1) * d], dtype);
                        let p = round(
                            &patches.as_f32().unwrap()[b * n * d..(b + 1) * n * d],
                            dtype,
                        );
                        f.insert(format!("cls.{t}"), HostTensor::f32(vec![d], c));
                        f.insert(format!("patches.{t}"), HostTensor::f32(vec![n, d], p));
                    }
                    found[i] = Some(cache.put(&keys[i], f)?);
                    chunk_masks[i] = Some(mask.clone());
                }
            }
        }
        for (i, sample) in chunk.iter().enumerate() {
            let Some(features) = &found[i] else { continue }; // skipped as bad
            let mask = match chunk_masks[i].take() {
                Some(m) => m,
                None => load_mask(sample.mask.as_deref(), size, sample.mask_threshold)?,
            };
            let cls: Vec<&[f32]> = taps
                .iter()
                .map(|t| feature(features, &format!("cls.{t}")))
                .collect::<Result<_, _>>()?;
            let patches: Vec<&[f32]> = taps
                .iter()
                .map(|t| feature(features, &format!("patches.{t}")))
                .collect::<Result<_, _>>()?;
            table.push(&cls, &patches);
            masks.push(mask.as_u8().expect("masks are u8"));
            kept.push(sample.clone());
        }
        progress.inc(chunk.len() as u64, dataset);
    }
    progress.finish();
    let mut words: Vec<String> = kept.iter().map(|s| s.class_word.clone()).collect();
    words.sort();
    words.dedup();
    let prompts = words
        .iter()
        .map(|w| {
            assets.text.get_or_compute(w).map(|t| TextPair {
                normal: t.normal,
                anomaly: t.anomaly,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DatasetFeatures {
        key: dataset.to_string(),
        labels: kept.iter().map(|s| s.label).collect(),
        categories: kept.iter().map(|s| s.category.clone()).collect(),
        text: kept
            .iter()
            .map(|s| words.binary_search(&s.class_word).expect("word listed"))
            .collect(),
        samples: kept,
        table,
        masks,
        words,
        prompts,
        skipped,
    })
}

fn round(values: &[f32], dtype: FeatureDtype) -> Vec<f32> {
    match dtype {
        FeatureDtype::F32 => values.to_vec(),
        FeatureDtype::F16 => values.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
    }
}

fn feature<'a>(f: &'a Features, name: &str) -> Result<&'a [f32], EngineError> {
    f.get(name)
        .and_then(|t| t.as_f32())
        .ok_or_else(|| EngineError::Asset {
            what: "feature cache".into(),
            message: format!("a cached shard lacks `{name}`; delete the cache directory and rerun"),
        })
}
