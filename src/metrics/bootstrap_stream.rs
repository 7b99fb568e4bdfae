//! The pixel part of the bootstrap's [`CategorySample`](super::CategorySample) built from a
//! [`MapSource`] a pass at a time: the same per-image bin histograms that
//! `CategorySample::new` builds from slices, so that the replicates are bit-identical.
//!
//! Pass 1 looks for the distinct scores (up to `bins` of them) and counts the anomalous pixels;
//! when there are more distinct scores than bins, pass 2 takes the strided subsample whose
//! quantiles place the bin edges; the last pass fills each image's histograms. Held: at most
//! `bins` distinct keys, the subsample (at most 2^20 keys a class, 8 MiB) and the histograms
//! (at most `2 x bins` counts an image).

use super::MetricsError;
use super::bootstrap::{
    BinIndex, BinRange, DISTINCT_CHUNK_IMAGES, PixelBins, QuantilePicker, distinct_in, image_bins,
    merge_distinct,
};
use super::source::{Chunk, Passes};
use rayon::prelude::*;

/// The bins of a category's pixels as one metric of shared passes.
pub(super) struct PixelBinsPasses {
    hw: usize,
    bins: usize,
    stage: Stage,
}

enum Stage {
    /// Pass 1: the distinct keys while there are at most `bins` (`None` past that), and the
    /// pixels and anomalous pixels seen.
    Distinct {
        keys: Option<Vec<u32>>,
        pixels: u64,
        anomalous: u64,
    },
    Quantiles(QuantilePicker),
    Histograms {
        edges: Vec<u32>,
        exact: bool,
        index: BinIndex,
        normal: Vec<BinRange>,
        anomalous: Vec<BinRange>,
    },
    Done(PixelBins),
}

impl PixelBinsPasses {
    /// The bins of `k` maps of `hw` pixels, at most `bins` of them (validated by the caller).
    pub(super) fn new(k: usize, hw: usize, bins: usize) -> Self {
        let stage = if hw == 0 {
            Stage::Done(PixelBins::without_pixels(k))
        } else {
            Stage::Distinct {
                keys: Some(Vec::new()),
                pixels: 0,
                anomalous: 0,
            }
        };
        Self { hw, bins, stage }
    }

    pub(super) fn finish(self) -> Option<PixelBins> {
        match self.stage {
            Stage::Done(bins) => Some(bins),
            _ => None,
        }
    }
}

impl Passes for PixelBinsPasses {
    fn wants_pass(&self) -> bool {
        !matches!(self.stage, Stage::Done(_))
    }

    fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), MetricsError> {
        let (hw, cap) = (self.hw, self.bins);
        match &mut self.stage {
            Stage::Distinct {
                keys,
                pixels,
                anomalous,
            } => {
                *pixels += chunk.scores.len() as u64;
                *anomalous += chunk.masks.par_iter().map(|&m| m as u64).sum::<u64>();
                if let Some(known) = keys.take() {
                    *keys = chunk
                        .scores
                        .par_chunks(hw * DISTINCT_CHUNK_IMAGES)
                        .map(|c| distinct_in(c, cap))
                        .collect::<Option<Vec<_>>>()
                        .and_then(|more| merge_distinct(known, more, cap));
                }
            }
            Stage::Quantiles(picker) => picker.pick(chunk.scores, chunk.masks, hw),
            Stage::Histograms {
                index,
                normal,
                anomalous,
                ..
            } => {
                let (n, a) = image_bins(chunk.scores, chunk.masks, hw, index);
                normal.extend(n);
                anomalous.extend(a);
            }
            Stage::Done(_) => {}
        }
        Ok(())
    }

    fn end_pass(&mut self) -> Result<(), MetricsError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Done(PixelBins::without_pixels(0)));
        let histograms = |edges: Vec<u32>, exact: bool| Stage::Histograms {
            index: BinIndex::new(&edges),
            edges,
            exact,
            normal: Vec::new(),
            anomalous: Vec::new(),
        };
        self.stage = match stage {
            Stage::Distinct {
                keys: Some(keys), ..
            } => histograms(keys, true),
            Stage::Distinct {
                keys: None,
                pixels,
                anomalous,
            } => Stage::Quantiles(QuantilePicker::new(pixels - anomalous, anomalous)),
            Stage::Quantiles(picker) => histograms(picker.edges(self.bins), false),
            Stage::Histograms {
                edges,
                exact,
                normal,
                anomalous,
                ..
            } => Stage::Done(PixelBins {
                edges,
                exact,
                normal,
                anomalous,
            }),
            done => done,
        };
        Ok(())
    }
}
