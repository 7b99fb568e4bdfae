//! Bootstrap confidence intervals of a category's six metrics, resampling whole test images.
//!
//! Why images: the test images are the sampled units (the pixels of one image are strongly
//! correlated), so a replicate draws `k` images with replacement from a category's `k` and
//! recomputes every metric, the pixel metrics included, on the pixels of the drawn images.
//! Categories are resampled independently (stratified); the mean row of a replicate is the
//! mean of the categories' values of that same replicate ([`mean_replicates`]).
//!
//! A [`CategorySample`] is built once from a category's maps, in O(pixels), and keeps only
//! per-image summaries, O(images x bins), so that one replicate costs O(images x bins):
//! - **image metrics**, exact: the images grouped by distinct score; a replicate weights each
//!   image by its multiplicity and walks the groups with the same f64 operations as
//!   [`super::pixel_metrics`] (bit-identical with all weights 1);
//! - **pixel AUROC / F1-max**: per image, histograms of its normal and anomalous pixels over
//!   score bins. With at most `bins` distinct scores in the category, a bin is one score and the
//!   values are exact (bit-identical with all weights 1). Otherwise the bin edges are quantiles of
//!   the normal pixels' scores (half the bins) and of the anomalous pixels' (the other half), so
//!   the few, high-scored anomalous pixels are resolved as finely as the many normal ones; within
//!   a bin pairs count as ties and F1 thresholds exist only at bin edges. The binning bias is
//!   removed by shifting every replicate by `exact - binned(full sample)`;
//! - **AUPRO**: per image, the region-weight and normal-pixel histograms of [`super::aupro`] at
//!   the full sample's 200 thresholds, which stay fixed (the bootstrap is conditional on them).
//!
//! Replicate `r` of a category draws its multiplicities from `SplitMix64` seeded by
//! `(seed, stream, r)` alone, so values do not depend on the thread count, on other categories
//! or on the order of evaluation, and a fixed `stream` per category gives every checkpoint the
//! same resamples (common random numbers: checkpoints are compared on the same draws).
//! `docs/metrics.md` ("Confidence intervals") gives the method, error bound and cost. For a
//! category larger than memory the same parts are built from a `MapSource` a pass at a time
//! (`bootstrap_stream.rs`, `stream.rs`).

use rayon::prelude::*;

use super::aupro::{AUPRO_STEPS, ImageHistograms, thresholds};
use super::ranking::{GroupWalk, order_key};
use super::{MetricsError, first_bad_label, first_non_finite};
use crate::rng::SplitMix64;

/// The six metrics, in this order everywhere in this module.
pub const METRIC_NAMES: [&str; 6] = [
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_aupro",
    "pixel_f1max",
];

/// One value per metric of [`METRIC_NAMES`]; `None` = undefined (or not computed).
pub type Values = [Option<f64>; 6];

/// A percentile interval `(lo, hi)` per metric of [`METRIC_NAMES`].
pub type Intervals = [Option<(f64, f64)>; 6];

const IMAGE_AUROC: usize = 0;
const IMAGE_AP: usize = 1;
const IMAGE_F1MAX: usize = 2;
const PIXEL_AUROC: usize = 3;
const PIXEL_AUPRO: usize = 4;
const PIXEL_F1MAX: usize = 5;

/// Anomalous and normal pixels each contribute at most this many scores (an evenly strided
/// subsample) to the quantiles that place the bin edges: the sort stays small at any size.
pub(super) const QUANTILE_SAMPLE: usize = 1 << 20;
/// Images per task when looking for the distinct scores of a category.
pub(super) const DISTINCT_CHUNK_IMAGES: usize = 8;

/// How the intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapSpec {
    /// Replicates per category (1,000 by default).
    pub replicates: usize,
    /// Seed of the resampling; the same seed gives the same intervals.
    pub seed: u64,
    /// Coverage of the two-sided percentile interval, in (0, 1) (0.95 by default).
    pub level: f64,
    /// Pixel score bins (1,024 by default): more bins, smaller binning error, slower replicates.
    pub bins: usize,
}

impl Default for BootstrapSpec {
    fn default() -> Self {
        Self {
            replicates: 1000,
            seed: 0,
            level: 0.95,
            bins: 1024,
        }
    }
}

impl BootstrapSpec {
    /// Checks the level and bin count (a spec with 0 replicates is valid and yields no interval).
    pub fn validate(&self) -> Result<(), MetricsError> {
        check_level(self.level)?;
        check_bins(self.bins)
    }
}

fn check_level(level: f64) -> Result<(), MetricsError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(MetricsError::Parameter {
            what: "bootstrap level",
            value: level,
            fix: "give a coverage strictly between 0 and 1, e.g. 0.95",
        })
    }
}

pub(super) fn check_bins(bins: usize) -> Result<(), MetricsError> {
    if (2..=u32::MAX as usize).contains(&bins) {
        Ok(())
    } else {
        Err(MetricsError::Parameter {
            what: "bootstrap bins",
            value: bins as f64,
            fix: "give at least 2 pixel score bins, e.g. 1024",
        })
    }
}

/// A stable 64-bit stream id for a name (FNV-1a), e.g. a category: the same name gives the same
/// resamples in every run and for every checkpoint.
pub fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Multiplicities of replicate `r` over `k` images: `k` indices drawn uniformly with
/// replacement (`SplitMix64::below`) from a generator seeded by `(seed, stream, r)` only.
pub fn resample(k: usize, seed: u64, stream: u64, r: u64) -> Vec<u32> {
    // Three rounds of SplitMix64's finaliser: nearby (seed, stream, r) give unrelated streams.
    let mut h = SplitMix64(seed).next_u64();
    h = SplitMix64(h ^ stream).next_u64();
    h = SplitMix64(h ^ r).next_u64();
    let mut rng = SplitMix64(h);
    let mut weights = vec![0u32; k];
    for _ in 0..k {
        weights[rng.below(k)] += 1;
    }
    weights
}

