//! `ava-dino bench-backbone`: backbone throughput in images per second for one batch size,
//! image size, dtype and device (the GPU figures of `scripts/device/h200.sh`).
//!
//! The first forwards compile and autotune the GPU kernels, so they are run untimed (`--warmup`);
//! the timed forwards are queued back to back and the device is synchronized once at the end,
//! as PyTorch timings with one `cuda.synchronize()` are.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use ava_dino::backbone::{Backbone, Precision};
use burn::tensor::{Device, Distribution, Tensor};

use super::common::DeviceArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// DINOv3 weights: a directory (config.json + weights) or a weights file, e.g. made by
    /// `ava-dino random-backbone --preset vitl16`.
    #[arg(long)]
    pub backbone: PathBuf,
    /// Images per forward.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Square image side in pixels (a multiple of the patch size).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Block indices (0-based) whose features each forward returns.
    #[arg(long, value_delimiter = ',', default_value = "5,11,17,23")]
    pub taps: Vec<usize>,
    /// Compute dtype of the backbone.
    #[arg(long, default_value = "f32")]
    pub dtype: Precision,
    /// Untimed forwards first, at least one (kernel compilation and autotuning happen here).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed forwards.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Runs `n` forwards back to back and waits for the device; returns the seconds taken.
///
/// Each forward's deepest CLS feature feeds a running sum that is read at the end, so no forward
/// can be skipped by a lazy backend and the read waits for all of them.
fn timed_forwards(model: &Backbone, pixels: &Tensor<4>, taps: &[usize], n: usize) -> f64 {
    let device = pixels.device();
    let start = Instant::now();
    let mut acc = Tensor::<1>::zeros([1], &device);
    for _ in 0..n {
        let feats = model.forward_taps(pixels.clone(), taps);
        if let Some(last) = feats.last() {
            acc = acc + last.cls.clone().sum();
        }
    }
    let _ = acc.into_scalar::<f32>();
    start.elapsed().as_secs_f64()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.batch == 0 || args.iters == 0 {
        bail!("--batch and --iters must be at least 1");
    }
    let device: Device = args.device.select()?;
    let adapter = ava_dino::device::adapter_name(&device).unwrap_or_else(|| "burn flex".into());
    let model = Backbone::load(&args.backbone, &device)
        .with_context(|| format!("loading {}", args.backbone.display()))?
        .with_precision(args.dtype)?;
    let dims = [args.batch, model.shape().channels, args.size, args.size];
    if let Err(e) = model.check_input(dims, &args.taps) {
        bail!("--batch/--size/--taps: {e}");
    }
    device.seed(0);
    let pixels = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);

    let first = timed_forwards(&model, &pixels, &args.taps, 1);
    let warm = if args.warmup > 1 {
        timed_forwards(&model, &pixels, &args.taps, args.warmup - 1)
    } else {
        0.0
    };
    let secs = timed_forwards(&model, &pixels, &args.taps, args.iters);
    let per_forward = secs / args.iters as f64;
    let images_per_s = args.batch as f64 / per_forward;
    eprintln!(
        "bench-backbone: {} ({adapter}) {} batch {} size {}: {images_per_s:.2} images/s \
         ({:.4} s per forward over {} timed; first forward {first:.2} s, {} more warm-up in {warm:.2} s)",
        args.device.device,
        args.dtype,
        args.batch,
        args.size,
        per_forward,
        args.iters,
        args.warmup.saturating_sub(1),
    );
    if let Some(path) = &args.json {
        let line = serde_json::json!({
            "device": args.device.device.name(),
            "adapter": adapter,
            "dtype": args.dtype.name(),
            "batch": args.batch,
            "size": args.size,
            "taps": args.taps,
            "iters": args.iters,
            "seconds_per_forward": per_forward,
            "images_per_s": images_per_s,
            "first_forward_s": first,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
