//! Ranking metrics (AUROC, average precision, F1-max) from one pass over the sorted scores.
//!
//! scikit-learn sorts the scores (a stable argsort, twice: once for `roc_curve`, once for
//! `precision_recall_curve`) and walks the distinct values in descending order. We need only, for
//! each distinct score, how many positives and negatives hold it. So instead of sorting `(score,
//! label)` pairs we do a two-digit radix partition of the order-preserving 32-bit key of each score:
//!
//! 1. one parallel pass counts, per chunk of the input, the pixels of each high-16-bit bucket;
//! 2. one parallel pass scatters `low16 << 1 | label` (a `u32`, the only copy: 4 bytes a pixel)
//!    into the bucket's slot range;
//! 3. the buckets are walked in parallel, each knowing how many positives/negatives lie above it:
//!    a large bucket is counted with a 65536-entry histogram, a small one is sorted.
//!
//! Memory is the input plus 4 bytes a pixel, O(n) work, and every sum is exact (integers, `u128`
//! for the AUROC numerator) or f64 in the same operation order as scikit-learn (precision, recall,
//! F1), so the results agree with scikit-learn to rounding (see `docs/metrics.md`).

use rayon::prelude::*;

use super::{MetricsError, first_non_finite};

/// Metrics of one set of scored pixels (or images). `None` = undefined for this input.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PixelMetrics {
    /// `roc_auc_score`; undefined unless both classes are present.
    pub auroc: Option<f64>,
    /// `average_precision_score`; undefined without a positive (scikit-learn returns 0.0 with a
    /// warning there; the reference never calls it then).
    pub ap: Option<f64>,
    /// Max of `2PR/(P+R+1e-8)` over the precision-recall curve; undefined without a positive.
    pub f1_max: Option<f64>,
    /// The lowest score threshold (predict anomalous when `score >= threshold`) reaching `f1_max`:
    /// the first maximum in `precision_recall_curve`'s ascending threshold order, as `np.argmax`.
    pub f1_threshold: Option<f64>,
    pub positives: u64,
    pub negatives: u64,
}

/// Buckets are the high 16 bits of the order key; the low 16 bits are resolved inside a bucket.
pub(super) const LOW_BITS: u32 = 16;
pub(super) const BUCKETS: usize = 1 << (32 - LOW_BITS);
pub(super) const LOW_MASK: u32 = (1 << LOW_BITS) - 1;
/// A bucket holding more items than this is counted with a histogram over its 2^16 low keys
/// (O(len + 65536)); a smaller one is sorted (O(len log len)).
pub(super) const DENSE_MIN: usize = 1 << 13;
/// Inputs shorter than this are processed as one chunk (thread start-up would dominate).
pub(super) const PARALLEL_MIN: usize = 1 << 18;

/// AUROC, AP and F1-max (with its threshold) of `scores` against 0/1 `labels`, in one pass.
pub fn pixel_metrics(scores: &[f32], labels: &[u8]) -> Result<PixelMetrics, MetricsError> {
    sorted_pass(scores, labels, DENSE_MIN)
}

/// `roc_auc_score(labels, scores)`; `None` when only one class is present.
pub fn auroc(scores: &[f32], labels: &[u8]) -> Result<Option<f64>, MetricsError> {
    Ok(pixel_metrics(scores, labels)?.auroc)
}

/// Monotone map f32 -> u32 (`a < b` iff `key(a) < key(b)`); -0.0 and +0.0 share a key because
/// numpy treats them as one tied score.
pub(super) fn order_key(v: f32) -> u32 {
    let bits = if v == 0.0 { 0u32 } else { v.to_bits() };
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn key_value(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    })
}

/// Running state of the descending walk over distinct scores, for one bucket or the whole input.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walk {
    /// Positives / negatives strictly above the next group.
    tp: u64,
    fp: u64,
    /// Twice the Mann-Whitney count: sum over groups of `fp_g * (2 * tp_above + tp_g)`.
    auroc2: u128,
    /// Sum of `(recall - previous recall) * precision`.
    ap: f64,
    /// Best F1 and the order key of its threshold.
    best: Option<(f64, u32)>,
}

impl Walk {
    pub(super) fn new(tp: u64, fp: u64) -> Self {
        Self {
            tp,
            fp,
            auroc2: 0,
            ap: 0.0,
            best: None,
        }
    }

