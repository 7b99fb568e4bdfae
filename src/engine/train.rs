//! The training loop over cached features: seeded shuffling, batches, AdamW steps.
//!
//! Mirrors the reference `train.py`: a DataLoader with `shuffle=True` and `drop_last=False` over the
//! auxiliary dataset, one optimizer update per batch, the LR schedule stepped after each update.
//! The reference sets no seed; we shuffle with a seeded generator so runs repeat exactly (and a
//! resumed run continues with the same order it would have had).

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::features::FeatureTable;
use crate::model::{Batch, LossValues, Trainer};
use crate::rng::SplitMix64;

/// Normal and anomalous text features of one class word (`[E]` each, L2-normalized).
#[derive(Debug, Clone, PartialEq)]
pub struct TextPair {
    pub normal: Vec<f32>,
    pub anomaly: Vec<f32>,
}

/// Binary ground-truth masks `[n, S, S]` (0/1) for the images of a feature table.
#[derive(Debug, Clone, Default)]
pub struct MaskTable {
    pub size: usize,
    pub values: Vec<u8>,
}

impl MaskTable {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            values: Vec::new(),
        }
    }
    pub fn push(&mut self, mask: &[u8]) {
        assert_eq!(mask.len(), self.size * self.size, "mask size");
        self.values.extend(mask.iter().map(|&m| u8::from(m != 0)));
    }
    pub fn get(&self, i: usize) -> &[u8] {
        let n = self.size * self.size;
        &self.values[i * n..(i + 1) * n]
    }
    pub fn len(&self) -> usize {
        if self.size == 0 {
            0
        } else {
            self.values.len() / (self.size * self.size)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything a training or evaluation pass reads, per image `i`: features row `i`, `labels[i]`,
/// `masks.get(i)`, and the text pair `prompts[text[i]]`.
#[derive(Debug, Clone, Copy)]
pub struct ImageSet<'a> {
    pub features: &'a FeatureTable,
    pub labels: &'a [u8],
    pub masks: &'a MaskTable,
    pub text: &'a [usize],
    pub prompts: &'a [TextPair],
}

impl ImageSet<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[B, E, 2]` text for the images `indices` (column 0 normal, column 1 anomalous).
    pub fn text_tensor(&self, indices: &[usize], device: &Device) -> Tensor<3> {
        let e = self.prompts.first().map_or(0, |p| p.normal.len());
        let mut v = Vec::with_capacity(indices.len() * e * 2);
        for &i in indices {
            let p = &self.prompts[self.text[i]];
            for k in 0..e {
                v.push(p.normal[k]);
                v.push(p.anomaly[k]);
            }
        }
        Tensor::from_data(TensorData::new(v, [indices.len(), e, 2]), device)
    }

    /// A training batch for the images `indices` on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Batch {
        let (cls, patches) = self.features.batch(indices, device);
        let s = self.masks.size;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        let masks: Vec<f32> = indices
            .iter()
            .flat_map(|&i| self.masks.get(i).iter().map(|&m| m as f32))
            .collect();
        Batch {
            cls,
            patches,
            grid: self.features.grid,
            text: self.text_tensor(indices, device),
            labels: Tensor::<1, Int>::from_data(TensorData::new(labels, [indices.len()]), device),
            masks: Tensor::from_data(TensorData::new(masks, [indices.len(), s, s]), device),
        }
    }
}

/// The shuffled order of `n` images for `epoch` of a run seeded with `seed` (Fisher-Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// Updates per epoch with `drop_last=False`.
pub fn steps_per_epoch(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size.max(1))
}

/// Mean losses and routing weights of one epoch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochSummary {
    pub epoch: usize,
    pub steps: usize,
    /// Loss values of every step, in order (for loss curves).
    pub step_losses: Vec<LossValues>,
    /// Mean tap-averaged `w_anomaly` over normal and over anomalous training images.
    pub w_anomaly_normal: Option<f64>,
    pub w_anomaly_anomalous: Option<f64>,
}

/// Runs one epoch: batches in `order`, one update each. `on_step(step, losses)` after each update.
pub fn run_epoch(
    trainer: &mut Trainer,
    data: &ImageSet<'_>,
    epoch: usize,
    order: &[usize],
    batch_size: usize,
    device: &Device,
    on_step: &mut dyn FnMut(usize, &LossValues),
) -> EpochSummary {
    let mut summary = EpochSummary {
        epoch,
        ..Default::default()
    };
    let (mut sums, mut counts) = ([0f64; 2], [0usize; 2]);
    for (step, chunk) in order.chunks(batch_size.max(1)).enumerate() {
        let batch = data.batch(chunk, device);
        let (losses, out) = trainer.step_with_output(&batch);
        let values = losses.values();
        let w: Vec<f32> = out
            .w_anomaly
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .expect("f32");
        for (&i, &wa) in chunk.iter().zip(&w) {
            let k = usize::from(data.labels[i] != 0);
            sums[k] += wa as f64;
            counts[k] += 1;
        }
        on_step(step, &values);
        summary.step_losses.push(values);
        summary.steps += 1;
    }
    let mean = |k: usize| (counts[k] > 0).then(|| sums[k] / counts[k] as f64);
    summary.w_anomaly_normal = mean(0);
    summary.w_anomaly_anomalous = mean(1);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0), "same seed and epoch, same order");
        assert_ne!(a, epoch_order(50, 7, 1), "epochs differ");
        assert_ne!(a, epoch_order(50, 8, 0), "seeds differ");
        assert_eq!(steps_per_epoch(10, 4), 3);
    }
}
