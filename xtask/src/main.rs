//! `cargo xtask`: project automation that needs nothing but cargo (rust-analyzer's convention).
//!
//! - `cargo xtask reproduce table1|table2|table3|table4|all [--profile smoke|full]`: builds the
//!   `ava-dino` binary in release mode, checks the assets, runs the experiments' sweeps (finished
//!   jobs are skipped, interrupted ones resume), then collects Tables and charts into
//!   `results/<profile>/`.
//! - `cargo xtask check [--profile smoke|full] [--bless]`: the regression check (exit code 3 when
//!   a cell is outside tolerance).
//!
//! Keep this crate light: it only orchestrates the binary (std::process), no tensor code.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "xtask", about = "AVA-DINO reproduction automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Target {
    Table1,
    Table2,
    Table3,
    Table4,
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Profile {
    Smoke,
    Full,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Full => "full",
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the experiments of a table (or all four), then write tables and charts.
    Reproduce {
        #[arg(value_enum)]
        target: Target,
        #[arg(long, value_enum, default_value = "smoke")]
        profile: Profile,
        /// Extra `key.sub=value` overrides passed to every sweep.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Root of the run directories.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Use the debug build instead of release (for quick checks of the plumbing).
        #[arg(long)]
        debug: bool,
        /// Cargo features of the ava-dino build (e.g. `vulkan` on a GPU runner).
        #[arg(long, default_value = "")]
        features: String,
    },
    /// Compare results/<profile>/*.json with the published numbers or the smoke baseline.
    Check {
        #[arg(long, value_enum, default_value = "smoke")]
        profile: Profile,
        /// Write the current smoke numbers as results/smoke/baseline.json.
        #[arg(long)]
        bless: bool,
        #[arg(long)]
        debug: bool,
    },
}

fn project_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process too; prefer it to the compile-time
    // value, which names whichever checkout last linked `target/debug/xtask` when two checkouts
    // share one target directory (cargo reuses the binary without relinking it).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Builds `ava-dino` and returns the path of the binary.
fn build(root: &Path, debug: bool, features: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(["build", "--bin", "ava-dino"]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    if !debug {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of ava-dino failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target_dir
        .join(if debug { "debug" } else { "release" })
        .join("ava-dino"))
}

/// Runs the binary; returns its exit code.
fn ava(bin: &Path, root: &Path, args: &[String]) -> anyhow::Result<i32> {
    eprintln!("+ ava-dino {}", args.join(" "));
    let status = Command::new(bin)
        .current_dir(root)
        .args(args)
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

fn reproduce(
    target: Target,
    profile: Profile,
    overrides: &[String],
    runs: &Path,
    debug: bool,
    features: &str,
) -> anyhow::Result<ExitCode> {
    let root = project_root();
    let bin = build(&root, debug, features)?;
    let tables: Vec<&str> = match target {
        Target::Table1 => vec!["table1"],
        Target::Table2 => vec!["table2"],
        Target::Table3 => vec!["table3"],
        Target::Table4 => vec!["table4"],
        Target::All => vec!["table1", "table2", "table3", "table4"],
    };
    let common = |table: &str| -> Vec<String> {
        let mut a = vec![
            "sweep".into(),
            format!("experiments/{table}.yaml"),
            "--profile".into(),
            profile.name().into(),
            "--runs".into(),
            runs.display().to_string(),
        ];
        for o in overrides {
            a.push("--set".into());
            a.push(o.clone());
        }
        a
    };
    // Assets first, for every table: one message, before any work.
    for t in &tables {
        let mut a = common(t);
        a.push("--check-assets".into());
        let code = ava(&bin, &root, &a)?;
        if code != 0 {
            bail!(
                "assets missing for {t} (profile {}): nothing was run; see the list above and README \"Full reproduction\"",
                profile.name()
            );
        }
    }
    let started = Instant::now();
    for t in &tables {
        let t0 = Instant::now();
        let mut a = common(t);
        a.push("--all".into());
        let code = ava(&bin, &root, &a)?;
        if code != 0 {
            bail!(
                "the {t} sweep failed (exit {code}); rerun the same command to resume: finished jobs are skipped"
            );
        }
        eprintln!("xtask: {t} sweep took {:.1}s", t0.elapsed().as_secs_f64());
    }
    let mut a = vec![
        "collect".to_string(),
        runs.join(format!("paper-{}", profile.name()))
            .display()
            .to_string(),
        "--out".into(),
        format!("results/{}", profile.name()),
        "--tables".into(),
        tables.join(","),
    ];
    a.push("--published".into());
    a.push("results/published.toml".into());
    let code = ava(&bin, &root, &a)?;
    if code != 0 {
        bail!("collect failed (exit {code})");
    }
    eprintln!(
        "xtask: reproduce {target:?} --profile {} done in {:.1}s (build excluded)",
        profile.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn check(profile: Profile, bless: bool, debug: bool) -> anyhow::Result<ExitCode> {
    let root = project_root();
    let bin = build(&root, debug, "")?;
    let mut a = vec![
        "check".to_string(),
        "--profile".into(),
        profile.name().into(),
    ];
    if bless {
        a.push("--bless".into());
    }
    let code = ava(&bin, &root, &a)?;
    // Pass the binary's code through: 0 ok, 1 error, 3 outside tolerance.
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Reproduce {
            target,
            profile,
            overrides,
            runs,
            debug,
            features,
        } => reproduce(target, profile, &overrides, &runs, debug, &features),
        Cmd::Check {
            profile,
            bless,
            debug,
        } => check(profile, bless, debug),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
