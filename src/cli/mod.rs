//! Command-line interface. Each subcommand is one file with its `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod features;
mod random_backbone;

/// Reproduction harness for AVA-DINO (zero-shot anomaly detection, DINOv3 + CLIP adapters).
#[derive(Debug, Parser)]
#[command(name = "ava-dino", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the frozen DINOv3 backbone and write tap features (normed, patches, cls).
    Features(features::Args),
    /// Write a seeded random DINOv3 backbone as an HF model directory (for tests and benchmarks).
    RandomBackbone(random_backbone::Args),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Features(args) => features::run(args),
        Command::RandomBackbone(args) => random_backbone::run(args),
    }
}