/// Everything needed to recompute one category's six metrics on any resample of its images
/// (multiplicities per image), built once from the category's maps. See the module docs.
#[derive(Debug, Clone)]
pub struct CategorySample {
    images: ImageGroups,
    pixels: PixelBins,
    /// AUPRO's per-image histograms at the full sample's thresholds, and the FPR limit; `None`
    /// when AUPRO is not computed or undefined for want of thresholds (all maps equal).
    aupro: Option<(ImageHistograms, f64)>,
    /// The metrics on the full sample, as the caller computed them.
    exact: Values,
    /// Added to every replicate value: `exact - binned(full sample)` for the binned pixel
    /// metrics, 0 elsewhere.
    shift: [f64; 6],
}

impl CategorySample {
    /// `pixels` / `masks`: `k` maps of `h x w`, image after image (masks 0/1); `image_scores` /
    /// `image_labels`: `k` values (0/1); `aupro_limit`: the FPR limit of AUPRO, `None` = AUPRO
    /// not computed; `bins`: pixel score bins (see [`BootstrapSpec::bins`]); `exact`: the
    /// category's metrics as computed on the full sample (`pixel_metrics`, `aupro`).
    ///
    /// `exact` is checked where this sample reproduces it exactly (image metrics, AUPRO, pixel
    /// metrics when not binned): a difference above 1e-9, or a metric defined on one side only,
    /// is [`MetricsError::Inconsistent`] (the values belong to other maps, e.g. before rescaling).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pixels: &[f32],
        masks: &[u8],
        image_scores: &[f32],
        image_labels: &[u8],
        h: usize,
        w: usize,
        aupro_limit: Option<f64>,
        bins: usize,
        exact: Values,
    ) -> Result<Self, MetricsError> {
        let k = image_scores.len();
        validate(pixels, masks, image_scores, image_labels, h, w, aupro_limit)?;
        check_bins(bins)?;
        let pixels_binned = PixelBins::new(pixels, masks, k, h * w, bins);
        let aupro = match aupro_limit {
            Some(limit) if k > 0 && h * w > 0 => thresholds(pixels, AUPRO_STEPS)
                .map(|ths| (ImageHistograms::new(pixels, masks, h, w, &ths), limit)),
            _ => None,
        };
        Self::assemble(
            image_scores,
            image_labels,
            pixels_binned,
            aupro,
            aupro_limit,
            exact,
        )
    }

    /// The sample from its parts, computed from the category's maps by [`CategorySample::new`]
    /// or a pass at a time (`bootstrap_stream.rs`), and the check of `exact` against them.
    pub(super) fn assemble(
        image_scores: &[f32],
        image_labels: &[u8],
        pixels: PixelBins,
        aupro: Option<(ImageHistograms, f64)>,
        aupro_limit: Option<f64>,
        exact: Values,
    ) -> Result<Self, MetricsError> {
        let k = image_scores.len();
        let mut sample = Self {
            images: ImageGroups::new(image_scores, image_labels),
            pixels,
            aupro,
            exact,
            shift: [0.0; 6],
        };
        let full = sample.raw_metrics(&vec![1; k]);
        for m in 0..6 {
            let binned = matches!(m, PIXEL_AUROC | PIXEL_F1MAX) && !sample.pixels.exact;
            let computed = if m == PIXEL_AUPRO && aupro_limit.is_none() {
                None // not computed: nothing to check
            } else {
                full[m]
            };
            match (exact[m], computed) {
                (Some(e), Some(c)) if binned => sample.shift[m] = e - c,
                (Some(e), Some(c)) if (e - c).abs() <= 1e-9 => {}
                (None, None) => {}
                (given, computed) => {
                    return Err(MetricsError::Inconsistent {
                        metric: METRIC_NAMES[m],
                        given,
                        computed,
                    });
                }
            }
        }
        Ok(sample)
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.images.labels.len()
    }

    /// Whether the pixel metrics are binned (more distinct pixel scores than bins), so that
    /// their replicates carry the bias correction.
    pub fn binned(&self) -> bool {
        !self.pixels.exact
    }

    /// The binning bias correction added to each metric's replicates (0 where exact).
    pub fn shift(&self) -> [f64; 6] {
        self.shift
    }

    /// Heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.images.heap_bytes()
            + self.pixels.heap_bytes()
            + self.aupro.as_ref().map_or(0, |(a, _)| a.heap_bytes())
    }

    /// The six metrics of the resample that takes image `i` `weights[i]` times. A metric
    /// undefined on the full sample (`exact` `None`) stays undefined; binned pixel metrics are
    /// shifted by the bias correction and clamped to [0, 1].
    pub fn metrics(&self, weights: &[u32]) -> Result<Values, MetricsError> {
        if weights.len() != self.images() {
            return Err(MetricsError::Length {
                what: "bootstrap weights",
                got: weights.len(),
                expected: self.images(),
                why: "one multiplicity per image of the category".into(),
            });
        }
        Ok(self.corrected(self.raw_metrics(weights)))
    }

    fn corrected(&self, raw: Values) -> Values {
        std::array::from_fn(|m| {
            let v = self.exact[m].and(raw[m])?;
            Some(if self.shift[m] == 0.0 {
                v
            } else {
                (v + self.shift[m]).clamp(0.0, 1.0)
            })
        })
    }

    /// The metrics as this sample computes them, before the `exact` masking and the shift.
    fn raw_metrics(&self, weights: &[u32]) -> Values {
        let image = self.images.metrics(weights);
        let pixel = self.pixels.metrics(weights);
        let mut values = [None; 6];
        values[IMAGE_AUROC] = image.auroc;
        values[IMAGE_AP] = image.ap;
        values[IMAGE_F1MAX] = image.f1_max;
        values[PIXEL_AUROC] = pixel.auroc;
        values[PIXEL_AUPRO] = self
            .aupro
            .as_ref()
            .and_then(|(hists, limit)| hists.aupro(Some(weights), *limit));
        values[PIXEL_F1MAX] = pixel.f1_max;
        values
    }
}

