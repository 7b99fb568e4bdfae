//! AUPRO exactly as AnomalyCLIP / APRIL-GAN's `cal_pro_score` (after cflow-ad):
//!
//! - thresholds `np.arange(min, max, (max - min) / 200)` over all maps, with numpy's float32/f64
//!   arithmetic reproduced (see [`thresholds`]); a pixel is positive at `th` when `map > th`;
//! - PRO(th) = mean over every 8-connected ground-truth region of every image (skimage
//!   `measure.label`, full connectivity) of the region's covered fraction;
//! - FPR(th) = false positives / negative pixels over all images;
//! - keep thresholds with FPR < `fpr_limit`, min-max rescale those FPRs to [0, 1], trapezoid
//!   (`sklearn.metrics.auc`).
//!
//! The reference loops 200 times over all pixels. We give each pixel the number of thresholds it
//! exceeds (binary search, thresholds ascend), add `1 / region area` (or 1 for a negative pixel)
//! into that slot of its image's histogram, sum the images' histograms in image order (a fixed
//! order: the value does not depend on the thread count) and read all 200 PRO/FPR values off
//! suffix sums: one pass. The per-image histograms are kept by the bootstrap
//! (`bootstrap.rs`), which sums them with resampling weights. [`aupro_streamed`] computes the
//! same from a [`MapSource`] in two passes (min and max, then the histograms), for categories
//! larger than memory.

use rayon::prelude::*;

use super::source::{Chunk, MapSource, Passes, run_passes};
use super::{MetricsError, first_bad_label, first_non_finite};