    /// One distinct score (order key `key`) held by `tp_g` positives and `fp_g` negatives; called
    /// in descending score order. `positives` is the total (0 = no precision/recall).
    #[inline]
    pub(super) fn group(&mut self, key: u32, tp_g: u64, fp_g: u64, positives: u64) {
        self.auroc2 += fp_g as u128 * (2 * self.tp + tp_g) as u128;
        let prev_tp = self.tp;
        self.tp += tp_g;
        self.fp += fp_g;
        if positives == 0 {
            return;
        }
        // Same operations as scikit-learn: precision = tps / (tps + fps), recall = tps / tps[-1].
        let p = positives as f64;
        let precision = self.tp as f64 / (self.tp + self.fp) as f64;
        let recall = self.tp as f64 / p;
        self.ap += (recall - prev_tp as f64 / p) * precision;
        let f1 = 2.0 * precision * recall / (precision + recall + 1e-8);
        // Descending walk: on a tie the later (lower) threshold wins, as np.argmax over the
        // ascending thresholds of precision_recall_curve picks the first.
        if self.best.is_none_or(|(b, _)| f1 >= b) {
            self.best = Some((f1, key));
        }
    }
}

/// Per-chunk bucket counts: `total[b]` pixels and `pos[b]` positives with high key bits `b`.
pub(super) struct ChunkCounts {
    pub(super) total: Vec<u32>,
    pub(super) pos: Vec<u32>,
    /// First invalid element (non-finite score or label > 1) of the chunk.
    pub(super) invalid: Option<usize>,
}

/// Bucket counts of `scores` / `labels` (fewer than 2^32 of them), whose first element has index
/// `offset` in the whole input.
pub(super) fn count_chunk(scores: &[f32], labels: &[u8], offset: usize) -> ChunkCounts {
    let mut total = vec![0u32; BUCKETS];
    let mut pos = vec![0u32; BUCKETS];
    let mut invalid = None;
    for (i, (&s, &l)) in scores.iter().zip(labels).enumerate() {
        if !s.is_finite() || l > 1 {
            invalid.get_or_insert(offset + i);
            continue;
        }
        let b = (order_key(s) >> LOW_BITS) as usize;
        total[b] += 1;
        pos[b] += l as u32;
    }
    ChunkCounts {
        total,
        pos,
        invalid,
    }
}

/// The error for input element `index` (score `score`, label `label`), found invalid by
/// [`count_chunk`]: a non-finite score is reported before a bad label.
pub(super) fn invalid_at(score: f32, label: u8, index: usize) -> MetricsError {
    match first_non_finite(&[score], index) {
        Some((index, value)) => MetricsError::NonFinite {
            what: "scores",
            index,
            value,
        },
        None => MetricsError::Label {
            what: "labels",
            index,
            value: label,
        },
    }
}

/// Raw output pointer shared by the scatter workers; each writes a disjoint index set.
#[derive(Clone, Copy)]
struct ScatterOut(*mut u32);
// SAFETY: workers write disjoint slots (offsets partition 0..n), and the Vec outlives the scope.
unsafe impl Send for ScatterOut {}
unsafe impl Sync for ScatterOut {}
impl ScatterOut {
    fn ptr(self) -> *mut u32 {
        self.0
    }
}