fn validate(
    pixels: &[f32],
    masks: &[u8],
    image_scores: &[f32],
    image_labels: &[u8],
    h: usize,
    w: usize,
    aupro_limit: Option<f64>,
) -> Result<(), MetricsError> {
    let k = image_scores.len();
    let n = k * h * w;
    for (what, got, expected, why) in [
        (
            "image_labels",
            image_labels.len(),
            k,
            "one label per image score".to_string(),
        ),
        ("pixels", pixels.len(), n, format!("k*h*w = {k}*{h}*{w}")),
        ("masks", masks.len(), n, format!("k*h*w = {k}*{h}*{w}")),
    ] {
        if got != expected {
            return Err(MetricsError::Length {
                what,
                got,
                expected,
                why,
            });
        }
    }
    if h * w > u32::MAX as usize {
        return Err(MetricsError::Parameter {
            what: "h*w",
            value: (h * w) as f64,
            fix: "an image may have at most 2^32 - 1 pixels; split larger maps into tiles",
        });
    }
    if let Some(limit) = aupro_limit
        && !(limit.is_finite() && limit > 0.0)
    {
        return Err(MetricsError::Parameter {
            what: "aupro fpr_limit",
            value: limit,
            fix: "give a positive FPR limit (the reference uses 0.3)",
        });
    }
    for (what, values) in [("image_scores", image_scores), ("pixels", pixels)] {
        if let Some((index, value)) = first_non_finite(values, 0) {
            return Err(MetricsError::NonFinite { what, index, value });
        }
    }
    for (what, labels) in [("image_labels", image_labels), ("masks", masks)] {
        if let Some((index, value)) = first_bad_label(labels, 0) {
            return Err(MetricsError::Label { what, index, value });
        }
    }
    Ok(())
}

/// The images sorted by descending score and cut into groups of equal score.
#[derive(Debug, Clone)]
struct ImageGroups {
    /// Image indices, by descending score.
    order: Vec<u32>,
    /// Per group: the order key of its score and the end of its run in `order`.
    groups: Vec<(u32, u32)>,
    labels: Vec<u8>,
}

impl ImageGroups {
    fn new(scores: &[f32], labels: &[u8]) -> Self {
        let keys: Vec<u32> = scores.iter().map(|&s| order_key(s)).collect();
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(keys[i as usize]));
        let mut groups: Vec<(u32, u32)> = Vec::new();
        for (at, &i) in order.iter().enumerate() {
            let key = keys[i as usize];
            match groups.last_mut() {
                Some((k, end)) if *k == key => *end = at as u32 + 1,
                _ => groups.push((key, at as u32 + 1)),
            }
        }
        Self {
            order,
            groups,
            labels: labels.to_vec(),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.order.capacity() * 4 + self.groups.capacity() * 8 + self.labels.capacity()
    }

    fn metrics(&self, weights: &[u32]) -> super::PixelMetrics {
        let (mut positives, mut negatives) = (0u64, 0u64);
        for (&w, &l) in weights.iter().zip(&self.labels) {
            if l == 1 {
                positives += w as u64;
            } else {
                negatives += w as u64;
            }
        }
        let mut walk = GroupWalk::new(positives, negatives);
        let mut start = 0usize;
        for &(key, end) in &self.groups {
            let (mut tp, mut fp) = (0u64, 0u64);
            for &i in &self.order[start..end as usize] {
                let w = weights[i as usize] as u64;
                if self.labels[i as usize] == 1 {
                    tp += w;
                } else {
                    fp += w;
                }
            }
            walk.group(key, tp, fp);
            start = end as usize;
        }
        walk.finish()
    }
}

/// Counts over a contiguous range of bins: `counts[j]` is bin `lo + j` (the bins outside hold
/// none), so an image without anomalous pixels costs nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct BinRange {
    lo: u32,
    counts: Vec<u32>,
}

impl BinRange {
    fn from_dense(dense: &[u32]) -> Self {
        match dense.iter().position(|&c| c > 0) {
            None => Self::default(),
            Some(lo) => {
                let hi = dense.iter().rposition(|&c| c > 0).unwrap_or(lo) + 1;
                Self {
                    lo: lo as u32,
                    counts: dense[lo..hi].to_vec(),
                }
            }
        }
    }

    #[inline]
    fn add_to(&self, acc: &mut [u64], w: u64) {
        let lo = self.lo as usize;
        acc[lo..lo + self.counts.len()]
            .iter_mut()
            .zip(&self.counts)
            .for_each(|(a, &c)| *a += w * c as u64);
    }
}

/// The pixel scores of a category reduced to per-image histograms over score bins.
#[derive(Debug, Clone)]
pub(super) struct PixelBins {
    /// Lower edge (order key) of each bin, ascending; with `exact`, the distinct scores.
    pub(super) edges: Vec<u32>,
    /// One bin per distinct score: the walk over bins is the exact one.
    pub(super) exact: bool,
    /// Per image: normal and anomalous pixels per bin.
    pub(super) normal: Vec<BinRange>,
    pub(super) anomalous: Vec<BinRange>,
}

impl PixelBins {
    fn new(pixels: &[f32], masks: &[u8], k: usize, hw: usize, bins: usize) -> Self {
        if hw == 0 {
            return Self::without_pixels(k);
        }
        let (edges, exact) = match distinct_keys(pixels, hw, bins) {
            Some(keys) => (keys, true),
            None => (quantile_edges(pixels, masks, hw, bins), false),
        };
        let index = BinIndex::new(&edges);
        let (normal, anomalous) = image_bins(pixels, masks, hw, &index);
        Self {
            edges,
            exact,
            normal,
            anomalous,
        }
    }

    /// The bins of `k` images without pixels.
    pub(super) fn without_pixels(k: usize) -> Self {
        Self {
            edges: Vec::new(),
            exact: true,
            normal: vec![BinRange::default(); k],
            anomalous: vec![BinRange::default(); k],
        }
    }

    fn heap_bytes(&self) -> usize {
        let ranges = |r: &[BinRange]| -> usize {
            r.iter()
                .map(|b| b.counts.capacity() * 4 + std::mem::size_of::<BinRange>())
                .sum()
        };
        self.edges.capacity() * 4 + ranges(&self.normal) + ranges(&self.anomalous)
    }

