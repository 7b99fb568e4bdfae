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
    Rehearsal,
    Full,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Rehearsal => "rehearsal",
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
        /// Root of the run directories (as `ava-dino sweep`'s `--runs`, and the same variable).
        #[arg(long, default_value = "runs", env = "AVA_DINO_RUNS")]
        runs: PathBuf,
        /// Use the debug build instead of release (for quick checks of the plumbing).
        #[arg(long)]
        debug: bool,
        /// Cargo features of the ava-dino build (e.g. `vulkan` on a GPU runner).
        #[arg(long, default_value = "")]
        features: String,
        /// Print what the run will cost (time per stage on a CPU - this one once `ava-dino
        /// calibrate` has measured it, else the build machine's rates - and on one H200,
        /// memory) and stop; the projection is also printed before every real run.
        #[arg(long)]
        dry_run: bool,
    },
    /// Memory benchmark: Table 4's job in the rehearsal profile at full width (1024, patch 16,
    /// 512 px; `--depth` blocks) on twins of 1 and 6 images per category, each under a 1 GiB
    /// budget and unbounded; prints peak memory per phase and checks the budgeted runs' numbers
    /// equal the unbounded ones (docs/scale.md).
    BenchMemory {
        /// Which runs: `scale` (Table 4's job at two dataset sizes) or `big-category` (a KSDD2
        /// twin of 1,000 images evaluated under 2 GiB and 20 GiB).
        #[arg(long, value_enum, default_value = "scale")]
        case: MemoryCase,
        /// Backbone blocks (the taps are the first four).
        #[arg(long, default_value_t = 4)]
        depth: usize,
        /// Training epochs.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Root of the benchmark's run directories.
        #[arg(long, default_value = "runs/bench-memory")]
        runs: PathBuf,
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
    dry_run: bool,
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
    let mut a: Vec<String> = vec!["estimate".into()];
    a.extend(tables.iter().map(|t| format!("experiments/{t}.yaml")));
    a.extend(["--profile".to_string(), profile.name().into()]);
    a.extend(["--runs".to_string(), runs.display().to_string()]);
    for o in overrides {
        a.push("--set".into());
        a.push(o.clone());
    }
    // What it will cost, first (needs no assets), then the assets: one message, before any work.
    let code = ava(&bin, &root, &a)?;
    if code != 0 || dry_run {
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    // Assets, for every table: one message, before any work.
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

/// The runs of `cargo xtask bench-memory` (see [`memory_runs`]).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum MemoryCase {
    Scale,
    BigCategory,
}

/// One run of the memory benchmark: a job of an experiment file under a budget.
struct MemoryRun {
    /// The series it belongs to (runs of a series must give the same metrics).
    series: String,
    /// Its row label and run directory name.
    label: String,
    experiment: &'static str,
    /// The job's directory under the runs directory, and its name for `--job`.
    job: &'static str,
    budget: &'static str,
    sets: Vec<String>,
}

/// The runs of `cargo xtask bench-memory`: `scale` (Table 4's job at 1 and 6 images per category,
/// budgeted and unbounded: memory bounded by the budget, not the dataset) and `big-category`
/// (issue 20's job: VisA twin at 6 per category, batch 64, evaluated on a KSDD2 twin of 1,000
/// images, under 2 GiB and 20 GiB).
fn memory_runs(case: MemoryCase, depth: usize, epochs: usize, runs: &Path) -> Vec<MemoryRun> {
    let common = |twins: &str| {
        vec![
            format!("data.synthetic.dir={}", runs.join(twins).display()),
            format!("backbone.embedded.depth={depth}"),
            "backbone.taps=[0,1,2,3]".to_string(),
            format!("train.epochs={epochs}"),
            format!("cache.dir={}", runs.join("cache/features").display()),
        ]
    };
    let mut out = Vec::new();
    match case {
        MemoryCase::Scale => {
            for per_category in [1usize, 6] {
                for (label, budget, store) in
                    [("1GiB", "1GiB", "auto"), ("unbounded", "1TiB", "memory")]
                {
                    let mut sets = common(&format!("twins-{per_category}"));
                    sets.extend([
                        format!("data.synthetic.per_category={per_category}"),
                        // A batch both sizes fill: a training batch's activations grow with
                        // the batch (up to `train.batch_size`), not with the data; with the
                        // default 64, 12 images make a batch of 12 and 72 a batch of 64, and
                        // the comparison would measure the batch instead of the dataset.
                        "train.batch_size=8".into(),
                        format!("cache.train={store}"),
                    ]);
                    out.push(MemoryRun {
                        series: format!("{per_category} image(s)/category"),
                        label: format!("{per_category}x-{label}"),
                        experiment: "experiments/table4.yaml",
                        job: "full__visa__mvtec__s0",
                        budget,
                        sets,
                    });
                }
            }
        }
        MemoryCase::BigCategory => {
            for budget in ["2GiB", "20GiB"] {
                let mut sets = common("twins-big");
                sets.extend([
                    "data.synthetic.per_category=6".to_string(),
                    "data.synthetic.per_dataset.ksdd2=1000".into(),
                    // The small text tower: the memory under test is the data's.
                    "text.embedded.width=64".into(),
                    "text.embedded.layers=2".into(),
                    "text.embedded.heads=4".into(),
                    "text.embedded.embed_dim=32".into(),
                ]);
                out.push(MemoryRun {
                    series: "KSDD2 twin of 1,000 images".into(),
                    label: format!("ksdd2-1000-{budget}"),
                    experiment: "experiments/table1.yaml",
                    job: "full__visa__ksdd2__s0",
                    budget,
                    sets,
                });
            }
        }
    }
    out
}

fn bench_memory(
    case: MemoryCase,
    depth: usize,
    epochs: usize,
    runs: &Path,
) -> anyhow::Result<ExitCode> {
    let root = project_root();
    let bin = build(&root, false, "")?;
    let mut rows = Vec::new();
    let mut numbers = std::collections::BTreeMap::new();
    for run in memory_runs(case, depth, epochs, runs) {
        let dir = runs.join(&run.label);
        let mut a: Vec<String> = ["sweep", run.experiment, "--profile", "rehearsal"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            "--job".into(),
            run.job.into(),
            "--quiet".into(),
            "--runs".into(),
        ]);
        a.push(dir.display().to_string());
        for s in run
            .sets
            .iter()
            .cloned()
            .chain([format!("cache.memory_budget={}", run.budget)])
        {
            a.push("--set".into());
            a.push(s);
        }
        let t = Instant::now();
        let code = ava(&bin, &root, &a)?;
        if code != 0 {
            bail!("the {} run failed (exit {code})", run.label);
        }
        let wall = t.elapsed().as_secs_f64();
        let path = root
            .join(&dir)
            .join(format!("paper-rehearsal/{}/metrics.json", run.job));
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        let p = &m["provenance"];
        let gib = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / (1u64 << 30) as f64;
        let phase = |k: &str| gib(&p["peak_rss"][k]);
        let peak = ["extract", "train", "eval"]
            .iter()
            .map(|k| phase(k))
            .fold(0.0, f64::max);
        let expected = gib(&p["expected_peak"]);
        rows.push(format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {peak:.2} | {expected:.2} | {:+.0} % | {wall:.0} |",
            run.series,
            run.budget,
            p["feature_store"].as_str().unwrap_or("?"),
            phase("extract"),
            phase("train"),
            phase("eval"),
            100.0 * (peak / expected - 1.0),
        ));
        let key: Vec<String> = [
            "untrained",
            "best_epoch",
            "final_epoch",
            "routing",
            "epochs",
        ]
        .iter()
        .map(|k| {
            let mut v = m[*k].clone();
            if let Some(a) = v.as_array_mut() {
                for e in a {
                    e.as_object_mut().map(|o| o.remove("seconds"));
                }
            }
            v.to_string()
        })
        .collect();
        numbers.entry(run.series).or_insert_with(Vec::new).push(key);
    }
    println!(
        "| series | budget | training store | peak extract GiB | peak train GiB | peak eval GiB | peak GiB | estimated peak GiB | measured vs estimated | wall s |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        println!("{r}");
    }
    let mut ok = true;
    for (series, runs) in &numbers {
        let same = runs.windows(2).all(|w| w[0] == w[1]);
        println!(
            "{series}: metrics under every budget {}",
            if same { "identical" } else { "DIFFER" }
        );
        ok &= same;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
            dry_run,
        } => reproduce(
            target, profile, &overrides, &runs, debug, &features, dry_run,
        ),
        Cmd::Check {
            profile,
            bless,
            debug,
        } => check(profile, bless, debug),
        Cmd::BenchMemory {
            case,
            depth,
            epochs,
            runs,
        } => bench_memory(case, depth, epochs, &runs),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
