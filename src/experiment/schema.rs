//! The experiment schema: every hyper-parameter of DESIGN.md section 2 as a field whose default is
//! the reference value, so an empty YAML file describes the reference run.
//!
//! Sections mirror the pipeline: `data`, `backbone`, `text`, `model`, `loss`, `optim`, `train`,
//! `eval`, `cache`, `sweep`. Unknown keys are errors (`deny_unknown_fields` everywhere).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::device::Backend;

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
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub cache: CacheConfig,
    pub sweep: SweepConfig,
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
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            cache: CacheConfig::default(),
            sweep: SweepConfig::default(),
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

/// The two profiles. `smoke` runs everything on the embedded default in minutes on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Smoke,
    #[default]
    Full,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Full => "full",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "smoke" => Ok(Profile::Smoke),
            "full" => Ok(Profile::Full),
            _ => Err(format!("unknown profile `{s}`; use smoke or full")),
        }
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

/// Size of the synthetic twins (used only when `data.root` is `embedded`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Where the twins are written (generated once, reused).
    pub dir: PathBuf,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            dir: PathBuf::from("runs/synthetic"),
            seed: 0,
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
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig {
            weights: Source::Env("AVA_DINO_DINOV3".into()),
            taps: vec![5, 11, 17, 23],
            embedded: EmbeddedVit::default(),
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

/// Loss weights: `aware L_aware + seg L_seg + global L_global + route L_route`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    pub aware: f64,
    pub seg: f64,
    pub global: f64,
    pub route: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            aware: 0.25,
            seg: 0.5,
            global: 0.25,
            route: 0.1,
        }
    }
}

/// AdamW with decoupled weight decay and a linear warmup (LambdaLR: first step has LR 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Warmup steps = int(warmup x total steps).
    pub warmup: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
            warmup: 0.03,
        }
    }
}

/// Training loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    /// 20 as in the README (the reference scripts use 10).
    pub epochs: usize,
    /// Seeded shuffling of the training set each epoch (the reference shuffles without a seed).
    pub shuffle: bool,
    /// Batch size of the frozen-backbone feature extraction.
    pub extract_batch_size: usize,
    /// In non-terminal output, one log line every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            epochs: 20,
            shuffle: true,
            extract_batch_size: 16,
            log_every: 10,
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
    /// Anomaly maps saved per category for the overlay charts.
    pub maps_per_category: usize,
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
        }
    }
}

/// Feature cache (frozen-backbone tap features are a pure function of the image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Keep features of the current job in memory (reused by every epoch and evaluation).
    pub in_memory: bool,
    /// Also keep f16 shards on disk, shared by jobs and runs (off by default: features are then
    /// rounded to f16 for every run, fresh or resumed, which the reference does not do).
    pub disk: bool,
    pub dir: PathBuf,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            in_memory: true,
            disk: false,
            dir: PathBuf::from("runs/cache/features"),
        }
    }
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

/// The method and its ablations (Tables 2 and 3). Definitions in docs/DEVIATIONS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Dual adapters, text-guided routing, L_route: the paper's method.
    Full,
    /// One adapter branch `f + A(f)`, no routing, no L_route.
    SingleAdapter,
    /// Dual adapters with a learned gate Linear(D,2) on the normalized CLS; no text, no L_route.
    LearnableRouting,
    /// Dual adapters with text routing, L_route weight 0.
    TextRoutingNoLroute,
    /// The full method on the last tap only.
    LastLayer,
}

/// How the two adapter branches are mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// One branch, no weights.
    None,
    /// Softmax of CLS-text similarities / tau.
    Text,
    /// Softmax of a learned linear gate on the CLS / tau.
    Learnable,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Full,
        Variant::SingleAdapter,
        Variant::LearnableRouting,
        Variant::TextRoutingNoLroute,
        Variant::LastLayer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::SingleAdapter => "single_adapter",
            Variant::LearnableRouting => "learnable_routing",
            Variant::TextRoutingNoLroute => "text_routing_no_lroute",
            Variant::LastLayer => "last_layer",
        }
    }

    pub fn routing(self) -> Routing {
        match self {
            Variant::SingleAdapter => Routing::None,
            Variant::LearnableRouting => Routing::Learnable,
            Variant::Full | Variant::TextRoutingNoLroute | Variant::LastLayer => Routing::Text,
        }
    }

    /// The experiment as this variant runs it: taps and loss weights adjusted. The model reads
    /// `routing()` for the branch structure.
    pub fn apply(self, exp: &Experiment) -> Experiment {
        let mut e = exp.clone();
        match self {
            Variant::Full => {}
            Variant::SingleAdapter | Variant::LearnableRouting | Variant::TextRoutingNoLroute => {
                e.loss.route = 0.0
            }
            Variant::LastLayer => {
                // The last tap of the list is the deepest block (23 for ViT-L/16).
                if let Some(&last) = e.backbone.taps.iter().max() {
                    e.backbone.taps = vec![last];
                }
            }
        }
        e
    }
}

impl std::str::FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!("unknown variant `{s}`; use one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
