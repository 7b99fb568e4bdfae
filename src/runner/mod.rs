//! The runner: which jobs run, where, and what happened to them. It sits above the engine (how
//! a job is computed) and the experiment (what a job is): it validates a sweep before any work,
//! holds each run directory's lock while its job runs, skips finished jobs, moves old work aside
//! on `--force`, and writes the result record.
//!
//! Before any work, [`plan`] works out every chosen job's identity (configuration, computing
//! code, weights, sample lists) and [`stale`] names the jobs whose earlier work was made
//! differently: they are never skipped, resumed or reported as ours. `run_one` is idempotent: a
//! job whose run directory holds `DONE` under the same identity is skipped; an interrupted one
//! is handed back to the engine, which resumes from the last complete checkpoint.
//!
//! [`estimate`] projects what a sweep costs; [`slurm`] writes the job-array script of
//! `ava-dino sweep ... --emit slurm`.

pub mod estimate;
pub mod slurm;

use std::path::{Path, PathBuf};

use crate::engine::assets::backbone_spec;
use crate::engine::{EngineError, JobContext, JobIdentity, job_identity, run_job};
use crate::experiment::schema::Experiment;
use crate::experiment::{ExperimentDir, Job, LoadedExperiment, RunDirError, WorkDir};

/// How jobs are run (not part of their configuration: does not change their numbers).
#[derive(Debug, Default)]
pub struct RunOptions {
    /// `--force`: the session rerunning finished jobs and retraining their trainings (old
    /// directories are moved aside). Processes of one session (the tasks of one Slurm array)
    /// keep what any of them made: each old directory is moved aside once.
    pub force: Option<String>,
    /// No progress bars (log lines only).
    pub quiet: bool,
    /// Repository root, for relative paths.
    pub repo_root: PathBuf,
}

impl RunOptions {
    pub fn new(repo_root: PathBuf, force: bool, quiet: bool) -> Self {
        RunOptions {
            force: force.then(force_session),
            quiet,
            repo_root,
        }
    }
}

/// The `--force` session of this process: `AVA_DINO_FORCE_SESSION` when set, else the Slurm
/// array's job id (shared by its tasks), else one of this process alone.
pub fn force_session() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    var("AVA_DINO_FORCE_SESSION")
        .or_else(|| var("SLURM_ARRAY_JOB_ID").map(|id| format!("slurm-{id}")))
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("pid-{}-{t}", std::process::id())
        })
}

/// A chosen job with its index in the sweep and its identity.
#[derive(Debug, Clone)]
pub struct Planned {
    pub index: usize,
    pub job: Job,
    pub identity: JobIdentity,
    /// Features the job shares with other jobs of the sweep.
    pub sharing: crate::experiment::Sharing,
}

/// The identities of the jobs at `indices` (of the sweep's `jobs`), before any work. Writes the
/// synthetic twins if they are missing (they are listed like real data).
pub fn plan(
    loaded: &LoadedExperiment,
    jobs: &[Job],
    indices: &[usize],
    repo_root: &Path,
) -> Result<Vec<Planned>, SweepError> {
    let exp = &loaded.experiment;
    indices
        .iter()
        .map(|&index| {
            let job = job_at(jobs, index)?.clone();
            let identity =
                job_identity(&job, exp, repo_root).map_err(|source| SweepError::Engine {
                    job: job.to_string(),
                    source: Box::new(source),
                })?;
            let sharing = crate::experiment::Sharing::of(jobs, exp, &job);
            Ok(Planned {
                index,
                job,
                identity,
                sharing,
            })
        })
        .collect()
}

