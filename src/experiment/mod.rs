//! Experiments: what a run is. The YAML schema and its loading (profiles, `key.sub=value`
//! overrides), the jobs of a sweep and each job's identifying configuration, where runs are
//! written (`layout`), the up-front asset check, and the result record every run writes.
//!
//! The engine computes a job; the runner (`crate::runner`) decides which jobs run and where.

pub mod job;
pub mod layout;
pub mod load;
pub mod preflight;
pub mod record;
pub mod schema;

pub use job::{Job, Sharing, jobs, shares_training_features, task_index_from_env};
pub use layout::{
    CheckpointDir, ExperimentDir, Identity, RunDir, RunDirError, TrainDir, WorkDir, short_hash,
};
pub use load::{ExperimentError, LoadedExperiment, load_experiment};
pub use preflight::{MissingAsset, missing_assets};
pub use record::{
    BootstrapInfo, CategoryMetrics, EpochRecord, Evaluation, Interval, LossRecord, MetricIntervals,
    MetricSet, Provenance, RoutingRow, RoutingSummary, RunMetrics, WeightStats,
};
pub use schema::{
    EpochSelection, Experiment, FeatureDtype, MemoryBudget, Profile, Protocol, Source, TableKind,
    TrainStore, Variant,
};
