//! Pixel AUROC, AP and F1-max of a [`MapSource`] in bounded memory: a multi-pass radix selection
//! whose results are bit-identical to [`pixel_metrics`](super::pixel_metrics) on the same scores.
//!
//! `pixel_metrics` partitions the order keys of all scores into 65,536 buckets (their high 16
//! bits), holding 4 bytes a pixel, and walks each bucket's distinct scores from the counts above
//! it. Here the buckets are resolved a group at a time, each group in one pass over the source:
//!
//! 1. pass 1 counts the pixels and positives of every bucket (and finds any invalid input);
//! 2. the non-empty buckets, highest first, are planned into further passes whose working set
//!    fits the memory given: a bucket whose items (`low16 << 1 | label`, 4 bytes each) take at
//!    most 1 MiB and fit is *gathered*, then resolved as `pixel_metrics` resolves it (sorted, or
//!    counted in a 65,536-entry histogram when large); a larger bucket is *counted*: a histogram
//!    of its low 16 bits and labels (16 bytes a low key, 1 MiB) is filled during the pass. When
//!    the memory left in a pass cannot hold a whole histogram, the bucket's low keys are cut into
//!    ranges resolved in consecutive passes, highest first, its walk carried from one to the next;
//! 3. after each pass its buckets are walked (in parallel, each from the positives and negatives
//!    above it, known from pass 1) and the finished walks are added to the totals highest first.
//!
//! Every bucket is walked with the same `Walk`, from the same counts, over the same groups as in
//! `pixel_metrics`, and the walks are added in the same order: every f64 operation is the same.
//! Passes: 1 + at most about `4 x pixels / memory` (`docs/metrics.md`, "Categories larger than
//! memory").

use rayon::prelude::*;

use super::ranking::{
    BUCKETS, ChunkCounts, DENSE_MIN, LOW_BITS, LOW_MASK, PARALLEL_MIN, Totals, Walk, count_chunk,
    invalid_at, order_key, walk_bucket,
};
use super::source::{Chunk, MapSource, Passes, run_passes};
use super::{MetricsError, PixelMetrics};

/// Bytes of one gathered item (`low16 << 1 | label`).
const ITEM_BYTES: usize = 4;
/// Bytes of one low key of a counted bucket: a `u64` count per label.
const KEY_BYTES: usize = 16;
/// A bucket is gathered when its items take at most this, a whole histogram's size; a larger
/// bucket is counted.
const GATHER_MAX_BYTES: usize = KEY_BYTES << LOW_BITS;
/// The least working memory the ranking takes, whatever it is given (1,024 low keys a pass).
pub const RANKING_MIN_MEMORY: usize = 16 << 10;
/// No unit in the table of buckets of a pass.
const NONE: u32 = u32::MAX;

/// Memory the streamed ranking holds besides its working memory, with `threads` worker threads:
/// the pixels and positives per bucket and the counts above each (`u64`, 2 MiB), the pass's table
/// of buckets (256 KiB), and per thread one chunk's bucket counts (`u32`, 512 KiB) and one
/// bucket walk's histogram (512 KiB).
pub fn ranking_fixed_bytes(threads: usize) -> u64 {
    let per_bucket = (4 * 8 + 4) * BUCKETS as u64;
    per_bucket + threads as u64 * 2 * (2 * 4 * BUCKETS as u64)
}

/// AUROC, AP and F1-max (with its threshold) of every score of `source` against its masks,
/// holding at most `memory` bytes (at least [`RANKING_MIN_MEMORY`]) of gathered items and
/// histograms besides [`ranking_fixed_bytes`]: bit-identical to
/// [`pixel_metrics`](super::pixel_metrics) on the same scores and labels. Returns the metrics
/// and the number of passes made over the source.
pub fn pixel_metrics_streamed<S: MapSource>(
    source: &mut S,
    memory: usize,
) -> Result<(PixelMetrics, usize), S::Error> {
    let (_, h, w) = source.shape();
    let mut ranking = RankingPasses::new(h * w, memory);
    let passes = run_passes(source, &mut [&mut ranking])?;
    Ok((ranking.finish(), passes))
}

