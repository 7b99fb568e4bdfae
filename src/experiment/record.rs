//! The result schema of one run: `metrics.json`, `per_category.csv` and `routing.csv`.
//!
//! The engine fills a [`RunMetrics`]; the runner writes it; `collect` and the reports read it.
//! Metric values are fractions in [0, 1] (tables print percent) and `None` when undefined
//! (I-AUROC of a medical set with only anomalous images, for instance): `null` in JSON, empty in
//! CSV, never NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::Job;
use super::schema::{EpochSelection, Experiment};

/// Version of this schema, bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The metrics of one evaluation (one category, or the mean over categories).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    pub image_auroc: Option<f64>,
    pub image_ap: Option<f64>,
    pub image_f1max: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub pixel_aupro: Option<f64>,
    pub pixel_f1max: Option<f64>,
}

impl MetricSet {
    /// Metric names in the order of `published.toml` and of every table (the metrics room's
    /// order, which the bootstrap replicates follow).
    pub const NAMES: [&'static str; 6] = crate::metrics::METRIC_NAMES;

    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "image_auroc" => self.image_auroc,
            "image_ap" => self.image_ap,
            "image_f1max" => self.image_f1max,
            "pixel_auroc" => self.pixel_auroc,
            "pixel_aupro" => self.pixel_aupro,
            "pixel_f1max" => self.pixel_f1max,
            _ => None,
        }
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<f64>> {
        Some(match name {
            "image_auroc" => &mut self.image_auroc,
            "image_ap" => &mut self.image_ap,
            "image_f1max" => &mut self.image_f1max,
            "pixel_auroc" => &mut self.pixel_auroc,
            "pixel_aupro" => &mut self.pixel_aupro,
            "pixel_f1max" => &mut self.pixel_f1max,
            _ => return None,
        })
    }

    /// Mean over sets, skipping undefined values (the reference's `nanmean`); `None` when no set
    /// defines the metric.
    pub fn mean<'a>(sets: impl IntoIterator<Item = &'a MetricSet> + Clone) -> MetricSet {
        let mut out = MetricSet::default();
        for name in Self::NAMES {
            let vals: Vec<Option<f64>> = sets
                .clone()
                .into_iter()
                .map(|s| s.get(name).filter(|v| v.is_finite()))
                .collect();
            *out.slot(name).expect("known name") = crate::metrics::mean_defined(&vals);
        }
        out
    }
}

/// A two-sided confidence interval of one metric, in the metric's unit (a fraction).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// Whether `v` lies in the interval widened by `slack` on both sides.
    pub fn contains_within(&self, v: f64, slack: f64) -> bool {
        v >= self.lo - slack && v <= self.hi + slack
    }
}

/// Confidence intervals of the metrics of a [`MetricSet`] (same names); `None` where the metric
/// is undefined or was not computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricIntervals {
    pub image_auroc: Option<Interval>,
    pub image_ap: Option<Interval>,
    pub image_f1max: Option<Interval>,
    pub pixel_auroc: Option<Interval>,
    pub pixel_aupro: Option<Interval>,
    pub pixel_f1max: Option<Interval>,
}

impl MetricIntervals {
    pub fn get(&self, name: &str) -> Option<Interval> {
        match name {
            "image_auroc" => self.image_auroc,
            "image_ap" => self.image_ap,
            "image_f1max" => self.image_f1max,
            "pixel_auroc" => self.pixel_auroc,
            "pixel_aupro" => self.pixel_aupro,
            "pixel_f1max" => self.pixel_f1max,
            _ => None,
        }
    }

    pub fn set(&mut self, name: &str, value: Option<Interval>) {
        let slot = match name {
            "image_auroc" => &mut self.image_auroc,
            "image_ap" => &mut self.image_ap,
            "image_f1max" => &mut self.image_f1max,
            "pixel_auroc" => &mut self.pixel_auroc,
            "pixel_aupro" => &mut self.pixel_aupro,
            "pixel_f1max" => &mut self.pixel_f1max,
            _ => return,
        };
        *slot = value;
    }
}

/// How the intervals of an [`Evaluation`] were computed (docs/metrics.md, "Confidence intervals").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInfo {
    /// Bootstrap replicates drawn (each resamples whole test images, per category).
    pub replicates: usize,
    /// Coverage of the percentile interval (0.95).
    pub level: f64,
    /// Seed of the resampling (the same seed gives the same intervals).
    pub seed: u64,
    /// One line naming the method.
    pub method: String,
}

