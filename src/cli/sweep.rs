//! `ava-dino sweep`: list, run (one by index, or all) or emit a Slurm array for an experiment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::experiment::{self, ExperimentDir, Job, LoadedExperiment, MemoryBudget, Profile};
use ava_dino::runner::slurm;
use ava_dino::runner::{self, JobOutcome, RunOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment file (experiments/table1.yaml ...).
    pub experiment: PathBuf,
    /// Profile layered over the file: smoke (embedded default) or full (real assets).
    #[arg(long, env = "AVA_DINO_PROFILE")]
    pub profile: Option<Profile>,
    /// Override a key: `--set train.epochs=2` (repeatable; the value is YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Root of the run directories.
    #[arg(long, default_value = "runs", env = "AVA_DINO_RUNS")]
    pub runs: PathBuf,
    /// Print the jobs (index, run directory, status) and exit.
    #[arg(long, conflicts_with_all = ["task_index", "all", "emit"])]
    pub list: bool,
    /// Run job I (default: $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I")]
    pub task_index: Option<usize>,
    /// Run every job, one after the other.
    #[arg(long, conflicts_with_all = ["task_index", "emit"])]
    pub all: bool,
    /// Write a job-array script for a scheduler to stdout (`slurm`): run it with `bash FILE`,
    /// it submits the array and a collect job that waits for it.
    #[arg(long, value_name = "KIND", value_parser = ["slurm"])]
    pub emit: Option<String>,
    /// Only check that the assets the jobs need exist; list what is missing.
    #[arg(long)]
    pub check_assets: bool,
    /// Print what the jobs will cost (time per stage, memory) and exit.
    #[arg(long)]
    pub estimate: bool,
    /// Print the resolved configuration of the experiment and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Rerun finished jobs and retrain their trainings from scratch (the old run and training
    /// directories are moved aside to `<name>.replaced-<time>`, not deleted).
    #[arg(long)]
    pub force: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Last: its help heading would otherwise carry over to the flags after it.
    #[command(flatten)]
    pub slurm: SlurmArgs,
}

/// Settings of the Slurm script; each wins over the same key of the experiment's `slurm:` section.
#[derive(Debug, clap::Args)]
#[command(
    next_help_heading = "Slurm script (with --emit slurm; each wins over the YAML's slurm: section)"
)]
pub struct SlurmArgs {
    /// Partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Quality of service.
    #[arg(long)]
    pub qos: Option<String>,
    /// Time limit of each task: minutes, HH:MM:SS or D-HH:MM:SS (default: from the estimate).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task (default: from the profile and device).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// Memory per task: 16G, 16000M (default: memory budget + fixed costs).
    #[arg(long)]
    pub mem: Option<String>,
    /// At most N tasks at once (0: no limit; default 8).
    #[arg(long, value_name = "N")]
    pub max_parallel: Option<usize>,
    /// Another #SBATCH option, e.g. `--sbatch=--constraint=avx512` (repeatable; written last).
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub extra: Vec<String>,
}

