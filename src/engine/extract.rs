//! Frozen-backbone features of image files: decoded and resized in parallel, run through DINOv3
//! in batches, read from (and written to) the shard cache when one is in use.
//!
//! Callers hand in a batch of samples at a time, so memory holds one batch of images and
//! features, never a dataset.

use burn::tensor::{Device, Tensor};

use super::EngineError;
use super::assets::Assets;
use super::cache::{FeatureKey, ImageId, ShardCache};
use super::features::ImageFeatures;
use crate::data::{Sample, SkippedFile, load_batch, load_mask};
use crate::experiment::FeatureDtype;

/// What the preprocessing does to an image before the backbone (part of the shard key).
fn preprocessing_id(size: usize, norm: &crate::image::Normalize) -> String {
    format!("pil-bilinear-antialias-{size}+{}", norm.id())
}

/// Shards on disk: read when present, written after a backbone pass when `write`.
#[derive(Debug, Clone)]
pub struct Shards {
    pub cache: ShardCache,
    pub write: bool,
}

/// Turns samples into tap features and masks.
pub struct Extractor<'a> {
    pub assets: &'a Assets,
    /// Backbone blocks tapped.
    pub taps: Vec<usize>,
    /// Square input side.
    pub size: usize,
    /// Precision the features are rounded to (and shards stored in).
    pub dtype: FeatureDtype,
    /// Images per backbone forward.
    pub batch_size: usize,
    /// Leave unreadable images out (reported) instead of stopping.
    pub skip_bad: bool,
    pub shards: Option<Shards>,
    pub device: Device,
}

/// One sample's result.
pub struct Extracted {
    /// Position in the slice handed to [`Extractor::run`].
    pub index: usize,
    /// `None` when only masks were asked for.
    pub features: Option<ImageFeatures>,
    /// Ground truth `[S*S]`, 0/1.
    pub mask: Vec<u8>,
}

/// What [`Extractor::run`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Features,
    /// Decode (to find bad files) and masks, no backbone.
    MasksOnly,
}

/// The features of extraction results asked for with [`Want::Features`].
pub fn features_of(done: &[Extracted]) -> Vec<&ImageFeatures> {
    done.iter()
        .map(|e| e.features.as_ref().expect("features asked for"))
        .collect()
}

impl Extractor<'_> {
    /// Token grid of the patch features.
    pub fn grid(&self) -> [usize; 2] {
        let p = self.assets.backbone.shape().patch;
        [self.size / p, self.size / p]
    }

    /// The shard key of `sample`.
    pub fn key(&self, sample: &Sample) -> Result<FeatureKey, EngineError> {
        Ok(FeatureKey {
            weights: self.assets.backbone_id.clone(),
            image: ImageId::of_file(&sample.image, false)?,
            preprocessing: preprocessing_id(self.size, &self.assets.backbone.shape().normalize),
            taps: self.taps.clone(),
            dtype: self.dtype,
            compute: self.assets.features_compute.clone(),
        })
    }

    /// Features and masks of `samples`, in order. Bad files are an error, or (with `skip_bad`)
    /// left out and reported.
    pub fn run(
        &self,
        samples: &[Sample],
        want: Want,
    ) -> Result<(Vec<Extracted>, Vec<SkippedFile>), EngineError> {
        let mut out: Vec<Option<Extracted>> = (0..samples.len()).map(|_| None).collect();
        let mut misses: Vec<usize> = Vec::new();
        let mut keys: Vec<Option<FeatureKey>> = vec![None; samples.len()];
        for (i, s) in samples.iter().enumerate() {
            let hit = match (&self.shards, want) {
                (Some(shards), Want::Features) => {
                    let key = self.key(s)?;
                    let f = shards.cache.get(&key)?;
                    keys[i] = Some(key);
                    f
                }
                _ => None,
            };
            match hit {
                Some(features) => {
                    let mask = load_mask(s.mask.as_deref(), self.size, s.mask_threshold)?;
                    out[i] = Some(Extracted {
                        index: i,
                        features: Some(features),
                        mask: mask.as_u8().expect("masks are u8").to_vec(),
                    });
                }
                None => misses.push(i),
            }
        }
        let miss_samples: Vec<Sample> = misses.iter().map(|&i| samples[i].clone()).collect();
        let (loaded, skipped) = load_batch(
            &miss_samples,
            self.size,
            &self.assets.backbone.shape().normalize,
            self.skip_bad,
        )?;
        for batch in loaded.chunks(self.batch_size.max(1)) {
            let features: Vec<Option<ImageFeatures>> = match want {
                Want::MasksOnly => batch.iter().map(|_| None).collect(),
                Want::Features => {
                    let pixels: Vec<Tensor<4>> = batch
                        .iter()
                        .map(|(_, img, _)| img.to_tensor::<3>(&self.device).unsqueeze::<4>())
                        .collect();
                    let taps = self
                        .assets
                        .backbone
                        .forward_taps(Tensor::cat(pixels, 0), &self.taps);
                    self.assets
                        .backbone_images
                        .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    ImageFeatures::split_batch(taps, self.dtype)
                        .into_iter()
                        .map(Some)
                        .collect()
                }
            };
            for ((j, _, mask), f) in batch.iter().zip(features) {
                let i = misses[*j];
                if let (Some(f), Some(shards)) = (&f, &self.shards)
                    && shards.write
                {
                    let key = match keys[i].take() {
                        Some(k) => k,
                        None => self.key(&samples[i])?,
                    };
                    shards.cache.put(&key, f)?;
                }
                out[i] = Some(Extracted {
                    index: i,
                    features: f,
                    mask: mask.as_u8().expect("masks are u8").to_vec(),
                });
            }
        }
        Ok((out.into_iter().flatten().collect(), skipped))
    }
}
