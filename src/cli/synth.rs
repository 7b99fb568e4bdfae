//! `ava-dino synth --out DIR`: write the synthetic twins of all nine datasets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use ava_dino::data::synth::{Counts, SYNTH_MARKER, SynthOptions};

/// The stamp the engine writes beside twins it generated (`engine/assets.rs`).
const ENGINE_STAMP: &str = ".synth-complete";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder; dataset folders are created under it with the names datasets.toml expects.
    #[arg(long)]
    out: PathBuf,
    /// Generator seed (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Test images per category (half normal, rounded down; none for the medical sets) instead
    /// of the smoke twins' handful (2-3 normal, 3-10 anomalous): fewer images for slow
    /// side-by-side runs (scripts/authors-e2e.sh), more for scale tests.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    per_category: Option<u64>,
}

/// Refuses to write into a folder that holds anything but earlier twins: synth overwrites files
/// by name, so pointed at a real data root it would mix twins into the data.
fn check_out(out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!(
            "{}: --out exists and is not a folder; give a new or empty folder",
            out.display()
        );
    }
    let entries = std::fs::read_dir(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot read --out folder: {e}", out.display()))?;
    for e in entries {
        let e =
            e.map_err(|e| anyhow::anyhow!("{}: cannot read --out folder: {e}", out.display()))?;
        let path = e.path();
        let twin = path.is_dir() && path.join(SYNTH_MARKER).is_file();
        if !(twin || e.file_name() == ENGINE_STAMP) {
            bail!(
                "{}: --out is not empty and is not an earlier `ava-dino synth` output (it holds `{}`); \
                 give a new or empty folder, or delete this one first",
                out.display(),
                e.file_name().to_string_lossy()
            );
        }
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_out(&args.out)?;
    let t = std::time::Instant::now();
    let mut opts = SynthOptions::small(args.seed);
    if let Some(n) = args.per_category {
        opts.counts = Counts::PerCategory(n as usize);
    }
    let s = ava_dino::data::synth::write_with(&args.out, &opts)?;
    for d in &s.datasets {
        let (n, a) = d
            .categories
            .iter()
            .fold((0, 0), |(n, a), c| (n + c.normal, a + c.anomalous));
        println!(
            "{:<10} {:>3} categories {:>4} test images ({n} normal, {a} anomalous)  {}",
            d.key,
            d.categories.len(),
            n + a,
            d.root.display()
        );
    }
    println!(
        "wrote {} images ({} files) in {:.2}s; use AVA_DINO_DATA_ROOT={}",
        s.images,
        s.files,
        t.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
