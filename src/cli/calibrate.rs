//! `ava-dino calibrate`: measures this machine's stage rates and stores them, keyed by CPU model
//! and thread count, for `estimate`, `sweep --estimate` and `reproduce --dry-run`.

use std::num::NonZeroUsize;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::device::Backend;
use ava_dino::engine::cost::BUILD_CPU;
use ava_dino::engine::cost::calibrate::{Protocol, Stage, measure};
use ava_dino::engine::cost::calibration::{ENV, Entry, Key, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Threads to measure with (default: as every other command, `RAYON_NUM_THREADS` or all
    /// cores). An estimate uses only the calibration of the thread count it runs with.
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
    /// Only `cpu`: the estimate's GPU column is projected from each stage's dtype peak, not
    /// measured (docs/scale.md).
    #[arg(long, default_value = "cpu", value_parser = ["cpu"])]
    pub device: String,
    /// The folder your sweeps write runs to (as `sweep --runs`): the checkpoint write rate is
    /// measured on its disk, in a scratch folder removed afterwards.
    #[arg(
        long,
        default_value = "runs",
        env = "AVA_DINO_RUNS",
        value_name = "DIR"
    )]
    pub runs: std::path::PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.get())
            .build_global()
            .context("setting the thread count")?;
    }
    // An unreadable file, or a runs folder that takes no files, stops us now, not after a
    // minute of measuring.
    let store = Store::locate()?;
    store.load()?;
    let protocol = Protocol {
        disk_dir: args.runs.clone(),
        ..Protocol::quick()
    };
    protocol.check_disk_dir().context(
        "cannot write in the runs folder, where the checkpoint write rate is measured; pass \
         `--runs DIR` (or set AVA_DINO_RUNS) naming the folder your sweeps write runs to",
    )?;
    let device = ava_dino::device::select(Backend::Cpu)?;
    let key = Key::this_process();
    println!(
        "calibrate: {}, {} threads (every stage at full size: about 45 s on 2 cores)",
        key.cpu, key.threads
    );
    let mut rates = BUILD_CPU;
    for stage in Stage::ALL {
        let m = measure(stage, &protocol, &device)
            .with_context(|| format!("measuring the {} stage", stage.name()))?;
        for line in &m.lines {
            println!("  {line}");
        }
        m.apply(&mut rates);
    }
    let entry = Entry::now(key, rates);
    store.save(&entry)?;
    println!(
        "stored in {} (set {ENV} to use another file): `ava-dino estimate` now prices jobs with \
         these rates on this CPU at {} threads",
        store.path.display(),
        entry.key.threads
    );
    Ok(ExitCode::SUCCESS)
}
