//! Zero-shot evaluation of every checkpoint in one pass over the target.
//!
//! The target is read a category at a time, a batch at a time: each batch goes through the
//! backbone once and through every checkpoint to evaluate; what the metrics need (maps of the
//! category, per-image predictions) is kept, the features are not. A category's maps stay in
//! memory when the budget allows, else they are spilled to a file per checkpoint (and one for the
//! masks) and every metric is computed from the files in passes with bounded memory
//! ([`CategoryMaps`]) - either way the metrics are those of the full table, bit for bit.
//!
//! As the reference `test.py`: the pixel score is the tap-averaged cross-modal anomaly channel at
//! map resolution, the image score is the max of that map, P-AUROC / F1-max pool every pixel of a
//! category, I-AUROC pools its images (undefined with one class), and the dataset mean skips
//! undefined values (`nanmean`). Under `protocol: reference` the scores of a category are min-max
//! rescaled in f32 first, exactly as the reference does (it can merge nearly equal scores into ties).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::EngineError;
use super::extract::{Extracted, Extractor, Want, features_of};
use super::features::batch_tensors;
use super::inference::{ImagePrediction, Prompts, run_tensors};
use super::progress::Progress;
use crate::data::{Sample, SkippedFile};
use crate::experiment::Experiment;
use crate::experiment::record::{
    BootstrapInfo, CategoryMetrics, Evaluation, Interval, MetricIntervals, MetricSet,
};
use crate::metrics::{
    self, BootstrapSpec, CategorySample, Chunk, MapSource, MetricsError, StreamOptions, Values,
};
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

impl EvalOptions {
    /// The options the `eval` section of `exp` asks for (a run's evaluation and `ava-dino
    /// evaluate` read them the same way); no bootstrap with 0 replicates.
    pub fn of(exp: &Experiment) -> Self {
        let b = &exp.eval.bootstrap;
        Self {
            batch_size: exp.eval.batch_size,
            protocol: exp.protocol,
            aupro: exp.eval.aupro.then_some(exp.eval.aupro_fpr_limit),
            bootstrap: (b.replicates > 0).then_some(BootstrapSpec {
                replicates: b.replicates,
                seed: b.seed,
                level: b.level,
                bins: b.bins,
            }),
        }
    }
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

/// Where the evaluation may spill maps, and how much memory a category's maps and metrics may
/// take (see [`CategoryMaps`]).
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
        let mut maps = CategoryMaps::new(spill, ci, indices.len(), s, models.len())?;
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
                    maps.push_map(m, &o.map)?;
                }
            }
            for e in &done {
                maps.push_mask(&e.mask)?;
            }
        }
        for (m, (p, ev)) in preds.into_iter().zip(&mut out).enumerate() {
            let scored = maps.metrics(m, category, &p, opts)?;
            ev.categories.push(scored.metrics);
            ev.replicates.extend(scored.replicates);
            ev.images.extend(p);
        }
    }
    Ok((out, skipped))
}

/// Bytes a category's evaluation holds with its maps in memory: the maps of every evaluated
/// checkpoint (4 bytes a pixel each), the masks (1 byte a pixel) and, while one checkpoint's
/// metrics run, `pixel_metrics`' ranking buffer (4 bytes a pixel). The other metrics hold
/// O(images) (AUPRO's and the bootstrap's per-image histograms) or a few MiB.
pub fn in_memory_bytes(pixels: u64, checkpoints: usize) -> u64 {
    pixels.saturating_mul(4 * checkpoints as u64 + 5)
}

/// Bytes a category's spilled maps take on disk at their peak, once every image is written:
/// each checkpoint's f32 scores and the u8 masks once. Each checkpoint's file goes as soon as
/// it is scored.
pub fn spilled_bytes(pixels: u64, checkpoints: usize) -> u64 {
    pixels.saturating_mul(4 * checkpoints as u64 + 1)
}

/// Read buffers of a spilled category: at most this many bytes, or a sixteenth of the budget,
/// and at least one image (9 bytes a pixel: the file's bytes, the scores, the masks).
const READ_CHUNK_BYTES: u64 = 32 << 20;
const READ_BYTES_PER_PIXEL: u64 = 9;

