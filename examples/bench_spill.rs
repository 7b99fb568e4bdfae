//! Times one category's metrics with its maps in memory and spilled to disk
//! (`ava_dino::engine::evaluate::CategoryMaps`), and prints one JSON line: the figures of
//! docs/metrics.md ("Categories larger than memory"). Run each mode in its own process, so that
//! the peak RSS (Linux `VmHWM`) is that mode's alone:
//!
//!   CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_spill -- memory [images] [size] [budget_mib]
//!   CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_spill -- spilled 200 512 64
//!
//! Defaults: 200 maps of 512x512 (52M pixels), one checkpoint, `protocol: reference`, AUPRO on,
//! the bootstrap with 1,000 replicates and 1,024 bins; `budget_mib` (spilled only, default 64)
//! is the memory budget. Scores are uniform random plus 0.5 inside a rectangular defect on every
//! fourth image, rounded to multiples of 2^-20 (ties); the spill files go to the system's
//! temporary directory. `metrics` and `replicates_digest` must agree between the two modes.

use std::time::Instant;

use ava_dino::engine::evaluate::{CategoryMaps, EvalOptions, Spill};
use ava_dino::engine::inference::ImagePrediction;
use ava_dino::metrics::{AUPRO_FPR_LIMIT, BootstrapSpec, METRIC_NAMES};
use ava_dino::model::Protocol;
use ava_dino::rng::SplitMix64;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "memory".into());
    let mut next = |default: usize| -> anyhow::Result<usize> {
        Ok(args
            .next()
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (k, size, budget_mib) = (next(200)?, next(512)?, next(64)?);
    let budget = match mode.as_str() {
        "memory" => u64::MAX,
        "spilled" => (budget_mib as u64) << 20,
        other => anyhow::bail!("mode {other}: give `memory` or `spilled`"),
    };
    let opts = EvalOptions {
        batch_size: 1,
        protocol: Protocol::Reference,
        aupro: Some(AUPRO_FPR_LIMIT),
        bootstrap: Some(BootstrapSpec::default()),
    };
    let dir = tempfile::tempdir_in(std::env::temp_dir())?;
    let spill = Spill {
        dir: dir.path(),
        budget,
    };

    // Maps made one at a time and handed over: only the CategoryMaps holds them.
    let t = Instant::now();
    let mut maps = CategoryMaps::new(&spill, 0, k, size, 1)?;
    let mut preds = Vec::with_capacity(k);
    let (mut map, mut mask) = (vec![0f32; size * size], vec![0u8; size * size]);
    for i in 0..k {
        let mut rng = SplitMix64(0x5EED + i as u64);
        let defect = i % 4 == 3;
        let (y0, x0) = (rng.below(size / 2), rng.below(size / 2));
        let (dy, dx) = (1 + rng.below(size / 4), 1 + rng.below(size / 4));
        for (p, (v, m)) in map.iter_mut().zip(mask.iter_mut()).enumerate() {
            let (y, x) = (p / size, p % size);
            let inside = defect && (y0..y0 + dy).contains(&y) && (x0..x0 + dx).contains(&x);
            *m = inside as u8;
            let raw = rng.next_f32() + if inside { 0.5 } else { 0.0 };
            *v = (raw * (1 << 20) as f32).round() / (1 << 20) as f32;
        }
        preds.push(ImagePrediction {
            index: i,
            label: defect as u8,
            score: map.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            w_normal: 0.5,
            w_anomaly: 0.5,
        });
        maps.push_map(0, &map)?;
        maps.push_mask(&mask)?;
    }
    let fill_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let scored = maps.metrics(0, "bench", &preds, &opts)?;
    let metrics_s = t.elapsed().as_secs_f64();
    let spilled = maps.is_spilled();
    drop(maps);

    let values: Vec<Option<f64>> = METRIC_NAMES
        .iter()
        .map(|n| scored.metrics.metrics.get(n))
        .collect();
    // FNV-1a over the replicates' bits: equal digests, bit-identical replicates.
    let digest = scored
        .replicates
        .iter()
        .flatten()
        .flatten()
        .map(|v| v.map_or(u64::MAX, f64::to_bits))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let pixels = (k * size * size) as u64;
    let out = serde_json::json!({
        "mode": mode, "spilled": spilled, "images": k, "size": size,
        "budget_mib": (budget != u64::MAX).then_some(budget_mib),
        "threads": rayon::current_num_threads(),
        "map_mib": (pixels * 4) as f64 / (1u64 << 20) as f64,
        "fill_seconds": fill_s, "metrics_seconds": metrics_s,
        "passes": scored.passes,
        "bytes_read_over_map_bytes": scored.bytes_read as f64 / (pixels * 4) as f64,
        "peak_rss_mib": peak_rss_mib(),
        "metrics": values, "replicates_digest": format!("{digest:016x}"),
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
