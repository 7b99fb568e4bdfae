//! The experiment schema: every hyper-parameter of docs/method.md as a field whose default is
//! the reference value, so an empty YAML file describes the reference run.
//!
//! Sections mirror the pipeline: `data`, `backbone`, `text`, `model`, `loss`, `optim`, `train`,
//! `eval`, `cache`, `sweep`, plus `slurm` (scheduler settings, no effect on results). Unknown keys
//! are errors (`deny_unknown_fields` everywhere).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backbone::Precision;
use crate::device::Backend;
pub use crate::model::{LossWeights, OptimConfig, Variant};

/// A whole experiment, after layering defaults < file < profile < command-line overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Experiment {
    /// Experiment name; run directories live under `runs/<name>-<profile>/`. Experiments that
    /// share a name share run directories, so a job listed by two tables runs once.
    pub name: String,
    /// Free text for humans.
    pub description: String,
    /// `smoke` (embedded default: synthetic twins, tiny random backbones) or `full` (real assets).
    pub profile: Profile,
    /// Tables this experiment feeds (`table1` .. `table4`); `collect` writes these.
    pub tables: Vec<TableKind>,
    /// `reference` reproduces the authors' code bit for bit, `corrected` fixes its quirks
    /// (class word, prompt interleaving): see docs/DEVIATIONS.md.
    pub protocol: Protocol,
    /// Backend for training and evaluation.
    pub device: Backend,
    pub data: DataConfig,
    pub backbone: BackboneConfig,
    pub text: TextConfig,
    pub model: ModelConfig,
    pub loss: LossWeights,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub cache: CacheConfig,
    pub sweep: SweepConfig,
    /// Settings of the script `sweep --emit slurm` writes. Left out of the serialized YAML while
    /// unset, so a job's resolved configuration (and identity) is what it was without it.
    #[serde(skip_serializing_if = "SlurmConfig::is_unset")]
    pub slurm: SlurmConfig,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            name: "paper".into(),
            description: String::new(),
            profile: Profile::Full,
            tables: Vec::new(),
            protocol: Protocol::Reference,
            device: Backend::Cpu,
            data: DataConfig::default(),
            backbone: BackboneConfig::default(),
            text: TextConfig::default(),
            model: ModelConfig::default(),
            loss: LossWeights::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            cache: CacheConfig::default(),
            sweep: SweepConfig::default(),
            slurm: SlurmConfig::default(),
        }
    }
}

/// Where an asset comes from: the embedded default, a path, or an environment variable naming a
/// path. Written in YAML as `embedded`, `env:VAR` or a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded default (synthetic twins / seeded random weights).
    Embedded,
    /// The path held by an environment variable, read when the run starts.
    Env(String),
    /// A path.
    Path(PathBuf),
}

impl Source {
    /// Resolves to a path (`None` for `Embedded`); `Err(var)` when the variable is unset or empty.
    pub fn resolve(&self) -> Result<Option<PathBuf>, String> {
        match self {
            Source::Embedded => Ok(None),
            Source::Path(p) => Ok(Some(p.clone())),
            Source::Env(var) => match std::env::var_os(var) {
                Some(v) if !v.is_empty() => Ok(Some(PathBuf::from(v))),
                _ => Err(var.clone()),
            },
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Source::Embedded)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => f.write_str("embedded"),
            Source::Env(v) => write!(f, "env:{v}"),
            Source::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "embedded" => Source::Embedded,
            _ => match s.strip_prefix("env:") {
                Some(var) if !var.is_empty() => Source::Env(var.to_string()),
                Some(_) => {
                    return Err(serde::de::Error::custom(
                        "`env:` needs a variable name, e.g. env:AVA_DINO_DINOV3",
                    ));
                }
                None => Source::Path(PathBuf::from(s)),
            },
        })
    }
}