/// The metrics of one checkpoint on one category, and how they were read.
#[derive(Debug, Clone)]
pub struct Scored {
    pub metrics: CategoryMetrics,
    /// The bootstrap replicates of the six metrics, when asked for.
    pub replicates: Option<Vec<Values>>,
    /// Passes over the spill files (0: the maps were in memory).
    pub passes: usize,
    /// Bytes read back from the spill files.
    pub bytes_read: u64,
}

/// A category's maps of every evaluated checkpoint and its masks, gathered image by image while
/// the category is evaluated, then scored one checkpoint at a time.
///
/// They stay in memory when [`in_memory_bytes`] fits the budget. Otherwise they are spilled to
/// the run directory as they come - each checkpoint's f32 scores to its own file, the u8 masks
/// once to another (they are the same for every checkpoint) - and each checkpoint's metrics are
/// computed by [`metrics::category_streamed`] reading the two files in chunks of whole images,
/// in passes, holding at most the budget (the read buffers, then the metrics' fixed part, the
/// rest to the ranking); under `protocol: reference` the min-max rescale is applied to each
/// chunk as it is read, from the min and max folded while the maps were written. Either way the
/// metrics are bit-identical.
///
/// Spill files are temporaries of the run directory: created exclusively under temporary names
/// (swept when the directory is next prepared, should this process be killed), each removed as
/// soon as its checkpoint is scored and in any case when this value is dropped - after use and
/// after an error.
pub struct CategoryMaps {
    size: usize,
    budget: u64,
    store: Store,
}

enum Store {
    Memory {
        maps: Vec<Vec<f32>>,
        masks: Vec<u8>,
    },
    Spilled {
        /// Per checkpoint its file (`None` once scored) and the min and max of its scores, folded
        /// in order as `rescale_f32` folds them.
        maps: Vec<Option<SpillFile>>,
        ranges: Vec<(f32, f32)>,
        masks: SpillFile,
        images: usize,
        /// One map's bytes, reused.
        scratch: Vec<u8>,
    },
}

impl CategoryMaps {
    /// Room for `images` (at most) maps of `size x size` of each of `checkpoints`: in memory
    /// when they fit `spill.budget`, else in files of `spill.dir` named by `category_index`.
    pub fn new(
        spill: &Spill,
        category_index: usize,
        images: usize,
        size: usize,
        checkpoints: usize,
    ) -> Result<Self, EngineError> {
        let pixels = (images * size * size) as u64;
        let store = if in_memory_bytes(pixels, checkpoints) <= spill.budget {
            Store::Memory {
                maps: vec![Vec::new(); checkpoints],
                masks: Vec::new(),
            }
        } else {
            let name = |what: String| format!("spill-{category_index:04}-{what}");
            Store::Spilled {
                maps: (0..checkpoints)
                    .map(|m| SpillFile::create(spill.dir, &name(format!("maps-{m:03}"))).map(Some))
                    .collect::<Result<_, _>>()?,
                ranges: vec![(f32::INFINITY, f32::NEG_INFINITY); checkpoints],
                masks: SpillFile::create(spill.dir, &name("masks".into()))?,
                images: 0,
                scratch: Vec::new(),
            }
        };
        Ok(Self {
            size,
            budget: spill.budget,
            store,
        })
    }

    /// Whether the maps go to files.
    pub fn is_spilled(&self) -> bool {
        matches!(self.store, Store::Spilled { .. })
    }

    /// The next image's map of checkpoint `checkpoint` (`size x size` scores).
    pub fn push_map(&mut self, checkpoint: usize, map: &[f32]) -> Result<(), EngineError> {
        self.check_len("map", map.len())?;
        match &mut self.store {
            Store::Memory { maps, .. } => maps[checkpoint].extend_from_slice(map),
            Store::Spilled {
                maps,
                ranges,
                scratch,
                ..
            } => {
                let (lo, hi) = &mut ranges[checkpoint];
                for &v in map {
                    (*lo, *hi) = (lo.min(v), hi.max(v));
                }
                scratch.clear();
                scratch.extend(map.iter().flat_map(|v| v.to_le_bytes()));
                match &mut maps[checkpoint] {
                    Some(file) => file.write(scratch)?,
                    None => return Err(scored_twice(checkpoint)),
                }
            }
        }
        Ok(())
    }

