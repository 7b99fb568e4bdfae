//! `ava-dino random-backbone`: writes a seeded random DINOv3 as an HF model directory, so
//! end-to-end runs and benchmarks work without the released weights.

use std::path::PathBuf;
use std::process::ExitCode;

use ava_dino::backbone::{DinoV3, DinoV3Config, save_hf_dir};
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
    let config = match args.preset.as_str() {
        "vitl16" => DinoV3Config::vitl16(),
        "tiny" => DinoV3Config::like_vitl16(64, 4, 4, 16, 4),
        other => anyhow::bail!("--preset {other}: expected vitl16 or tiny"),
    };
    let model = DinoV3::random(&config, args.seed, &Device::flex());
    save_hf_dir(&model, &args.out)?;
    eprintln!(
        "random-backbone: {} seed {} -> {}",
        args.preset,
        args.seed,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
