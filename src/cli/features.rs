//! `ava-dino features`: frozen DINOv3 tap features for an image or a pixel tensor.

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::DeviceArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// DINOv3 weights: a directory (config.json + weights) or a weights file.
    #[arg(long)]
    pub backbone: PathBuf,
    /// A safetensors file holding `pixel_values` f32 [B,3,H,W].
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    pub input: Option<PathBuf>,
    /// An image file, preprocessed as the reference does (resize 512, ImageNet mean/std).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Block indices (0-based) whose outputs to return.
    #[arg(long, value_delimiter = ',', default_value = "5,11,17,23")]
    pub taps: Vec<usize>,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _device = args.device.select()?;
    anyhow::bail!("features: the DINOv3 backbone is not wired yet (issue 2)")
}