fn sorted_pass(
    scores: &[f32],
    labels: &[u8],
    dense_min: usize,
) -> Result<PixelMetrics, MetricsError> {
    let n = scores.len();
    if labels.len() != n {
        return Err(MetricsError::Length {
            what: "labels",
            got: labels.len(),
            expected: n,
            why: "one label per score".into(),
        });
    }
    // Chunks: a few per thread for balance, each short enough for u32 bucket counts.
    let chunks = if n < PARALLEL_MIN {
        1
    } else {
        (rayon::current_num_threads() * 4).max(n.div_ceil(1 << 31))
    };
    let chunk_len = n.div_ceil(chunks).max(1);

    // 1. Count.
    let counts: Vec<ChunkCounts> = scores
        .par_chunks(chunk_len)
        .zip(labels.par_chunks(chunk_len))
        .enumerate()
        .map(|(c, (s, l))| count_chunk(s, l, c * chunk_len))
        .collect();
    if let Some(i) = counts.iter().filter_map(|c| c.invalid).min() {
        return Err(invalid_at(scores[i], labels[i], i));
    }
    let mut bucket_total = vec![0u64; BUCKETS];
    let mut bucket_pos = vec![0u64; BUCKETS];
    for c in &counts {
        for b in 0..BUCKETS {
            bucket_total[b] += c.total[b] as u64;
            bucket_pos[b] += c.pos[b] as u64;
        }
    }
    let positives: u64 = bucket_pos.iter().sum();
    let negatives = n as u64 - positives;

    // 2. Scatter into bucket order. Offsets: bucket start + earlier chunks' share of the bucket.
    let mut offsets: Vec<Vec<usize>> = vec![vec![0usize; BUCKETS]; counts.len()];
    let mut start = 0usize;
    for b in 0..BUCKETS {
        let mut at = start;
        for (offset, chunk) in offsets.iter_mut().zip(&counts) {
            offset[b] = at;
            at += chunk.total[b] as usize;
        }
        start = at;
    }
    drop(counts);
    let mut items: Vec<u32> = Vec::with_capacity(n);
    let out = ScatterOut(items.as_mut_ptr());
    scores
        .par_chunks(chunk_len)
        .zip(labels.par_chunks(chunk_len))
        .zip(offsets.into_par_iter())
        .for_each(move |((s, l), mut off)| {
            for (&s, &l) in s.iter().zip(l) {
                let key = order_key(s);
                let b = (key >> LOW_BITS) as usize;
                // SAFETY: off[b] stays inside this chunk's reserved range of bucket b (< n).
                unsafe {
                    out.ptr()
                        .add(off[b])
                        .write(((key & LOW_MASK) << 1) | l as u32)
                };
                off[b] += 1;
            }
        });
    // SAFETY: the offsets partition 0..n and every slot was written exactly once above.
    unsafe { items.set_len(n) };

    // 3. Walk the buckets; each starts from the counts above it (higher buckets = higher scores).
    let mut above = vec![(0u64, 0u64); BUCKETS];
    let (mut tp, mut fp) = (0u64, 0u64);
    for b in (0..BUCKETS).rev() {
        above[b] = (tp, fp);
        tp += bucket_pos[b];
        fp += bucket_total[b] - bucket_pos[b];
    }
    let mut slices: Vec<(usize, &mut [u32])> = Vec::new();
    let mut rest: &mut [u32] = &mut items;
    for (b, &len) in bucket_total.iter().enumerate() {
        if len > 0 {
            let (head, tail) = rest.split_at_mut(len as usize);
            slices.push((b, head));
            rest = tail;
        }
    }
    let walks: Vec<Walk> = slices
        .into_par_iter()
        .map_init(Vec::new, |hist: &mut Vec<u32>, (b, slice)| {
            let (tp, fp) = above[b];
            walk_bucket(
                b as u32,
                slice,
                Walk::new(tp, fp),
                positives,
                hist,
                dense_min,
            )
        })
        .collect();

    // Combine, highest bucket first (a fixed order keeps the f64 sum deterministic).
    let mut totals = Totals::default();
    for w in walks.iter().rev() {
        totals.add(w);
    }
    Ok(totals.metrics(positives, negatives))
}

/// The bucket walks combined, highest bucket first. Shared by [`sorted_pass`], [`GroupWalk`] and
/// the streamed ranking (`ranking_stream.rs`) so that all sum the f64 AP in the same order
/// (bucket partial sums added in turn).
#[derive(Debug, Default)]
pub(super) struct Totals {
    auroc2: u128,
    ap: f64,
    best: Option<(f64, u32)>,
}

impl Totals {
    pub(super) fn add(&mut self, w: &Walk) {
        self.auroc2 += w.auroc2;
        self.ap += w.ap;
        if let Some((f, k)) = w.best
            && self
                .best
                .is_none_or(|(bf, bk)| f > bf || (f == bf && k < bk))
        {
            self.best = Some((f, k));
        }
    }

    pub(super) fn metrics(&self, positives: u64, negatives: u64) -> PixelMetrics {
        let both = positives > 0 && negatives > 0;
        let (p, q) = (positives as f64, negatives as f64);
        PixelMetrics {
            auroc: both.then(|| self.auroc2 as f64 / (2.0 * p * q)),
            // scikit-learn clips a rounding -0.0 to 0.0.
            ap: (positives > 0).then_some(self.ap.max(0.0)),
            f1_max: self.best.map(|(f, _)| f),
            f1_threshold: self.best.map(|(_, k)| key_value(k) as f64),
            positives,
            negatives,
        }
    }
}

