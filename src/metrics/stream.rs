//! A category's metrics from a [`MapSource`] in bounded memory: pixel AUROC, AP and F1-max (with
//! its threshold), AUPRO, the image metrics and the bootstrap's [`CategorySample`], every value
//! bit-identical to the in-memory functions ([`pixel_metrics`], [`aupro`](super::aupro),
//! [`CategorySample::new`]) on the same maps.
//!
//! The metrics share passes over the source ([`run_passes`]):
//! - pass 1: the ranking's bucket counts and the validation of every score and mask, AUPRO's
//!   min and max, the bootstrap's distinct scores (up to `bins`) and anomalous-pixel count;
//! - pass 2: AUPRO's per-image histograms at its 200 thresholds, the bootstrap's histograms (or,
//!   when it has more distinct scores than bins, its quantile subsample), the ranking's first
//!   group of buckets;
//! - further passes: the ranking's other groups of buckets (at most about `4 x pixels / memory`
//!   groups in all: a bucket costs `min(4 x its pixels, 1 MiB)`), and the bootstrap's histograms
//!   after its subsample.
//!
//! So a category read once whole by the ranking takes 2 passes (3 when the bootstrap's bins are
//! quantiles); `docs/metrics.md` ("Categories larger than memory") gives the I/O and time.

use super::aupro::{AUPRO_STEPS, AuproPasses, check_parameters};
use super::bootstrap::{CategorySample, PixelBins, QUANTILE_SAMPLE, check_bins};
use super::bootstrap_stream::PixelBinsPasses;
use super::ranking::pixel_metrics;
use super::ranking_stream::{RANKING_MIN_MEMORY, RankingPasses, ranking_fixed_bytes};
use super::source::{MapSource, Passes, run_passes};
use super::{MetricsError, PixelMetrics};

/// What to compute besides the pixel and image metrics, and in how much memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamOptions {
    /// AUPRO with this FPR limit (`None`: not computed).
    pub aupro: Option<f64>,
    /// The bootstrap's [`CategorySample`] with this many pixel score bins (`None`: none).
    pub bins: Option<usize>,
    /// Bytes the computation may hold (the source's own read buffers apart): the fixed part
    /// ([`stream_fixed_bytes`]), the rest to the ranking as working memory (at least
    /// [`ranking_floor`]).
    pub memory: u64,
}

/// The metrics of one category, computed from a [`MapSource`].
#[derive(Debug, Clone)]
pub struct StreamedCategory {
    /// Of the image scores and labels (in memory: one value per image).
    pub image: PixelMetrics,
    /// Of every pixel.
    pub pixel: PixelMetrics,
    pub aupro: Option<f64>,
    /// With [`StreamOptions::bins`]: the bootstrap sample, checked against the values above.
    pub sample: Option<CategorySample>,
    /// Passes made over the source: each reads every score and mask once.
    pub passes: usize,
    /// The ranking's working memory, in bytes.
    pub ranking_memory: u64,
}

/// The ranking's working memory is about `4 x pixels / passes`; below this many passes' worth
/// it takes that much anyway (see [`ranking_floor`]).
pub const MAX_RANKING_PASSES: u64 = 64;

/// The least working memory [`category_streamed`] gives the ranking for `pixels` pixels, whatever
/// the budget: enough for about [`MAX_RANKING_PASSES`] passes (1/16 byte a pixel), and at least
/// [`RANKING_MIN_MEMORY`]. A budget smaller than the fixed part plus this is exceeded by the
/// difference: passes would otherwise multiply without bound (each reads the whole category).
pub fn ranking_floor(pixels: u64) -> u64 {
    (pixels * 4)
        .div_ceil(MAX_RANKING_PASSES)
        .max(RANKING_MIN_MEMORY as u64)
}

