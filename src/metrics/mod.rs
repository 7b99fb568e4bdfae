//! Evaluation metrics on plain slices (or chunks of them): no burn, no I/O.
//!
//! Every metric equals its reference definition (`docs/metrics.md` traces each one):
//! - [`pixel_metrics`]: AUROC = scikit-learn `roc_auc_score`, AP = `average_precision_score`,
//!   F1-max = the AVA-DINO reference (`precision_recall_curve`, `2PR/(P+R+1e-8)`, max over finite
//!   values) plus the threshold reaching it - all three from one pass over the sorted scores;
//! - [`auroc`]: the same AUROC alone (image-level scores);
//! - [`aupro`]: the AnomalyCLIP / APRIL-GAN `cal_pro_score` (200 thresholds, 8-connected regions,
//!   FPR limit, rescale, trapezoid);
//! - [`mean_defined`]: the category mean, skipping undefined values like the reference's `nanmean`;
//! - [`CategorySample`], [`replicates`], [`intervals`]: bootstrap confidence intervals of a
//!   category's six metrics (and of their mean), resampling whole test images;
//! - [`category_streamed`] (and [`pixel_metrics_streamed`], [`aupro_streamed`]): all of the above
//!   for a category larger than memory, read in passes from a [`MapSource`] (the engine's spill
//!   files) with bounded memory, bit-identical to the in-memory functions.
//!
//! A metric that the reference would report as NaN (one class only, no positive pixel) is `None`
//! here: "undefined", never NaN and never a panic. Bad input (length mismatch, NaN score, a label
//! other than 0/1) is an error naming the offending index.

mod aupro;
mod bootstrap;
mod bootstrap_stream;
mod ranking;
mod ranking_stream;
mod source;
mod stream;

pub use aupro::{AUPRO_FPR_LIMIT, AUPRO_STEPS, aupro, aupro_streamed};
pub use bootstrap::{
    BootstrapSpec, CategorySample, Intervals, METRIC_NAMES, Values, intervals, mean_replicates,
    replicates, resample, stream_of,
};
pub use ranking::{PixelMetrics, auroc, pixel_metrics};
pub use ranking_stream::{RANKING_MIN_MEMORY, pixel_metrics_streamed, ranking_fixed_bytes};
pub use source::{Chunk, MapSource, SliceSource};
pub use stream::{
    MAX_RANKING_PASSES, StreamOptions, StreamedCategory, category_streamed, ranking_floor,
    stream_fixed_bytes,
};

/// Input that no metric can be computed on. Each message says how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "metrics: {what} has {got} values but {expected} were expected ({why}); give one value per pixel"
    )]
    Length {
        what: &'static str,
        got: usize,
        expected: usize,
        why: String,
    },
    #[error(
        "metrics: {what}[{index}] is {value}, not finite; remove or replace NaN/inf scores first (scikit-learn rejects them too)"
    )]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },
    #[error(
        "metrics: {what}[{index}] is {value}; labels and masks must be 0 or 1 (binarize them first, e.g. mask > 0)"
    )]
    Label {
        what: &'static str,
        index: usize,
        value: u8,
    },
    #[error("metrics: {what} is {value}; {fix}")]
    Parameter {
        what: &'static str,
        value: f64,
        fix: &'static str,
    },
    #[error(
        "metrics: bootstrap: the full-sample {metric} given is {given:?} but these maps and scores give {computed:?}; pass the metrics computed on exactly these maps and scores (after any rescaling) and the same AUPRO FPR limit"
    )]
    Inconsistent {
        metric: &'static str,
        given: Option<f64>,
        computed: Option<f64>,
    },
}

/// Mean of the defined values; `None` when none is defined (numpy `nanmean` of all-NaN is NaN).
pub fn mean_defined(values: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    if defined.is_empty() {
        None
    } else {
        Some(defined.iter().sum::<f64>() / defined.len() as f64)
    }
}

/// Index and value of the first non-finite score, for [`MetricsError::NonFinite`].
fn first_non_finite(values: &[f32], offset: usize) -> Option<(usize, f32)> {
    values
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| (offset + i, values[i]))
}

/// Index and value of the first label that is neither 0 nor 1.
fn first_bad_label(labels: &[u8], offset: usize) -> Option<(usize, u8)> {
    labels
        .iter()
        .position(|&l| l > 1)
        .map(|i| (offset + i, labels[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_skips_undefined() {
        assert_eq!(mean_defined(&[Some(1.0), None, Some(0.5)]), Some(0.75));
        assert_eq!(mean_defined(&[None, None]), None);
        assert_eq!(mean_defined(&[]), None);
    }
}
