//! The engine: feature extraction through the frozen backbone (cached, see [`cache`]), training
//! of the adapters, evaluation of every checkpoint.
//!
//! [`run_job`] is the one entry point the sweep runner calls.

pub mod cache;
pub mod evaluate;
pub mod features;
pub mod progress;
pub mod train;

use std::path::Path;

use crate::experiment::{Experiment, Job, RunMetrics};

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
    #[error(
        "the training/evaluation engine is not wired yet (issue 7): `run_job` has no body in this build"
    )]
    NotWired,
    #[error(transparent)]
    RunDir(#[from] crate::experiment::RunDirError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

/// Trains and evaluates one job, writing checkpoints, maps and log lines into `run_dir`, and
/// resuming from `RunDir::latest_complete_checkpoint` when an earlier attempt was interrupted.
/// Per-image routing weights go to `routing.csv` through `RunDir::write_routing`; the runner
/// writes the returned metrics (`metrics.json`, `per_category.csv`) and then `DONE`.
pub fn run_job(
    job: &Job,
    exp: &Experiment,
    run_dir: &Path,
    opts: &RunOptions,
) -> Result<RunMetrics, EngineError> {
    let _ = (job, exp, run_dir, opts);
    Err(EngineError::NotWired)
}
