//! `ava-dino predict`: score your own images with a trained run.
//!
//! For each image: the image score (max of the anomaly map), the routing weights, and the anomaly
//! map as a heat-map overlay PNG written beside the input (`<name>.anomaly.png`). One JSON object
//! per image on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ava_dino::engine::assets::shared_assets;
use ava_dino::engine::evaluate::predict;
use ava_dino::engine::features::{FeatureDtype, FeatureTable};
use ava_dino::engine::train::{ImageSet, MaskTable, TextPair};
use ava_dino::experiment::{EpochSelection, Experiment, RunDir, RunMetrics};
use ava_dino::model::AvaDino;
use ava_dino::report::charts::jet;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A finished run directory (`runs/<experiment>/<variant>__<train>__<target>__s<seed>/`).
    #[arg(long)]
    pub run: PathBuf,
    /// An image file, or a folder whose images are all scored.
    #[arg(long)]
    pub image: PathBuf,
    /// The class word for the prompts (`bottle`, `pcb`, `polyp`...).
    #[arg(long)]
    pub class_word: String,
    /// Checkpoint epoch (default: the run's reported epoch).
    #[arg(long)]
    pub epoch: Option<usize>,
    /// Overlay files go here instead of beside each input.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

fn images(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("{}: no such file or folder", path.display());
    }
    let exts = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(path)
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
    let rd = RunDir::new(&args.run);
    let metrics: RunMetrics = rd.read_metrics().with_context(|| {
        format!(
            "{}: not a finished run (run the sweep first)",
            args.run.display()
        )
    })?;
    // The run's resolved configuration is complete (defaults, profile and overrides applied).
    let config = rd.config();
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("{}: cannot read", config.display()))?;
    let exp: Experiment = serde_saphyr::from_str(&text)
        .with_context(|| format!("{}: not a resolved experiment", config.display()))?;
    let epoch = args.epoch.unwrap_or(match metrics.selection {
        EpochSelection::ReferenceBest => metrics.best_epoch.epoch,
        EpochSelection::Final => metrics.final_epoch.epoch,
    });
    let train_dir = args
        .run
        .parent()
        .unwrap_or(Path::new("."))
        .join("_train")
        .join(metrics.job.train_key());
    let ckpt = RunDir::new(&train_dir)
        .checkpoint_dir(epoch)
        .join("adapters.safetensors");
    let device = ava_dino::device::select(exp.device)?;
    let model = AvaDino::load(&ckpt, &device)?;
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let assets = shared_assets(&exp, &repo_root, &device)?;
    let text = assets.text.get_or_compute(&args.class_word)?;
    let prompts = [TextPair {
        normal: text.normal,
        anomaly: text.anomaly,
    }];
    let size = exp.data.image_size;
    let cfg = &assets.backbone.config;
    for path in images(&args.image)? {
        let pixels = ava_dino::data::load_image(&path, size)?;
        let taps = assets.backbone.forward_taps(
            pixels.to_tensor::<3>(&device).unsqueeze::<4>(),
            &exp.backbone.taps,
        );
        let grid = [size / cfg.patch_size, size / cfg.patch_size];
        let mut table = FeatureTable::new(cfg.hidden_size, grid, taps.len(), FeatureDtype::F32);
        let (cls, patches): (Vec<_>, Vec<_>) = taps.into_iter().map(|t| (t.cls, t.patches)).unzip();
        table.push_batch(&cls, &patches);
        let mut masks = MaskTable::new(size);
        masks.push(&vec![0u8; size * size]);
        let set = ImageSet {
            features: &table,
            labels: &[0],
            masks: &masks,
            text: &[0],
            prompts: &prompts,
        };
        let (preds, maps) = predict(&model, &set, &[0], 1, &device, true);
        let overlay = overlay_path(&path, args.out_dir.as_deref());
        write_overlay(&path, size, &maps[0], &overlay)?;
        let p = &preds[0];
        println!(
            "{}",
            serde_json::json!({
                "image": path, "class_word": args.class_word, "score": p.score,
                "w_normal": p.w_normal, "w_anomaly": p.w_anomaly, "overlay": overlay, "epoch": epoch,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn overlay_path(image: &Path, out_dir: Option<&Path>) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = out_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| image.parent().unwrap_or(Path::new(".")).to_path_buf());
    dir.join(format!("{stem}.anomaly.png"))
}

/// The resized image and, beside it, the map (min-max normalized) in jet blended over the image.
fn write_overlay(image: &Path, size: usize, map: &[f32], out: &Path) -> anyhow::Result<()> {
    let rgb = ava_dino::data::load_image_u8(image, size)?;
    let rgb = rgb.as_u8().expect("u8 image");
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let mut canvas = image::RgbImage::new(2 * size as u32, size as u32);
    for y in 0..size {
        for x in 0..size {
            let i = y * size + x;
            let px = [rgb[i], rgb[size * size + i], rgb[2 * size * size + i]];
            canvas.put_pixel(x as u32, y as u32, image::Rgb(px));
            let v = ((map[i] - lo) / (hi - lo).max(1e-12)) as f64;
            let (r, g, b) = jet(v);
            let blend = |a: u8, c: u8| ((a as u16 + c as u16) / 2) as u8;
            canvas.put_pixel(
                (size + x) as u32,
                y as u32,
                image::Rgb([blend(px[0], r), blend(px[1], g), blend(px[2], b)]),
            );
        }
    }
    let mut bytes = Vec::new();
    canvas
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .with_context(|| format!("{}: encoding PNG", out.display()))?;
    ava_dino::io::write_atomic(out, &bytes)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}