    fn metrics(&self, weights: &[u32]) -> super::PixelMetrics {
        let nb = self.edges.len();
        let mut neg = vec![0u64; nb];
        let mut pos = vec![0u64; nb];
        for ((&w, n), a) in weights.iter().zip(&self.normal).zip(&self.anomalous) {
            if w > 0 {
                n.add_to(&mut neg, w as u64);
                a.add_to(&mut pos, w as u64);
            }
        }
        let mut walk = GroupWalk::new(pos.iter().sum(), neg.iter().sum());
        for b in (0..nb).rev() {
            walk.group(self.edges[b], pos[b], neg[b]);
        }
        walk.finish()
    }
}

/// Per image of `pixels` (`hw` each): its normal and anomalous pixels per bin of `index`.
pub(super) fn image_bins(
    pixels: &[f32],
    masks: &[u8],
    hw: usize,
    index: &BinIndex,
) -> (Vec<BinRange>, Vec<BinRange>) {
    let nb = index.edges.len();
    pixels
        .par_chunks(hw)
        .zip(masks.par_chunks(hw))
        .map(|(map, mask)| {
            let mut neg = vec![0u32; nb];
            let mut pos = vec![0u32; nb];
            for (&v, &m) in map.iter().zip(mask) {
                let b = index.bin(order_key(v));
                if m == 0 {
                    neg[b] += 1;
                } else {
                    pos[b] += 1;
                }
            }
            (BinRange::from_dense(&neg), BinRange::from_dense(&pos))
        })
        .unzip()
}

/// The sorted distinct order keys of the pixels if there are at most `cap` of them, else `None`
/// (found out early: each task stops at its `cap + 1`-th distinct score).
pub(super) fn distinct_keys(pixels: &[f32], hw: usize, cap: usize) -> Option<Vec<u32>> {
    let per_task: Vec<Vec<u32>> = pixels
        .par_chunks((hw * DISTINCT_CHUNK_IMAGES).max(1))
        .map(|chunk| distinct_in(chunk, cap))
        .collect::<Option<_>>()?;
    merge_distinct(Vec::new(), per_task, cap)
}

/// The sorted distinct order keys of `chunk`, `None` past `cap` of them.
pub(super) fn distinct_in(chunk: &[f32], cap: usize) -> Option<Vec<u32>> {
    let mut keys: Vec<u32> = Vec::new();
    let mut last = None;
    for &v in chunk {
        let key = order_key(v);
        if last == Some(key) {
            continue;
        }
        last = Some(key);
        if let Err(at) = keys.binary_search(&key) {
            if keys.len() == cap {
                return None;
            }
            keys.insert(at, key);
        }
    }
    Some(keys)
}

/// `known` (sorted distinct keys) with the keys of `more` added, `None` past `cap` of them.
pub(super) fn merge_distinct(known: Vec<u32>, more: Vec<Vec<u32>>, cap: usize) -> Option<Vec<u32>> {
    let mut all: Vec<u32> = known;
    all.extend(more.into_iter().flatten());
    all.sort_unstable();
    all.dedup();
    (all.len() <= cap).then_some(all)
}

/// Bin edges (ascending order keys, the first 0 so that every score has a bin), from an evenly
/// strided subsample of each class: half the bins at quantiles of the anomalous pixels' scores,
/// half at quantiles of the normal pixels' (all bins to one class when the other is absent).
///
/// The anomalous half is what bounds the binning error: with `p_b` anomalous pixels in bin `b`
/// (about 2P/bins), the AUROC moves by at most `max p_b / 2P` (pairs inside a bin count as ties)
/// and F1-max drops by at most `2 max p_b / P` (the exact optimum's bin has its upper edge as a
/// threshold: at most `p_b` fewer true positives, no more false positives), so about 1/bins and
/// 4/bins, whatever the normal pixels do. The normal half only makes the usual error smaller.
fn quantile_edges(pixels: &[f32], masks: &[u8], hw: usize, bins: usize) -> Vec<u32> {
    let anomalous: usize = masks.par_iter().map(|&v| v as usize).sum();
    let mut picker = QuantilePicker::new((pixels.len() - anomalous) as u64, anomalous as u64);
    picker.pick(pixels, masks, hw);
    picker.edges(bins)
}

/// The evenly strided subsample of each class's scores that [`quantile_edges`] places the bin
/// edges at, taken a run of whole images at a time, in image order.
#[derive(Debug, Clone)]
pub(super) struct QuantilePicker {
    /// Every `stride`-th pixel of its class is picked: (normal, anomalous).
    stride: (usize, usize),
    /// Pixels of each class seen so far.
    seen: (usize, usize),
    neg: Vec<u32>,
    pos: Vec<u32>,
}

impl QuantilePicker {
    /// A subsample of a category with `normal` normal and `anomalous` anomalous pixels.
    pub(super) fn new(normal: u64, anomalous: u64) -> Self {
        let stride = |n: u64| (n.div_ceil(QUANTILE_SAMPLE as u64) as usize).max(1);
        let (s_neg, s_pos) = (stride(normal), stride(anomalous));
        // Exactly what will be picked (at most 2^20 a class): no growth past it.
        let picked = |n: u64, s: usize| n.div_ceil(s as u64) as usize;
        Self {
            stride: (s_neg, s_pos),
            seen: (0, 0),
            neg: Vec::with_capacity(picked(normal, s_neg)),
            pos: Vec::with_capacity(picked(anomalous, s_pos)),
        }
    }

