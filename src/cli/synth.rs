//! `ava-dino synth --out DIR`: write the synthetic twins of all nine datasets.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder; dataset folders are created under it with the names datasets.toml expects.
    #[arg(long)]
    out: PathBuf,
    /// Generator seed (same seed, same bytes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let t = std::time::Instant::now();
    let s = ava_dino::data::synth::write_all(&args.out, args.seed)?;
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