/// One category of the target dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryMetrics {
    pub category: String,
    pub n_normal: usize,
    pub n_anomalous: usize,
    pub metrics: MetricSet,
    /// Bootstrap confidence intervals of `metrics` (absent in runs made before they existed,
    /// or with `eval.bootstrap.replicates: 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<MetricIntervals>,
}

/// The evaluation of one checkpoint on the whole target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// 0 = adapters at initialization; 1.. = after that many epochs.
    pub epoch: usize,
    /// How this epoch was chosen, in words (e.g. "reference selection (test set)").
    pub selection: String,
    pub per_category: Vec<CategoryMetrics>,
    /// Mean over categories, skipping undefined values.
    pub mean: MetricSet,
    /// Bootstrap confidence intervals of `mean` (each replicate resamples every category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_interval: Option<MetricIntervals>,
    /// How the intervals were computed; `None` when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapInfo>,
}

impl Evaluation {
    /// Builds an evaluation whose mean is computed from its categories.
    pub fn new(
        epoch: usize,
        selection: impl Into<String>,
        per_category: Vec<CategoryMetrics>,
    ) -> Self {
        let mean = MetricSet::mean(per_category.iter().map(|c| &c.metrics));
        Evaluation {
            epoch,
            selection: selection.into(),
            per_category,
            mean,
            mean_interval: None,
            bootstrap: None,
        }
    }
}

/// Training losses of one epoch (means over its steps).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    pub total: f64,
    pub aware: f64,
    pub seg: f64,
    pub global: f64,
    pub route: f64,
}

/// One epoch: its training loss and, when evaluated, the mean test metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: LossRecord,
    pub mean: Option<MetricSet>,
    pub seconds: f64,
}

/// Summary statistics of routing weights over a group of test images.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightStats {
    pub count: usize,
    pub mean_w_normal: Option<f64>,
    pub mean_w_anomaly: Option<f64>,
    pub std_w_anomaly: Option<f64>,
}

/// Routing weights of the reported checkpoint, averaged over taps, per image label (Table 4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoutingSummary {
    pub normal: WeightStats,
    pub anomalous: WeightStats,
    /// Same split per category.
    pub per_category: BTreeMap<String, [WeightStats; 2]>,
    /// How well the anomaly weight alone tells the groups apart: AUROC of `w_anomaly` with the
    /// anomalous images as positives (0.5 = no separation, 1 = perfect). `None` with one group
    /// (medical sets) and in run directories written before it existed.
    #[serde(default)]
    pub separation_auroc: Option<f64>,
}

/// One row of `routing.csv`: an image's tap-averaged routing weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingRow {
    pub category: String,
    pub image: String,
    /// 1 = anomalous.
    pub label: u8,
    pub w_normal: f64,
    pub w_anomaly: f64,
}

/// Where a number came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// The git commit the binary was built from (embedded at build time), if known.
    pub git_revision: Option<String>,
    /// Whether the binary was built with uncommitted changes to the files it is compiled from.
    pub git_dirty: Option<bool>,
    /// SHA-256 (first 16 hex) of those uncommitted changes, when dirty: two different
    /// uncommitted trees have different values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_diff: Option<String>,
    /// Digest of the source that computes results (part of every identity; docs/experiments.md).
    pub code: String,
    /// Implementation of the backbone blocks: `avx512`, `avx2`, `portable` (the CPU kernels) or
    /// `burn` (burn's ops: GPU devices, bf16/f16, or `AVA_DINO_CPU_KERNELS=burn`).
    pub kernels: String,
    /// Threads of the compute pool (rayon) on the CPU.
    pub threads: usize,
    /// Dtype the backbone computes in (`backbone.dtype`) and of stored features (`cache.dtype`).
    pub backbone_dtype: String,
    pub feature_dtype: String,
    pub host: String,
    pub os: String,
    pub cpu: String,
    pub backend: String,
    /// Device description (GPU name, or the CPU).
    pub device: String,
    /// SHA-256 of each weights file used (`backbone`, `text`), or "embedded:<seed>".
    pub weights: BTreeMap<String, String>,
    /// True when weights and data are the embedded default (synthetic twins, random backbones).
    pub embedded: bool,
    pub seed: u64,
    pub protocol: String,
    pub profile: String,
    /// Text encoder activation (`gelu` as the reference runs it, or `quick_gelu`).
    pub activation: String,
    pub image_size: usize,
    /// Backbone blocks tapped.
    pub taps: Vec<usize>,
    /// The authors' repository commit the reference behaviour was taken from.
    pub reference_commit: String,
    /// RFC 3339 start time (UTC).
    pub started: String,
    /// Seconds per phase: `extract`, `train`, `eval`, `total`.
    pub timings: BTreeMap<String, f64>,
    /// SHA-256 (first 16 hex) of the sample lists read: `train`, `target` (path relative to the
    /// dataset root, label, mask, category and class word of every image, in order).
    pub samples: BTreeMap<String, String>,
    /// Where the training features were kept (`memory`, `disk`, `recompute`) and the memory
    /// budget in bytes.
    pub feature_store: String,
    pub memory_budget: u64,
    /// The peak resident memory the cost model expected for the job (`engine::cost::Memory`),
    /// in bytes; compare with `peak_rss` (docs/scale.md).
    #[serde(default)]
    pub expected_peak: u64,
    /// Peak resident memory of each phase (`extract`, `train`, `eval`), in bytes (Linux).
    pub peak_rss: BTreeMap<String, u64>,
    /// Images that went through the backbone in each phase (`extract`, `train`, `eval`);
    /// features read back from shards are not counted (a second seed extracts nothing).
    pub backbone_images: BTreeMap<String, u64>,
}