    /// The next image's mask (`size x size`, 0/1), once for all checkpoints.
    pub fn push_mask(&mut self, mask: &[u8]) -> Result<(), EngineError> {
        self.check_len("mask", mask.len())?;
        match &mut self.store {
            Store::Memory { masks, .. } => masks.extend_from_slice(mask),
            Store::Spilled { masks, images, .. } => {
                masks.write(mask)?;
                *images += 1;
            }
        }
        Ok(())
    }

    fn check_len(&self, what: &'static str, got: usize) -> Result<(), MetricsError> {
        let expected = self.size * self.size;
        if got == expected {
            Ok(())
        } else {
            Err(MetricsError::Length {
                what,
                got,
                expected,
                why: format!("one value per pixel of a {0}x{0} map", self.size),
            })
        }
    }

    /// The metrics of checkpoint `checkpoint` with the predictions `preds` (one per image, in
    /// order); its maps are released (its file removed) after.
    pub fn metrics(
        &mut self,
        checkpoint: usize,
        category: &str,
        preds: &[ImagePrediction],
        opts: &EvalOptions,
    ) -> Result<Scored, EngineError> {
        let size = self.size;
        match &mut self.store {
            Store::Memory { maps, masks } => {
                let pixels = std::mem::take(&mut maps[checkpoint]);
                let (metrics, replicates) =
                    category_metrics(category, pixels, masks, preds, size, opts)?;
                Ok(Scored {
                    metrics,
                    replicates,
                    passes: 0,
                    bytes_read: 0,
                })
            }
            Store::Spilled {
                maps,
                ranges,
                masks,
                images,
                ..
            } => {
                let mut file = maps[checkpoint]
                    .take()
                    .ok_or_else(|| scored_twice(checkpoint))?;
                file.finish()?;
                masks.finish()?;
                let hw = (size * size) as u64;
                let chunk_bytes = READ_CHUNK_BYTES.min(self.budget / 16);
                let chunk_images = (chunk_bytes / (hw * READ_BYTES_PER_PIXEL).max(1)).max(1);
                let chunk_images = usize::try_from(chunk_images).unwrap_or(usize::MAX);
                let rescale = (opts.protocol == Protocol::Reference && *images as u64 * hw > 0)
                    .then(|| {
                        let (lo, hi) = ranges[checkpoint];
                        (lo, hi - lo + 1e-8f32)
                    });
                let mut source = SpillSource {
                    maps: &file,
                    masks,
                    shape: (*images, size, size),
                    chunk_images,
                    rescale,
                    bytes_read: 0,
                };
                let buffers = chunk_images.min(*images).max(1) as u64 * hw * READ_BYTES_PER_PIXEL;
                let memory = self.budget.saturating_sub(buffers);
                let scored = category_metrics_streamed(category, &mut source, preds, opts, memory)?;
                let bytes_read = source.bytes_read;
                drop(file);
                Ok(Scored {
                    bytes_read,
                    ..scored
                })
            }
        }
    }
}

fn scored_twice(checkpoint: usize) -> EngineError {
    EngineError::Config {
        what: "evaluation".into(),
        message: format!(
            "checkpoint {checkpoint}'s spilled maps were already scored and removed; score each \
             checkpoint once, after all of its maps"
        ),
    }
}