/// What [`category_streamed`] holds besides the ranking's working memory, for `k` maps of
/// `h x w` read `chunk_images` at a time, with `threads` worker threads (an upper bound):
/// - the ranking's counts, table and per-thread scratch ([`ranking_fixed_bytes`]);
/// - AUPRO: per image 202 slots of 12 bytes, and for the images being labelled at once (one per
///   thread, at most a chunk) 4 bytes a pixel of region labels and up to 8 of flood-fill stack;
/// - the bootstrap: per image at most `2 x bins` counts of 4 bytes, the quantile subsample
///   (2 x 2^20 keys), the distinct keys (`bins` per task) and the bin lookup (256 KiB), and per
///   image being binned two dense `bins`-long count vectors;
/// - the image metrics and the sample's image groups: 25 bytes an image.
pub fn stream_fixed_bytes(
    (k, h, w): (usize, usize, usize),
    chunk_images: usize,
    threads: usize,
    opts: &StreamOptions,
) -> u64 {
    let (k, hw) = (k as u64, (h * w) as u64);
    let in_flight = threads.min(chunk_images.max(1)) as u64;
    let mut bytes = ranking_fixed_bytes(threads) + 25 * k;
    if opts.aupro.is_some() {
        let slots = AUPRO_STEPS as u64 + 2;
        bytes += (k + chunk_images as u64) * slots * 12 + in_flight * hw * 12;
    }
    if let Some(bins) = opts.bins {
        let bins = bins as u64;
        bytes += k * 2 * bins * 4
            + 2 * (QUANTILE_SAMPLE as u64 + 1) * 4
            + (threads as u64 + 1) * bins * 4
            + (1 << 18)
            + in_flight * 2 * bins * 4;
    }
    bytes
}

/// The metrics of the category whose maps and masks `source` gives and whose image scores and
/// 0/1 labels are `image_scores` / `image_labels` (one per image, in memory), holding at most
/// `opts.memory` bytes (see [`stream_fixed_bytes`]); bit-identical to the in-memory functions.
pub fn category_streamed<S: MapSource>(
    source: &mut S,
    image_scores: &[f32],
    image_labels: &[u8],
    opts: &StreamOptions,
) -> Result<StreamedCategory, S::Error> {
    let (k, h, w) = source.shape();
    for (what, got) in [
        ("image_scores", image_scores.len()),
        ("image_labels", image_labels.len()),
    ] {
        if got != k {
            return Err(MetricsError::Length {
                what,
                got,
                expected: k,
                why: "one per image of the map source".into(),
            }
            .into());
        }
    }
    if let Some(limit) = opts.aupro {
        check_parameters(h, w, limit)?;
    }
    if let Some(bins) = opts.bins {
        check_bins(bins)?;
        // The sample's per-image counts are u32: `CategorySample::new`'s bound on h*w (a valid
        // FPR limit, so that only that bound is checked).
        check_parameters(h, w, 1.0)?;
    }
    let image = pixel_metrics(image_scores, image_labels)?;
    let fixed = stream_fixed_bytes(
        (k, h, w),
        source.chunk_images(),
        rayon::current_num_threads(),
        opts,
    );
    let ranking_memory = opts
        .memory
        .saturating_sub(fixed)
        .max(ranking_floor((k * h * w) as u64));
    let mut ranking =
        RankingPasses::new(h * w, usize::try_from(ranking_memory).unwrap_or(usize::MAX));
    let mut aupro = opts.aupro.map(|limit| AuproPasses::new(h, w, limit, false));
    let mut bins = opts.bins.map(|b| PixelBinsPasses::new(k, h * w, b));
    let mut metrics: Vec<&mut dyn Passes> = vec![&mut ranking];
    if let Some(a) = aupro.as_mut() {
        metrics.push(a);
    }
    if let Some(b) = bins.as_mut() {
        metrics.push(b);
    }
    let passes = run_passes(source, &mut metrics)?;
    let pixel = ranking.finish();
    let (aupro_value, hists) = aupro.map_or((None, None), AuproPasses::finish);
    let sample = match bins {
        None => None,
        Some(b) => {
            let exact = [
                image.auroc,
                image.ap,
                image.f1_max,
                pixel.auroc,
                aupro_value,
                pixel.f1_max,
            ];
            // Every pass was made: the bins are done (else: none, which the check refuses).
            let pixel_bins = b.finish().unwrap_or_else(|| PixelBins::without_pixels(0));
            let hists = hists.zip(opts.aupro);
            Some(CategorySample::assemble(
                image_scores,
                image_labels,
                pixel_bins,
                hists,
                opts.aupro,
                exact,
            )?)
        }
    };
    Ok(StreamedCategory {
        image,
        pixel,
        aupro: aupro_value,
        sample,
        passes,
        ranking_memory,
    })
}