impl SlurmArgs {
    /// The first Slurm flag given, if any (they mean nothing without `--emit slurm`; clap's
    /// `requires` does not fire next to `--list`, which conflicts with `--emit`).
    fn first_given(&self) -> Option<&'static str> {
        [
            ("--partition", self.partition.is_some()),
            ("--account", self.account.is_some()),
            ("--qos", self.qos.is_some()),
            ("--time", self.time.is_some()),
            ("--cpus-per-task", self.cpus_per_task.is_some()),
            ("--mem", self.mem.is_some()),
            ("--max-parallel", self.max_parallel.is_some()),
            ("--sbatch", !self.extra.is_empty()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    fn overrides(&self) -> slurm::Overrides {
        slurm::Overrides {
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            mem: self.mem.clone(),
            max_parallel: self.max_parallel,
            extra: self.extra.clone(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (None, Some(flag)) = (&args.emit, args.slurm.first_given()) {
        anyhow::bail!("{flag} sets the Slurm script; add --emit slurm (or drop {flag})");
    }
    let loaded = experiment::load_experiment(&args.experiment, args.profile, &args.overrides)?;
    let exp = &loaded.experiment;
    let jobs = experiment::jobs(exp);
    if args.print_config {
        print!(
            "{}",
            serde_saphyr::to_string(exp).context("serializing the configuration")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.estimate {
        super::estimate::print_estimate(std::slice::from_ref(&loaded))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        println!(
            "# {} jobs of experiment {} (profile {}), run directories under {}",
            jobs.len(),
            exp.name,
            exp.profile,
            ExperimentDir::new(&args.runs, exp).path.display()
        );
        let exp_dir = ExperimentDir::new(&args.runs, exp);
        for (i, job) in jobs.iter().enumerate() {
            let rd = exp_dir.run(job);
            let status = if rd.is_done() {
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
            };
            println!("{i}\t{}\t{status}", job.dir_name());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(kind) = &args.emit {
        anyhow::ensure!(kind == "slurm", "unknown --emit kind `{kind}`; use slurm");
        print!("{}", slurm_script(&args, &loaded, &jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let selected: Vec<usize> = if args.all {
        (0..jobs.len()).collect()
    } else if let Some(i) = args.task_index {
        vec![i]
    } else if let Some(i) = experiment::task_index_from_env() {
        vec![i.map_err(anyhow::Error::msg)?]
    } else if args.check_assets {
        (0..jobs.len()).collect()
    } else {
        anyhow::bail!(
            "choose what to do: --list, --task-index I (or set SLURM_ARRAY_TASK_ID), --all, --emit slurm or --check-assets"
        );
    };
    let chosen: Vec<_> = selected
        .iter()
        .map(|&i| runner::job_at(&jobs, i).cloned())
        .collect::<Result<_, _>>()?;
    let missing = experiment::missing_assets(exp, &chosen, &repo_root);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|m| format!("  - {m}")).collect();
        anyhow::bail!(
            "profile {} needs assets that are missing (nothing was run):\n{}\nsee README \"Full reproduction\" for how to obtain each, or run --profile smoke",
            exp.profile,
            list.join("\n")
        );
    }
    if args.check_assets {
        eprintln!(
            "assets: everything the {} jobs need is present",
            chosen.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Taps and image size against the backbone each job will load, before any work.
    runner::validate(exp, &chosen)?;
    // What each job's results depend on, and earlier work made differently, before any work.
    let planned = runner::plan(&loaded, &jobs, &selected, &repo_root)?;
    if !args.force {
        let stale = runner::stale(&planned, &loaded, &args.runs)?;
        if !stale.is_empty() {
            return Err(runner::SweepError::Stale { lines: stale }.into());
        }
    }
    let opts = RunOptions::new(repo_root, args.force, args.quiet);
    for p in &planned {
        let started = std::time::Instant::now();
        let outcome = runner::run_one(p, &loaded, &args.runs, &opts)?;
        let (i, job) = (p.index, &p.job);
        match outcome {
            JobOutcome::Skipped => eprintln!("job {i} {job}: already done, skipped"),
            JobOutcome::Finished => eprintln!(
                "job {i} {job}: done in {:.1}s",
                started.elapsed().as_secs_f64()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Slurm script running every job of the experiment, then `collect`. Jobs run in the current
/// directory with this binary, so the script's relative paths mean what they mean here.
fn slurm_script(args: &Args, loaded: &LoadedExperiment, jobs: &[Job]) -> anyhow::Result<String> {
    let exp = &loaded.experiment;
    let settings = slurm::Settings::resolve(&exp.slurm, &args.slurm.overrides())
        .with_context(|| format!("Slurm settings for {}", args.experiment.display()))?;
    let workdir = std::env::current_dir().context("reading the current directory")?;
    // Memory and time given by the user need no estimate.
    let (fixed_bytes, time_estimate) = match (&settings.mem, &settings.time) {
        (Some(_), Some(_)) => (0, None),
        _ => job_costs(loaded, jobs, &workdir)
            .map(|(fixed, time)| (fixed, Some(time)))
            .map_err(|e| {
                anyhow::anyhow!(
                    "estimating the jobs' cost for the Slurm resources: {e}; \
                     give --mem and --time to do without the estimate"
                )
            })?,
    };
    let needs = slurm::Needs {
        backend: exp.device,
        profile: exp.profile,
        memory_budget: match exp.cache.memory_budget {
            MemoryBudget::Auto => None,
            MemoryBudget::Bytes(b) => Some(b),
        },
        fixed_bytes,
        time_estimate,
    };
    let res = slurm::resources(&needs, &settings);
    for w in &res.warnings {
        eprintln!("warning: {w}");
    }
    let text = |p: &std::path::Path| {
        p.to_str().map(str::to_string).with_context(|| {
            format!(
                "path {} is not valid UTF-8; a job script cannot name it faithfully, rename it",
                p.display()
            )
        })
    };
    let mut task_args = vec![
        "sweep".to_string(),
        text(&args.experiment)?,
        format!("--profile={}", exp.profile),
        "--runs".to_string(),
        text(&args.runs)?,
    ];
    task_args.extend(args.overrides.iter().map(|o| format!("--set={o}")));
    // The tasks of one array share a --force session (SLURM_ARRAY_JOB_ID): each old directory
    // is moved aside once, and no task moves away what another made.
    if args.force {
        task_args.push("--force".into());
    }
    // Does not change a job's identity or its numbers, only where its features are kept.
    task_args.extend(
        res.task_budget
            .map(|b| format!("--set=cache.memory_budget={b}")),
    );
    let mut collect_args = vec![
        "collect".to_string(),
        text(&ExperimentDir::new(&args.runs, exp).path)?,
    ];
    if !exp.tables.is_empty() {
        let tables: Vec<&str> = exp.tables.iter().map(|t| t.name()).collect();
        collect_args.extend(["--tables".to_string(), tables.join(",")]);
    }
    let program = std::env::current_exe().context("finding the ava-dino binary")?;
    let plan = slurm::Plan {
        name: exp.name.clone(),
        profile: exp.profile,
        experiment_file: args.experiment.display().to_string(),
        n_jobs: jobs.len(),
        workdir: text(&workdir)?,
        program: text(&program)?,
        task_args,
        collect_args,
    };
    Ok(slurm::script(&plan, &settings, &res)?)
}

/// The cost model's figures for the Slurm resources: every job projected as if it ran alone (an
/// array task may do a training that other tasks share, or wait for it), then the largest fixed
/// memory and the longest time on the device's rates (measured for the CPU, projected from FLOPs
/// for a GPU).
fn job_costs(
    loaded: &LoadedExperiment,
    jobs: &[Job],
    repo_root: &Path,
) -> Result<(u64, slurm::TimeEstimate), String> {
    let gpu = slurm::is_gpu(loaded.experiment.device);
    let (mut fixed, mut seconds) = (0u64, 0f64);
    for job in jobs {
        let mut alone = loaded.clone();
        alone.experiment.sweep = job.config(&loaded.experiment).sweep;
        for j in runner::estimate::estimate(&[alone], repo_root)?.jobs {
            fixed = fixed.max(j.memory.fixed);
            let stages = if gpu { &j.gpu } else { &j.cpu };
            seconds = seconds.max(stages.iter().map(|s| s.seconds).sum());
        }
    }
    let time = slurm::TimeEstimate {
        seconds: seconds.ceil() as u64,
        measured: !gpu,
    };
    Ok((fixed, time))
}
