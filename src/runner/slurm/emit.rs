//! The script of `ava-dino sweep <experiment> --emit slurm`, put together: the user's settings
//! resolved, the resources the cost model derives for what they leave open, the arguments of
//! the array tasks and of the collect job. The command line only hands its flags over.

use std::path::{Path, PathBuf};

use super::{
    Needs, PROCESS_BYTES, Plan, SlurmError, TimeEstimate, is_gpu, resolve, resources, script,
};
use crate::engine::cost::calibration::CpuRates;
use crate::experiment::schema::SlurmConfig;
use crate::experiment::{ExperimentDir, Job, LoadedExperiment, MemoryBudget};

/// What the command line adds to an experiment's script.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The experiment file, as the tasks will name it.
    pub experiment_file: &'a Path,
    /// Root of the run directories.
    pub runs: &'a Path,
    /// `--set` overrides, passed to every task.
    pub overrides: &'a [String],
    /// `--force`: the tasks rerun finished jobs, in one session (the array's job id).
    pub force: bool,
    /// Slurm flags given on the command line (they win over the experiment's `slurm:`).
    pub cli: &'a SlurmConfig,
    /// Where the jobs run (relative paths mean what they mean there) and the binary they run.
    pub workdir: PathBuf,
    pub program: PathBuf,
}

/// The script and the warnings about its resources (also written into it as comments).
pub fn emit(
    req: &Request,
    loaded: &LoadedExperiment,
    jobs: &[Job],
) -> Result<(String, Vec<String>), SlurmError> {
    let exp = &loaded.experiment;
    let settings = resolve(&exp.slurm, req.cli)?;
    // Memory and time given by the user need no estimate.
    let (fixed_bytes, time_estimate) = match (&settings.mem, &settings.time) {
        (Some(_), Some(_)) => (0, None),
        _ => job_costs(loaded, jobs, &req.workdir)
            .map(|(fixed, time)| (fixed, Some(time)))
            .map_err(SlurmError::Estimate)?,
    };
    let needs = Needs {
        backend: exp.device,
        profile: exp.profile,
        memory_budget: match exp.cache.memory_budget {
            MemoryBudget::Auto => None,
            MemoryBudget::Bytes(b) => Some(b),
        },
        fixed_bytes,
        time_estimate,
    };
    let res = resources(&needs, &settings);
    let mut task_args = vec![
        "sweep".to_string(),
        text(req.experiment_file)?,
        format!("--profile={}", exp.profile),
        "--runs".to_string(),
        text(req.runs)?,
    ];
    task_args.extend(req.overrides.iter().map(|o| format!("--set={o}")));
    // The tasks of one array share a --force session (SLURM_ARRAY_JOB_ID): each old directory
    // is moved aside once, and no task moves away what another made.
    if req.force {
        task_args.push("--force".into());
    }
    // Does not change a job's identity or its numbers, only where its features are kept.
    task_args.extend(
        res.task_budget
            .map(|b| format!("--set=cache.memory_budget={b}")),
    );
    let mut collect_args = vec![
        "collect".to_string(),
        text(&ExperimentDir::new(req.runs, exp).path)?,
    ];
    if !exp.tables.is_empty() {
        let tables: Vec<&str> = exp.tables.iter().map(|t| t.name()).collect();
        collect_args.extend(["--tables".to_string(), tables.join(",")]);
    }
    let plan = Plan {
        name: exp.name.clone(),
        profile: exp.profile,
        experiment_file: req.experiment_file.display().to_string(),
        n_jobs: jobs.len(),
        workdir: text(&req.workdir)?,
        program: text(&req.program)?,
        task_args,
        collect_args,
    };
    Ok((script(&plan, &settings, &res)?, res.warnings))
}

/// A path as script text: refused when it is not UTF-8 (a script could not name it faithfully).
fn text(p: &Path) -> Result<String, SlurmError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| SlurmError::NotUtf8 {
            path: p.display().to_string(),
        })
}

/// The cost model's figures for the Slurm resources: every job projected as if it ran alone (an
/// array task may do a training that other tasks share, or wait for it), then the largest fixed
/// memory and the longest time on the device's rates (measured for the CPU, projected from FLOPs
/// for a GPU). The CPU rates are the build machine's, never this machine's calibration: the
/// tasks run on the cluster's nodes, not on the machine that writes the script.
fn job_costs(
    loaded: &LoadedExperiment,
    jobs: &[Job],
    repo_root: &Path,
) -> Result<(u64, TimeEstimate), String> {
    let gpu = is_gpu(loaded.experiment.device);
    let (mut fixed, mut seconds) = (0u64, 0f64);
    for job in jobs {
        let mut alone = loaded.clone();
        alone.experiment.sweep = job.config(&loaded.experiment).sweep;
        let rates = CpuRates::build();
        for j in crate::runner::estimate::estimate(&[alone], repo_root, &rates)?.jobs {
            // `resources` adds the process itself on top.
            fixed = fixed.max(j.memory.fixed.saturating_sub(PROCESS_BYTES));
            let stages = if gpu { &j.gpu } else { &j.cpu };
            seconds = seconds.max(stages.iter().map(|s| s.seconds).sum());
        }
    }
    Ok((
        fixed,
        TimeEstimate {
            seconds: seconds.ceil() as u64,
            measured: !gpu,
        },
    ))
}