    /// Picks from the next images, `hw` pixels each (parallel over images).
    pub(super) fn pick(&mut self, pixels: &[f32], masks: &[u8], hw: usize) {
        let (s_neg, s_pos) = self.stride;
        let anomalous_per_image: Vec<usize> = masks
            .par_chunks(hw.max(1))
            .map(|m| m.iter().map(|&v| v as usize).sum())
            .collect();
        // Index of each image's first pixel of each class in the category's pixel order.
        let mut starts = Vec::with_capacity(anomalous_per_image.len());
        let (mut at_neg, mut at_pos) = self.seen;
        for (i, &a) in anomalous_per_image.iter().enumerate() {
            starts.push((i, at_neg, at_pos));
            at_neg += hw - a;
            at_pos += a;
        }
        self.seen = (at_neg, at_pos);
        let picked: Vec<(Vec<u32>, Vec<u32>)> = starts
            .into_par_iter()
            .map(|(i, mut j_neg, mut j_pos)| {
                let (mut neg, mut pos) = (Vec::new(), Vec::new());
                let range = i * hw..(i + 1) * hw;
                for (&v, &m) in pixels[range.clone()].iter().zip(&masks[range]) {
                    if m == 0 {
                        if j_neg.is_multiple_of(s_neg) {
                            neg.push(order_key(v));
                        }
                        j_neg += 1;
                    } else {
                        if j_pos.is_multiple_of(s_pos) {
                            pos.push(order_key(v));
                        }
                        j_pos += 1;
                    }
                }
                (neg, pos)
            })
            .collect();
        for (neg, pos) in picked {
            self.neg.extend(neg);
            self.pos.extend(pos);
        }
    }

    /// The bin edges at the quantiles of the subsample (see [`quantile_edges`]).
    pub(super) fn edges(self, bins: usize) -> Vec<u32> {
        let (mut neg, mut pos) = (self.neg, self.pos);
        quantiles_to_edges(&mut neg, &mut pos, bins)
    }
}

