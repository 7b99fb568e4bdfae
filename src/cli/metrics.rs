//! `ava-dino metrics`: score one safetensors file of anomaly scores the reference way.
//!
//! Reads `scores` f32 [N] + `labels` u8 [N] and/or `maps` f32 [K,H,W] + `masks` u8 [K,H,W]
//! (the `metrics` fixture layout). Pixel metrics use `scores`/`labels`, or the flattened maps and
//! masks when those are absent. Prints one JSON object; `null` = undefined or not computable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::io::TensorFile;
use ava_dino::metrics::{AUPRO_FPR_LIMIT, aupro, pixel_metrics};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// safetensors file with `scores`+`labels` and/or `maps`+`masks` (labels/masks 0 or 1).
    #[arg(long)]
    pub input: PathBuf,
    /// AUPRO keeps thresholds whose false-positive rate is below this (reference: 0.3).
    #[arg(long, default_value_t = AUPRO_FPR_LIMIT)]
    pub fpr_limit: f64,
}

/// The printed object, fields in this order.
#[derive(serde::Serialize)]
struct Output {
    auroc: Option<f64>,
    ap: Option<f64>,
    f1_max: Option<f64>,
    f1_threshold: Option<f64>,
    aupro: Option<f64>,
    positives: u64,
    negatives: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = TensorFile::read(&args.input)?;
    let has_maps = file.contains("maps") || file.contains("masks");
    if !file.contains("scores") && !has_maps {
        anyhow::bail!(
            "{}: holds neither `scores`+`labels` nor `maps`+`masks`; write f32 scores [N] with u8 0/1 labels [N], \
             or f32 maps [K,H,W] with u8 0/1 masks [K,H,W]",
            args.input.display()
        );
    }
    let maps = if has_maps {
        Some((file.f32("maps", 3)?, file.u8("masks", 3)?))
    } else {
        None
    };
    let (scores, labels) = match maps {
        Some((m, k)) if !file.contains("scores") => (m.as_f32().unwrap(), k.as_u8().unwrap()),
        _ => (
            file.f32("scores", 1)?.as_f32().unwrap(),
            file.u8("labels", 1)?.as_u8().unwrap(),
        ),
    };
    let pixel = pixel_metrics(scores, labels)
        .with_context(|| format!("{}: pixel metrics", args.input.display()))?;
    let aupro = match maps {
        Some((m, k)) => {
            if m.shape != k.shape {
                anyhow::bail!(
                    "{}: maps has shape {:?} but masks has {:?}; give one mask pixel per map pixel",
                    args.input.display(),
                    m.shape,
                    k.shape
                );
            }
            let (kk, h, w) = (m.shape[0], m.shape[1], m.shape[2]);
            aupro(
                m.as_f32().unwrap(),
                k.as_u8().unwrap(),
                kk,
                h,
                w,
                args.fpr_limit,
            )
            .with_context(|| format!("{}: aupro", args.input.display()))?
        }
        None => None,
    };
    let out = Output {
        auroc: pixel.auroc,
        ap: pixel.ap,
        f1_max: pixel.f1_max,
        f1_threshold: pixel.f1_threshold,
        aupro,
        positives: pixel.positives,
        negatives: pixel.negatives,
    };
    let out = serde_json::to_string(&out)?;
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
