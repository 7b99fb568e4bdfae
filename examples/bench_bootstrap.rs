//! Times the bootstrap of one category at full size (`ava_dino::metrics::CategorySample` and
//! `replicates`) and prints one JSON line: the figures of docs/metrics.md ("Confidence
//! intervals").
//!
//!   CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_bootstrap -- [images] [size] [replicates] [bins]
//!
//! Defaults: 1,000 maps of 512x512 (262M pixels, as KSDD2's largest category), 1,000 replicates,
//! 1,024 bins, AUPRO on. Scores are uniform random, plus 0.5 inside a rectangular defect on every
//! fourth image, so nearly every pixel score is distinct and the pixel metrics are binned.

use std::time::Instant;

use ava_dino::metrics::{
    AUPRO_FPR_LIMIT, BootstrapSpec, CategorySample, METRIC_NAMES, aupro, intervals, pixel_metrics,
    replicates, stream_of,
};
use ava_dino::rng::SplitMix64;
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let mut next = |default: usize| args.next().transpose().map(|v| v.unwrap_or(default));
    let (k, size, reps, bins) = (next(1000)?, next(512)?, next(1000)?, next(1024)?);
    let hw = size * size;

    let t = Instant::now();
    let mut pixels = vec![0f32; k * hw];
    let mut masks = vec![0u8; k * hw];
    pixels
        .par_chunks_mut(hw)
        .zip(masks.par_chunks_mut(hw))
        .enumerate()
        .for_each(|(i, (map, mask))| {
            let mut rng = SplitMix64(0xB007 + i as u64);
            let defect = i % 4 == 3;
            let (y0, x0) = (rng.below(size / 2), rng.below(size / 2));
            let (dy, dx) = (1 + rng.below(size / 4), 1 + rng.below(size / 4));
            for (p, (v, m)) in map.iter_mut().zip(mask.iter_mut()).enumerate() {
                let (y, x) = (p / size, p % size);
                let inside = defect && (y0..y0 + dy).contains(&y) && (x0..x0 + dx).contains(&x);
                *m = inside as u8;
                *v = rng.next_f32() + if inside { 0.5 } else { 0.0 };
            }
        });
    let image_scores: Vec<f32> = pixels
        .par_chunks(hw)
        .map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect();
    let image_labels: Vec<u8> = (0..k).map(|i| (i % 4 == 3) as u8).collect();
    let generate_s = t.elapsed().as_secs_f64();
    let rss_data = peak_rss_mib();

    // The engine's full-sample metrics, timed for comparison.
    let t = Instant::now();
    let image = pixel_metrics(&image_scores, &image_labels)?;
    let pixel = pixel_metrics(&pixels, &masks)?;
    let pixel_metrics_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pro = aupro(&pixels, &masks, k, size, size, AUPRO_FPR_LIMIT)?;
    let aupro_s = t.elapsed().as_secs_f64();
    let exact = [
        image.auroc,
        image.ap,
        image.f1_max,
        pixel.auroc,
        pro,
        pixel.f1_max,
    ];

    let t = Instant::now();
    let sample = CategorySample::new(
        &pixels,
        &masks,
        &image_scores,
        &image_labels,
        size,
        size,
        Some(AUPRO_FPR_LIMIT),
        bins,
        exact,
    )?;
    let build_s = t.elapsed().as_secs_f64();
    let rss_build = peak_rss_mib();

    let spec = BootstrapSpec {
        replicates: reps,
        seed: 1,
        level: 0.95,
        bins,
    };
    let t = Instant::now();
    let values = replicates(&sample, &spec, stream_of("bench"))?;
    let replicates_s = t.elapsed().as_secs_f64();
    let iv = intervals(&values, spec.level)?;

    let named = |f: &dyn Fn(usize) -> serde_json::Value| {
        METRIC_NAMES
            .iter()
            .enumerate()
            .map(|(m, n)| (n.to_string(), f(m)))
            .collect::<serde_json::Map<_, _>>()
    };
    let out = serde_json::json!({
        "images": k, "size": size, "pixels": k * hw, "replicates": reps, "bins": bins,
        "threads": rayon::current_num_threads(),
        "generate_s": generate_s,
        "exact_pixel_metrics_s": pixel_metrics_s,
        "exact_aupro_s": aupro_s,
        "build_s": build_s,
        "replicates_s": replicates_s,
        "per_replicate_ms": 1e3 * replicates_s / reps.max(1) as f64,
        "sample_heap_mib": sample.heap_bytes() as f64 / (1 << 20) as f64,
        "binned": sample.binned(),
        "binning_bias": named(&|m| sample.shift()[m].into()),
        "peak_rss_mib_after_data": rss_data, "peak_rss_mib_after_build": rss_build,
        "peak_rss_mib_end": peak_rss_mib(),
        "exact": named(&|m| exact[m].into()),
        "interval": named(&|m| iv[m].map(|(lo, hi)| vec![lo, hi]).into()),
    });
    println!("{out}");
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`); `None` elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
