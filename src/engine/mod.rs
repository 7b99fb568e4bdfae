//! The engine: how a job is computed. Frozen-backbone features (extracted in batches, kept where
//! the memory budget allows), training of the adapters with per-epoch checkpoints, one streamed
//! evaluation pass of every checkpoint over the target, and the record of the run.
//!
//! Rooms: [`assets`] (frozen parts), [`identity`] (what a job's results depend on), [`extract`] (images to features), [`features`] (features in
//! memory), [`cache`] (shards on disk), [`store`] (the training set), [`train`] and
//! [`checkpoints`], [`inference`] (adapters on features), [`evaluate`], [`outcome`] (the reported epoch, the
//! routing summary), [`plan`] (what a job will do, priced by the estimate too), [`overlays`],
//! [`budget`], [`progress`], [`cost`] (what a run will cost), and [`pipeline`], which runs a
//! job through them. The engine reads configuration sections and writes into the directories
//! `crate::experiment::layout` names; it knows nothing of sweeps or the command line.

pub mod assets;
pub mod budget;
pub mod cache;
pub mod checkpoint_files;
pub mod checkpoints;
pub mod cost;
pub mod evaluate;
pub mod extract;
pub mod features;
pub mod identity;
pub mod inference;
pub mod init;
pub mod outcome;
pub mod overlays;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod store;
pub mod train;

pub use identity::{JobIdentity, job_identity};
pub use pipeline::{JobContext, run_job};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what}: {message}")]
    Asset { what: String, message: String },
    #[error("{what}: {message}")]
    Config { what: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Backbone(#[from] crate::backbone::BackboneError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] crate::model::CheckpointError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("training state: {0}")]
    Record(#[from] burn::store::RecordError),
    #[error(transparent)]
    RunDir(#[from] crate::experiment::RunDirError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}
