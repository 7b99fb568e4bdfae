//! `ava-dino sweep`: list, run (one by index, or all) or emit a Slurm array for an experiment.

use super::common::DeviceOverride;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::experiment::schema::SlurmConfig;
use ava_dino::experiment::{self, ExperimentDir, Profile};
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
    #[command(flatten)]
    pub device: DeviceOverride,
    /// Root of the run directories.
    #[arg(long, default_value = "runs", env = "AVA_DINO_RUNS")]
    pub runs: PathBuf,
    /// Print the jobs (index, run directory, status) and exit.
    #[arg(long, conflicts_with_all = ["task_index", "all", "emit", "job"])]
    pub list: bool,
    /// Run job I (default: $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "I")]
    pub task_index: Option<usize>,
    /// Run every job, one after the other.
    #[arg(long, conflicts_with_all = ["task_index", "emit", "job"])]
    pub all: bool,
    /// Run the job of this name (as `--list` prints it, e.g. `full__visa__ksdd2__s0`;
    /// repeatable).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["task_index", "emit"])]
    pub job: Vec<String>,
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
    pub slurm: SlurmConfig,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let (None, Some(flag)) = (&args.emit, args.slurm.first_set()) {
        anyhow::bail!("{flag} sets the Slurm script; add --emit slurm (or drop {flag})");
    }
    // `--device` is one more override: the Slurm tasks get it too.
    let overrides = args.device.with(&args.overrides);
    let loaded = experiment::load_experiment(&args.experiment, args.profile, &overrides)?;
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
        super::estimate::print_estimate(std::slice::from_ref(&loaded), &args.runs)?;
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
            println!("{i}\t{}\t{}", job.dir_name(), runner::status(&exp_dir, job));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(kind) = &args.emit {
        anyhow::ensure!(kind == "slurm", "unknown --emit kind `{kind}`; use slurm");
        let req = slurm::emit::Request {
            experiment_file: &args.experiment,
            runs: &args.runs,
            overrides: &overrides,
            force: args.force,
            cli: &args.slurm,
            workdir: std::env::current_dir().context("reading the current directory")?,
            program: std::env::current_exe().context("finding the ava-dino binary")?,
        };
        let (script, warnings) = slurm::emit::emit(&req, &loaded, &jobs)
            .with_context(|| format!("Slurm script for {}", args.experiment.display()))?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        print!("{script}");
        return Ok(ExitCode::SUCCESS);
    }
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let selected: Vec<usize> = if args.all {
        (0..jobs.len()).collect()
    } else if let Some(i) = args.task_index {
        vec![i]
    } else if !args.job.is_empty() {
        args.job
            .iter()
            .map(|name| {
                jobs.iter()
                    .position(|j| j.to_string() == *name)
                    .ok_or_else(|| {
                        let names: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
                        anyhow::anyhow!(
                            "--job {name}: no such job in {}; its jobs: {}",
                            args.experiment.display(),
                            names.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    } else if let Some(i) = experiment::task_index_from_env() {
        vec![i.map_err(anyhow::Error::msg)?]
    } else if args.check_assets {
        (0..jobs.len()).collect()
    } else {
        anyhow::bail!(
            "choose what to do: --list, --task-index I (or set SLURM_ARRAY_TASK_ID), --job NAME, --all, --emit slurm or --check-assets"
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