#[cfg(test)]
mod tests {
    use super::super::source::SliceSource;
    use super::super::{BootstrapSpec, Values, aupro, replicates};
    use super::*;
    use crate::rng::SplitMix64;

    /// `k` maps `h x w`, every other image anomalous with a rectangular defect; scores on a grid
    /// of 30 levels (many ties) or continuous; image scores the rounded maxima (ties).
    fn category(k: usize, h: usize, w: usize, seed: u64, tied: bool) -> Category {
        let mut rng = SplitMix64(seed);
        let mut c = Category {
            maps: Vec::new(),
            masks: Vec::new(),
            scores: Vec::new(),
            labels: Vec::new(),
            shape: (k, h, w),
        };
        for i in 0..k {
            let anomalous = i % 2 == 1;
            let (y0, x0) = (rng.below(h / 2), rng.below(w / 2));
            let mut max = f32::NEG_INFINITY;
            for y in 0..h {
                for x in 0..w {
                    let m = anomalous && (y0..y0 + 4).contains(&y) && (x0..x0 + 3).contains(&x);
                    let raw = rng.normal() as f32 + if m { 1.5 } else { 0.0 };
                    let v = if tied {
                        ((raw * 5.0).round().clamp(-15.0, 14.0)) * 0.1
                    } else {
                        raw
                    };
                    max = max.max(v);
                    c.maps.push(v);
                    c.masks.push(m as u8);
                }
            }
            c.scores.push((max * 2.0).round() / 2.0);
            c.labels.push(anomalous as u8);
        }
        c
    }

    struct Category {
        maps: Vec<f32>,
        masks: Vec<u8>,
        scores: Vec<f32>,
        labels: Vec<u8>,
        shape: (usize, usize, usize),
    }

    fn bits(v: &[Values]) -> Vec<[Option<u64>; 6]> {
        v.iter().map(|r| r.map(|x| x.map(f64::to_bits))).collect()
    }

    fn pm_bits(m: &PixelMetrics) -> [Option<u64>; 4] {
        [m.auroc, m.ap, m.f1_max, m.f1_threshold].map(|v| v.map(f64::to_bits))
    }

