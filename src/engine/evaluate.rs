//! Zero-shot evaluation of every checkpoint in one pass over the target.
//!
//! The target is read a category at a time, a batch at a time: each batch goes through the
//! backbone once and through every checkpoint to evaluate; what the metrics need (maps of the
//! category, per-image predictions) is kept, the features are not. A category's maps stay in
//! memory when the budget allows, else they are spilled to a file per checkpoint and read back
//! one checkpoint at a time - either way the metrics are those of the full table.
//!
//! As the reference `test.py`: the pixel score is the tap-averaged cross-modal anomaly channel at
//! map resolution, the image score is the max of that map, P-AUROC / F1-max pool every pixel of a
//! category, I-AUROC pools its images (undefined with one class), and the dataset mean skips
//! undefined values (`nanmean`). Under `protocol: reference` the scores of a category are min-max
//! rescaled in f32 first, exactly as the reference does (it can merge nearly equal scores into ties).

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::EngineError;
use super::extract::{Extracted, Extractor, Want, features_of};
use super::features::batch_tensors;
use super::inference::{ImagePrediction, Prompts, run_tensors};
use super::progress::Progress;
use crate::data::{Sample, SkippedFile};
use crate::experiment::record::{
    BootstrapInfo, CategoryMetrics, Evaluation, Interval, MetricIntervals, MetricSet,
};
use crate::metrics::{self, BootstrapSpec, CategorySample, MetricsError, Values};
use crate::model::{AvaDino, Protocol};

/// Evaluation knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Images per adapter forward (and per streamed batch).
    pub batch_size: usize,
    pub protocol: Protocol,
    /// Also compute AUPRO (costly on large categories; not in the paper) with this FPR limit.
    pub aupro: Option<f64>,
    /// Bootstrap confidence intervals of every metric (`None`: none).
    pub bootstrap: Option<BootstrapSpec>,
}

/// The images of a target and their prompts.
pub struct TargetSet {
    /// Sorted by category, then path (as listed by the data room).
    pub samples: Vec<Sample>,
    pub prompts: Prompts,
}

/// A batch of samples, what came out of the extractor for it, and the files left out.
pub type Extraction = (Vec<Sample>, Vec<Extracted>, Vec<SkippedFile>);

impl TargetSet {
    /// The images `indices` through `extractor`: the batch of samples and what came out of it
    /// (bad files left out under `skip_bad`, and reported).
    pub fn extract(
        &self,
        extractor: &Extractor,
        indices: &[usize],
    ) -> Result<Extraction, EngineError> {
        let batch: Vec<Sample> = indices.iter().map(|&i| self.samples[i].clone()).collect();
        let (done, bad) = extractor.run(&batch, Want::Features)?;
        Ok((batch, done, bad))
    }
}

/// Per-category metrics and per-image predictions of one checkpoint on a whole target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetEvaluation {
    pub categories: Vec<CategoryMetrics>,
    pub images: Vec<ImagePrediction>,
    /// Per category (same order), the bootstrap replicates of its six metrics, when asked for:
    /// what the intervals of the categories and of their mean are made of ([`Evaluation`]s are
    /// built with [`SetEvaluation::record`]).
    pub replicates: Vec<Vec<Values>>,
}

impl SetEvaluation {
    /// The record of this evaluation as epoch `epoch`, labelled `selection`: per-category
    /// metrics and their mean, with the bootstrap intervals of both when they were computed
    /// (the mean's replicate `r` is the mean of the categories' replicates `r`).
    pub fn record(
        &self,
        epoch: usize,
        selection: &str,
        spec: Option<&BootstrapSpec>,
    ) -> Result<Evaluation, MetricsError> {
        let mut categories = self.categories.clone();
        let mut out = Evaluation::new(epoch, selection, Vec::new());
        if let Some(spec) = spec.filter(|_| self.replicates.len() == categories.len()) {
            for (c, reps) in categories.iter_mut().zip(&self.replicates) {
                c.interval = Some(as_intervals(metrics::intervals(reps, spec.level)?));
            }
            let mean = metrics::mean_replicates(&self.replicates)?;
            out.mean_interval = Some(as_intervals(metrics::intervals(&mean, spec.level)?));
            out.bootstrap = Some(BootstrapInfo {
                replicates: spec.replicates,
                level: spec.level,
                seed: spec.seed,
                method: format!(
                    "percentile bootstrap: test images resampled with replacement within each \
                     category, {} replicates; pixel AUROC/F1-max on {} score bins shifted to the \
                     exact value; AUPRO at the full sample's thresholds",
                    spec.replicates, spec.bins
                ),
            });
        }
        out.mean = MetricSet::mean(categories.iter().map(|c| &c.metrics));
        out.per_category = categories;
        Ok(out)
    }
}