/// A group of buckets resolved in one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    /// Every item of the bucket, `len` of them.
    Gather { bucket: u32, len: usize },
    /// Counts of the bucket's low keys `lo..hi` per label.
    Count { bucket: u32, lo: u32, hi: u32 },
}

impl Unit {
    fn bucket(&self) -> u32 {
        match *self {
            Unit::Gather { bucket, .. } | Unit::Count { bucket, .. } => bucket,
        }
    }

    /// Whether the bucket's walk ends with this unit (its lowest keys).
    fn ends_bucket(&self) -> bool {
        match *self {
            Unit::Gather { .. } => true,
            Unit::Count { lo, .. } => lo == 0,
        }
    }
}

/// The passes after the first: per pass its units, highest keys first, each pass's gathered
/// items and histograms taking at most `memory` bytes (at least [`RANKING_MIN_MEMORY`]).
fn plan(total: &[u64], memory: usize) -> Vec<Vec<Unit>> {
    let memory = memory.max(RANKING_MIN_MEMORY);
    let (mut passes, mut current, mut used) = (Vec::new(), Vec::new(), 0usize);
    for b in (0..total.len()).rev() {
        let n = total[b];
        if n == 0 {
            continue;
        }
        let bucket = b as u32;
        let bytes = n.saturating_mul(ITEM_BYTES as u64);
        if bytes <= GATHER_MAX_BYTES.min(memory) as u64 {
            let bytes = bytes as usize;
            if used + bytes > memory {
                passes.push(std::mem::take(&mut current));
                used = 0;
            }
            current.push(Unit::Gather {
                bucket,
                len: n as usize,
            });
            used += bytes;
            continue;
        }
        let mut hi = 1u32 << LOW_BITS;
        while hi > 0 {
            let free = (memory - used) / KEY_BYTES;
            if free == 0 {
                passes.push(std::mem::take(&mut current));
                used = 0;
                continue;
            }
            let keys = free.min(hi as usize) as u32;
            current.push(Unit::Count {
                bucket,
                lo: hi - keys,
                hi,
            });
            used += keys as usize * KEY_BYTES;
            hi -= keys;
        }
    }
    if !current.is_empty() {
        passes.push(current);
    }
    passes
}

/// The streamed ranking as one metric of shared passes ([`run_passes`]).
pub(super) struct RankingPasses {
    hw: usize,
    memory: usize,
    stage: Stage,
}

enum Stage {
    /// Pass 1: pixels and positives per bucket.
    Count {
        total: Vec<u64>,
        pos: Vec<u64>,
    },
    /// The passes that resolve the buckets.
    Resolve(Box<Resolve>),
    Done(PixelMetrics),
}

struct Resolve {
    positives: u64,
    negatives: u64,
    /// Positives and negatives above each bucket.
    above: Vec<(u64, u64)>,
    /// The passes still to make after `current`, the next last.
    planned: Vec<Vec<Unit>>,
    current: Gathering,
    /// The walk of a counted bucket whose lower keys come in the next pass.
    carry: Option<(u32, Walk)>,
    totals: Totals,
}

/// What one resolving pass gathers.
struct Gathering {
    units: Vec<Unit>,
    /// Per bucket: its unit in this pass, or [`NONE`].
    table: Vec<u32>,
    /// Per unit: where its items (gathered) or counts (counted) start, and the next free item.
    start: Vec<usize>,
    cursor: Vec<usize>,
    items: Vec<u32>,
    counts: Vec<u64>,
}

impl Gathering {
    fn new(units: Vec<Unit>) -> Self {
        let mut table = vec![NONE; BUCKETS];
        let mut start = Vec::with_capacity(units.len());
        let (mut n_items, mut n_counts) = (0usize, 0usize);
        for (u, unit) in units.iter().enumerate() {
            table[unit.bucket() as usize] = u as u32;
            match *unit {
                Unit::Gather { len, .. } => {
                    start.push(n_items);
                    n_items += len;
                }
                Unit::Count { lo, hi, .. } => {
                    start.push(n_counts);
                    n_counts += 2 * (hi - lo) as usize;
                }
            }
        }
        Self {
            cursor: start.clone(),
            units,
            table,
            start,
            items: vec![0; n_items],
            counts: vec![0; n_counts],
        }
    }