/// The edges of [`quantile_edges`] from the picked keys of each class.
fn quantiles_to_edges(neg: &mut [u32], pos: &mut [u32], bins: usize) -> Vec<u32> {
    neg.sort_unstable();
    pos.sort_unstable();
    let (nb_neg, nb_pos) = match (neg.is_empty(), pos.is_empty()) {
        (false, true) => (bins, 0),
        (true, false) => (0, bins),
        (true, true) => (0, 0),
        (false, false) => (bins / 2, bins - bins / 2),
    };
    let mut edges = vec![0u32];
    // Normal pixels: the j/nb quantiles for j >= 1 (edge 0 covers the lowest bin).
    edges.extend((1..nb_neg).map(|j| neg[j * neg.len() / nb_neg]));
    // Anomalous pixels: from j = 0, their minimum, so that "every anomalous pixel found" is a
    // threshold.
    edges.extend((0..nb_pos).map(|j| pos[j * pos.len() / nb_pos]));
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// Bin lookup for an order key: the bin is the last edge at or below the key. A table over the
/// high 16 bits of the key narrows the search to the edges sharing them (usually none or one).
pub(super) struct BinIndex {
    edges: Vec<u32>,
    /// `start[h]`: number of edges whose high 16 bits are below `h` (65,537 entries).
    start: Vec<u32>,
}

impl BinIndex {
    /// `edges` ascending, the first at or below every key to look up.
    pub(super) fn new(edges: &[u32]) -> Self {
        let start = (0..=1usize << 16)
            .map(|h| edges.partition_point(|&e| ((e >> 16) as usize) < h) as u32)
            .collect();
        Self {
            edges: edges.to_vec(),
            start,
        }
    }

    #[inline]
    fn bin(&self, key: u32) -> usize {
        let h = (key >> 16) as usize;
        let (a, b) = (self.start[h] as usize, self.start[h + 1] as usize);
        a + self.edges[a..b].partition_point(|&e| e <= key) - 1
    }
}

/// The replicate values of one category: `spec.replicates` rows, row `r` from
/// [`resample`]`(k, spec.seed, stream, r)`. Parallel over replicates; the values do not depend on
/// the thread count. Use one `stream` per category ([`stream_of`] its name).
pub fn replicates(
    sample: &CategorySample,
    spec: &BootstrapSpec,
    stream: u64,
) -> Result<Vec<Values>, MetricsError> {
    spec.validate()?;
    let k = sample.images();
    Ok((0..spec.replicates as u64)
        .into_par_iter()
        .map(|r| sample.corrected(sample.raw_metrics(&resample(k, spec.seed, stream, r))))
        .collect())
}

/// Per replicate, the mean over categories of the defined values (as `nanmean` for the mean row):
/// replicate `r` of the mean is made of replicate `r` of every category. Every category must have
/// the same number of replicates.
pub fn mean_replicates(per_category: &[Vec<Values>]) -> Result<Vec<Values>, MetricsError> {
    let Some(first) = per_category.first() else {
        return Ok(Vec::new());
    };
    let r = first.len();
    if let Some(other) = per_category.iter().find(|c| c.len() != r) {
        return Err(MetricsError::Length {
            what: "category replicates",
            got: other.len(),
            expected: r,
            why: "every category of a mean draws the same number of replicates".into(),
        });
    }
    Ok((0..r)
        .map(|i| {
            std::array::from_fn(|m| {
                let column: Vec<Option<f64>> = per_category.iter().map(|c| c[i][m]).collect();
                super::mean_defined(&column)
            })
        })
        .collect())
}

/// Two-sided percentile interval at `level` (e.g. 0.95: the 2.5 % and 97.5 % quantiles, linear
/// interpolation as numpy's default) of each metric's defined replicate values. A metric defined
/// in fewer than half of the replicates has no interval (`None`): its resamples are mostly ones
/// where it does not exist (e.g. I-AUROC of a category with very few normal images).
pub fn intervals(reps: &[Values], level: f64) -> Result<Intervals, MetricsError> {
    check_level(level)?;
    let alpha = (1.0 - level) / 2.0;
    Ok(std::array::from_fn(|m| {
        let mut defined: Vec<f64> = reps.iter().filter_map(|v| v[m]).collect();
        if defined.is_empty() || 2 * defined.len() < reps.len() {
            return None;
        }
        defined.sort_by(f64::total_cmp);
        Some((quantile(&defined, alpha), quantile(&defined, 1.0 - alpha)))
    }))
}

/// numpy's `quantile(.., method="linear")` of sorted, non-empty values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::super::{aupro, pixel_metrics};
    use super::*;

    /// A category of `k` maps `h x w`: every other image anomalous, with a rectangular defect
    /// scored higher; scores quantized to `levels` values (many ties, exact bins) or continuous.
    struct Synth {
        pixels: Vec<f32>,
        masks: Vec<u8>,
        scores: Vec<f32>,
        labels: Vec<u8>,
        k: usize,
        h: usize,
        w: usize,
    }

    fn synth(k: usize, h: usize, w: usize, seed: u64, levels: Option<u32>) -> Synth {
        let mut rng = SplitMix64(seed);
        let (mut pixels, mut masks, mut scores, mut labels) = (vec![], vec![], vec![], vec![]);
        for i in 0..k {
            let anomalous = i % 2 == 1;
            let (y0, x0) = (rng.below(h / 2), rng.below(w / 2));
            let (dy, dx) = (1 + rng.below(h / 3), 1 + rng.below(w / 3));
            let mut max = f32::NEG_INFINITY;
            for y in 0..h {
                for x in 0..w {
                    let m = anomalous && (y0..y0 + dy).contains(&y) && (x0..x0 + dx).contains(&x);
                    let raw = rng.normal() as f32 + if m { 1.5 } else { 0.0 };
                    // Quantized: negative values and several 16-bit key buckets, many ties.
                    let v = match levels {
                        Some(l) => {
                            let half = l as i32 / 2;
                            ((raw * 20.0).round() as i32).clamp(-half, half - 1) as f32 * 0.37
                        }
                        None => raw,
                    };
                    max = max.max(v);
                    pixels.push(v);
                    masks.push(m as u8);
                }
            }
            // Image scores with ties: rounded maxima.
            scores.push((max * 4.0).round() / 4.0);
            labels.push(anomalous as u8);
        }
        Synth {
            pixels,
            masks,
            scores,
            labels,
            k,
            h,
            w,
        }
    }

    impl Synth {
        fn exact(&self, limit: Option<f64>) -> Values {
            let image = pixel_metrics(&self.scores, &self.labels).unwrap();
            let pixel = pixel_metrics(&self.pixels, &self.masks).unwrap();
            let pro = limit
                .and_then(|l| aupro(&self.pixels, &self.masks, self.k, self.h, self.w, l).unwrap());
            [
                image.auroc,
                image.ap,
                image.f1_max,
                pixel.auroc,
                pro,
                pixel.f1_max,
            ]
        }

        fn sample(&self, limit: Option<f64>, bins: usize) -> CategorySample {
            CategorySample::new(
                &self.pixels,
                &self.masks,
                &self.scores,
                &self.labels,
                self.h,
                self.w,
                limit,
                bins,
                self.exact(limit),
            )
            .unwrap()
        }

        /// The category with image `i` repeated `weights[i]` times.
        fn expanded(&self, weights: &[u32]) -> Synth {
            let hw = self.h * self.w;
            let mut out = Synth {
                pixels: vec![],
                masks: vec![],
                scores: vec![],
                labels: vec![],
                k: 0,
                h: self.h,
                w: self.w,
            };
            for (i, &wi) in weights.iter().enumerate() {
                for _ in 0..wi {
                    out.pixels
                        .extend_from_slice(&self.pixels[i * hw..(i + 1) * hw]);
                    out.masks
                        .extend_from_slice(&self.masks[i * hw..(i + 1) * hw]);
                    out.scores.push(self.scores[i]);
                    out.labels.push(self.labels[i]);
                    out.k += 1;
                }
            }
            out
        }
    }

    fn bits(v: &Values) -> [Option<u64>; 6] {
        v.map(|x| x.map(f64::to_bits))
    }

    #[test]
    fn all_ones_reproduce_the_exact_metrics_bit_for_bit() {
        let s = synth(24, 12, 10, 3, Some(300));
        let sample = s.sample(Some(0.3), 1024);
        assert!(!sample.binned(), "300 levels fit in 1024 bins");
        assert_eq!(sample.shift(), [0.0; 6]);
        let exact = s.exact(Some(0.3));
        assert!(exact.iter().all(Option::is_some), "{exact:?}");
        assert_eq!(bits(&sample.metrics(&[1; 24]).unwrap()), bits(&exact));
    }

    #[test]
    fn weights_equal_repeated_images() {
        let s = synth(30, 9, 11, 5, Some(150));
        let sample = s.sample(Some(0.3), 1024);
        for r in 0..8 {
            let mut weights = resample(s.k, 11, 22, r);
            // Keep the images holding the extreme pixels, so that the repeated category has the
            // thresholds the bootstrap holds fixed.
            let hw = s.h * s.w;
            let extreme = |pick: fn(f32, f32) -> bool| {
                let mut at = 0;
                for (j, &v) in s.pixels.iter().enumerate() {
                    if pick(v, s.pixels[at]) {
                        at = j;
                    }
                }
                at / hw
            };
            for i in [extreme(|a, b| a < b), extreme(|a, b| a > b)] {
                weights[i] = weights[i].max(1);
            }
            let got = sample.metrics(&weights).unwrap();
            let want = s.expanded(&weights).exact(Some(0.3));
            for m in [IMAGE_AUROC, IMAGE_AP, IMAGE_F1MAX, PIXEL_AUROC, PIXEL_F1MAX] {
                assert_eq!(
                    got[m].map(f64::to_bits),
                    want[m].map(f64::to_bits),
                    "{} r={r}",
                    METRIC_NAMES[m]
                );
            }
            // AUPRO sums `w * histogram` where the repeated category sums the histogram w times.
            let (g, w) = (got[PIXEL_AUPRO].unwrap(), want[PIXEL_AUPRO].unwrap());
            assert!((g - w).abs() <= 1e-12, "r={r}: {g} vs {w}");
        }
    }

    #[test]
    fn binned_pixel_metrics_stay_within_the_tie_bound() {
        // Continuous scores: 73,728 distinct values in 1,024 bins. With `p_b` anomalous pixels
        // in bin b, the AUROC moves by at most max p_b / 2P and F1-max drops by at most
        // 2 max p_b / P (proof at `quantile_edges`); half the bins at quantiles of the anomalous
        // pixels make max p_b / P about 2/bins.
        let s = synth(72, 32, 32, 9, None);
        let sample = s.sample(Some(0.3), 1024);
        assert!(sample.binned());
        let nb = sample.pixels.edges.len();
        assert!(nb > 1000 && nb <= 1024, "{nb} bins");
        let mut per_bin = vec![0u64; nb];
        for r in &sample.pixels.anomalous {
            r.add_to(&mut per_bin, 1);
        }
        let p = per_bin.iter().sum::<u64>() as f64;
        let share = *per_bin.iter().max().unwrap() as f64 / p;
        assert!(share <= 2.0 / 1024.0 + 1.0 / p, "{share}");
        let raw = sample.raw_metrics(&[1; 72]);
        let exact = s.exact(Some(0.3));
        let auroc_err = (raw[PIXEL_AUROC].unwrap() - exact[PIXEL_AUROC].unwrap()).abs();
        // Measured: 1.2e-4.
        assert!(auroc_err <= share / 2.0, "{auroc_err} {share}");
        // F1 thresholds only at bin edges, a subset of the exact thresholds: never above.
        let f1_gap = exact[PIXEL_F1MAX].unwrap() - raw[PIXEL_F1MAX].unwrap();
        assert!(f1_gap >= 0.0 && f1_gap <= 2.0 * share, "{f1_gap} {share}");
        // The bias correction puts the full sample back on the exact value.
        let corrected = sample.metrics(&[1; 72]).unwrap();
        for m in 0..6 {
            let (c, e) = (corrected[m].unwrap(), exact[m].unwrap());
            assert!((c - e).abs() <= 1e-15, "{}: {c} vs {e}", METRIC_NAMES[m]);
        }
    }

    #[test]
    fn bin_index_finds_the_last_edge_at_or_below() {
        let mut rng = SplitMix64(4);
        let mut edges: Vec<u32> = (0..300).map(|_| rng.next_u64() as u32).collect();
        // Several edges sharing high bits, and edges at bucket boundaries.
        edges.extend([
            0,
            0x0001_0000,
            0x0001_0001,
            0x0001_ffff,
            0x8000_0000,
            u32::MAX,
        ]);
        edges.sort_unstable();
        edges.dedup();
        let index = BinIndex::new(&edges);
        let probes = edges
            .iter()
            .flat_map(|&e| [e, e.saturating_sub(1), e.saturating_add(1)])
            .chain((0..2000).map(|_| rng.next_u64() as u32));
        for key in probes {
            assert_eq!(
                index.bin(key),
                edges.partition_point(|&e| e <= key) - 1,
                "{key:#x}"
            );
        }
    }

    #[test]
    fn resamples_are_seeded_and_draw_k_images() {
        let a = resample(50, 1, 2, 3);
        assert_eq!(a.iter().sum::<u32>(), 50);
        assert_eq!(a, resample(50, 1, 2, 3));
        for other in [
            resample(50, 2, 2, 3),
            resample(50, 1, 3, 3),
            resample(50, 1, 2, 4),
        ] {
            assert_ne!(a, other);
        }
        assert_eq!(stream_of("bottle"), stream_of("bottle"));
        assert_ne!(stream_of("bottle"), stream_of("cable"));
    }

    #[test]
    fn replicates_do_not_depend_on_the_thread_count() {
        let s = synth(20, 16, 16, 7, None);
        let sample = s.sample(Some(0.3), 64);
        let spec = BootstrapSpec {
            replicates: 40,
            seed: 5,
            level: 0.95,
            bins: 64,
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| replicates(&sample, &spec, stream_of("x")).unwrap())
        };
        let one: Vec<_> = run(1).iter().map(bits).collect();
        let three: Vec<_> = run(3).iter().map(bits).collect();
        assert_eq!(one.len(), 40);
        assert_eq!(one, three);
        // Other streams draw other resamples.
        let other = replicates(&sample, &spec, stream_of("y")).unwrap();
        assert_ne!(one, other.iter().map(bits).collect::<Vec<_>>());
        // Replicates vary, and stay metrics.
        let aurocs: Vec<f64> = run(2).iter().filter_map(|v| v[PIXEL_AUROC]).collect();
        assert_eq!(aurocs.len(), 40);
        assert!(aurocs.iter().all(|a| (0.0..=1.0).contains(a)));
        assert!(aurocs.iter().any(|&a| a != aurocs[0]));
    }

    #[test]
    fn undefined_on_the_full_sample_stays_undefined() {
        // Only anomalous images: image AUROC undefined; AUPRO not computed.
        let mut s = synth(6, 8, 8, 2, Some(40));
        s.labels = vec![1; 6];
        let sample = s.sample(None, 1024);
        let spec = BootstrapSpec {
            replicates: 20,
            ..BootstrapSpec::default()
        };
        let reps = replicates(&sample, &spec, 0).unwrap();
        assert!(reps.iter().all(|v| v[IMAGE_AUROC].is_none()));
        assert!(reps.iter().all(|v| v[PIXEL_AUPRO].is_none()));
        assert!(reps.iter().all(|v| v[IMAGE_AP].is_some()));
        let iv = intervals(&reps, 0.95).unwrap();
        assert_eq!((iv[IMAGE_AUROC], iv[PIXEL_AUPRO]), (None, None));
        assert!(iv[PIXEL_AUROC].is_some());
    }

    #[test]
    fn intervals_are_numpy_percentiles_of_the_defined_replicates() {
        let reps: Vec<Values> = (0..=100)
            .map(|i| {
                let v = i as f64;
                [
                    Some(v),
                    (i % 2 == 0).then_some(v),
                    (i < 50).then_some(v),
                    None,
                    None,
                    None,
                ]
            })
            .collect();
        // Level 0.5: quantiles 0.25 and 0.75, exact in binary.
        let iv = intervals(&reps, 0.5).unwrap();
        assert_eq!(iv[0], Some((25.0, 75.0)));
        // 51 of 101 defined (even values 0..=100): np.quantile(range(0, 101, 2), [.25, .75]).
        assert_eq!(iv[1], Some((25.0, 75.0)));
        // 50 of 101 defined: fewer than half, no interval.
        assert_eq!(iv[2], None);
        assert_eq!(iv[3], None);
        // Level 0.95: np.quantile(range(101), [.025, .975]) = [2.5, 97.5], up to the rounding of
        // (1 - 0.95) / 2 in f64.
        let (lo, hi) = intervals(&reps, 0.95).unwrap()[0].unwrap();
        assert!(
            (lo - 2.5).abs() < 1e-12 && (hi - 97.5).abs() < 1e-12,
            "{lo} {hi}"
        );
        let small: Vec<Values> = [1.0, 2.0, 3.0, 4.0]
            .map(|v| [Some(v), None, None, None, None, None])
            .to_vec();
        assert_eq!(intervals(&small, 0.5).unwrap()[0], Some((1.75, 3.25)));
        assert_eq!(intervals(&[], 0.95).unwrap(), [None; 6]);
        assert!(intervals(&small, 1.0).is_err());
        assert!(intervals(&small, f64::NAN).is_err());
    }

    #[test]
    fn mean_replicates_skip_undefined_categories() {
        let a = vec![[Some(0.5), None, Some(1.0), None, None, None]; 3];
        let b = vec![[Some(1.0), Some(0.25), None, None, None, None]; 3];
        let mean = mean_replicates(&[a.clone(), b]).unwrap();
        assert_eq!(mean.len(), 3);
        assert_eq!(
            mean[0],
            [Some(0.75), Some(0.25), Some(1.0), None, None, None]
        );
        assert_eq!(mean_replicates(&[]).unwrap(), Vec::<Values>::new());
        assert!(matches!(
            mean_replicates(&[a, vec![[None; 6]; 2]]),
            Err(MetricsError::Length { got: 2, .. })
        ));
    }

    #[test]
    fn bad_input_and_inconsistent_exact_values_are_errors() {
        let s = synth(4, 4, 4, 1, Some(30));
        let exact = s.exact(Some(0.3));
        let new = |pixels: &[f32], masks: &[u8], limit, bins, exact| {
            CategorySample::new(
                pixels, masks, &s.scores, &s.labels, 4, 4, limit, bins, exact,
            )
        };
        assert!(matches!(
            new(&s.pixels[1..], &s.masks, Some(0.3), 64, exact),
            Err(MetricsError::Length { what: "pixels", .. })
        ));
        let mut nan = s.pixels.clone();
        nan[7] = f32::NAN;
        assert!(matches!(
            new(&nan, &s.masks, Some(0.3), 64, exact),
            Err(MetricsError::NonFinite { index: 7, .. })
        ));
        let mut masks = s.masks.clone();
        masks[3] = 255;
        assert!(matches!(
            new(&s.pixels, &masks, Some(0.3), 64, exact),
            Err(MetricsError::Label { index: 3, .. })
        ));
        assert!(new(&s.pixels, &s.masks, Some(0.3), 1, exact).is_err());
        assert!(new(&s.pixels, &s.masks, Some(-1.0), 64, exact).is_err());
        // Exact values of other maps (here: a shifted I-AUROC, or AUPRO without its limit).
        let mut other = exact;
        other[IMAGE_AUROC] = other[IMAGE_AUROC].map(|v| v - 0.01);
        assert!(matches!(
            new(&s.pixels, &s.masks, Some(0.3), 64, other),
            Err(MetricsError::Inconsistent {
                metric: "image_auroc",
                ..
            })
        ));
        let mut with_aupro = exact;
        with_aupro[PIXEL_AUPRO] = Some(0.5);
        assert!(matches!(
            new(&s.pixels, &s.masks, None, 64, with_aupro),
            Err(MetricsError::Inconsistent {
                metric: "pixel_aupro",
                ..
            })
        ));
        let sample = new(&s.pixels, &s.masks, Some(0.3), 64, exact).unwrap();
        assert!(sample.metrics(&[1, 1]).is_err());
        let bad_spec = BootstrapSpec {
            level: 0.0,
            ..BootstrapSpec::default()
        };
        assert!(replicates(&sample, &bad_spec, 0).is_err());
    }

    #[test]
    fn interval_covers_the_true_image_auroc() {
        // Population: normal images score N(0,1), anomalous N(1,1); true AUROC = Phi(1/sqrt 2).
        const TRUE_AUROC: f64 = 0.760_249_938_906_524_4;
        let spec = BootstrapSpec {
            replicates: 1000,
            seed: 17,
            level: 0.95,
            bins: 1024,
        };
        let samples = 100;
        let mut covered = 0;
        for t in 0..samples {
            let mut rng = SplitMix64(1000 + t);
            let labels: Vec<u8> = (0..40).map(|i| (i % 2) as u8).collect();
            let scores: Vec<f32> = labels
                .iter()
                .map(|&l| (rng.normal() + l as f64) as f32)
                .collect();
            // One-pixel maps: the pixel metrics are the image metrics here.
            let m = pixel_metrics(&scores, &labels).unwrap();
            let exact = [m.auroc, m.ap, m.f1_max, m.auroc, None, m.f1_max];
            let sample =
                CategorySample::new(&scores, &labels, &scores, &labels, 1, 1, None, 1024, exact)
                    .unwrap();
            let reps = replicates(&sample, &spec, t).unwrap();
            let (lo, hi) = intervals(&reps, spec.level).unwrap()[IMAGE_AUROC].unwrap();
            assert!(lo <= m.auroc.unwrap() && m.auroc.unwrap() <= hi);
            covered += usize::from(lo <= TRUE_AUROC && TRUE_AUROC <= hi);
        }
        assert!(
            (85..=99).contains(&covered),
            "covered {covered} of {samples}"
        );
    }
}