/// The metrics room's intervals as the record's.
fn as_intervals(v: metrics::Intervals) -> MetricIntervals {
    let mut out = MetricIntervals::default();
    for (name, iv) in metrics::METRIC_NAMES.iter().zip(v) {
        out.set(name, iv.map(|(lo, hi)| Interval { lo, hi }));
    }
    out
}

/// Where the evaluation may spill maps, and how much memory they may take.
pub struct Spill<'p> {
    pub dir: &'p Path,
    pub budget: u64,
}

/// Evaluates every model of `models` on `target` in one pass (see the module docs). Returns one
/// evaluation per model, in order, and the files left out under `skip_bad`.
pub fn evaluate(
    target: &TargetSet,
    extractor: &Extractor,
    models: &[AvaDino],
    opts: &EvalOptions,
    spill: &Spill,
    progress: &mut Progress,
) -> Result<(Vec<SetEvaluation>, Vec<SkippedFile>), EngineError> {
    let grid = extractor.grid();
    let s = extractor.size;
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, sample) in target.samples.iter().enumerate() {
        groups.entry(&sample.category).or_default().push(i);
    }
    let mut out: Vec<SetEvaluation> = vec![SetEvaluation::default(); models.len()];
    let mut skipped = Vec::new();
    for (ci, (category, indices)) in groups.into_iter().enumerate() {
        let bytes = (indices.len() * s * s * 4 * models.len()) as u64;
        let mut sinks: Vec<MapSink> = (0..models.len())
            .map(|m| {
                MapSink::new(
                    (bytes > spill.budget)
                        .then(|| spill.dir.join(format!(".spill-{ci:04}-{m:03}.tmp-maps"))),
                )
            })
            .collect::<Result<_, _>>()?;
        let mut gt: Vec<u8> = Vec::new();
        let mut preds: Vec<Vec<ImagePrediction>> = vec![Vec::new(); models.len()];
        for chunk in indices.chunks(opts.batch_size.max(1)) {
            let (batch, done, bad) = target.extract(extractor, chunk)?;
            skipped.extend(bad);
            progress.inc_with(chunk.len() as u64, category);
            if done.is_empty() {
                continue;
            }
            let (cls, patches) = batch_tensors(&features_of(&done), grid, &extractor.device);
            let words = || done.iter().map(|e| batch[e.index].class_word.as_str());
            for (m, model) in models.iter().enumerate() {
                let text = target.prompts.tensor(words(), &extractor.device);
                let outs = run_tensors(model, &cls, &patches, grid, text);
                for (e, o) in done.iter().zip(outs) {
                    preds[m].push(ImagePrediction {
                        index: chunk[e.index],
                        label: batch[e.index].label,
                        score: o.score(),
                        w_normal: o.w_normal,
                        w_anomaly: o.w_anomaly,
                    });
                    sinks[m].push(&o.map)?;
                }
            }
            for e in &done {
                gt.extend_from_slice(&e.mask);
            }
        }
        for ((sink, p), ev) in sinks.into_iter().zip(preds).zip(&mut out) {
            let pixels = sink.into_values()?;
            let (metrics, reps) = category_metrics(category, pixels, &gt, &p, s, opts)?;
            ev.categories.push(metrics);
            ev.replicates.extend(reps);
            ev.images.extend(p);
        }
    }
    Ok((out, skipped))
}

/// A category's maps of one checkpoint: in memory, or appended to a file and read back.
struct MapSink {
    values: Vec<f32>,
    file: Option<(PathBuf, BufWriter<std::fs::File>)>,
}