impl Provenance {
    /// What this binary is (revision embedded at build time, code digest), host facts and the
    /// settings of `job` under `exp` (the job's resolved configuration), read once at the start
    /// of a run. The engine adds what only it knows (device, kernels, weights, timings).
    pub fn capture(exp: &Experiment, job: &Job) -> Provenance {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Provenance {
            git_revision: crate::build_info::revision().map(str::to_string),
            git_dirty: crate::build_info::dirty(),
            git_diff: crate::build_info::diff().map(str::to_string),
            code: crate::build_info::CODE.to_string(),
            host,
            os: std::env::consts::OS.to_string(),
            cpu: format!(
                "{cpu} ({} threads)",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            ),
            threads: rayon::current_num_threads(),
            started: now_rfc3339(),
            reference_commit: "aqeeelmirza/AVA-DINO@a5474a1".into(),
            seed: job.seed,
            protocol: exp.protocol.name().into(),
            profile: exp.profile.name().into(),
            activation: exp.text.activation.name().into(),
            image_size: exp.data.image_size,
            taps: exp.backbone.taps.clone(),
            backend: exp.device.name().into(),
            backbone_dtype: exp.backbone.dtype.to_string(),
            feature_dtype: exp.cache.dtype.name().into(),
            embedded: exp.data.root.is_embedded()
                && exp.backbone.weights.is_embedded()
                && exp.text.weights.is_embedded(),
            ..Provenance::default()
        }
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Everything one run produced: `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub schema_version: u32,
    pub experiment: String,
    pub job: Job,
    /// Domain of the target (`industrial` / `medical`).
    pub target_domain: String,
    /// The rule the tables use for this run (both evaluations are always stored).
    pub selection: EpochSelection,
    /// The last epoch's checkpoint.
    pub final_epoch: Evaluation,
    /// The epoch with the best mean test P-AUROC, labelled "reference selection (test set)".
    pub best_epoch: Evaluation,
    /// Adapters at initialization (no training), to show that training helps.
    pub untrained: Option<Evaluation>,
    /// Loss and mean metrics per epoch (loss curves).
    pub epochs: Vec<EpochRecord>,
    /// Routing weights of the reported checkpoint (`None` for the single-adapter variant).
    pub routing: Option<RoutingSummary>,
    pub provenance: Provenance,
    /// Trainable parameter count.
    pub trainable_parameters: Option<u64>,
}

/// Label of the best-epoch evaluation.
pub const REFERENCE_SELECTION: &str = "reference selection (test set)";
/// Label of the final-epoch evaluation.
pub const FINAL_SELECTION: &str = "final epoch";
/// Label of the untrained baseline.
pub const UNTRAINED_SELECTION: &str = "untrained (adapters at initialization)";

impl RunMetrics {
    /// The evaluation a table reports under `selection`.
    pub fn selected(&self, selection: EpochSelection) -> &Evaluation {
        match selection {
            EpochSelection::ReferenceBest => &self.best_epoch,
            EpochSelection::Final => &self.final_epoch,
        }
    }

    /// `per_category.csv`: one row per (evaluation, category) plus a mean row per evaluation.
    pub fn per_category_csv(&self) -> String {
        let mut evals = vec![&self.best_epoch, &self.final_epoch];
        evals.extend(self.untrained.as_ref());
        per_category_csv(&evals)
    }
}

/// `per_category.csv` of `evals`: one row per (evaluation, category) plus a mean row per
/// evaluation, each labelled by its `selection` (a run's selection rule, or the checkpoint file
/// `ava-dino evaluate` read) and epoch.
pub fn per_category_csv(evals: &[&Evaluation]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["selection", "epoch", "category", "n_normal", "n_anomalous"];
    header.extend(MetricSet::NAMES);
    w.write_record(&header).expect("in memory");
    for e in evals {
        let rows = e.per_category.iter().map(|c| {
            (
                c.category.as_str(),
                Some((c.n_normal, c.n_anomalous)),
                &c.metrics,
            )
        });
        for (cat, counts, m) in rows.chain(std::iter::once(("mean", None, &e.mean))) {
            let (nn, na) = counts
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap_or_default();
            let mut record = vec![
                e.selection.clone(),
                e.epoch.to_string(),
                cat.to_string(),
                nn,
                na,
            ];
            record.extend(
                MetricSet::NAMES.map(|n| m.get(n).map(|v| format!("{v:.6}")).unwrap_or_default()),
            );
            w.write_record(&record).expect("in memory");
        }
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8 fields")
}

/// `metrics.json` of `ava-dino evaluate`: checkpoint files evaluated on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointsRecord {
    pub schema_version: u32,
    pub variant: String,
    pub target: String,
    /// One per file, in the order given.
    pub checkpoints: Vec<CheckpointRecord>,
    /// Files left out under `data.skip_bad`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The resolved configuration's digest (`config.resolved.yaml` beside this file).
    pub config: String,
    pub created: String,
}

/// One evaluated checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The file's name (`epoch_2.pth`, `epoch_003/adapters.safetensors`).
    pub label: String,
    pub file: String,
    /// `sha256:<hex>` of the file.
    pub sha256: String,
    /// Its `selection` is the label; its `epoch` the one the name gives (`epoch_K.pth` is
    /// epoch K+1; 0 when the name gives none).
    pub evaluation: Evaluation,
}

/// Writes `routing.csv` rows.
pub fn routing_csv(rows: &[RoutingRow]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Shortest round-trip form (serde's f64): the file holds the weights exactly (six decimals
    // merged nearly equal weights, so the separation AUROC of the file could differ from the run's).
    for r in rows {
        w.serialize(r).expect("in memory");
    }
    if rows.is_empty() {
        w.write_record(["category", "image", "label", "w_normal", "w_anomaly"])
            .expect("in memory");
    }
    String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8 fields")
}

/// Reads `routing.csv` (written by [`routing_csv`]).
pub fn read_routing_csv(text: &str) -> Result<Vec<RoutingRow>, String> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| format!("line {}: {e}", i + 2)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_skips_undefined() {
        let a = MetricSet {
            image_auroc: None,
            pixel_auroc: Some(0.8),
            ..Default::default()
        };
        let b = MetricSet {
            image_auroc: None,
            pixel_auroc: Some(0.6),
            ..Default::default()
        };
        let m = MetricSet::mean([&a, &b]);
        assert_eq!(m.image_auroc, None);
        assert!((m.pixel_auroc.unwrap() - 0.7).abs() < 1e-12);
    }

    #[test]
    fn routing_csv_round_trips_exactly() {
        let rows = vec![
            RoutingRow {
                category: "a,b".into(),
                image: "x\"1.png".into(),
                label: 0,
                w_normal: 0.8,
                w_anomaly: 0.2,
            },
            RoutingRow {
                category: "a,b".into(),
                image: "y.png".into(),
                label: 1,
                w_normal: 1.0 - 0.123_456_789_012_345_6,
                w_anomaly: 0.123_456_789_012_345_6,
            },
        ];
        let text = routing_csv(&rows);
        assert!(
            text.starts_with("category,image,label,w_normal,w_anomaly\n"),
            "{text}"
        );
        assert_eq!(read_routing_csv(&text).unwrap(), rows);
        assert_eq!(read_routing_csv(&routing_csv(&[])).unwrap(), vec![]);
        let err = read_routing_csv("category,image,label,w_normal,w_anomaly\na,b,2x,0.1,0.9\n")
            .unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn rfc3339_has_the_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