/// Number of threshold steps in the reference (`max_step=200`).
pub const AUPRO_STEPS: usize = 200;
/// The reference's FPR limit (`expect_fpr=0.3`).
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// AUPRO of anomaly `maps` f32 [k, h, w] against 0/1 `masks` u8 [k, h, w] (row-major).
/// `None` where the reference yields NaN or raises: all maps equal, no anomalous or no normal
/// pixel, fewer than two thresholds under the FPR limit, or all kept FPRs equal.
pub fn aupro(
    maps: &[f32],
    masks: &[u8],
    k: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<Option<f64>, MetricsError> {
    let n = k * h * w;
    for (what, got) in [("maps", maps.len()), ("masks", masks.len())] {
        if got != n {
            return Err(MetricsError::Length {
                what,
                got,
                expected: n,
                why: format!("k*h*w = {k}*{h}*{w}"),
            });
        }
    }
    check_parameters(h, w, fpr_limit)?;
    if let Some((index, value)) = first_non_finite(maps, 0) {
        return Err(MetricsError::NonFinite {
            what: "maps",
            index,
            value,
        });
    }
    if let Some((index, value)) = first_bad_label(masks, 0) {
        return Err(MetricsError::Label {
            what: "masks",
            index,
            value,
        });
    }
    if n == 0 {
        return Ok(None);
    }
    let Some(ths) = thresholds(maps, AUPRO_STEPS) else {
        return Ok(None);
    };
    Ok(ImageHistograms::new(maps, masks, h, w, &ths).aupro(None, fpr_limit))
}

/// Per image, what AUPRO needs of it at fixed thresholds: over the slots "number of thresholds
/// exceeded" (0..=len), the summed region weight `1 / area` of its anomalous pixels and the count
/// of its normal pixels, and its number of regions.
///
/// [`aupro`] goes through this and sums the images with weight 1; the bootstrap keeps it and
/// sums them with resampling multiplicities. One code path, so that with all weights 1 the
/// bootstrap's AUPRO is bit-identical to `aupro`.
#[derive(Debug, Clone)]
pub(super) struct ImageHistograms {
    /// Threshold count + 1.
    slots: usize,
    /// `[k, slots]` region weight per image and slot.
    pro: Vec<f64>,
    /// `[k, slots]` normal pixels per image and slot (an image has fewer than 2^32 pixels).
    neg: Vec<u32>,
    /// Regions per image.
    regions: Vec<u32>,
}

impl ImageHistograms {
    /// The histograms of every `h x w` map of `maps` (validated by the caller) at thresholds
    /// `ths` (ascending; see [`thresholds`]). Parallel over images, deterministic.
    pub(super) fn new(maps: &[f32], masks: &[u8], h: usize, w: usize, ths: &[f64]) -> Self {
        let mut out = Self::empty(ths);
        out.extend(maps, masks, h, w, ths);
        out
    }

    /// No image yet, at thresholds `ths`.
    pub(super) fn empty(ths: &[f64]) -> Self {
        Self {
            slots: ths.len() + 1,
            pro: Vec::new(),
            neg: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// Appends the histograms of the `h x w` maps of `maps` (the images after those already
    /// held), at the thresholds this was made with: what [`ImageHistograms::new`] computes,
    /// a chunk of images at a time.
    pub(super) fn extend(&mut self, maps: &[f32], masks: &[u8], h: usize, w: usize, ths: &[f64]) {
        let slots = self.slots;
        let per_image: Vec<(Vec<f64>, Vec<u32>, u32)> = maps
            .par_chunks(h * w)
            .zip(masks.par_chunks(h * w))
            .map(|(map, mask)| {
                let mut pro = vec![0f64; slots];
                let mut neg = vec![0u32; slots];
                let (labels, areas) = label_regions(mask, h, w);
                for ((&v, &m), &r) in map.iter().zip(mask).zip(&labels) {
                    let c = exceeded(ths, v as f64);
                    if m == 0 {
                        neg[c] += 1;
                    } else {
                        pro[c] += 1.0 / areas[r as usize - 1] as f64;
                    }
                }
                (pro, neg, areas.len() as u32)
            })
            .collect();
        for (pro, neg, regions) in per_image {
            self.pro.extend_from_slice(&pro);
            self.neg.extend_from_slice(&neg);
            self.regions.push(regions);
        }
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.pro.capacity() * 8 + self.neg.capacity() * 4 + self.regions.capacity() * 4
    }

    /// AUPRO of the images taken `weights[i]` times each (`None`: once each), summed in image
    /// order. `None` where the reference yields NaN or raises (see [`aupro`]).
    pub(super) fn aupro(&self, weights: Option<&[u32]>, fpr_limit: f64) -> Option<f64> {
        let slots = self.slots;
        let mut pro_hist = vec![0f64; slots];
        let mut neg_hist = vec![0u64; slots];
        let mut regions = 0u64;
        for (i, ((pro, neg), &r)) in self
            .pro
            .chunks_exact(slots)
            .zip(self.neg.chunks_exact(slots))
            .zip(&self.regions)
            .enumerate()
        {
            let wi = weights.map_or(1, |w| w[i]);
            if wi == 0 {
                continue;
            }
            let wf = wi as f64;
            pro_hist
                .iter_mut()
                .zip(pro)
                .for_each(|(a, &b)| *a += wf * b);
            let wu = wi as u64;
            neg_hist
                .iter_mut()
                .zip(neg)
                .for_each(|(a, &b)| *a += wu * b as u64);
            regions += wu * r as u64;
        }
        area_under_pro(&pro_hist, &neg_hist, regions, fpr_limit)
    }
}

/// The FPR-limited, rescaled area under the PRO curve from the summed histograms (slot `c` holds
/// what exceeds exactly `c` thresholds). `None` as in [`aupro`].
fn area_under_pro(pro_hist: &[f64], neg_hist: &[u64], regions: u64, fpr_limit: f64) -> Option<f64> {
    let negatives: u64 = neg_hist.iter().sum();
    if regions == 0 || negatives == 0 {
        return None;
    }
    let n_ths = pro_hist.len() - 1;
    // Threshold j counts the pixels that exceed more than j thresholds: suffix sums from j + 1.
    let (mut pros, mut fprs) = (vec![0f64; n_ths], vec![0f64; n_ths]);
    let (mut pro_acc, mut fp_acc) = (0f64, 0u64);
    for j in (0..n_ths).rev() {
        pro_acc += pro_hist[j + 1];
        fp_acc += neg_hist[j + 1];
        pros[j] = pro_acc / regions as f64;
        fprs[j] = fp_acc as f64 / negatives as f64;
    }
    let kept: Vec<(f64, f64)> = fprs
        .iter()
        .zip(&pros)
        .filter(|(f, _)| **f < fpr_limit)
        .map(|(&f, &p)| (f, p))
        .collect();
    if kept.len() < 2 {
        return None; // sklearn.metrics.auc raises on fewer than two points
    }
    let lo = kept.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = kept.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        return None; // 0/0 rescale: NaN x, which sklearn.metrics.auc rejects
    }
    // FPR falls as the threshold rises, so x decreases and auc() flips the sign of the trapezoid.
    let x: Vec<f64> = kept.iter().map(|p| (p.0 - lo) / (hi - lo)).collect();
    let area: f64 = kept
        .windows(2)
        .zip(x.windows(2))
        .map(|(p, x)| (x[1] - x[0]) * (p[0].1 + p[1].1) / 2.0)
        .sum();
    Some(-area)
}

/// `np.arange(min_th, max_th, delta)` with `min_th, max_th` the float32 min/max of the maps and
/// `delta = (max_th - min_th) / steps` in float32. numpy 2 computes the length in float32
/// (`ceil((max - min) / delta)`), returns float64 values `min + i * (f32(min + delta) - min)`, and
/// compares the float32 maps with them in float64. `None` where numpy raises (delta == 0).
/// Verified against numpy on 20,000 random ranges by `scripts/gen_metrics.py --check-arange`.
pub(crate) fn thresholds(maps: &[f32], steps: usize) -> Option<Vec<f64>> {
    let (lo, hi) = min_max(maps, (f32::INFINITY, f32::NEG_INFINITY));
    thresholds_between(lo, hi, steps)
}

/// The float32 min and max of `maps` and of the running `(min, max)` `from`: folded in order, so
/// that maps read a chunk at a time give the values of the whole.
fn min_max(maps: &[f32], from: (f32, f32)) -> (f32, f32) {
    maps.iter().fold(from, |(a, b), &v| (a.min(v), b.max(v)))
}

/// [`thresholds`] of maps whose float32 min and max are `lo` and `hi`.
fn thresholds_between(lo: f32, hi: f32, steps: usize) -> Option<Vec<f64>> {
    let delta = (hi - lo) / steps as f32;
    // Written so that NaN (non-finite scores) gives None too.
    if delta.is_nan() || delta <= 0.0 {
        return None;
    }
    let len = ((hi - lo) / delta).ceil() as usize;
    let step = (lo + delta) as f64 - lo as f64;
    Some((0..len).map(|i| lo as f64 + i as f64 * step).collect())
}

/// Number of thresholds strictly below `v` (`ths.partition_point(|t| t < v)`): the thresholds are
/// equally spaced, so guess the index arithmetically and correct it by exact comparisons.
fn exceeded(ths: &[f64], v: f64) -> usize {
    let (lo, len) = (ths[0], ths.len());
    let step = if len > 1 { ths[1] - ths[0] } else { 1.0 };
    let mut c = ((v - lo) / step).ceil().clamp(0.0, len as f64) as usize;
    while c > 0 && ths[c - 1] >= v {
        c -= 1;
    }
    while c < len && ths[c] < v {
        c += 1;
    }
    c
}

/// 8-connected labelling of the nonzero pixels of one `h x w` mask (skimage `measure.label` with
/// its default full connectivity). Returns per-pixel labels (0 = background, regions from 1) and
/// each region's area.
pub(crate) fn label_regions(mask: &[u8], h: usize, w: usize) -> (Vec<u32>, Vec<u64>) {
    let mut labels = vec![0u32; h * w];
    let mut areas = Vec::new();
    let mut stack = Vec::new();
    for start in 0..h * w {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        let id = areas.len() as u32 + 1;
        labels[start] = id;
        stack.push(start);
        let mut area = 0u64;
        while let Some(p) = stack.pop() {
            area += 1;
            let (y, x) = (p / w, p % w);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let q = ny * w + nx;
                    if mask[q] != 0 && labels[q] == 0 {
                        labels[q] = id;
                        stack.push(q);
                    }
                }
            }
        }
        areas.push(area);
    }
    (labels, areas)
}