impl MapSink {
    fn new(spill: Option<PathBuf>) -> Result<Self, EngineError> {
        let file = match spill {
            None => None,
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                }
                let f = std::fs::File::create(&path).map_err(io_err(&path))?;
                Some((path, BufWriter::new(f)))
            }
        };
        Ok(MapSink {
            values: Vec::new(),
            file,
        })
    }

    fn push(&mut self, map: &[f32]) -> Result<(), EngineError> {
        match &mut self.file {
            None => self.values.extend_from_slice(map),
            Some((path, w)) => {
                let bytes: Vec<u8> = map.iter().flat_map(|v| v.to_le_bytes()).collect();
                w.write_all(&bytes).map_err(io_err(path))?;
            }
        }
        Ok(())
    }

    fn into_values(self) -> Result<Vec<f32>, EngineError> {
        let Some((path, w)) = self.file else {
            return Ok(self.values);
        };
        let mut f = w.into_inner().map_err(|e| EngineError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        f.flush().map_err(io_err(&path))?;
        drop(f);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(&path))?;
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
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

/// Metrics of one category from its maps (`pixels`, image after image, `size x size` each), the
/// matching ground truth and the predictions (same order); with `opts.bootstrap`, also the
/// bootstrap replicates of the six metrics (resampling this category's images, stream named by
/// the category, so every checkpoint sees the same resamples).
pub fn category_metrics(
    category: &str,
    mut pixels: Vec<f32>,
    gt: &[u8],
    preds: &[ImagePrediction],
    size: usize,
    opts: &EvalOptions,
) -> Result<(CategoryMetrics, Option<Vec<Values>>), MetricsError> {
    let mut image_scores: Vec<f32> = preds.iter().map(|p| p.score).collect();
    let image_labels: Vec<u8> = preds.iter().map(|p| u8::from(p.label != 0)).collect();
    if opts.protocol == Protocol::Reference && !pixels.is_empty() {
        rescale_f32(&mut pixels);
        rescale_f32(&mut image_scores);
    }
    let pixel = metrics::pixel_metrics(&pixels, gt)?;
    let image = metrics::pixel_metrics(&image_scores, &image_labels)?;
    let aupro = match opts.aupro {
        Some(limit) if !preds.is_empty() => {
            metrics::aupro(&pixels, gt, preds.len(), size, size, limit)?
        }
        _ => None,
    };
    let n_anomalous = image_labels.iter().filter(|&&l| l == 1).count();
    let metrics = MetricSet {
        image_auroc: image.auroc,
        image_ap: image.ap,
        image_f1max: image.f1_max,
        pixel_auroc: pixel.auroc,
        pixel_aupro: aupro,
        pixel_f1max: pixel.f1_max,
    };
    let replicates = match &opts.bootstrap {
        Some(spec) if spec.replicates > 0 && !preds.is_empty() => {
            let exact = metrics::METRIC_NAMES.map(|m| metrics.get(m));
            let sample = CategorySample::new(
                &pixels,
                gt,
                &image_scores,
                &image_labels,
                size,
                size,
                opts.aupro,
                spec.bins,
                exact,
            )?;
            Some(metrics::replicates(
                &sample,
                spec,
                metrics::stream_of(category),
            )?)
        }
        _ => None,
    };
    Ok((
        CategoryMetrics {
            category: category.to_string(),
            n_normal: preds.len() - n_anomalous,
            n_anomalous,
            metrics,
            interval: None,
        },
        replicates,
    ))
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

    #[test]
    fn spilled_maps_come_back_bit_identical() {
        let dir = tempfile::tempdir().unwrap();
        let maps: Vec<Vec<f32>> = (0..3)
            .map(|k| {
                (0..50)
                    .map(|i| (i as f32 * 0.37 + k as f32).sin())
                    .collect()
            })
            .collect();
        let mut mem = MapSink::new(None).unwrap();
        let path = dir.path().join(".spill-0000-000.tmp-maps");
        let mut disk = MapSink::new(Some(path.clone())).unwrap();
        for m in &maps {
            mem.push(m).unwrap();
            disk.push(m).unwrap();
        }
        let (a, b) = (mem.into_values().unwrap(), disk.into_values().unwrap());
        assert_eq!(a.len(), 150);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(!path.exists(), "the spill file is removed after reading");
    }
}
