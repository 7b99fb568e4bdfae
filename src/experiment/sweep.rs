//! Running jobs: the one place that turns a [`Job`] into a finished run directory.
//!
//! `run_one` is idempotent: a job whose run directory holds `DONE` is skipped; an interrupted
//! one is handed back to the engine, which resumes from the last complete checkpoint.

use std::path::Path;

use super::job::{Job, run_dir};
use super::load::LoadedExperiment;
use super::rundir::{RunDir, RunDirError};
use super::schema::{Experiment, SweepConfig};
use crate::engine::{EngineError, RunOptions, run_job};

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
}

/// The configuration that identifies a job: the variant applied, the grid replaced by this job
/// alone and fields that do not change results (description, tables, where the feature cache
/// lives) reset. Experiments that share a name therefore share the run directory of a job they
/// both list. `cache.disk` stays: with shards on disk, features are rounded to f16.
pub fn job_config(exp: &Experiment, job: &Job) -> Experiment {
    let mut e = job.variant.apply(exp);
    e.description = String::new();
    e.tables = Vec::new();
    e.cache = super::schema::CacheConfig {
        disk: exp.cache.disk,
        ..Default::default()
    };
    e.sweep = SweepConfig {
        variants: vec![job.variant],
        runs: vec![super::schema::RunSpec {
            train: job.train.clone(),
            targets: vec![job.target.clone()],
        }],
        seeds: vec![job.seed],
    };
    e
}

/// The resolved YAML of a job (`config.resolved.yaml`).
pub fn resolved_yaml(exp: &Experiment, job: &Job) -> String {
    serde_saphyr::to_string(&job_config(exp, job)).expect("the schema serializes to YAML")
}

/// The resolved YAML of a job's training: [`job_config`] with the target removed, so every
/// target trained from the same (variant, training set, seed) shares it (and its fingerprint).
pub fn train_yaml(exp: &Experiment, job: &Job) -> String {
    let mut e = job_config(exp, job);
    e.sweep.runs[0].targets.clear();
    e.eval = Default::default();
    serde_saphyr::to_string(&e).expect("the schema serializes to YAML")
}

/// Runs `job` unless it is done, writing everything into its run directory under `runs_root`.
pub fn run_one(
    job: &Job,
    loaded: &LoadedExperiment,
    runs_root: &Path,
    opts: &RunOptions,
) -> Result<JobOutcome, SweepError> {
    let rd = RunDir::new(run_dir(runs_root, &loaded.experiment, job));
    if rd.is_done() && !opts.force {
        return Ok(JobOutcome::Skipped);
    }
    if opts.force && rd.is_done() {
        std::fs::remove_file(rd.done_marker()).map_err(|source| RunDirError::Io {
            path: rd.done_marker(),
            source,
        })?;
    }
    // The job runs with its identifying configuration plus the caller's cache location.
    let mut exp = job_config(&loaded.experiment, job);
    exp.cache = loaded.experiment.cache.clone();
    rd.prepare(&resolved_yaml(&loaded.experiment, job), &loaded.overrides)?;
    rd.log_line(&format!(
        "start job {job} (experiment {}, profile {})",
        exp.name, exp.profile
    ))?;
    let result = run_job(job, &exp, &rd.path, opts);
    let metrics = match result {
        Ok(m) => m,
        Err(source) => {
            let _ = rd.log_line(&format!("failed: {source}"));
            return Err(SweepError::Engine {
                job: job.to_string(),
                source: Box::new(source),
            });
        }
    };
    rd.finish(&metrics)?;
    rd.log_line("done")?;
    Ok(JobOutcome::Finished)
}

/// The job at `index`, or a clear error naming the valid range.
pub fn job_at(jobs: &[Job], index: usize) -> Result<&Job, SweepError> {
    jobs.get(index).ok_or(SweepError::IndexOutOfRange {
        index,
        count: jobs.len(),
    })
}

/// A Slurm job-array script running every job of `experiment_file` (one array task per job),
/// then `collect` once they all succeeded.
pub fn slurm_script(
    experiment_file: &Path,
    exp: &Experiment,
    n_jobs: usize,
    extra_args: &[String],
    runs_root: &Path,
) -> String {
    let exp_path = experiment_file.display();
    let extra = extra_args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect::<String>();
    let last = n_jobs.saturating_sub(1);
    format!(
        r#"#!/usr/bin/env bash
# Slurm job array for experiment `{name}` (profile {profile}): {n_jobs} independent jobs.
# Submit:   sbatch this-file.sh
# Collect:  sbatch --dependency=afterok:<array job id> --wrap 'ava-dino collect {runs}/{name}-{profile}'
# Jobs are idempotent (a DONE marker skips them) and resume from their last checkpoint, so
# resubmitting the array after a failure only redoes what is missing.
# `%8` runs at most 8 tasks at once; #SBATCH lines are not shell-expanded, edit it here.
#SBATCH --job-name=ava-{name}-{profile}
#SBATCH --array=0-{last}%8
#SBATCH --output=slurm-%A_%a.out
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
set -euo pipefail
exec ava-dino sweep {exp_path} --task-index "$SLURM_ARRAY_TASK_ID" --runs {runs}{extra}
"#,
        name = exp.name,
        profile = exp.profile,
        runs = runs_root.display(),
    )
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
