//! `ava-dino predict`: score your own images with a trained run.
//!
//! For each image: the image score (max of the anomaly map), the routing weights, and the anomaly
//! map as a heat-map overlay PNG. Overlays go into a fresh folder (`<run>/predict/<time>/`, or
//! `--out-dir`) that mirrors the input paths (`good/000.png` -> `good/000.png.anomaly.png`), and
//! an existing file is never overwritten. One JSON object per image on stdout.

use super::common::DeviceOverride;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ava_dino::data::Sample;
use ava_dino::engine::assets::{AssetSpec, shared_assets};
use ava_dino::engine::checkpoints::load_adapters;
use ava_dino::engine::extract::{Extractor, Want};
use ava_dino::engine::inference::{Prompts, run_batch};
use ava_dino::engine::overlays::hwc;
use ava_dino::engine::progress::Reporter;
use ava_dino::experiment::record::now_rfc3339;
use ava_dino::experiment::{RunDir, RunMetrics};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A finished run directory (`runs/<experiment>/<variant>__<train>__<target>__s<seed>/`).
    #[arg(long)]
    pub run: PathBuf,
    /// An image file, or a folder whose images are all scored (recursively).
    #[arg(long)]
    pub image: PathBuf,
    /// The class word for the prompts (`bottle`, `pcb`, `polyp`...).
    #[arg(long)]
    pub class_word: String,
    /// Checkpoint epoch (default: the run's reported epoch).
    #[arg(long)]
    pub epoch: Option<usize>,
    /// Overlays go into this folder (mirroring the input paths) instead of a fresh
    /// `<run>/predict/<time>/`; existing files are never overwritten.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Backend to run on (default: the run's `device`).
    #[command(flatten)]
    pub device: DeviceOverride,
}

/// The images to score, each with its path relative to the input (its name for a single file).
fn images(path: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    if path.is_file() {
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        return Ok(vec![(path.to_path_buf(), name)]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or folder", path.display());
    }
    let exts = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];
    let mut out: Vec<(PathBuf, PathBuf)> = walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            !name.ends_with(".anomaly.png")
                && p.extension()
                    .is_some_and(|e| exts.contains(&e.to_string_lossy().to_lowercase().as_str()))
        })
        .map(|p| {
            let rel = p.strip_prefix(path).unwrap_or(&p).to_path_buf();
            (p, rel)
        })
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: no images (png, jpg, bmp, tif) in this folder",
            path.display()
        );
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rd = RunDir::at(&args.run);
    let metrics: RunMetrics = rd.read_metrics().with_context(|| {
        format!(
            "{}: not a finished run (run the sweep first)",
            args.run.display()
        )
    })?;
    // The run's resolved configuration is complete (defaults, profile and overrides applied).
    let exp = rd.read_config()?;
    let epoch = args
        .epoch
        .unwrap_or_else(|| ava_dino::engine::outcome::reported_epoch(&metrics));
    let inputs = images(&args.image)?;
    let out_root = match &args.out_dir {
        Some(d) => d.clone(),
        None => rd.path.join("predict").join(now_rfc3339().replace(':', "")),
    };
    let device = ava_dino::device::select(args.device.device.unwrap_or(exp.device))?;
    let model = load_adapters(&rd.training(&metrics.job).epoch(epoch), &device)?;
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let assets = shared_assets(&AssetSpec::of(&exp), &repo_root, &device)?;
    let size = exp.data.image_size;
    let extractor = Extractor {
        assets: &assets,
        taps: exp.backbone.taps.clone(),
        size,
        dtype: exp.cache.dtype,
        batch_size: 1,
        skip_bad: false,
        shards: None,
        device: device.clone(),
    };
    for (path, rel) in inputs {
        let sample = Sample {
            dataset: String::new(),
            category: String::new(),
            image: path.clone(),
            image_rel: rel.to_string_lossy().into_owned(),
            mask: None,
            mask_rel: None,
            label: 0,
            class_word: args.class_word.clone(),
            mask_threshold: 0.5,
        };
        let reporter = Reporter {
            quiet: false,
            interval: exp.train.log_interval(),
        };
        let prompts = Prompts::for_samples(std::slice::from_ref(&sample), &assets.text, &reporter)?;
        let (done, _) = extractor.run(std::slice::from_ref(&sample), Want::Features)?;
        let features = done[0].features.as_ref().expect("features asked for");
        let text = prompts.tensor(std::iter::once(args.class_word.as_str()), &device);
        let out = run_batch(&model, &[features], extractor.grid(), text, &device)
            .pop()
            .expect("one image in, one out");
        let mut name = rel.into_os_string();
        name.push(".anomaly.png");
        let overlay = out_root.join(name);
        write_overlay(&path, size, &out.map, &overlay)?;
        println!(
            "{}",
            serde_json::json!({
                "image": path, "class_word": args.class_word, "score": out.score(),
                "w_normal": out.w_normal, "w_anomaly": out.w_anomaly, "overlay": overlay, "epoch": epoch,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The resized image and, beside it, the map (min-max normalized) in viridis blended over the
/// image.
fn write_overlay(image: &Path, size: usize, map: &[f32], out: &Path) -> anyhow::Result<()> {
    let rgb = ava_dino::data::load_image_u8(image, size)?;
    let rgb = hwc(rgb.as_u8().expect("u8 image"), size);
    let bytes = ava_dino::report::charts::side_by_side_png(&rgb, map, size)
        .with_context(|| format!("{}: encoding PNG", out.display()))?;
    match ava_dino::io::write_new(out, &bytes) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{}: already exists; predict never overwrites - choose another --out-dir or remove it",
            out.display()
        ),
        Err(e) => Err(e).with_context(|| format!("{}: cannot write", out.display())),
    }
}