/// AUPRO of the maps and masks of `source`, read in two passes (min and max, then the per-image
/// histograms), holding the histograms (`images x 201 x 12` bytes) and one chunk's region labels:
/// bit-identical to [`aupro`] on the same maps. `None` where `aupro` gives `None`.
pub fn aupro_streamed<S: MapSource>(
    source: &mut S,
    fpr_limit: f64,
) -> Result<Option<f64>, S::Error> {
    let (k, h, w) = source.shape();
    check_parameters(h, w, fpr_limit)?;
    if k * h * w == 0 {
        return Ok(None);
    }
    let mut passes = AuproPasses::new(h, w, fpr_limit, true);
    run_passes(source, &mut [&mut passes])?;
    Ok(passes.finish().0)
}

/// The parameter checks of [`aupro`].
pub(super) fn check_parameters(h: usize, w: usize, fpr_limit: f64) -> Result<(), MetricsError> {
    if !(fpr_limit.is_finite() && fpr_limit > 0.0) {
        return Err(MetricsError::Parameter {
            what: "fpr_limit",
            value: fpr_limit,
            fix: "give a positive FPR limit (the reference uses 0.3)",
        });
    }
    if h * w > u32::MAX as usize {
        return Err(MetricsError::Parameter {
            what: "h*w",
            value: (h * w) as f64,
            fix: "an image may have at most 2^32 - 1 pixels; split larger maps into tiles",
        });
    }
    Ok(())
}

