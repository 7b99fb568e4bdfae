//! Experiments: the YAML schema and its loading (profiles, `key.sub=value` overrides), the job
//! list of a sweep, run directories, and the result record every run writes.
//!
//! Flow: [`load_experiment`] -> [`jobs`] -> [`run_one`] (skips finished jobs, calls
//! `engine::run_job`, writes `metrics.json` + `DONE`) -> `report::collect`.

pub mod assets;
pub mod job;
pub mod load;
pub mod record;
pub mod rundir;
pub mod schema;
pub mod sweep;

pub use assets::{MissingAsset, missing_assets};
pub use job::{Job, experiment_dir, jobs, run_dir, task_index_from_env, train_dir};
pub use load::{ExperimentError, LoadedExperiment, load_experiment};
pub use record::{
    CategoryMetrics, EpochRecord, Evaluation, LossRecord, MetricSet, Provenance, RoutingRow,
    RoutingSummary, RunMetrics, WeightStats,
};
pub use rundir::{RunDir, RunDirError};
pub use schema::{EpochSelection, Experiment, Profile, Protocol, Source, TableKind, Variant};
pub use sweep::{JobOutcome, SweepError, job_at, job_config, run_one};