/// The profiles. `smoke` runs everything on the embedded default in minutes on a CPU;
/// `rehearsal` runs the paper's shapes (ViT-L/16 at 512 px, CLIP ViT-L/14-336 text tower, twins
/// at real image sizes) on seeded random weights, to see what a full run costs without assets;
/// `full` is the paper's run on the real assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Smoke,
    Rehearsal,
    #[default]
    Full,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Smoke, Profile::Rehearsal, Profile::Full];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Rehearsal => "rehearsal",
            Profile::Full => "full",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile `{s}`; use smoke, rehearsal or full"))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The paper's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    Table1,
    Table2,
    Table3,
    Table4,
}

impl TableKind {
    pub const ALL: [TableKind; 4] = [
        TableKind::Table1,
        TableKind::Table2,
        TableKind::Table3,
        TableKind::Table4,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TableKind::Table1 => "table1",
            TableKind::Table2 => "table2",
            TableKind::Table3 => "table3",
            TableKind::Table4 => "table4",
        }
    }
}

impl std::str::FromStr for TableKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TableKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown table `{s}`; use table1, table2, table3 or table4"))
    }
}

pub use crate::protocol::Protocol;

/// Data: image size and where the nine datasets are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Square input size (PIL-style antialiased bilinear resize); maps are evaluated at this size.
    pub image_size: usize,
    /// The dataset registry.
    pub registry: PathBuf,
    /// `embedded` (synthetic twins written under `synthetic.dir`) or the common data root
    /// (per-dataset `AVA_DINO_<KEY>_ROOT` variables still win, see datasets.toml).
    pub root: Source,
    pub synthetic: SyntheticConfig,
    /// Leave out unreadable images or masks (each listed in the run's log) instead of stopping.
    pub skip_bad: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            image_size: 512,
            registry: PathBuf::from("datasets.toml"),
            root: Source::Env("AVA_DINO_DATA_ROOT".into()),
            synthetic: SyntheticConfig::default(),
            skip_bad: false,
        }
    }
}

/// The synthetic twins (used only when `data.root` is `embedded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Where the twins are written (generated once, reused; rewritten when a setting changes).
    pub dir: PathBuf,
    pub seed: u64,
    /// Test images per category: `small` (a handful, the smoke twins), a number (half normal,
    /// half anomalous; all anomalous for medical sets), or `real` (the official counts of
    /// `datasets.toml`).
    pub per_category: PerCategory,
    /// The same for single datasets, by registry key, over `per_category`
    /// (`--set data.synthetic.per_dataset.ksdd2=1000`: one large twin beside small ones).
    pub per_dataset: std::collections::BTreeMap<String, PerCategory>,
    /// Image sizes: `small` (about 70 px) or `real` (each dataset's own, e.g. 1500x1000 for VisA).
    pub resolution: Resolution,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            dir: PathBuf::from("runs/synthetic"),
            seed: 0,
            per_category: PerCategory::Small,
            per_dataset: Default::default(),
            resolution: Resolution::Small,
        }
    }
}

impl SyntheticConfig {
    /// The generator's options.
    pub fn options(&self) -> SynthOptions {
        let counts = |p: PerCategory| match p {
            PerCategory::Small => Counts::Small,
            PerCategory::Count(n) => Counts::PerCategory(n),
            PerCategory::Real => Counts::Official,
        };
        SynthOptions {
            seed: self.seed,
            counts: counts(self.per_category),
            per_dataset: self
                .per_dataset
                .iter()
                .map(|(k, &p)| (k.clone(), counts(p)))
                .collect(),
            resolution: self.resolution,
        }
    }
}

pub use crate::data::synth::Resolution;
use crate::data::synth::{Counts, SynthOptions};

/// `data.synthetic.per_category`: `small`, a number, or `real`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerCategory {
    #[default]
    Small,
    Count(usize),
    Real,
}

impl Serialize for PerCategory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PerCategory::Small => s.serialize_str("small"),
            PerCategory::Count(n) => s.serialize_u64(*n as u64),
            PerCategory::Real => s.serialize_str("real"),
        }
    }
}

