//! The engine: feature extraction through the frozen backbone (cached, see [`cache`]), training
//! of the adapters, evaluation of every checkpoint.
//!
//! [`run_job`] is the one entry point the sweep runner calls.

pub mod assets;
pub mod cache;
pub mod evaluate;
pub mod extract;
pub mod features;
pub mod job;
pub mod progress;
pub mod train;

pub use job::run_job;

/// How a job is run (not part of its configuration: does not change its numbers).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rerun a finished job (its `DONE` marker is removed first).
    pub force: bool,
    /// No progress bars (log lines only).
    pub quiet: bool,
    /// Repository root, for provenance (git revision) and relative paths.
    pub repo_root: std::path::PathBuf,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what}: {message}")]
    Asset { what: String, message: String },
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
