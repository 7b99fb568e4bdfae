//! `ava-dino random-backbone`: writes a seeded random DINOv3 as an HF model directory, so
//! end-to-end runs and benchmarks work without the released weights.

use std::path::PathBuf;
use std::process::ExitCode;

use ava_dino::backbone::{Backbone, Spec};
use burn::tensor::Device;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: `vitl16` (the released ViT-L/16) or `tiny` (D=64, 4 blocks, 4 heads, patch 16).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (config.json + model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(spec) = Spec::preset(&args.preset) else {
        anyhow::bail!("--preset {}: expected vitl16 or tiny", args.preset);
    };
    let model = Backbone::random(&spec, args.seed, &Device::flex());
    model.save_hf_dir(&args.out)?;
    eprintln!(
        "random-backbone: {} seed {} -> {}",
        args.preset,
        args.seed,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
