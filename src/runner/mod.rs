//! The runner: which jobs run, where, and what happened to them. It sits above the engine (how
//! a job is computed) and the experiment (what a job is): it validates a sweep before any work,
//! holds each run directory's lock while its job runs, skips finished jobs, moves old work aside
//! on `--force`, and writes the result record.
//!
//! `run_one` is idempotent: a job whose run directory holds `DONE` is skipped; an interrupted
//! one is handed back to the engine, which resumes from the last complete checkpoint.
//!
//! [`estimate`] projects what a sweep costs; [`slurm`] writes the job-array script of
//! `ava-dino sweep ... --emit slurm`.

pub mod estimate;
pub mod slurm;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::engine::assets::backbone_config;
use crate::engine::{EngineError, JobContext, run_job};
use crate::experiment::schema::Experiment;
use crate::experiment::{ExperimentDir, Identity, Job, LoadedExperiment, RunDirError, WorkDir};

/// How jobs are run (not part of their configuration: does not change their numbers).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Rerun finished jobs and retrain their trainings (the old directories are moved aside).
    pub force: bool,
    /// No progress bars (log lines only).
    pub quiet: bool,
    /// Repository root, for provenance (git revision) and relative paths.
    pub repo_root: PathBuf,
    /// The code revision (`crate::experiment::code_revision`), part of every identity.
    pub code: String,
    /// Trainings already moved aside by `force` in this process (each is retrained once).
    forced: Mutex<HashSet<PathBuf>>,
}

impl RunOptions {
    pub fn new(repo_root: PathBuf, force: bool, quiet: bool) -> Self {
        RunOptions {
            force,
            quiet,
            code: crate::experiment::code_revision(&repo_root),
            repo_root,
            forced: Mutex::default(),
        }
    }
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// It ran to the end now.
    Finished,
    /// It was already finished (`DONE`): nothing was done.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("job {job}")]
    Engine {
        job: String,
        source: Box<EngineError>,
    },
    #[error(
        "task index {index} is out of range: the experiment has {count} jobs (0..{count}); list them with --list"
    )]
    IndexOutOfRange { index: usize, count: usize },
    #[error("job {job}: {message} (nothing was run; fix the experiment or the overrides)")]
    Invalid { job: String, message: String },
}

/// Checks every job's configuration against the backbone it will load (its depth and patch size
/// come from the embedded shape or the weights' `config.json`), so that a bad tap or image size
/// stops the sweep before any work, not after the weights are loaded.
pub fn validate(exp: &Experiment, jobs: &[Job]) -> Result<(), SweepError> {
    for job in jobs {
        let cfg = job.config(exp);
        let invalid = |message: String| SweepError::Invalid {
            job: job.to_string(),
            message,
        };
        let backbone = backbone_config(&cfg.backbone).map_err(|e| invalid(e.to_string()))?;
        let size = cfg.data.image_size;
        backbone
            .check_input([1, backbone.num_channels, size, size], &cfg.backbone.taps)
            .map_err(|m| {
                invalid(format!(
                    "backbone.taps {:?} / data.image_size {size}: {m}",
                    cfg.backbone.taps
                ))
            })?;
    }
    Ok(())
}

/// Runs `job` unless it is done, writing everything into its run directory under `runs_root`.
pub fn run_one(
    job: &Job,
    loaded: &LoadedExperiment,
    runs_root: &Path,
    opts: &RunOptions,
) -> Result<JobOutcome, SweepError> {
    let exp_dir = ExperimentDir::new(runs_root, &loaded.experiment);
    let run = exp_dir.run(job);
    let training = exp_dir.training(job);
    let _lock = run.lock(|| eprintln!("job {job}: waiting for another process running it"))?;
    if opts.force {
        if let Some(old) = run.move_aside()? {
            eprintln!("job {job}: earlier run moved to {}", old.display());
        }
        let first = opts
            .forced
            .lock()
            .expect("forced set lock")
            .insert(training.path.clone());
        if first {
            let _train_lock = training.lock(|| {
                eprintln!(
                    "job {job}: waiting for another process training {}",
                    training.path.display()
                )
            })?;
            if let Some(old) = training.move_aside()? {
                eprintln!("job {job}: earlier training moved to {}", old.display());
            }
        }
    } else if run.is_done() {
        return Ok(JobOutcome::Skipped);
    }
    let identity = job.config(&loaded.experiment);
    // The job runs with its identifying configuration plus the caller's cache settings.
    let mut exp = identity.clone();
    exp.cache = loaded.experiment.cache.clone();
    run.prepare(&Identity {
        config: serde_saphyr::to_string(&identity).expect("the schema serializes to YAML"),
        code: opts.code.clone(),
        samples: None,
    })?;
    run.write_overrides(&loaded.overrides)?;
    run.log_line(&format!(
        "start job {job} (experiment {}, profile {}, code {})",
        exp.name, exp.profile, opts.code
    ))?;
    let cx = JobContext {
        job,
        exp: &exp,
        run: &run,
        training: &training,
        repo_root: &opts.repo_root,
        code: &opts.code,
        quiet: opts.quiet,
    };
    let metrics = match run_job(&cx) {
        Ok(m) => m,
        Err(source) => {
            let _ = run.log_line(&format!("failed: {source}"));
            return Err(SweepError::Engine {
                job: job.to_string(),
                source: Box::new(source),
            });
        }
    };
    run.finish(&metrics)?;
    run.log_line("done")?;
    Ok(JobOutcome::Finished)
}

/// The job at `index`, or a clear error naming the valid range.
pub fn job_at(jobs: &[Job], index: usize) -> Result<&Job, SweepError> {
    jobs.get(index).ok_or(SweepError::IndexOutOfRange {
        index,
        count: jobs.len(),
    })
}