impl<'de> Deserialize<'de> for PerCategory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "data.synthetic.per_category must be small, real or a number of images >= 1",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Int(0) => Err(bad()),
            Raw::Int(n) => Ok(PerCategory::Count(n as usize)),
            Raw::Text(t) => match t.as_str() {
                "small" => Ok(PerCategory::Small),
                "real" => Ok(PerCategory::Real),
                _ => t
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .map(PerCategory::Count)
                    .ok_or_else(bad),
            },
        }
    }
}

/// Frozen DINOv3 backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackboneConfig {
    /// `embedded` (seeded random tiny ViT, see `embedded`) or the DINOv3 ViT-L/16 weights.
    pub weights: Source,
    /// Blocks (0-based) whose final-normed outputs feed the adapters.
    pub taps: Vec<usize>,
    /// Shape of the embedded random backbone.
    pub embedded: EmbeddedVit,
    /// Dtype the backbone computes in: `f32` (the reference, parity), or `bf16` / `f16` (every
    /// weight cast, features returned in f32; docs/DEVIATIONS.md has the error they make).
    pub dtype: Precision,
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig {
            weights: Source::Env("AVA_DINO_DINOV3".into()),
            taps: vec![5, 11, 17, 23],
            embedded: EmbeddedVit::default(),
            dtype: Precision::F32,
        }
    }
}

/// A seeded random ViT small enough for a CPU (DINOv3 architecture, 4 registers, patch 16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedVit {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    /// Patch side (16 as DINOv3; smaller gives a finer grid on small smoke images).
    pub patch: usize,
    pub seed: u64,
}

impl Default for EmbeddedVit {
    fn default() -> Self {
        EmbeddedVit {
            dim: 64,
            depth: 8,
            heads: 4,
            patch: 16,
            seed: 0,
        }
    }
}

/// Frozen CLIP text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// `embedded` (seeded random tiny CLIP text tower) or CLIP ViT-L/14-336 weights.
    pub weights: Source,
    /// The reference rebuilds CLIP with erf GELU although the weights were trained with QuickGELU.
    pub activation: Activation,
    pub embedded: EmbeddedText,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            weights: Source::Env("AVA_DINO_CLIP".into()),
            activation: Activation::Gelu,
            embedded: EmbeddedText::default(),
        }
    }
}

pub use crate::text::Activation;

/// A seeded random CLIP text tower small enough for a CPU (real tokenizer, 77 tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedText {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    /// Output embedding size (768 for CLIP ViT-L/14-336).
    pub embed_dim: usize,
    pub seed: u64,
}

impl Default for EmbeddedText {
    fn default() -> Self {
        EmbeddedText {
            width: 64,
            layers: 2,
            heads: 4,
            embed_dim: 32,
            seed: 1,
        }
    }
}

/// Trainable adapters and heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Adapter bottleneck width (reference 768; the paper text says 256).
    pub bottleneck: usize,
    /// Routing softmax temperature.
    pub tau: f64,
    /// Seed of the adapter initialization (combined with the job seed).
    pub init_seed: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            bottleneck: 768,
            tau: 0.1,
            init_seed: 0,
        }
    }
}

/// Training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// Samples per forward/backward pass: a batch runs as micro-batches of this size whose
    /// gradients are accumulated into one update (the whole batch's update within f32 rounding;
    /// docs/model.md). Bounds the training activations (about 190 MB per image at full size)
    /// independently of `batch_size`. Part of a run's identity: other sizes round differently.
    pub micro_batch: usize,
    /// 20 as in the README (the reference scripts use 10).
    pub epochs: usize,
    /// The order of the training set each epoch: `seeded` (or `true`; the reference shuffles
    /// without a seed), `torch` (PyTorch's own order under `torch.manual_seed(seed)`, over the
    /// training set listed as the reference's dataset lists it) or `false` (file order).
    pub shuffle: Shuffle,
    /// Adapters the training starts from instead of seeded random ones: the authors'
    /// `epoch_N.pth` or our `adapters.safetensors` (docs/fidelity.md). Its SHA-256 is part of
    /// the run's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Batch size of the frozen-backbone feature extraction.
    pub extract_batch_size: usize,
    /// Off a terminal, a progress line at least every this many seconds (extraction, training
    /// and evaluation alike).
    pub log_interval_s: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            micro_batch: 8,
            epochs: 20,
            shuffle: Shuffle::Seeded,
            init: None,
            extract_batch_size: 16,
            log_interval_s: 30.0,
        }
    }
}