/// The metrics of scores already grouped by distinct value, fed one group at a time in
/// descending key order: the sequential twin of [`pixel_metrics`] for callers that hold counts
/// instead of scores (the bootstrap, whose groups carry resampling multiplicities).
///
/// Groups are cut into the same 16-bit buckets as [`sorted_pass`] and each bucket's partial AP
/// is added to the total in the same order, so that for the counts of a score slice the result
/// is bit-identical to `pixel_metrics` on it.
pub(super) struct GroupWalk {
    positives: u64,
    negatives: u64,
    bucket: Option<u32>,
    walk: Walk,
    totals: Totals,
}

impl GroupWalk {
    /// `positives` / `negatives`: the totals over all groups to come.
    pub(super) fn new(positives: u64, negatives: u64) -> Self {
        Self {
            positives,
            negatives,
            bucket: None,
            walk: Walk::new(0, 0),
            totals: Totals::default(),
        }
    }

    /// One distinct score (order key `key`, below every earlier one) held by `tp_g` positives
    /// and `fp_g` negatives. An empty group is no score at all and is skipped.
    #[inline]
    pub(super) fn group(&mut self, key: u32, tp_g: u64, fp_g: u64) {
        if tp_g + fp_g == 0 {
            return;
        }
        let bucket = key >> LOW_BITS;
        if self.bucket != Some(bucket) {
            if self.bucket.is_some() {
                self.totals.add(&self.walk);
            }
            self.walk = Walk::new(self.walk.tp, self.walk.fp);
            self.bucket = Some(bucket);
        }
        self.walk.group(key, tp_g, fp_g, self.positives);
    }

    pub(super) fn finish(mut self) -> PixelMetrics {
        if self.bucket.is_some() {
            self.totals.add(&self.walk);
        }
        self.totals.metrics(self.positives, self.negatives)
    }
}

