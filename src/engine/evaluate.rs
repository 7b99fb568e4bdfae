//! Zero-shot evaluation of a trained model on cached features, per category.
//!
//! As the reference `test.py`: the pixel score is the tap-averaged cross-modal anomaly channel at
//! map resolution, the image score is the max of that map, P-AUROC / F1-max pool every pixel of a
//! category, I-AUROC pools its images (undefined with one class), and the dataset mean skips
//! undefined values (`nanmean`). Under `protocol: reference` the scores of a category are min-max
//! rescaled in f32 first, exactly as the reference does (it can merge nearly equal scores into ties).

use burn::tensor::Device;

use super::train::ImageSet;
use crate::experiment::record::{CategoryMetrics, MetricSet};
use crate::io::HostTensor;
use crate::metrics::{self, MetricsError};
use crate::model::{AvaDino, Protocol};

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

/// Evaluation knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    pub batch_size: usize,
    pub protocol: Protocol,
    /// Also compute AUPRO (costly on large categories; not in the paper) with this FPR limit.
    pub aupro: Option<f64>,
}

/// Runs the model over the images `indices` of `set`, returning each image's prediction and,
/// when `keep_maps`, its anomaly map `[S, S]`.
pub fn predict(
    model: &AvaDino,
    set: &ImageSet<'_>,
    indices: &[usize],
    batch_size: usize,
    device: &Device,
    keep_maps: bool,
) -> (Vec<ImagePrediction>, Vec<Vec<f32>>) {
    let mut preds = Vec::with_capacity(indices.len());
    let mut maps = Vec::new();
    for chunk in indices.chunks(batch_size.max(1)) {
        let (cls, patches) = set.features.batch(chunk, device);
        let out = model.forward(
            &cls,
            &patches,
            set.features.grid,
            set.text_tensor(chunk, device),
        );
        let map = HostTensor::from_tensor(out.anomaly_map);
        let wn = HostTensor::from_tensor(out.w_normal);
        let wa = HostTensor::from_tensor(out.w_anomaly);
        let (map, wn, wa) = (
            map.as_f32().unwrap(),
            wn.as_f32().unwrap(),
            wa.as_f32().unwrap(),
        );
        let per = map.len() / chunk.len();
        for (k, &i) in chunk.iter().enumerate() {
            let m = &map[k * per..(k + 1) * per];
            let score = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            preds.push(ImagePrediction {
                index: i,
                label: set.labels[i],
                score,
                w_normal: wn[k],
                w_anomaly: wa[k],
            });
            if keep_maps {
                maps.push(m.to_vec());
            }
        }
    }
    (preds, maps)
}

/// `(x - min) / (max - min + 1e-8)` in f32, as numpy does on the reference's float32 arrays.
fn rescale_f32(values: &mut [f32]) {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let denom = hi - lo + 1e-8f32;
    for v in values.iter_mut() {
        *v = (*v - lo) / denom;
    }
}

/// Metrics of one category from its predictions and maps (same order) and the set's masks.
pub fn category_metrics(
    category: &str,
    set: &ImageSet<'_>,
    preds: &[ImagePrediction],
    maps: &[Vec<f32>],
    opts: &EvalOptions,
) -> Result<CategoryMetrics, MetricsError> {
    let mut pixels: Vec<f32> = maps.concat();
    let mut gt: Vec<u8> = Vec::with_capacity(pixels.len());
    for p in preds {
        gt.extend_from_slice(set.masks.get(p.index));
    }
    let mut image_scores: Vec<f32> = preds.iter().map(|p| p.score).collect();
    let image_labels: Vec<u8> = preds.iter().map(|p| u8::from(p.label != 0)).collect();
    if opts.protocol == Protocol::Reference && !pixels.is_empty() {
        rescale_f32(&mut pixels);
        rescale_f32(&mut image_scores);
    }
    let pixel = metrics::pixel_metrics(&pixels, &gt)?;
    let image = metrics::pixel_metrics(&image_scores, &image_labels)?;
    let aupro = match opts.aupro {
        Some(limit) if !preds.is_empty() => {
            let s = set.masks.size;
            metrics::aupro(&pixels, &gt, preds.len(), s, s, limit)?
        }
        _ => None,
    };
    let n_anomalous = image_labels.iter().filter(|&&l| l == 1).count();
    Ok(CategoryMetrics {
        category: category.to_string(),
        n_normal: preds.len() - n_anomalous,
        n_anomalous,
        metrics: MetricSet {
            image_auroc: image.auroc,
            image_ap: image.ap,
            image_f1max: image.f1_max,
            pixel_auroc: pixel.auroc,
            pixel_aupro: aupro,
            pixel_f1max: pixel.f1_max,
        },
    })
}

/// Per-category metrics and per-image predictions of a whole evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetEvaluation {
    pub categories: Vec<CategoryMetrics>,
    pub images: Vec<ImagePrediction>,
}

/// Evaluates every category of `set`; `categories[i]` names image `i`'s category. Categories are
/// visited in sorted order, images in set order, as the reference does.
pub fn evaluate(
    model: &AvaDino,
    set: &ImageSet<'_>,
    categories: &[String],
    opts: &EvalOptions,
    device: &Device,
) -> Result<SetEvaluation, MetricsError> {
    let mut names: Vec<&String> = categories.iter().collect();
    names.sort();
    names.dedup();
    let mut out = SetEvaluation {
        categories: Vec::new(),
        images: Vec::new(),
    };
    for name in names {
        let indices: Vec<usize> = (0..set.len()).filter(|&i| &categories[i] == name).collect();
        let (preds, maps) = predict(model, set, &indices, opts.batch_size, device, true);
        out.categories
            .push(category_metrics(name, set, &preds, &maps, opts)?);
        out.images.extend(preds);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_matches_numpy_float32() {
        // numpy: a = np.array([2, 3, 6], np.float32); (a - a.min()) / (a.max() - a.min() + 1e-8)
        let mut v = vec![2f32, 3.0, 6.0];
        rescale_f32(&mut v);
        assert_eq!(v, vec![0.0, 0.25, 1.0]);
    }
}