impl TrainConfig {
    /// [`TrainConfig::log_interval_s`] as a duration (at least 10 ms).
    pub fn log_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.log_interval_s.max(0.01))
    }
}

/// `train.shuffle`: how each epoch orders the training set.
///
/// `seeded` and `false` serialize as the booleans they were before `torch` existed, so the
/// resolved YAML of earlier runs (part of their identity) is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shuffle {
    /// File order every epoch (`false`).
    None,
    /// Fisher-Yates from the crate's SplitMix64, seeded by the job seed and the epoch (`true`).
    #[default]
    Seeded,
    /// What `torch.utils.data.DataLoader(..., shuffle=True)` yields after
    /// `torch.manual_seed(seed)` (`crate::data::torch_order`), permuting the training set in the
    /// reference dataset's own order (`crate::data::SampleOrder::Layout`).
    Torch,
}

impl Serialize for Shuffle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Shuffle::None => s.serialize_bool(false),
            Shuffle::Seeded => s.serialize_bool(true),
            Shuffle::Torch => s.serialize_str("torch"),
        }
    }
}

impl<'de> Deserialize<'de> for Shuffle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(false) => Ok(Shuffle::None),
            Raw::Flag(true) => Ok(Shuffle::Seeded),
            Raw::Text(t) => match t.as_str() {
                "seeded" | "true" => Ok(Shuffle::Seeded),
                "torch" => Ok(Shuffle::Torch),
                "false" | "none" => Ok(Shuffle::None),
                _ => Err(serde::de::Error::custom(format!(
                    "train.shuffle must be seeded (or true), torch or false, not `{t}`"
                ))),
            },
        }
    }
}

/// Which epoch a table reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EpochSelection {
    /// The reference's rule: the epoch with the best P-AUROC on the target's test set.
    #[default]
    ReferenceBest,
    /// The last epoch (no test-set selection).
    Final,
}

impl EpochSelection {
    /// The label printed beside every number chosen this way.
    pub fn label(self) -> &'static str {
        match self {
            EpochSelection::ReferenceBest => {
                "reference selection (test set): best epoch by test P-AUROC"
            }
            EpochSelection::Final => "final epoch",
        }
    }
}

/// Evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Epoch reported in the tables (both are always stored in metrics.json).
    pub selection: EpochSelection,
    /// Evaluate every epoch's checkpoint (needed by `reference_best`).
    pub every_epoch: bool,
    /// Also evaluate the adapters at initialization (the "untrained" baseline).
    pub untrained_baseline: bool,
    pub batch_size: usize,
    /// AUPRO integrates FPR up to this limit.
    pub aupro_fpr_limit: f64,
    /// Compute AUPRO (slow on large categories).
    pub aupro: bool,
    /// Anomaly maps saved per category for the overlay charts and the report's gallery (half
    /// anomalous, half normal).
    pub maps_per_category: usize,
    /// Confidence intervals of every metric (docs/metrics.md, "Confidence intervals").
    pub bootstrap: BootstrapConfig,
}

/// Bootstrap confidence intervals: each replicate resamples the test images of every category
/// (whole images, with replacement) and recomputes every metric; the interval is the percentile
/// interval of the replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Replicates (0: no intervals).
    pub replicates: usize,
    /// Coverage of the interval.
    pub level: f64,
    /// Seed of the resampling (the same seed, the same intervals, on every machine).
    pub seed: u64,
    /// Score bins of the pixel metrics' replicates (exact below this many distinct scores).
    pub bins: usize,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            replicates: 1000,
            level: 0.95,
            seed: 0,
            bins: 1024,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            selection: EpochSelection::ReferenceBest,
            every_epoch: true,
            untrained_baseline: true,
            batch_size: 16,
            aupro_fpr_limit: 0.3,
            aupro: true,
            maps_per_category: 2,
            bootstrap: BootstrapConfig::default(),
        }
    }
}