/// Walks one bucket's distinct scores in descending order.
pub(super) fn walk_bucket(
    bucket: u32,
    items: &mut [u32],
    mut walk: Walk,
    positives: u64,
    hist: &mut Vec<u32>,
    dense_min: usize,
) -> Walk {
    let high = bucket << LOW_BITS;
    if items.len() > dense_min {
        // Histogram indexed by the item itself: low key * 2 + label.
        hist.resize(2 << LOW_BITS, 0);
        for &it in items.iter() {
            hist[it as usize] += 1;
        }
        for low in (0..1usize << LOW_BITS).rev() {
            let (fp_g, tp_g) = (hist[2 * low], hist[2 * low + 1]);
            if fp_g + tp_g > 0 {
                walk.group(high | low as u32, tp_g as u64, fp_g as u64, positives);
                hist[2 * low] = 0;
                hist[2 * low + 1] = 0;
            }
        }
    } else {
        items.sort_unstable();
        let mut end = items.len();
        while end > 0 {
            let low = items[end - 1] >> 1;
            let mut start = end - 1;
            while start > 0 && items[start - 1] >> 1 == low {
                start -= 1;
            }
            let tp_g = items[start..end].iter().filter(|&&it| it & 1 == 1).count() as u64;
            walk.group(high | low, tp_g, (end - start) as u64 - tp_g, positives);
            end = start;
        }
    }
    walk
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definitions on a sorted copy: pairwise AUROC, sklearn's PR curve walked naively.
    fn naive(scores: &[f32], labels: &[u8]) -> (Option<f64>, Option<f64>, Option<f64>) {
        let p = labels.iter().filter(|&&l| l == 1).count();
        let q = labels.len() - p;
        let mut auc = 0f64;
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] == 1 && labels[j] == 0 {
                    auc += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap());
        let (mut tp, mut fp, mut ap, mut f1m, mut prev_r) = (0f64, 0f64, 0f64, f64::MIN, 0f64);
        for (k, &i) in order.iter().enumerate() {
            tp += labels[i] as f64;
            fp += 1.0 - labels[i] as f64;
            let last_of_group = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
            if last_of_group && p > 0 {
                let (pr, r) = (tp / (tp + fp), tp / p as f64);
                ap += (r - prev_r) * pr;
                prev_r = r;
                f1m = f1m.max(2.0 * pr * r / (pr + r + 1e-8));
            }
        }
        (
            (p > 0 && q > 0).then(|| auc / (p * q) as f64),
            (p > 0).then_some(ap),
            (p > 0).then_some(f1m),
        )
    }

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn order_key_is_monotone_and_invertible() {
        let vals = [
            f32::MIN,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-40,
            0.25,
            1.0,
            f32::MAX,
        ];
        for w in vals.windows(2) {
            assert!(order_key(w[0]) <= order_key(w[1]), "{w:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
        for v in vals {
            assert_eq!(key_value(order_key(v)), if v == 0.0 { 0.0 } else { v });
        }
    }

    #[test]
    fn sparse_and_dense_paths_match_the_definitions() {
        let mut seed = 7u64;
        for trial in 0..6 {
            let n = 300 + 97 * trial;
            // Heavy ties (a few levels), negative values and a cluster inside one bucket.
            let scores: Vec<f32> = (0..n)
                .map(|_| match lcg(&mut seed) % 3 {
                    0 => (lcg(&mut seed) % 7) as f32 * 0.125 - 0.25,
                    1 => 0.5 + (lcg(&mut seed) % 50) as f32 * 1e-7,
                    _ => (lcg(&mut seed) % 1000) as f32 / 999.0,
                })
                .collect();
            let labels: Vec<u8> = (0..n)
                .map(|_| lcg(&mut seed).is_multiple_of(4) as u8)
                .collect();
            let (auc, ap, f1) = naive(&scores, &labels);
            for dense_min in [0, usize::MAX] {
                let m = sorted_pass(&scores, &labels, dense_min).unwrap();
                assert!(
                    (m.auroc.unwrap() - auc.unwrap()).abs() < 1e-12,
                    "{dense_min} {m:?} {auc:?}"
                );
                assert!(
                    (m.ap.unwrap() - ap.unwrap()).abs() < 1e-12,
                    "{dense_min} {m:?} {ap:?}"
                );
                assert_eq!(m.f1_max, f1, "{dense_min}");
            }
        }
    }

    #[test]
    fn group_walk_equals_pixel_metrics_bit_for_bit() {
        let mut seed = 3u64;
        // Scores over many 16-bit buckets (negative and positive, wide range) with ties.
        let scores: Vec<f32> = (0..5000)
            .map(|_| ((lcg(&mut seed) % 2000) as f32 - 1000.0) * 0.731)
            .collect();
        let labels: Vec<u8> = (0..5000)
            .map(|_| lcg(&mut seed).is_multiple_of(5) as u8)
            .collect();
        let mut keyed: Vec<(u32, u8)> = scores
            .iter()
            .zip(&labels)
            .map(|(&s, &l)| (order_key(s), l))
            .collect();
        keyed.sort_unstable_by(|a, b| b.cmp(a));
        let positives = labels.iter().filter(|&&l| l == 1).count() as u64;
        let mut walk = GroupWalk::new(positives, labels.len() as u64 - positives);
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            let tp = group.iter().filter(|g| g.1 == 1).count() as u64;
            walk.group(group[0].0, 0, 0); // an empty group is no score
            walk.group(group[0].0, tp, group.len() as u64 - tp);
        }
        let want = pixel_metrics(&scores, &labels).unwrap();
        let got = walk.finish();
        assert!(want.ap.unwrap() > 0.0 && want.auroc.is_some());
        assert_eq!(got, want);
        assert_eq!(got.ap.map(f64::to_bits), want.ap.map(f64::to_bits));
    }

    #[test]
    fn undefined_and_bad_input() {
        let m = pixel_metrics(&[0.1, 0.2], &[0, 0]).unwrap();
        assert_eq!(
            (m.auroc, m.ap, m.f1_max, m.f1_threshold),
            (None, None, None, None)
        );
        let m = pixel_metrics(&[0.1, 0.2], &[1, 1]).unwrap();
        assert_eq!((m.auroc, m.ap), (None, Some(1.0)));
        let m = pixel_metrics(&[], &[]).unwrap();
        assert_eq!(m.auroc, None);
        assert!(matches!(
            pixel_metrics(&[0.1], &[0, 1]),
            Err(MetricsError::Length { .. })
        ));
        assert!(matches!(
            pixel_metrics(&[0.1, f32::NAN], &[0, 1]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            pixel_metrics(&[0.1, 0.2], &[0, 255]),
            Err(MetricsError::Label {
                index: 1,
                value: 255,
                ..
            })
        ));
    }

    #[test]
    fn f1_threshold_is_lowest_reaching_max() {
        // Thresholds 0.9 (P=1,R=.5) and 0.8 (P=1,R=1): max F1 at 0.8.
        let m = pixel_metrics(&[0.9, 0.8, 0.1], &[1, 1, 0]).unwrap();
        assert_eq!(m.f1_threshold, Some(0.8f32 as f64));
        assert_eq!(m.auroc, Some(1.0));
        assert_eq!(auroc(&[0.5, 0.5], &[0, 1]).unwrap(), Some(0.5));
    }
}
