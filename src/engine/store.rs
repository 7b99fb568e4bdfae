//! The training set of a job and where its features live (`cache.train`): in memory when they
//! fit the budget, else in shards on disk read back batch by batch, or recomputed by the
//! backbone every epoch as the reference does. Every store gives the trainer the same numbers.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::EngineError;
use super::cache::FeatureKey;
use super::extract::{Extractor, Want, features_of};
use super::features::{FeatureTable, ImageFeatures, MaskTable, batch_tensors, bytes_per_image};
use super::inference::Prompts;
use super::progress::Progress;
use crate::data::{Sample, SkippedFile};
use crate::experiment::TrainStore;
use crate::model::Batch;

/// Where the features are.
pub enum Features<'a> {
    Memory(FeatureTable),
    /// One shard per image (the extractor writes them on the first pass).
    Disk(Vec<FeatureKey>, &'a Extractor<'a>),
    /// The backbone runs for every batch.
    Recompute(&'a Extractor<'a>),
}

impl Features<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Features::Memory(_) => "memory",
            Features::Disk(..) => "disk",
            Features::Recompute(_) => "recompute",
        }
    }
}

/// Images a job trains on, with everything a batch needs.
pub struct TrainSet<'a> {
    /// The samples kept (bad files left out under `skip_bad`).
    pub samples: Vec<Sample>,
    pub masks: MaskTable,
    pub prompts: Prompts,
    pub features: Features<'a>,
    pub skipped: Vec<SkippedFile>,
}

impl<'a> TrainSet<'a> {
    /// One pass over `samples` in batches: decodes every image (finding bad files) and keeps the
    /// masks; computes the features into memory or shards (`Memory`, `Disk`), or only checks
    /// the images (`Recompute`). `store` must be resolved (not `Auto`); `Disk` needs an
    /// extractor with writable shards.
    pub fn build(
        samples: &[Sample],
        store: TrainStore,
        extractor: &'a Extractor<'a>,
        prompts: Prompts,
        progress: &mut Progress,
    ) -> Result<Self, EngineError> {
        let grid = extractor.grid();
        let dim = extractor.assets.backbone.shape().width;
        let n_taps = extractor.taps.len();
        let want = match store {
            TrainStore::Recompute => Want::MasksOnly,
            _ => Want::Features,
        };
        let mut table = (store == TrainStore::Memory)
            .then(|| FeatureTable::new(dim, grid, n_taps, extractor.dtype));
        let mut masks = MaskTable::new(extractor.size);
        let mut kept = Vec::with_capacity(samples.len());
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for chunk in samples.chunks(extractor.batch_size.max(1)) {
            let (done, bad) = extractor.run(chunk, want)?;
            skipped.extend(bad);
            for e in done {
                let s = &chunk[e.index];
                if let (Some(t), Some(f)) = (&mut table, &e.features) {
                    t.push(f);
                }
                if store == TrainStore::Disk {
                    keys.push(extractor.key(s)?);
                }
                masks.push(&e.mask);
                kept.push(s.clone());
            }
            progress.inc(chunk.len() as u64);
        }
        let features = match (store, table) {
            (_, Some(t)) => Features::Memory(t),
            (TrainStore::Disk, None) => Features::Disk(keys, extractor),
            _ => Features::Recompute(extractor),
        };
        Ok(TrainSet {
            samples: kept,
            masks,
            prompts,
            features,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn label(&self, i: usize) -> u8 {
        self.samples[i].label
    }

    /// A training batch for the images `indices` on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Batch, EngineError> {
        let (cls, patches, grid) = match &self.features {
            Features::Memory(t) => {
                let (c, p) = t.batch(indices, device);
                (c, p, t.grid)
            }
            Features::Disk(keys, ex) => {
                let feats: Vec<ImageFeatures> = indices
                    .iter()
                    .map(|&i| {
                        let key = &keys[i];
                        ex.shards
                            .as_ref()
                            .expect("a disk store has shards")
                            .cache
                            .get(key)?
                            .ok_or_else(|| EngineError::Asset {
                                what: self.samples[i].image.display().to_string(),
                                message: "its feature shard disappeared during training; \
                                          rerun (training resumes from the last epoch)"
                                    .into(),
                            })
                    })
                    .collect::<Result<_, EngineError>>()?;
                let refs: Vec<&ImageFeatures> = feats.iter().collect();
                let (c, p) = batch_tensors(&refs, ex.grid(), device);
                (c, p, ex.grid())
            }
            Features::Recompute(ex) => {
                let batch: Vec<Sample> = indices.iter().map(|&i| self.samples[i].clone()).collect();
                let (done, _) = ex.run(&batch, Want::Features)?;
                if done.len() != batch.len() {
                    return Err(EngineError::Asset {
                        what: "training set".into(),
                        message: "an image became unreadable after the first pass; rerun".into(),
                    });
                }
                let (c, p) = batch_tensors(&features_of(&done), ex.grid(), device);
                (c, p, ex.grid())
            }
        };
        let s = self.masks.size;
        let mut mask_bits = Vec::with_capacity(indices.len() * s * s);
        for &i in indices {
            self.masks.extend_into(i, &mut mask_bits);
        }
        let masks: Vec<f32> = mask_bits.into_iter().map(f32::from).collect();
        let labels: Vec<i64> = indices.iter().map(|&i| self.label(i) as i64).collect();
        let words = indices.iter().map(|&i| self.samples[i].class_word.as_str());
        Ok(Batch {
            cls,
            patches,
            grid,
            text: self.prompts.tensor(words, device),
            labels: Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device),
            masks: Tensor::from_data(TensorData::new(masks, [indices.len(), s, s]), device),
        })
    }
}

/// Bytes the `memory` store needs per image (features; the packed mask is negligible).
pub fn memory_per_image(extractor: &Extractor) -> u64 {
    let [h, w] = extractor.grid();
    bytes_per_image(
        extractor.taps.len(),
        extractor.assets.backbone.shape().width,
        h * w,
        extractor.dtype,
    ) + (extractor.size * extractor.size).div_ceil(8) as u64
}
