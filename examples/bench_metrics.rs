//! Times `ava_dino::metrics::pixel_metrics` (P-AUROC + AP + F1-max in one pass) on a safetensors
//! file of `scores` f32 [N] / `labels` u8 [N], and prints one JSON line with the timing and values.
//! `scripts/bench_metrics.py` makes the data, times scikit-learn on the same file and compares.
//!
//!   CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_metrics -- /tmp/bench_metrics.safetensors [repeats]

use std::time::Instant;

use ava_dino::io::TensorFile;
use ava_dino::metrics::pixel_metrics;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: bench_metrics <file.safetensors> [repeats]"))?;
    let repeats: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let file = TensorFile::read(&path)?;
    let scores = file.f32("scores", 1)?.as_f32().unwrap();
    let labels = file.u8("labels", 1)?.as_u8().unwrap();
    let rss_loaded = peak_rss_mib();
    let mut times = Vec::new();
    let mut m = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        m = Some(pixel_metrics(scores, labels)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let m = m.unwrap();
    times.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "n": scores.len(),
        "threads": rayon::current_num_threads(),
        "seconds_best": times[0],
        "seconds_median": times[times.len() / 2],
        "peak_rss_mib_after_load": rss_loaded, "peak_rss_mib_after_metrics": peak_rss_mib(),
        "auroc": m.auroc, "ap": m.ap, "f1_max": m.f1_max, "f1_threshold": m.f1_threshold,
    });
    println!("{out}");
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), to show the metrics' memory next to the
/// input's; `None` elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
