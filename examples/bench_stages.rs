//! Each stage of a full-size job, timed on this machine with docs/scale.md's protocol: the
//! figures of docs/scale.md come from here (`engine::cost::BUILD_CPU` from `ava-dino calibrate`).
//!
//! `cargo run --release --example bench_stages -- [--reps N] [--only a,b] [--train-batch B]
//! [--eval-batch B]` with stages `decode backbone text train eval metrics` (adapter batches 2 by
//! default); prints one line per stage (median of N after one warm-up) and the `Rates`. The
//! measurements are `engine::cost::calibrate`'s, the ones `ava-dino calibrate` runs with fewer
//! repetitions and the engine's batches (shapes and what each stage runs are documented there).

use ava_dino::engine::cost::BUILD_CPU;
use ava_dino::engine::cost::calibrate::{Protocol, Stage, measure};
use burn::tensor::Device;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let reps: usize = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(3);
    let only: Vec<Stage> = match arg("--only") {
        Some(list) => list
            .split(',')
            .map(|s| {
                Stage::parse(s.trim()).unwrap_or_else(|| {
                    eprintln!(
                        "unknown stage `{s}`: expected decode, backbone, text, train, eval, metrics, checkpoint"
                    );
                    std::process::exit(2)
                })
            })
            .collect(),
        None => Stage::ALL.to_vec(),
    };
    let device = Device::flex();
    let mut protocol = Protocol::thorough(reps);
    // Batch 2 by default (the side-by-side with scripts/bench_adapters_torch.py); `ava-dino
    // calibrate` times the engine's micro-batch and evaluation batch instead.
    let batch = |name: &str, default: usize| {
        arg(name)
            .map(|s| {
                s.parse()
                    .ok()
                    .filter(|&b: &usize| b > 0)
                    .unwrap_or_else(|| {
                        eprintln!("{name} {s}: expected a positive number of images");
                        std::process::exit(2)
                    })
            })
            .unwrap_or(default)
    };
    protocol.train_batch = batch("--train-batch", protocol.train_batch);
    protocol.eval_batch = batch("--eval-batch", protocol.eval_batch);
    println!(
        "bench_stages: {} threads, reps {reps}",
        rayon::current_num_threads()
    );
    // Stages not run keep the build machine's figures.
    let mut rates = BUILD_CPU;
    for stage in only {
        let m = measure(stage, &protocol, &device).unwrap_or_else(|e| {
            eprintln!("error: {} stage: {e}", stage.name());
            std::process::exit(1)
        });
        for line in &m.lines {
            println!("{line}");
        }
        m.apply(&mut rates);
    }
    println!("rates: {rates:?}");
}