/// AUPRO as one metric of shared passes: pass 1 folds the min and max (and, with `validate`,
/// checks the maps and masks as [`aupro`] does), pass 2 builds the per-image histograms at the
/// thresholds between them.
pub(super) struct AuproPasses {
    h: usize,
    w: usize,
    fpr_limit: f64,
    validate: bool,
    stage: AuproStage,
}

enum AuproStage {
    Range {
        lo: f32,
        hi: f32,
    },
    Histograms {
        ths: Vec<f64>,
        hists: ImageHistograms,
    },
    /// The histograms, `None` without thresholds (all maps equal).
    Done(Option<ImageHistograms>),
}

impl AuproPasses {
    pub(super) fn new(h: usize, w: usize, fpr_limit: f64, validate: bool) -> Self {
        Self {
            h,
            w,
            fpr_limit,
            validate,
            stage: AuproStage::Range {
                lo: f32::INFINITY,
                hi: f32::NEG_INFINITY,
            },
        }
    }

    /// AUPRO and the per-image histograms it was computed from (kept by the bootstrap).
    pub(super) fn finish(self) -> (Option<f64>, Option<ImageHistograms>) {
        match self.stage {
            AuproStage::Done(Some(hists)) => (hists.aupro(None, self.fpr_limit), Some(hists)),
            _ => (None, None),
        }
    }
}

impl Passes for AuproPasses {
    fn wants_pass(&self) -> bool {
        !matches!(self.stage, AuproStage::Done(_))
    }

    fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), MetricsError> {
        match &mut self.stage {
            AuproStage::Range { lo, hi } => {
                if self.validate {
                    let offset = chunk.first_image * self.h * self.w;
                    if let Some((index, value)) = first_non_finite(chunk.scores, offset) {
                        return Err(MetricsError::NonFinite {
                            what: "maps",
                            index,
                            value,
                        });
                    }
                    if let Some((index, value)) = first_bad_label(chunk.masks, offset) {
                        return Err(MetricsError::Label {
                            what: "masks",
                            index,
                            value,
                        });
                    }
                }
                (*lo, *hi) = min_max(chunk.scores, (*lo, *hi));
            }
            AuproStage::Histograms { ths, hists } => {
                hists.extend(chunk.scores, chunk.masks, self.h, self.w, ths);
            }
            AuproStage::Done(_) => {}
        }
        Ok(())
    }

    fn end_pass(&mut self) -> Result<(), MetricsError> {
        let stage = std::mem::replace(&mut self.stage, AuproStage::Done(None));
        self.stage = match stage {
            AuproStage::Range { lo, hi } => match thresholds_between(lo, hi, AUPRO_STEPS) {
                Some(ths) => AuproStage::Histograms {
                    hists: ImageHistograms::empty(&ths),
                    ths,
                },
                None => AuproStage::Done(None),
            },
            AuproStage::Histograms { hists, .. } => AuproStage::Done(Some(hists)),
            done => done,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::SliceSource;
    use super::*;

    #[test]
    fn streamed_aupro_is_bit_identical() {
        let (k, h, w) = (7, 9, 11);
        let mut rng = crate::rng::SplitMix64(5);
        let mut maps = Vec::new();
        let mut masks = Vec::new();
        for i in 0..k {
            let (y0, x0) = (rng.below(5), rng.below(6));
            for y in 0..h {
                for x in 0..w {
                    let m = i % 2 == 1 && (y0..y0 + 3).contains(&y) && (x0..x0 + 4).contains(&x);
                    // Ties: scores on a grid of 40 levels.
                    maps.push((rng.below(40) as f32 + if m { 15.0 } else { 0.0 }) * 0.05);
                    masks.push(m as u8);
                }
            }
        }
        let want = aupro(&maps, &masks, k, h, w, 0.3).unwrap();
        assert!(want.is_some());
        for chunk in [1, 3, 7] {
            let mut source = SliceSource::new(&maps, &masks, (k, h, w), chunk).unwrap();
            let got = aupro_streamed(&mut source, 0.3).unwrap();
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "chunk {chunk}"
            );
        }
        // Undefined and bad input as `aupro`.
        let flat = vec![0.5f32; maps.len()];
        let mut source = SliceSource::new(&flat, &masks, (k, h, w), 2).unwrap();
        assert_eq!(aupro_streamed(&mut source, 0.3).unwrap(), None);
        let mut bad = masks.clone();
        bad[100] = 3;
        let mut source = SliceSource::new(&maps, &bad, (k, h, w), 2).unwrap();
        assert!(matches!(
            aupro_streamed(&mut source, 0.3),
            Err(MetricsError::Label { index: 100, .. })
        ));
        let mut source = SliceSource::new(&maps, &masks, (k, h, w), 2).unwrap();
        assert!(aupro_streamed(&mut source, -1.0).is_err());
    }

    #[test]
    fn exceeded_equals_binary_search() {
        let ths = thresholds(&[-0.3, 0.7, 0.1], 200).unwrap();
        let mut probes: Vec<f64> = ths
            .iter()
            .flat_map(|&t| [t, t.next_down(), t.next_up()])
            .collect();
        probes.extend([-1.0, 5.0, 0.0, 0.70000001]);
        for v in probes {
            assert_eq!(exceeded(&ths, v), ths.partition_point(|&t| t < v), "{v}");
        }
    }

    #[test]
    fn labels_are_eight_connected() {
        // Two diagonal-touching pixels form one region; a separate block is a second one.
        #[rustfmt::skip]
        let mask = [
            1, 0, 0, 1,
            0, 1, 0, 1,
            0, 0, 0, 0,
        ];
        let (labels, areas) = label_regions(&mask, 3, 4);
        assert_eq!(areas, vec![2, 2]);
        assert_eq!(labels[0], labels[5]);
        assert_ne!(labels[0], labels[3]);
    }

    #[test]
    fn thresholds_match_numpy_arange_example() {
        // np.arange(np.float32(0), np.float32(1), np.float32(1) / 200) has 200 float64 values.
        let t = thresholds(&[0.0, 1.0], 200).unwrap();
        assert_eq!(t.len(), 200);
        assert_eq!(t[0], 0.0);
        assert_eq!(t[1], (1.0f32 / 200.0) as f64);
    }

    #[test]
    fn perfect_map_and_undefined_cases() {
        // Map equals the mask: every threshold below 1 covers every region with no false positive.
        let mask = [0u8, 1, 1, 0, 0, 0, 1, 0, 0];
        let map: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
        assert_eq!(aupro(&map, &mask, 1, 3, 3, 0.3).unwrap(), None); // all FPRs are 0: 0/0 rescale
        let flat = [0.5f32; 9];
        assert_eq!(aupro(&flat, &mask, 1, 3, 3, 0.3).unwrap(), None);
        assert_eq!(aupro(&map, &[0u8; 9], 1, 3, 3, 0.3).unwrap(), None);
        assert!(aupro(&map, &mask, 1, 3, 4, 0.3).is_err());
        assert!(aupro(&map, &mask, 1, 3, 3, f64::NAN).is_err());
    }
}
