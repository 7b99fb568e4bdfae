//! `ava-dino evaluate`: checkpoint files (the authors' `epoch_N.pth` or our
//! `adapters.safetensors`) evaluated on one target, as a run evaluates its own.
//!
//! The configuration is resolved as a sweep's (experiment file, profile, `--set`); every file is
//! checked against its model before any backbone work; all are streamed through the target in one
//! pass of the engine's evaluation. Writes `metrics.json`, `per_category.csv`,
//! `config.resolved.yaml` and one overlay folder per checkpoint into `--out`, and prints per
//! checkpoint the table the authors' `test.py` prints.

use super::common::DeviceOverride;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ava_dino::engine::checkpoint_files::{
    CheckpointEval, CheckpointResult, evaluate_checkpoints, load_checkpoints,
};
use ava_dino::engine::progress::Reporter;
use ava_dino::experiment::record::{
    CheckpointRecord, CheckpointsRecord, SCHEMA_VERSION, now_rfc3339, per_category_csv,
};
use ava_dino::experiment::{self, Job, Profile, short_hash};
use ava_dino::model::Variant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checkpoint files: the authors' `epoch_N.pth` or our `adapters.safetensors` (repeatable,
    /// or several after one flag). Each is labelled by its file name.
    #[arg(long, num_args = 1.., required = true)]
    pub checkpoint: Vec<PathBuf>,
    /// Dataset key evaluated (`mvtec`, `visa`, ...).
    #[arg(long)]
    pub target: String,
    /// Only this category of the target (repeatable; default all).
    #[arg(long)]
    pub category: Vec<String>,
    /// Experiment file whose configuration (with its profile) describes the model and the
    /// evaluation; the sweep section plays no part.
    #[arg(long, default_value = "experiments/table1.yaml")]
    pub experiment: PathBuf,
    /// Profile layered over the file: smoke (embedded default) or full (real assets).
    #[arg(long, env = "AVA_DINO_PROFILE")]
    pub profile: Option<Profile>,
    /// Override a key: `--set eval.batch_size=8` (repeatable; the value is YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// The model variant the checkpoints hold.
    #[arg(long, default_value = "full")]
    pub variant: Variant,
    /// Output folder (created; one that already holds a metrics.json is refused).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceOverride,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let overrides = args.device.with(&args.overrides);
    let loaded = experiment::load_experiment(&args.experiment, args.profile, &overrides)?;
    let job = Job {
        variant: args.variant,
        train: args.target.clone(),
        target: args.target.clone(),
        seed: 0,
    };
    // The job's model and evaluation settings; the cache settings as configured (a job's
    // identity drops them, an evaluation still needs its memory budget).
    let mut exp = job.config(&loaded.experiment);
    exp.cache = loaded.experiment.cache.clone();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/evaluate").join(now_rfc3339().replace(':', "")));
    if out.join("metrics.json").exists() {
        bail!(
            "{}: already holds an evaluation (metrics.json); choose another --out",
            out.display()
        );
    }
    let repo_root = std::env::current_dir().context("reading the current directory")?;
    let spec = CheckpointEval {
        exp: &exp,
        job: &job,
        files: &args.checkpoint,
        categories: &args.category,
        out: &out,
        repo_root: &repo_root,
        reporter: Reporter {
            quiet: args.quiet,
            interval: exp.train.log_interval(),
        },
    };
    let device = ava_dino::device::select(exp.device)?;
    // Every file against the model before any backbone work.
    let models = load_checkpoints(&spec, &device)?;
    let (results, skipped) = evaluate_checkpoints(&spec, &models, &device)?;
    for r in &results {
        print!("{}", test_py_table(&args.target, r));
    }
    let yaml = serde_saphyr::to_string(&exp).context("serializing the configuration")?;
    let record = CheckpointsRecord {
        schema_version: SCHEMA_VERSION,
        variant: args.variant.name().into(),
        target: args.target.clone(),
        checkpoints: results
            .iter()
            .map(|r| {
                let sha = ava_dino::io::sha256_file(&r.file)
                    .with_context(|| format!("{}: reading", r.file.display()))?;
                Ok(CheckpointRecord {
                    label: r.label.clone(),
                    file: r.file.display().to_string(),
                    sha256: format!("sha256:{sha}"),
                    evaluation: r.evaluation.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        skipped: skipped
            .iter()
            .map(|s| format!("{}: {}", s.path.display(), s.reason))
            .collect(),
        config: short_hash(yaml.as_bytes()),
        created: now_rfc3339(),
    };
    let evals: Vec<_> = results.iter().map(|r| &r.evaluation).collect();
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        ava_dino::io::write_atomic(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))
    };
    write("config.resolved.yaml", yaml.as_bytes())?;
    write("per_category.csv", per_category_csv(&evals).as_bytes())?;
    let json = serde_json::to_vec_pretty(&record).expect("the record serializes");
    write("metrics.json", &json)?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// One checkpoint's table in the layout of the authors' `test.py` (undefined values print `nan`
/// as NumPy does; the mean skips them, as `np.nanmean` does).
fn test_py_table(dataset: &str, r: &CheckpointResult) -> String {
    let sep = "=".repeat(100);
    let f = |v: Option<f64>| v.map_or_else(|| "nan".to_string(), |v| format!("{v:.5}"));
    let row = |name: &str, m: &ava_dino::experiment::record::MetricSet| {
        format!(
            "{name:<25} P-AUROC: {}  I-AUROC: {}  F1: {}",
            f(m.pixel_auroc),
            f(m.image_auroc),
            f(m.pixel_f1max)
        )
    };
    let mut out = format!(
        "\n{sep}\nDataset: {dataset}  |  Checkpoint: {}\n{sep}\n",
        r.label
    );
    for c in &r.evaluation.per_category {
        out.push_str(&format!("  {}\n", row(&c.category, &c.metrics)));
    }
    out.push_str(&format!("\n  {}\n{sep}\n", row("MEAN", &r.evaluation.mean)));
    out
}
