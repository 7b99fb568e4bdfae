//! `ava-dino features`: frozen DINOv3 tap features for an image or a pixel tensor.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use ava_dino::backbone::{Precision, load_backbone};
use ava_dino::io::{HostTensor, TensorFile};
use burn::tensor::{Device, Tensor};

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
    /// Compute dtype of the backbone: f32 (reference), bf16 or f16. Features are written in f32.
    #[arg(long, default_value = "f32")]
    pub dtype: Precision,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args.device.select()?;
    let pixels = match (&args.input, &args.image) {
        (Some(input), _) => {
            let file = TensorFile::read(input)?;
            file.tensor::<4>("pixel_values", &device)?
        }
        (None, Some(image)) => load_image(image, &device)?,
        (None, None) => bail!("give --input <pixel_values.safetensors> or --image <file>"),
    };
    let model = load_backbone(&args.backbone, &device)?.with_precision(args.dtype)?;
    if let Err(e) = model.check_input(pixels.dims(), &args.taps) {
        let source = args
            .input
            .as_ref()
            .or(args.image.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        bail!("{source}: {e}");
    }
    let start = std::time::Instant::now();
    let feats = model.forward_taps(pixels, &args.taps);
    let mut out = TensorFile::new(&args.out);
    out.insert(
        "taps",
        HostTensor::i64(
            vec![args.taps.len()],
            args.taps.iter().map(|&t| t as i64).collect(),
        ),
    );
    for (&k, f) in args.taps.iter().zip(feats) {
        out.insert(format!("normed.{k}"), HostTensor::from_tensor(f.normed));
        out.insert(format!("patches.{k}"), HostTensor::from_tensor(f.patches));
        out.insert(format!("cls.{k}"), HostTensor::from_tensor(f.cls));
    }
    let secs = start.elapsed().as_secs_f64();
    out.write(&args.out)?;
    eprintln!(
        "features: taps {:?} -> {} (forward {secs:.2} s, {})",
        args.taps,
        args.out.display(),
        args.dtype
    );
    Ok(ExitCode::SUCCESS)
}

/// ImageNet normalization used by the reference `Datasets/*.py` transforms.
/// Input side of the reference preprocessing.
const SIDE: usize = 512;

/// The reference preprocessing (PIL-exact antialiased bilinear resize to 512, ImageNet mean/std)
/// as a `[1, 3, 512, 512]` batch.
fn load_image(path: &Path, device: &Device) -> anyhow::Result<Tensor<4>> {
    let pixels = ava_dino::data::load_image(path, SIDE, &ava_dino::image::Normalize::IMAGENET)?;
    Ok(pixels.to_tensor::<3>(device).unsqueeze::<4>())
}
