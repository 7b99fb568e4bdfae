//! `ava-dino estimate`: what running some experiments will cost, before any work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::engine::cost::calibration::CpuRates;
use ava_dino::experiment::{self, Profile};
use ava_dino::io::space::space_of;
use ava_dino::runner::estimate::estimate;

use super::common::DeviceOverride;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment files (jobs listed by several count once).
    #[arg(required = true)]
    pub experiments: Vec<PathBuf>,
    /// Profile layered over each file.
    #[arg(long, env = "AVA_DINO_PROFILE")]
    pub profile: Option<Profile>,
    /// Override a key in every experiment: `--set train.epochs=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where the sweeps will write their runs (as `sweep --runs`): the disk whose free space the
    /// checkpoints are compared with.
    #[arg(long, default_value = "runs", env = "AVA_DINO_RUNS")]
    pub runs: PathBuf,
    #[command(flatten)]
    pub device: DeviceOverride,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let overrides = args.device.with(&args.overrides);
    let loaded = args
        .experiments
        .iter()
        .map(|p| experiment::load_experiment(p, args.profile, &overrides))
        .collect::<Result<Vec<_>, _>>()?;
    print_estimate(&loaded, &args.runs)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the projection of `loaded` (shared with `sweep --estimate`): the CPU column at this
/// machine's calibrated rates for its CPU and thread count, else the build machine's (the
/// output says which, and where they come from); then a warning if the disks that will take
/// the runs (under `runs`) and the feature shards have less room free than they need.
pub fn print_estimate(loaded: &[experiment::LoadedExperiment], runs: &Path) -> anyhow::Result<()> {
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let rates = CpuRates::for_this_process()?;
    let e = estimate(loaded, &repo_root, &rates).map_err(anyhow::Error::msg)?;
    print!("{}", e.render());
    if let Some(w) = e.disk_warning(&repo_root, runs, space_of) {
        println!("- {w}.");
    }
    Ok(())
}
