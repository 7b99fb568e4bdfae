//! Command-line interface. Each subcommand is one file with its `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_backbone;
mod calibrate;
mod check;
mod collect;
mod common;
mod datasets;
mod estimate;
mod evaluate;
mod features;
mod metrics;
mod predict;
mod random_backbone;
mod sweep;
mod synth;
mod text;
mod tokenize;

/// Reproduction harness for AVA-DINO (zero-shot anomaly detection, DINOv3 + CLIP adapters).
#[derive(Debug, Parser)]
#[command(
    name = "ava-dino",
    version = ava_dino::build_info::version_line(),
    about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the frozen DINOv3 backbone and write tap features (normed, patches, cls).
    Features(features::Args),
    /// AUROC, AP, F1-max (+ threshold) and AUPRO of one safetensors file, as one JSON object.
    Metrics(metrics::Args),
    /// Evaluate checkpoint files (the authors' epoch_N.pth or ours) on a target, as a run does.
    Evaluate(evaluate::Args),
    /// Score your own images with a trained run: image score, routing weights, heat-map overlay.
    Predict(predict::Args),
    /// Print CLIP token ids (one JSON array of 77 per text).
    Tokenize(tokenize::Args),
    /// CLIP text features of token ids or of class words' prompt ensembles.
    Text(text::Args),
    /// List, run (by index or all) or emit a Slurm array for the jobs of an experiment.
    Sweep(sweep::Args),
    /// What running experiments will cost (time per stage on a CPU - this one once calibrated,
    /// else the build machine's rates - and on one H200, memory).
    Estimate(estimate::Args),
    /// Measure this machine's stage rates (under 2 minutes) for `estimate` and `--dry-run`.
    Calibrate(calibrate::Args),
    /// Gather finished runs into Tables 1-4, per-category tables and charts.
    Collect(collect::Args),
    /// Compare results with the published numbers or the smoke baseline (exit 3 when outside).
    Check(check::Args),
    /// Dataset registry: `check` what is on disk, `list` what a run would evaluate.
    Datasets(datasets::Args),
    /// Write deterministic synthetic twins of all nine datasets.
    Synth(synth::Args),
    /// Write a seeded random DINOv3 backbone as an HF model directory (for tests and benchmarks).
    RandomBackbone(random_backbone::Args),
    /// Backbone throughput (images/s) at a batch size, image size, dtype and device.
    BenchBackbone(bench_backbone::Args),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Features(args) => features::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Text(args) => text::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Estimate(args) => estimate::run(args),
        Command::Calibrate(args) => calibrate::run(args),
        Command::Collect(args) => collect::run(args),
        Command::Check(args) => check::run(args),
        Command::Datasets(args) => datasets::run(args),
        Command::Synth(args) => synth::run(args),
        Command::RandomBackbone(args) => random_backbone::run(args),
        Command::BenchBackbone(args) => bench_backbone::run(args),
    }
}