/// Where frozen-backbone features live. They are a pure function of (weights, image,
/// preprocessing, taps), so they are computed once per image and reused by every epoch and every
/// checkpoint evaluated; see docs/scale.md for what each setting costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bound on what a job holds besides its weights: one batch's activations, and the memory
    /// that grows with the number of images (training features, a category's anomaly maps
    /// during evaluation): a size (`8GiB`, `512MiB`, bytes) or `auto`, 3/4 of what the memory
    /// available to the process (cgroup limits included) leaves after the job's weights and
    /// checkpoints (printed in the log and by `estimate`).
    pub memory_budget: MemoryBudget,
    /// Training features: `auto` (in memory when they fit the budget, else on disk), `memory`,
    /// `disk` (shards under `dir`, read back batch by batch), or `recompute` (the backbone runs
    /// again every epoch, as the reference does).
    pub train: TrainStore,
    /// Precision of stored features: `f32` (exact: what the reference computes) or `f16` (half
    /// the memory and disk; every store then holds f16-rounded features, a deviation).
    pub dtype: FeatureDtype,
    /// Shard directory, shared by jobs and runs (each shard's key names its weights, image,
    /// preprocessing, taps and precision).
    pub dir: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory_budget: MemoryBudget::Auto,
            train: TrainStore::Auto,
            dtype: FeatureDtype::F32,
            dir: PathBuf::from("runs/cache/features"),
        }
    }
}

/// Where training features are kept (`cache.train`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainStore {
    #[default]
    Auto,
    Memory,
    Disk,
    Recompute,
}

/// Precision of stored features (`cache.dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeatureDtype {
    #[default]
    F32,
    F16,
}

impl FeatureDtype {
    pub fn name(self) -> &'static str {
        match self {
            FeatureDtype::F32 => "f32",
            FeatureDtype::F16 => "f16",
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            FeatureDtype::F32 => 4,
            FeatureDtype::F16 => 2,
        }
    }
}

/// `cache.memory_budget`: `auto` or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryBudget {
    /// Half of the memory available when the job starts.
    #[default]
    Auto,
    Bytes(u64),
}

impl MemoryBudget {
    /// Parses `auto`, a plain byte count, or a number with a unit (`k`/`KB`/`KiB`, `M`/`MB`/`MiB`,
    /// `G`/`GB`/`GiB`, `T`...; decimal units are powers of 1000, binary ones of 1024, a bare
    /// letter is binary).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(MemoryBudget::Auto);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("memory size `{text}`: expected e.g. 8GiB, 512MiB or auto"))?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kib" => 1024.0,
            "kb" => 1e3,
            "m" | "mib" => 1024f64.powi(2),
            "mb" => 1e6,
            "g" | "gib" => 1024f64.powi(3),
            "gb" => 1e9,
            "t" | "tib" => 1024f64.powi(4),
            "tb" => 1e12,
            _ => {
                return Err(format!(
                    "memory size `{text}`: unknown unit `{unit}`; use B, KiB, MiB, GiB or TiB (or KB, MB, GB)"
                ));
            }
        };
        let bytes = value * scale;
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(format!("memory size `{text}` must be at least one byte"));
        }
        Ok(MemoryBudget::Bytes(bytes as u64))
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryBudget::Auto => f.write_str("auto"),
            MemoryBudget::Bytes(b) => f.write_str(&format_bytes(*b)),
        }
    }
}

/// `1.5GiB`-style rendering (binary units, at most one decimal), exact bytes below 1 KiB.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{}{unit}", v.round() as u64)
    } else {
        format!("{v:.1}{unit}")
    }
}

impl Serialize for MemoryBudget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MemoryBudget::Auto => s.serialize_str("auto"),
            // Exact bytes, so a resolved config reads back to the same value.
            MemoryBudget::Bytes(b) => s.serialize_u64(*b),
        }
    }
}

