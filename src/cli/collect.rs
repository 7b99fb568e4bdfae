//! `ava-dino collect`: gather finished run directories into Tables 1-4, per-category tables,
//! charts and the HTML page (`index.html`) under `results/<profile>/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::experiment::{EpochSelection, TableKind};
use ava_dino::report::{self, Published};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories, experiment directories (runs/paper-smoke) or a whole runs/ tree.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output directory (default: results/<profile of the runs>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tables to write (default: every table some run feeds).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<TableKind>,
    /// Epoch each table reports: reference_best (the reference's best test P-AUROC) or final.
    #[arg(long, default_value = "reference_best", value_parser = parse_selection)]
    pub selection: EpochSelection,
    #[arg(long, default_value = "results/published.toml")]
    pub published: PathBuf,
}

fn parse_selection(s: &str) -> Result<EpochSelection, String> {
    match s {
        "reference_best" => Ok(EpochSelection::ReferenceBest),
        "final" => Ok(EpochSelection::Final),
        _ => Err(format!(
            "unknown selection `{s}`; use reference_best or final"
        )),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for root in &args.runs {
        let (found, unfinished) =
            report::collect_runs(root).with_context(|| format!("collecting {}", root.display()))?;
        for u in unfinished {
            eprintln!(
                "warning: {} is not finished (no DONE); left out",
                u.display()
            );
        }
        runs.extend(found);
    }
    anyhow::ensure!(
        !runs.is_empty(),
        "no finished runs under {:?}; run `ava-dino sweep <experiment.yaml> --all` first",
        args.runs
    );
    let profiles: std::collections::BTreeSet<&str> = runs
        .iter()
        .map(|r| r.metrics.provenance.profile.as_str())
        .collect();
    let profile = profiles
        .iter()
        .next()
        .copied()
        .unwrap_or("unknown")
        .to_string();
    if profiles.len() > 1 {
        eprintln!("warning: runs of several profiles ({profiles:?}) are mixed in one report");
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&profile));
    let tables = if args.tables.is_empty() {
        report::tables::tables_fed_by(&runs)
    } else {
        args.tables
    };
    let published = Published::read(&args.published)?;
    let summary = report::write_report(&runs, &published, &tables, args.selection, &profile, &out)?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "collect: {} runs -> {} files under {}",
        runs.len(),
        summary.files.len(),
        out.display()
    );
    for t in &tables {
        println!("{}", out.join(format!("{}.md", t.name())).display());
    }
    println!("{}", out.join("index.html").display());
    Ok(ExitCode::SUCCESS)
}
