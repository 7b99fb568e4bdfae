//! The trained adapters applied to features: per image its anomaly map, image score and routing
//! weights. One path for evaluation, the overlay charts and `ava-dino predict`.

use burn::tensor::{Device, Tensor, TensorData};

use super::EngineError;
use super::features::{ImageFeatures, batch_tensors};
use super::progress::Reporter;
use crate::data::Sample;
use crate::io::HostTensor;
use crate::model::AvaDino;
use crate::text::{TextFeatureCache, TextFeatures};

/// What the model says about one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImagePrediction {
    /// Index of the image in the evaluated set.
    pub index: usize,
    pub label: u8,
    /// Max of the anomaly map (before any rescaling).
    pub score: f32,
    /// Tap-averaged routing weights.
    pub w_normal: f32,
    pub w_anomaly: f32,
}

/// The prompt features of a set of images: one pair per distinct class word.
#[derive(Debug, Clone, Default)]
pub struct Prompts {
    /// Sorted class words.
    pub words: Vec<String>,
    /// `features[k]` belongs to `words[k]`.
    pub features: Vec<TextFeatures>,
}

impl Prompts {
    /// The class words of `samples`, encoded once each (the cache keeps them across jobs and,
    /// on disk, across runs). A word is 420 prompts through the text tower: a minute on a CPU at
    /// full size, so the encoding reports its progress.
    pub fn for_samples(
        samples: &[Sample],
        text: &TextFeatureCache,
        reporter: &Reporter,
    ) -> Result<Self, EngineError> {
        let mut words: Vec<String> = samples.iter().map(|s| s.class_word.clone()).collect();
        words.sort();
        words.dedup();
        let mut progress = reporter.stage("text prompts", "class words", words.len() as u64);
        let features = words
            .iter()
            .map(|w| {
                let t = text.get_or_compute(w);
                progress.inc_with(1, w);
                t
            })
            .collect::<Result<Vec<_>, _>>()?;
        progress.finish();
        Ok(Prompts { words, features })
    }

    /// Width E of the text features.
    pub fn dim(&self) -> usize {
        self.features.first().map_or(0, |t| t.normal.len())
    }

    /// `[B, E, 2]` text for images with class words `words` (column 0 normal, 1 anomalous).
    pub fn tensor<'w>(&self, words: impl Iterator<Item = &'w str>, device: &Device) -> Tensor<3> {
        let e = self.dim();
        let mut v = Vec::new();
        let mut b = 0;
        for w in words {
            let k = self
                .words
                .binary_search_by(|x| x.as_str().cmp(w))
                .expect("class word encoded");
            let t = &self.features[k];
            for j in 0..e {
                v.push(t.normal[j]);
                v.push(t.anomaly[j]);
            }
            b += 1;
        }
        Tensor::from_data(TensorData::new(v, [b, e, 2]), device)
    }
}

/// One image's output: the map `[S*S]` and the tap-averaged routing weights.
pub struct ImageOutput {
    pub map: Vec<f32>,
    pub w_normal: f32,
    pub w_anomaly: f32,
}

impl ImageOutput {
    /// The image score: the max of the map, as the reference.
    pub fn score(&self) -> f32 {
        self.map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// Runs `model` on a batch of images given as features with their `[B, E, 2]` text.
pub fn run_batch(
    model: &AvaDino,
    features: &[&ImageFeatures],
    grid: [usize; 2],
    text: Tensor<3>,
    device: &Device,
) -> Vec<ImageOutput> {
    let (cls, patches) = batch_tensors(features, grid, device);
    run_tensors(model, &cls, &patches, grid, text)
}

/// [`run_batch`] on tensors already cut (per tap `cls [B, D]`, `patches [B, HW, D]`).
pub fn run_tensors(
    model: &AvaDino,
    cls: &[Tensor<2>],
    patches: &[Tensor<3>],
    grid: [usize; 2],
    text: Tensor<3>,
) -> Vec<ImageOutput> {
    let out = model.forward(cls, patches, grid, text);
    let map = HostTensor::from_tensor(out.anomaly_map).into_f32_vec();
    let wn = HostTensor::from_tensor(out.w_normal).into_f32_vec();
    let wa = HostTensor::from_tensor(out.w_anomaly).into_f32_vec();
    let per = map.len() / wn.len().max(1);
    map.chunks(per.max(1))
        .zip(wn.iter().zip(&wa))
        .map(|(m, (&w_normal, &w_anomaly))| ImageOutput {
            map: m.to_vec(),
            w_normal,
            w_anomaly,
        })
        .collect()
}