/// One line per planned job whose run or training directory holds work made differently:
/// `job 0 full__visa__mvtec__s0: train.epochs: 15 -> 5`. Empty: every earlier piece of work may
/// be reused (skipped or resumed).
pub fn stale(
    planned: &[Planned],
    loaded: &LoadedExperiment,
    runs_root: &Path,
) -> Result<Vec<String>, SweepError> {
    let exp_dir = ExperimentDir::new(runs_root, &loaded.experiment);
    let mut out = Vec::new();
    for p in planned {
        let run = exp_dir.run(&p.job);
        let mut d = p.identity.run.differences(&run.path)?;
        if d.is_empty() {
            let training = exp_dir.training(&p.job);
            d = p
                .identity
                .training
                .differences(&training.path)?
                .into_iter()
                .map(|x| format!("its training _train/{}: {x}", p.job.train_key()))
                .collect();
        }
        if !d.is_empty() {
            out.push(format!("job {} {}: {}", p.index, p.job, d.join("; ")));
        }
    }
    Ok(out)
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
    #[error(
        "{} job(s) would reuse earlier work made differently (nothing was run):\n  {}\n\
         to recompute them, add --force (the old work is moved aside to <dir>.replaced-<time>); \
         to keep it, write into another --runs directory",
        lines.len(),
        lines.join("\n  ")
    )]
    Stale { lines: Vec<String> },
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
        let backbone = backbone_spec(&cfg.backbone).map_err(|e| invalid(e.to_string()))?;
        let size = cfg.data.image_size;
        backbone
            .check_input(
                [1, backbone.shape().channels, size, size],
                &cfg.backbone.taps,
            )
            .map_err(|m| {
                invalid(format!(
                    "backbone.taps {:?} / data.image_size {size}: {m}",
                    cfg.backbone.taps
                ))
            })?;
    }
    Ok(())
}

/// Runs the planned job unless it is done under the same identity, writing everything into its
/// run directory under `runs_root`. Work made differently is refused ([`stale`] names it before
/// any work); under `--force` it is moved aside first.
pub fn run_one(
    planned: &Planned,
    loaded: &LoadedExperiment,
    runs_root: &Path,
    opts: &RunOptions,
) -> Result<JobOutcome, SweepError> {
    let job = &planned.job;
    let exp_dir = ExperimentDir::new(runs_root, &loaded.experiment);
    let run = exp_dir.run(job);
    let training = exp_dir.training(job);
    let _lock = run.lock(|| eprintln!("job {job}: waiting for another process running it"))?;
    if let Some(session) = &opts.force {
        if let Some(old) = run.replace_for(session)? {
            eprintln!("job {job}: earlier run moved to {}", old.display());
        }
        // Exclusive: waits for evaluations reading the training (they hold it shared).
        let _train_lock = training.lock(|| {
            eprintln!(
                "job {job}: waiting for other processes using {}",
                training.path.display()
            )
        })?;
        if let Some(old) = training.replace_for(session)? {
            eprintln!("job {job}: earlier training moved to {}", old.display());
        }
    } else if run.is_done() {
        let differences = planned.identity.run.differences(&run.path)?;
        if differences.is_empty() {
            return Ok(JobOutcome::Skipped);
        }
        return Err(RunDirError::Changed {
            dir: run.path.clone(),
            differences,
        }
        .into());
    }
    let exp = job.run_config(&loaded.experiment);
    run.prepare(&planned.identity.run, opts.force.as_deref())?;
    run.write_overrides(&loaded.overrides)?;
    run.log_line(&format!(
        "start job {job} (experiment {}, profile {}, binary {}, code {})",
        exp.name,
        exp.profile,
        crate::build_info::describe(),
        crate::build_info::CODE
    ))?;
    let cx = JobContext {
        job,
        exp: &exp,
        run: &run,
        training: &training,
        repo_root: &opts.repo_root,
        identity: &planned.identity,
        force: opts.force.as_deref(),
        sharing: planned.sharing,
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

/// Where a job stands in `exp_dir`: `done`, `partial` (a training with complete epochs),
/// `started` (its run directory exists) or `pending`.
pub fn status(exp_dir: &ExperimentDir, job: &Job) -> &'static str {
    let rd = exp_dir.run(job);
    if rd.is_done() {
        "done"
    } else if exp_dir
        .training(job)
        .latest_complete()
        .is_some_and(|e| e > 0)
    {
        "partial"
    } else if rd.path.exists() {
        "started"
    } else {
        "pending"
    }
}

/// The job at `index`, or a clear error naming the valid range.
pub fn job_at(jobs: &[Job], index: usize) -> Result<&Job, SweepError> {
    jobs.get(index).ok_or(SweepError::IndexOutOfRange {
        index,
        count: jobs.len(),
    })
}