    fn chunk(&mut self, scores: &[f32], masks: &[u8]) -> Result<(), MetricsError> {
        for (&s, &l) in scores.iter().zip(masks) {
            let key = order_key(s);
            let u = self.table[(key >> LOW_BITS) as usize];
            if u == NONE {
                continue;
            }
            let u = u as usize;
            let low = key & LOW_MASK;
            match self.units[u] {
                Unit::Gather { len, .. } => {
                    let at = self.cursor[u];
                    if at == self.start[u] + len {
                        return Err(changed());
                    }
                    self.items[at] = (low << 1) | l as u32;
                    self.cursor[u] = at + 1;
                }
                Unit::Count { lo, hi, .. } => {
                    if (lo..hi).contains(&low) {
                        self.counts[self.start[u] + 2 * (low - lo) as usize + l as usize] += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The error for a source whose scores differ between passes (what pass 1 counted does not come
/// back).
fn changed() -> MetricsError {
    MetricsError::Length {
        what: "streamed scores",
        got: 0,
        expected: 0,
        why: "a bucket's pixel count differs from the first pass: the source must give the same \
              scores in every pass"
            .into(),
    }
}

impl RankingPasses {
    /// A ranking of maps of `hw` pixels each, with `memory` bytes of working memory.
    pub(super) fn new(hw: usize, memory: usize) -> Self {
        Self {
            hw,
            memory,
            stage: Stage::Count {
                total: vec![0; BUCKETS],
                pos: vec![0; BUCKETS],
            },
        }
    }

    /// The metrics, once no more pass is wanted.
    pub(super) fn finish(self) -> PixelMetrics {
        match self.stage {
            Stage::Done(m) => m,
            // Unreachable after `run_passes`; an empty walk is the metrics of no score.
            _ => Totals::default().metrics(0, 0),
        }
    }
}

/// Adds the pixels and positives per bucket of `chunk` (maps of `hw` pixels) to `total` / `pos`;
/// the first invalid score or label is an error naming its index in the category.
fn count(
    hw: usize,
    chunk: &Chunk<'_>,
    total: &mut [u64],
    pos: &mut [u64],
) -> Result<(), MetricsError> {
    let n = chunk.scores.len();
    let offset = chunk.first_image * hw;
    let part = if n < PARALLEL_MIN {
        n.max(1)
    } else {
        n.div_ceil(rayon::current_num_threads())
    };
    let counts: Vec<ChunkCounts> = chunk
        .scores
        .par_chunks(part)
        .zip(chunk.masks.par_chunks(part))
        .enumerate()
        .map(|(c, (s, l))| count_chunk(s, l, offset + c * part))
        .collect();
    if let Some(i) = counts.iter().filter_map(|c| c.invalid).min() {
        let local = i - offset;
        return Err(invalid_at(chunk.scores[local], chunk.masks[local], i));
    }
    for c in &counts {
        for b in 0..BUCKETS {
            total[b] += c.total[b] as u64;
            pos[b] += c.pos[b] as u64;
        }
    }
    Ok(())
}

impl Resolve {
    fn new(total: &[u64], pos: &[u64], memory: usize) -> Option<Self> {
        let positives: u64 = pos.iter().sum();
        let negatives = total.iter().sum::<u64>() - positives;
        let mut above = vec![(0u64, 0u64); BUCKETS];
        let (mut tp, mut fp) = (0u64, 0u64);
        for b in (0..BUCKETS).rev() {
            above[b] = (tp, fp);
            tp += pos[b];
            fp += total[b] - pos[b];
        }
        let mut planned = plan(total, memory);
        planned.reverse();
        let first = planned.pop()?;
        Some(Self {
            positives,
            negatives,
            above,
            planned,
            current: Gathering::new(first),
            carry: None,
            totals: Totals::default(),
        })
    }

    /// Walks the buckets of the pass just made; returns whether another pass is planned.
    fn resolve(&mut self) -> Result<bool, MetricsError> {
        // The next pass's buffers are made once these are released: one working set at a time.
        let done = std::mem::replace(&mut self.current, Gathering::new(Vec::new()));
        for (u, unit) in done.units.iter().enumerate() {
            if let Unit::Gather { len, .. } = *unit
                && done.cursor[u] != done.start[u] + len
            {
                return Err(changed());
            }
        }
        // Each unit's walk, from the carried walk or from the counts above its bucket.
        let mut jobs: Vec<(Unit, Walk, Job<'_>)> = Vec::with_capacity(done.units.len());
        let (mut items, counts) = (done.items, done.counts);
        let mut rest: &mut [u32] = &mut items;
        for (u, &unit) in done.units.iter().enumerate() {
            let b = unit.bucket();
            let walk = match self.carry.take() {
                Some((cb, w)) if cb == b => w,
                other => {
                    self.carry = other;
                    let (tp, fp) = self.above[b as usize];
                    Walk::new(tp, fp)
                }
            };
            let job = match unit {
                Unit::Gather { len, .. } => {
                    let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                    rest = tail;
                    Job::Items(head)
                }
                Unit::Count { lo, hi, .. } => {
                    let s = done.start[u];
                    Job::Counts(&counts[s..s + 2 * (hi - lo) as usize])
                }
            };
            jobs.push((unit, walk, job));
        }
        let positives = self.positives;
        let walks: Vec<(Unit, Walk)> = jobs
            .into_par_iter()
            .map_init(Vec::new, |hist: &mut Vec<u32>, (unit, walk, job)| {
                let walk = match (unit, job) {
                    (Unit::Count { bucket, lo, hi }, Job::Counts(c)) => {
                        walk_counts(bucket, lo, hi, c, walk, positives)
                    }
                    (_, Job::Items(items)) => {
                        walk_bucket(unit.bucket(), items, walk, positives, hist, DENSE_MIN)
                    }
                    (_, Job::Counts(_)) => walk,
                };
                (unit, walk)
            })
            .collect();
        for (unit, walk) in walks {
            if unit.ends_bucket() {
                self.totals.add(&walk);
            } else {
                self.carry = Some((unit.bucket(), walk));
            }
        }
        drop(items);
        match self.planned.pop() {
            Some(units) => {
                self.current = Gathering::new(units);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// What a unit's walk reads.
enum Job<'a> {
    Items(&'a mut [u32]),
    Counts(&'a [u64]),
}

/// Continues `walk` over the counted low keys `lo..hi` of `bucket`, highest first (`counts`:
/// negatives then positives per key), skipping keys no pixel holds - as the histogram path of
/// `walk_bucket` does.
fn walk_counts(bucket: u32, lo: u32, hi: u32, counts: &[u64], mut walk: Walk, p: u64) -> Walk {
    let high = bucket << LOW_BITS;
    for low in (lo..hi).rev() {
        let j = 2 * (low - lo) as usize;
        let (fp, tp) = (counts[j], counts[j + 1]);
        if fp + tp > 0 {
            walk.group(high | low, tp, fp, p);
        }
    }
    walk
}

impl Passes for RankingPasses {
    fn wants_pass(&self) -> bool {
        !matches!(self.stage, Stage::Done(_))
    }

    fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), MetricsError> {
        match &mut self.stage {
            Stage::Count { total, pos } => count(self.hw, chunk, total, pos),
            Stage::Resolve(r) => r.current.chunk(chunk.scores, chunk.masks),
            Stage::Done(_) => Ok(()),
        }
    }

    fn end_pass(&mut self) -> Result<(), MetricsError> {
        let stage = std::mem::replace(
            &mut self.stage,
            Stage::Done(Totals::default().metrics(0, 0)),
        );
        self.stage = match stage {
            Stage::Count { total, pos } => match Resolve::new(&total, &pos, self.memory) {
                Some(r) => Stage::Resolve(Box::new(r)),
                None => Stage::Done(Totals::default().metrics(0, 0)),
            },
            Stage::Resolve(mut r) => {
                if r.resolve()? {
                    Stage::Resolve(r)
                } else {
                    Stage::Done(r.totals.metrics(r.positives, r.negatives))
                }
            }
            done => done,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::pixel_metrics;
    use super::super::source::SliceSource;
    use super::*;
    use crate::rng::SplitMix64;

    /// The streamed metrics of `k` images of `hw` pixels, `chunk` images a chunk.
    fn streamed(
        scores: &[f32],
        labels: &[u8],
        hw: usize,
        chunk: usize,
        memory: usize,
    ) -> (PixelMetrics, usize) {
        let k = scores.len() / hw;
        let mut source = SliceSource::new(scores, labels, (k, 1, hw), chunk).unwrap();
        pixel_metrics_streamed(&mut source, memory).unwrap()
    }

    fn assert_bits(got: &PixelMetrics, want: &PixelMetrics, what: &str) {
        let bits = |m: &PixelMetrics| {
            [m.auroc, m.ap, m.f1_max, m.f1_threshold].map(|v| v.map(f64::to_bits))
        };
        assert_eq!(bits(got), bits(want), "{what}: {got:?} vs {want:?}");
        assert_eq!(
            (got.positives, got.negatives),
            (want.positives, want.negatives)
        );
    }

    /// Scores over many buckets, negative and positive, with heavy ties in places.
    fn mixed(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = SplitMix64(seed);
        let scores = (0..n)
            .map(|_| match rng.below(4) {
                0 => rng.below(9) as f32 * 0.125 - 0.5,
                1 => 0.5 + rng.below(3000) as f32 * 1e-7,
                2 => rng.normal() as f32 * 3.0,
                _ => rng.next_f32(),
            })
            .collect();
        let labels = (0..n).map(|_| (rng.below(5) == 0) as u8).collect();
        (scores, labels)
    }

    #[test]
    fn random_and_tied_inputs_equal_pixel_metrics_bit_for_bit() {
        for (seed, n, hw) in [(1, 4000, 100), (2, 30_000, 1000), (3, 777, 7)] {
            let (scores, labels) = mixed(n, seed);
            let want = pixel_metrics(&scores, &labels).unwrap();
            assert!(want.auroc.is_some() && want.ap.unwrap() > 0.0);
            for (chunk, memory) in [(1, 0), (3, 5000), (1000, 1 << 20), (1000, usize::MAX)] {
                let (got, passes) = streamed(&scores, &labels, hw, chunk, memory);
                assert_bits(
                    &got,
                    &want,
                    &format!("seed {seed} chunk {chunk} memory {memory}"),
                );
                assert!(passes >= 2, "{passes}");
                if memory == usize::MAX {
                    assert_eq!(passes, 2, "everything in one resolving pass");
                }
            }
        }
    }

    #[test]
    fn a_bucket_larger_than_memory_is_counted_in_pieces() {
        // 20,000 scores in one 16-bit bucket (80 KB of items, and a 1 MiB histogram) against
        // 16 KiB of memory: the bucket's low keys are counted 1,024 at a time over 64 passes.
        let mut rng = SplitMix64(9);
        let mut scores: Vec<f32> = (0..20_000)
            .map(|_| 0.5 + rng.below(20_000) as f32 * 1e-7)
            .collect();
        let mut labels: Vec<u8> = (0..20_000).map(|_| (rng.below(3) == 0) as u8).collect();
        assert_eq!(
            scores.iter().map(|&s| order_key(s) >> 16).min(),
            scores.iter().map(|&s| order_key(s) >> 16).max()
        );
        // A few other buckets, above and below, with ties.
        scores.extend([0.9f32, 0.9, 0.1, 0.1, -2.0]);
        labels.extend([1u8, 0, 1, 0, 0]);
        let want = pixel_metrics(&scores, &labels).unwrap();
        let (got, passes) = streamed(&scores, &labels, 5, 500, RANKING_MIN_MEMORY);
        assert_bits(&got, &want, "pieces");
        assert!(passes > 64, "{passes}");
        // With 1 MiB its 80 KB of items fit: gathered with the others in one pass.
        let (got, passes) = streamed(&scores, &labels, 5, 500, 1 << 20);
        assert_bits(&got, &want, "gathered");
        assert_eq!(passes, 2);
        // With 64 KiB the other buckets come first, then the bucket's keys in 16 passes.
        let (got, passes) = streamed(&scores, &labels, 5, 500, 64 << 10);
        assert_bits(&got, &want, "4,096 keys a pass");
        assert!((17..=19).contains(&passes), "{passes}");
    }

    #[test]
    fn a_large_bucket_past_the_histogram_size_is_counted() {
        // 300,000 pixels in one bucket: more than a gather takes (1 MiB), so it is counted.
        let n = 300_000;
        let scores: Vec<f32> = (0..n).map(|i| 0.25 + (i % 977) as f32 * 1e-8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 7 == 0) as u8).collect();
        let want = pixel_metrics(&scores, &labels).unwrap();
        let (got, passes) = streamed(&scores, &labels, 1000, 50, 1 << 30);
        assert_bits(&got, &want, "counted");
        assert_eq!(passes, 2);
    }

    #[test]
    fn plans_fit_the_memory_and_cover_every_key() {
        let mut total = vec![0u64; BUCKETS];
        total[70] = 3;
        total[60_000] = 1_000_000;
        total[5] = 100;
        total[6] = 5000;
        for memory in [0, 100, 20_000, 1 << 20, 1 << 30] {
            let passes = plan(&total, memory);
            let mut keys = vec![0u64; BUCKETS];
            let mut order = Vec::new();
            for units in &passes {
                let used: usize = units
                    .iter()
                    .map(|u| match *u {
                        Unit::Gather { len, .. } => len * ITEM_BYTES,
                        Unit::Count { lo, hi, .. } => (hi - lo) as usize * KEY_BYTES,
                    })
                    .sum();
                assert!(used <= memory.max(RANKING_MIN_MEMORY), "{memory}: {used}");
                for u in units {
                    order.push(u.bucket());
                    keys[u.bucket() as usize] += match *u {
                        Unit::Gather { .. } => 1 << LOW_BITS,
                        Unit::Count { lo, hi, .. } => (hi - lo) as u64,
                    };
                }
            }
            for b in [5, 6, 70, 60_000] {
                assert_eq!(keys[b], 1 << LOW_BITS, "bucket {b} at {memory}");
            }
            assert!(order.windows(2).all(|w| w[0] >= w[1]), "highest first");
        }
    }

    #[test]
    fn undefined_and_bad_input_as_pixel_metrics() {
        let (got, _) = streamed(&[0.1, 0.2, 0.2, 0.3], &[0, 0, 0, 0], 2, 1, 0);
        assert_bits(
            &got,
            &pixel_metrics(&[0.1, 0.2, 0.2, 0.3], &[0; 4]).unwrap(),
            "",
        );
        let (got, passes) = streamed(&[], &[], 3, 1, 0);
        assert_bits(&got, &pixel_metrics(&[], &[]).unwrap(), "empty");
        assert_eq!(passes, 1);
        let scores = [0.1, 0.2, 0.3, f32::NAN, 0.5, 0.6];
        let mut source = SliceSource::new(&scores, &[0, 1, 0, 0, 1, 0], (3, 1, 2), 1).unwrap();
        assert!(matches!(
            pixel_metrics_streamed(&mut source, 0),
            Err(MetricsError::NonFinite { index: 3, .. })
        ));
        let labels = [0, 1, 0, 0, 1, 2];
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let mut source = SliceSource::new(&scores, &labels, (3, 1, 2), 2).unwrap();
        assert!(matches!(
            pixel_metrics_streamed(&mut source, 0),
            Err(MetricsError::Label {
                index: 5,
                value: 2,
                ..
            })
        ));
    }

    /// A source that gives other scores from the second pass on.
    struct Fickle(usize);

    impl MapSource for Fickle {
        type Error = MetricsError;
        fn shape(&self) -> (usize, usize, usize) {
            (1, 1, 2)
        }
        fn chunk_images(&self) -> usize {
            1
        }
        fn pass(
            &mut self,
            visit: &mut dyn FnMut(Chunk<'_>) -> Result<(), MetricsError>,
        ) -> Result<(), MetricsError> {
            self.0 += 1;
            let scores = if self.0 == 1 { [0.5, 0.7] } else { [0.5, 0.5] };
            visit(Chunk {
                first_image: 0,
                images: 1,
                scores: &scores,
                masks: &[0, 1],
            })
        }
    }

    #[test]
    fn a_source_that_changes_between_passes_is_an_error() {
        let err = pixel_metrics_streamed(&mut Fickle(0), 0).unwrap_err();
        assert!(
            err.to_string().contains("same scores in every pass"),
            "{err}"
        );
    }
}