impl<'de> Deserialize<'de> for MemoryBudget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(0) => Err(serde::de::Error::custom(
                "cache.memory_budget must be at least one byte (or auto)",
            )),
            Raw::Int(b) => Ok(MemoryBudget::Bytes(b)),
            Raw::Text(t) => MemoryBudget::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Slurm settings for `ava-dino sweep ... --emit slurm` (see `runner::slurm`): the experiment's
/// `slurm:` section and, with the same names, the command line's flags, which win. Unset values
/// are derived (from the device, profile, memory budget and time estimate). They never change
/// results: `Job::config` resets them. The one declaration of these fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
#[command(
    next_help_heading = "Slurm script (with --emit slurm; each wins over the YAML's slurm: section)"
)]
pub struct SlurmConfig {
    /// Partition (`#SBATCH --partition`; unset: the cluster's default).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_text")]
    pub partition: Option<String>,
    /// Account to charge (unset: the user's default).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_text")]
    pub account: Option<String>,
    /// Quality of service (unset: the default).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_text")]
    pub qos: Option<String>,
    /// Time limit of each task: minutes (`90`), `HH:MM:SS` or `D-HH:MM:SS` (unset: from the
    /// time estimate).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_text")]
    pub time: Option<String>,
    /// CPUs per task (unset or 0 in YAML: from the profile and device).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_count")]
    pub cpus_per_task: Option<usize>,
    /// Memory per task: `16G`, `16000M` (unset: memory budget + fixed costs).
    #[arg(long)]
    #[serde(deserialize_with = "slurm_text")]
    pub mem: Option<String>,
    /// At most N tasks at once (`--array=0-N%8`; 0: no limit; unset: 8).
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    /// More `#SBATCH` options, written after the derived ones (so they win) and passed to the
    /// collect job too: `--sbatch=--constraint=avx512` (repeatable); the command line's come
    /// after the YAML's.
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

impl SlurmConfig {
    /// Whether nothing is set (the section is then left out of serialized YAML).
    pub fn is_unset(&self) -> bool {
        *self == SlurmConfig::default()
    }

    /// The first flag set, if any (they mean nothing without `--emit slurm`).
    pub fn first_set(&self) -> Option<&'static str> {
        [
            ("--partition", self.partition.is_some()),
            ("--account", self.account.is_some()),
            ("--qos", self.qos.is_some()),
            ("--time", self.time.is_some()),
            ("--cpus-per-task", self.cpus_per_task.is_some()),
            ("--mem", self.mem.is_some()),
            ("--max-parallel", self.max_parallel.is_some()),
            ("--sbatch", !self.extra.is_empty()),
        ]
        .into_iter()
        .find_map(|(flag, set)| set.then_some(flag))
    }
}

/// A Slurm name or size is text (empty: unset): a YAML number (`account: 0123`) would lose what
/// was written (the leading zero), so it is refused with the fix rather than converted.
fn slurm_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("text")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<String>, E> {
            Ok((!v.is_empty()).then(|| v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<String>, E> {
            Ok(None)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<String>, E> {
            Err(quote_it(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<String>, E> {
            Err(quote_it(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Option<String>, E> {
            Err(quote_it(v))
        }
    }
    fn quote_it<E: serde::de::Error>(v: impl fmt::Display) -> E {
        E::custom(format!(
            "slurm: settings are text; write the number {v} in quotes (account: \"{v}\") so that \
             it is kept exactly as written"
        ))
    }
    d.deserialize_any(Text)
}

/// A count where 0 means unset (derived).
fn slurm_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.filter(|&n| n > 0))
}

/// The grid: variants x (training set, targets) x seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepConfig {
    pub variants: Vec<Variant>,
    pub runs: Vec<RunSpec>,
    pub seeds: Vec<u64>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            variants: vec![Variant::Full],
            runs: Vec::new(),
            seeds: vec![0],
        }
    }
}

/// One auxiliary training set and the targets evaluated zero-shot after training on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Dataset key of `datasets.toml` (`visa`, `mvtec`, ...).
    pub train: String,
    pub targets: Vec<String>,
}