/// A spill file: a temporary of the run directory, written once, then read in passes, removed
/// when dropped.
struct SpillFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl SpillFile {
    /// A new temporary named after `name` in `dir` (created if missing).
    fn create(dir: &Path, name: &str) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (path, file) = crate::io::create_temp(&dir.join(name)).map_err(io_err(dir))?;
        Ok(Self {
            path,
            writer: Some(BufWriter::with_capacity(64 << 10, file)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        let Some(w) = &mut self.writer else {
            return Err(EngineError::Config {
                what: "evaluation".into(),
                message: format!(
                    "{} was written after being read back; write every map before scoring",
                    self.path.display()
                ),
            });
        };
        w.write_all(bytes).map_err(io_err(&self.path))
    }

    /// Flushes and closes the writer (again: nothing); the file is complete from now on.
    fn finish(&mut self) -> Result<(), EngineError> {
        if let Some(w) = self.writer.take() {
            w.into_inner()
                .map_err(|e| EngineError::Io {
                    path: self.path.clone(),
                    source: e.into_error(),
                })?
                .flush()
                .map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    fn open(&self) -> Result<File, EngineError> {
        File::open(&self.path).map_err(io_err(&self.path))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        drop(self.writer.take());
        // Nothing to do about a file already gone; any other failure leaves a temporary name
        // that the next preparation of the run directory sweeps.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One checkpoint's spilled maps and the category's masks as a [`MapSource`]: chunks of
/// `chunk_images` whole images, the `protocol: reference` rescale `(x - lo) / denom` (f32, as
/// [`rescale_f32`]) applied as they are read.
struct SpillSource<'f> {
    maps: &'f SpillFile,
    masks: &'f SpillFile,
    shape: (usize, usize, usize),
    chunk_images: usize,
    rescale: Option<(f32, f32)>,
    bytes_read: u64,
}

impl MapSource for SpillSource<'_> {
    type Error = EngineError;

    fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    fn chunk_images(&self) -> usize {
        self.chunk_images
    }

    fn pass(
        &mut self,
        visit: &mut dyn FnMut(Chunk<'_>) -> Result<(), MetricsError>,
    ) -> Result<(), EngineError> {
        let (k, h, w) = self.shape;
        let hw = h * w;
        let (mut maps, mut masks) = (self.maps.open()?, self.masks.open()?);
        let per_chunk = self.chunk_images.min(k).max(1) * hw;
        let mut raw = vec![0u8; per_chunk * 4];
        let mut scores = vec![0f32; per_chunk];
        let mut mask = vec![0u8; per_chunk];
        let mut first = 0;
        while first < k {
            let images = self.chunk_images.min(k - first);
            let n = images * hw;
            maps.read_exact(&mut raw[..n * 4])
                .map_err(io_err(&self.maps.path))?;
            masks
                .read_exact(&mut mask[..n])
                .map_err(io_err(&self.masks.path))?;
            let rescale = self.rescale;
            scores[..n]
                .par_chunks_mut(1 << 14)
                .zip(raw[..n * 4].par_chunks(4 << 14))
                .for_each(|(out, bytes)| {
                    for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                        let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        *v = match rescale {
                            Some((lo, denom)) => (x - lo) / denom,
                            None => x,
                        };
                    }
                });
            self.bytes_read += (n * 5) as u64;
            visit(Chunk {
                first_image: first,
                images,
                scores: &scores[..n],
                masks: &mask[..n],
            })?;
            first += images;
        }
        Ok(())
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

/// The image scores (before any rescale) and 0/1 labels of `preds`.
fn image_scores(preds: &[ImagePrediction]) -> (Vec<f32>, Vec<u8>) {
    preds
        .iter()
        .map(|p| (p.score, u8::from(p.label != 0)))
        .unzip()
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
    let (mut image_scores, image_labels) = image_scores(preds);
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
    let metrics = metric_set(&image, &pixel, aupro);
    let sample = match bootstrap_bins(opts, preds) {
        Some(bins) => Some(CategorySample::new(
            &pixels,
            gt,
            &image_scores,
            &image_labels,
            size,
            size,
            opts.aupro,
            bins,
            metrics::METRIC_NAMES.map(|m| metrics.get(m)),
        )?),
        None => None,
    };
    Ok((
        category_record(category, &image_labels, metrics),
        replicates_of(category, sample, opts)?,
    ))
}

/// [`category_metrics`] of maps and masks read from `source` in passes, holding at most
/// `memory` bytes besides the source's buffers (bit-identical; see [`CategoryMaps`]), with the
/// number of passes (`bytes_read` is the source's to tell).
fn category_metrics_streamed<S: MapSource>(
    category: &str,
    source: &mut S,
    preds: &[ImagePrediction],
    opts: &EvalOptions,
    memory: u64,
) -> Result<Scored, S::Error> {
    let (k, h, w) = source.shape();
    let (mut image_scores, image_labels) = image_scores(preds);
    if opts.protocol == Protocol::Reference && k * h * w > 0 {
        rescale_f32(&mut image_scores);
    }
    let stream_opts = StreamOptions {
        aupro: opts.aupro.filter(|_| !preds.is_empty()),
        bins: bootstrap_bins(opts, preds),
        memory,
    };
    let out = metrics::category_streamed(source, &image_scores, &image_labels, &stream_opts)?;
    let metrics = metric_set(&out.image, &out.pixel, out.aupro);
    Ok(Scored {
        metrics: category_record(category, &image_labels, metrics),
        replicates: replicates_of(category, out.sample, opts)?,
        passes: out.passes,
        bytes_read: 0,
    })
}

/// The bins of the bootstrap sample, when one is drawn for these predictions.
fn bootstrap_bins(opts: &EvalOptions, preds: &[ImagePrediction]) -> Option<usize> {
    opts.bootstrap
        .filter(|spec| spec.replicates > 0 && !preds.is_empty())
        .map(|spec| spec.bins)
}

fn metric_set(
    image: &metrics::PixelMetrics,
    pixel: &metrics::PixelMetrics,
    aupro: Option<f64>,
) -> MetricSet {
    MetricSet {
        image_auroc: image.auroc,
        image_ap: image.ap,
        image_f1max: image.f1_max,
        pixel_auroc: pixel.auroc,
        pixel_aupro: aupro,
        pixel_f1max: pixel.f1_max,
    }
}

/// The bootstrap replicates of `sample` (stream named by the category), when drawn.
fn replicates_of(
    category: &str,
    sample: Option<CategorySample>,
    opts: &EvalOptions,
) -> Result<Option<Vec<Values>>, MetricsError> {
    match (sample, &opts.bootstrap) {
        (Some(sample), Some(spec)) => Ok(Some(metrics::replicates(
            &sample,
            spec,
            metrics::stream_of(category),
        )?)),
        _ => Ok(None),
    }
}

fn category_record(category: &str, image_labels: &[u8], metrics: MetricSet) -> CategoryMetrics {
    let n_anomalous = image_labels.iter().filter(|&&l| l == 1).count();
    CategoryMetrics {
        category: category.to_string(),
        n_normal: image_labels.len() - n_anomalous,
        n_anomalous,
        metrics,
        interval: None,
    }
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

    /// A category of `k` images `size x size`: per checkpoint the maps (checkpoint 0 on a grid
    /// of 40 levels: many ties; checkpoint 1 continuous) and predictions, and the masks (a
    /// defect on every other image).
    struct Synth {
        maps: Vec<Vec<Vec<f32>>>,
        masks: Vec<Vec<u8>>,
        preds: Vec<Vec<ImagePrediction>>,
    }

    fn synth(k: usize, size: usize, seed: u64) -> Synth {
        let mut rng = crate::rng::SplitMix64(seed);
        let mut out = Synth {
            maps: vec![Vec::new(); 2],
            masks: Vec::new(),
            preds: vec![Vec::new(); 2],
        };
        for i in 0..k {
            let label = (i % 2) as u8;
            let (y0, x0) = (rng.below(size / 2), rng.below(size / 2));
            let mask: Vec<u8> = (0..size * size)
                .map(|p| {
                    let (y, x) = (p / size, p % size);
                    u8::from(label == 1 && (y0..y0 + 5).contains(&y) && (x0..x0 + 4).contains(&x))
                })
                .collect();
            for m in 0..2 {
                let map: Vec<f32> = mask
                    .iter()
                    .map(|&a| {
                        let v = rng.normal() as f32 + 1.5 * a as f32;
                        if m == 0 { (v * 8.0).round() / 8.0 } else { v }
                    })
                    .collect();
                let score = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                out.preds[m].push(ImagePrediction {
                    index: i,
                    label,
                    score,
                    w_normal: 0.5,
                    w_anomaly: 0.5,
                });
                out.maps[m].push(map);
            }
            out.masks.push(mask);
        }
        out
    }

    fn fill(maps: &mut CategoryMaps, s: &Synth) {
        for i in 0..s.masks.len() {
            for m in 0..2 {
                maps.push_map(m, &s.maps[m][i]).unwrap();
            }
            maps.push_mask(&s.masks[i]).unwrap();
        }
    }

    fn opts(protocol: Protocol, bins: usize) -> EvalOptions {
        EvalOptions {
            batch_size: 4,
            protocol,
            aupro: Some(0.3),
            bootstrap: Some(BootstrapSpec {
                replicates: 20,
                seed: 9,
                level: 0.95,
                bins,
            }),
        }
    }

    /// The bits of the six metrics and of the replicates.
    type Bits = (Vec<Option<u64>>, Option<Vec<[Option<u64>; 6]>>);

    fn bits(scored: &Scored) -> Bits {
        let m = &scored.metrics.metrics;
        let values = metrics::METRIC_NAMES
            .iter()
            .map(|n| m.get(n).map(f64::to_bits))
            .collect();
        let reps = scored
            .replicates
            .as_ref()
            .map(|r| r.iter().map(|v| v.map(|x| x.map(f64::to_bits))).collect());
        (values, reps)
    }

    fn files_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// What the estimate prices as a category's spilled maps is what its files hold once every
    /// image is written, before the first checkpoint is scored.
    #[test]
    fn spilled_bytes_are_the_spill_files_at_their_peak() {
        let dir = tempfile::tempdir().unwrap();
        let (k, size) = (5, 24);
        let spill = Spill {
            dir: dir.path(),
            budget: 0,
        };
        let mut maps = CategoryMaps::new(&spill, 0, k, size, 2).unwrap();
        fill(&mut maps, &synth(k, size, 3));
        let Store::Spilled {
            maps: files, masks, ..
        } = &mut maps.store
        else {
            panic!("a budget of 0 spills");
        };
        for f in files.iter_mut().flatten() {
            f.finish().unwrap();
        }
        masks.finish().unwrap();
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, spilled_bytes((k * size * size) as u64, 2));
    }

    #[test]
    fn spilled_metrics_equal_the_in_memory_metrics_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let size = 32;
        // Categories of 1, 4 and 12 images; a budget of 0, or one byte short of holding them,
        // spills and leaves the ranking its least memory (16 KiB: 12 maps of 32x32 take
        // several passes). Chunks of several images: the metrics room's tests.
        for (ci, k) in [1, 4, 12].into_iter().enumerate() {
            let s = synth(k, size, ci as u64);
            for protocol in [Protocol::Reference, Protocol::Corrected] {
                for bins in [16, 4096] {
                    let opts = opts(protocol, bins);
                    let memory = Spill {
                        dir: dir.path(),
                        budget: u64::MAX,
                    };
                    let mut held = CategoryMaps::new(&memory, ci, k, size, 2).unwrap();
                    assert!(!held.is_spilled());
                    fill(&mut held, &s);
                    let just_short = in_memory_bytes((k * size * size) as u64, 2) - 1;
                    for budget in [0, just_short] {
                        let spill = Spill {
                            dir: dir.path(),
                            budget,
                        };
                        let mut spilled = CategoryMaps::new(&spill, ci, k, size, 2).unwrap();
                        assert!(spilled.is_spilled());
                        fill(&mut spilled, &s);
                        assert_eq!(files_in(dir.path()).len(), 3, "two maps, one masks");
                        for m in 0..2 {
                            let what =
                                format!("k={k} {protocol:?} bins={bins} budget={budget} m={m}");
                            let want = held.clone_metrics(m, "cat", &s.preds[m], &opts);
                            let got = spilled.metrics(m, "cat", &s.preds[m], &opts).unwrap();
                            assert_eq!(bits(&got), bits(&want), "{what}");
                            assert_eq!(
                                (got.metrics.n_normal, got.metrics.n_anomalous),
                                (want.metrics.n_normal, want.metrics.n_anomalous)
                            );
                            // One image is a normal one: no region, no AUPRO.
                            let pro = got.metrics.metrics.pixel_aupro;
                            assert_eq!(pro.is_some(), k > 1, "{what}");
                            assert!(got.replicates.is_some(), "{what}");
                            assert!(got.passes >= 2, "{what}");
                            if budget == 0 && k == 12 {
                                assert!(got.passes > 3, "{what}: {} passes", got.passes);
                            }
                            let pixels = (k * size * size) as u64;
                            assert_eq!(got.bytes_read, got.passes as u64 * pixels * 5);
                        }
                        assert!(spilled.metrics(0, "cat", &s.preds[0], &opts).is_err());
                        drop(spilled);
                        assert!(files_in(dir.path()).is_empty(), "spill files removed");
                    }
                }
            }
        }
    }

    impl CategoryMaps {
        /// The in-memory metrics of checkpoint `m` without releasing its maps.
        fn clone_metrics(
            &self,
            m: usize,
            category: &str,
            preds: &[ImagePrediction],
            opts: &EvalOptions,
        ) -> Scored {
            let Store::Memory { maps, masks } = &self.store else {
                panic!("in memory")
            };
            let (metrics, replicates) =
                category_metrics(category, maps[m].clone(), masks, preds, self.size, opts).unwrap();
            Scored {
                metrics,
                replicates,
                passes: 0,
                bytes_read: 0,
            }
        }
    }

    #[test]
    fn spilled_maps_come_back_bit_identical() {
        let dir = tempfile::tempdir().unwrap();
        let s = synth(5, 6, 3);
        let spill = Spill {
            dir: dir.path(),
            budget: 0,
        };
        let mut maps = CategoryMaps::new(&spill, 7, 5, 6, 2).unwrap();
        fill(&mut maps, &s);
        let names = files_in(dir.path());
        assert!(
            names.iter().all(|n| crate::io::atomic::is_temp_name(n)),
            "{names:?}"
        );
        let Store::Spilled {
            maps: files,
            masks,
            ranges,
            ..
        } = &mut maps.store
        else {
            panic!("spilled")
        };
        masks.finish().unwrap();
        for m in 0..2 {
            let file = files[m].as_mut().unwrap();
            file.finish().unwrap();
            let flat: Vec<f32> = s.maps[m].concat();
            let mut rescaled = flat.clone();
            rescale_f32(&mut rescaled);
            let (lo, hi) = ranges[m];
            for (rescale, want) in [(None, &flat), (Some((lo, hi - lo + 1e-8f32)), &rescaled)] {
                let mut source = SpillSource {
                    maps: file,
                    masks,
                    shape: (5, 6, 6),
                    chunk_images: 2,
                    rescale,
                    bytes_read: 0,
                };
                let (mut got, mut got_masks) = (Vec::new(), Vec::new());
                source
                    .pass(&mut |c| {
                        got.extend_from_slice(c.scores);
                        got_masks.extend_from_slice(c.masks);
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(got.len(), 180);
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(x, y)| x.to_bits() == y.to_bits())
                );
                assert_eq!(got_masks, s.masks.concat());
                assert_eq!(source.bytes_read, 180 * 5);
            }
        }
        drop(maps);
        assert!(files_in(dir.path()).is_empty(), "removed after use");
    }

    #[test]
    fn spill_files_go_after_an_error_or_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill {
            dir: dir.path(),
            budget: 0,
        };
        let s = synth(3, 8, 1);
        // A score the metrics refuse: the error names it, and dropping removes the files.
        let mut maps = CategoryMaps::new(&spill, 0, 3, 8, 2).unwrap();
        let mut bad = s.maps[0][1].clone();
        bad[5] = f32::NAN;
        for i in 0..3 {
            maps.push_map(0, if i == 1 { &bad } else { &s.maps[0][i] })
                .unwrap();
            maps.push_map(1, &s.maps[1][i]).unwrap();
            maps.push_mask(&s.masks[i]).unwrap();
        }
        let err = maps
            .metrics(0, "cat", &s.preds[0], &opts(Protocol::Corrected, 64))
            .unwrap_err();
        assert!(err.to_string().contains("[69]"), "{err}");
        assert!(maps.push_map(1, &s.maps[1][0][1..]).is_err(), "a short map");
        drop(maps);
        assert!(files_in(dir.path()).is_empty());
        // A killed process leaves temporaries that the run directory's sweep removes.
        let mut maps = CategoryMaps::new(&spill, 1, 3, 8, 2).unwrap();
        fill(&mut maps, &s);
        std::mem::forget(maps);
        assert_eq!(files_in(dir.path()).len(), 3);
        crate::io::sweep_temps(dir.path(), std::time::Duration::ZERO).unwrap();
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn the_budget_decides_what_is_spilled() {
        let dir = tempfile::tempdir().unwrap();
        // 10 maps of 16x16 for 3 checkpoints: 2,560 pixels x (4 x 3 + 5) bytes = 43,520.
        assert_eq!(in_memory_bytes(2560, 3), 43_520);
        for (budget, spilled) in [(43_520, false), (43_519, true)] {
            let spill = Spill {
                dir: dir.path(),
                budget,
            };
            let maps = CategoryMaps::new(&spill, 0, 10, 16, 3).unwrap();
            assert_eq!(maps.is_spilled(), spilled, "{budget}");
        }
        assert!(files_in(dir.path()).is_empty());
    }
}