    #[test]
    fn every_metric_and_replicate_equals_the_in_memory_path_bit_for_bit() {
        let spec = |bins| BootstrapSpec {
            replicates: 25,
            seed: 3,
            level: 0.95,
            bins,
        };
        for (k, h, w, tied) in [(1, 8, 8, true), (6, 12, 10, true), (13, 16, 16, false)] {
            let c = category(k, h, w, k as u64, tied);
            let image = pixel_metrics(&c.scores, &c.labels).unwrap();
            let pixel = pixel_metrics(&c.maps, &c.masks).unwrap();
            let pro = aupro(&c.maps, &c.masks, k, h, w, 0.3).unwrap();
            let exact = [
                image.auroc,
                image.ap,
                image.f1_max,
                pixel.auroc,
                pro,
                pixel.f1_max,
            ];
            for bins in [16, 4096] {
                let sample = CategorySample::new(
                    &c.maps,
                    &c.masks,
                    &c.scores,
                    &c.labels,
                    h,
                    w,
                    Some(0.3),
                    bins,
                    exact,
                )
                .unwrap();
                let want = replicates(&sample, &spec(bins), 7).unwrap();
                for (chunk, memory) in [(1, 0), (4, 3000), (k, u64::MAX)] {
                    let what = format!("k={k} bins={bins} chunk={chunk} memory={memory}");
                    let mut source = SliceSource::new(&c.maps, &c.masks, c.shape, chunk).unwrap();
                    let opts = StreamOptions {
                        aupro: Some(0.3),
                        bins: Some(bins),
                        memory,
                    };
                    let got = category_streamed(&mut source, &c.scores, &c.labels, &opts).unwrap();
                    assert_eq!(pm_bits(&got.pixel), pm_bits(&pixel), "{what}");
                    assert_eq!(pm_bits(&got.image), pm_bits(&image), "{what}");
                    assert_eq!(got.aupro.map(f64::to_bits), pro.map(f64::to_bits), "{what}");
                    let s = got.sample.unwrap();
                    assert_eq!(s.binned(), sample.binned(), "{what}");
                    assert_eq!(
                        s.shift().map(f64::to_bits),
                        sample.shift().map(f64::to_bits)
                    );
                    let reps = replicates(&s, &spec(bins), 7).unwrap();
                    assert_eq!(bits(&reps), bits(&want), "{what}");
                    // 2 passes when everything fits, one more for quantile bins, more for the
                    // ranking's groups when memory is short.
                    let least = if sample.binned() { 3 } else { 2 };
                    if memory == u64::MAX {
                        assert_eq!(got.passes, least, "{what}");
                    } else {
                        assert!(got.passes >= least, "{what}");
                    }
                }
            }
            // Without AUPRO and bootstrap only the ranking reads the source.
            let mut source = SliceSource::new(&c.maps, &c.masks, c.shape, 2).unwrap();
            let opts = StreamOptions {
                aupro: None,
                bins: None,
                memory: 0,
            };
            let got = category_streamed(&mut source, &c.scores, &c.labels, &opts).unwrap();
            assert_eq!(pm_bits(&got.pixel), pm_bits(&pixel));
            assert_eq!((got.aupro, got.sample.is_none()), (None, true));
            assert_eq!(got.ranking_memory, RANKING_MIN_MEMORY as u64);
        }
    }

    #[test]
    fn ranking_memory_is_what_the_fixed_part_leaves() {
        let c = category(4, 8, 8, 1, true);
        let opts = StreamOptions {
            aupro: Some(0.3),
            bins: Some(64),
            memory: 1 << 30,
        };
        let mut source = SliceSource::new(&c.maps, &c.masks, c.shape, 2).unwrap();
        let got = category_streamed(&mut source, &c.scores, &c.labels, &opts).unwrap();
        let fixed = stream_fixed_bytes(c.shape, 2, rayon::current_num_threads(), &opts);
        assert_eq!(got.ranking_memory, (1 << 30) - fixed);
        // More bins, more images, AUPRO: a larger fixed part.
        let none = StreamOptions {
            aupro: None,
            bins: None,
            memory: 0,
        };
        assert!(
            stream_fixed_bytes((4, 8, 8), 2, 2, &none) < stream_fixed_bytes((4, 8, 8), 2, 2, &opts)
        );
        // Below the fixed part, the ranking still gets enough for about 64 passes.
        assert_eq!(ranking_floor(0), RANKING_MIN_MEMORY as u64);
        let ksdd2 = 1000 * 512 * 512;
        assert_eq!(ranking_floor(ksdd2), ksdd2 / 16);
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = category(3, 4, 4, 2, true);
        let opts = StreamOptions {
            aupro: Some(0.3),
            bins: Some(64),
            memory: 0,
        };
        let mut source = SliceSource::new(&c.maps, &c.masks, c.shape, 2).unwrap();
        assert!(matches!(
            category_streamed(&mut source, &c.scores[1..], &c.labels, &opts),
            Err(MetricsError::Length {
                what: "image_scores",
                ..
            })
        ));
        let bad_bins = StreamOptions {
            bins: Some(1),
            ..opts
        };
        assert!(category_streamed(&mut source, &c.scores, &c.labels, &bad_bins).is_err());
        let mut maps = c.maps.clone();
        maps[20] = f32::INFINITY;
        let mut source = SliceSource::new(&maps, &c.masks, c.shape, 2).unwrap();
        assert!(matches!(
            category_streamed(&mut source, &c.scores, &c.labels, &opts),
            Err(MetricsError::NonFinite { index: 20, .. })
        ));
    }
}
