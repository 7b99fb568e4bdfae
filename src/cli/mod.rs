//! Command-line interface. Each subcommand is one file with its `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod common;
mod features;
mod metrics;
mod text;
mod tokenize;

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
    /// AUROC, AP, F1-max (+ threshold) and AUPRO of one safetensors file, as one JSON object.
    Metrics(metrics::Args),
    /// Print CLIP token ids (one JSON array of 77 per text).
    Tokenize(tokenize::Args),
    /// CLIP text features of token ids or of class words' prompt ensembles.
    Text(text::Args),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Features(args) => features::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Text(args) => text::run(args),
    }
}
