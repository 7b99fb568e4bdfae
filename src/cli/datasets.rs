//! `ava-dino datasets check [NAME...]` and `ava-dino datasets list NAME --protocol P --json`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::data::check::{Severity, check_dataset};
use ava_dino::data::{ListOptions, Protocol, Registry, list_samples_with_skipped};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry file (default: datasets.toml of this checkout, else the built-in copy).
    #[arg(long, global = true)]
    registry: Option<PathBuf>,
    /// Folder holding the dataset folders (overrides $AVA_DINO_DATA_ROOT).
    #[arg(long, global = true)]
    data_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Check roots, category folders, counts, masks, decodability and sizes.
    Check {
        /// Dataset keys (default: all in the registry).
        names: Vec<String>,
    },
    /// Print what a run would evaluate, sorted by category then image path.
    List {
        name: String,
        #[arg(long, default_value = "reference")]
        protocol: Protocol,
        /// Only this category (repeatable).
        #[arg(long = "category")]
        categories: Vec<String>,
        /// One JSON object per line (otherwise a tab-separated table).
        #[arg(long)]
        json: bool,
        /// Leave out anomalous images without a mask (listed on stderr) instead of failing.
        #[arg(long)]
        skip_bad: bool,
    },
}

/// One line of `datasets list --json`, fields in the documented order.
#[derive(serde::Serialize)]
struct Row<'a> {
    dataset: &'a str,
    category: &'a str,
    image: &'a str,
    mask: Option<&'a str>,
    label: u8,
    class_word: &'a str,
}

/// Writes one line; a closed pipe (`| head`) ends the listing quietly.
fn put(out: &mut impl Write, line: std::fmt::Arguments) -> std::io::Result<()> {
    ignore_broken_pipe(writeln!(out, "{line}"))
}

fn ignore_broken_pipe(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other,
    }
}

fn registry(args: &Args) -> anyhow::Result<Registry> {
    let mut reg = match &args.registry {
        Some(path) => Registry::load(path)?,
        None => Registry::load_default()?,
    };
    if let Some(d) = &args.data_root {
        reg = reg.with_data_root(d);
    }
    Ok(reg)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reg = registry(&args)?;
    match args.command {
        Sub::Check { names } => check(&reg, names),
        Sub::List {
            name,
            protocol,
            categories,
            json,
            skip_bad,
        } => {
            let opts = ListOptions {
                categories,
                skip_bad,
                ..ListOptions::default()
            };
            let (samples, skipped) = list_samples_with_skipped(&reg, &name, protocol, &opts)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for s in &samples {
                if json {
                    let row = Row {
                        dataset: &s.dataset,
                        category: &s.category,
                        image: &s.image_rel,
                        mask: s.mask_rel.as_deref(),
                        label: s.label,
                        class_word: &s.class_word,
                    };
                    put(&mut out, format_args!("{}", serde_json::to_string(&row)?))?;
                } else {
                    let mask = s.mask_rel.as_deref().unwrap_or("-");
                    put(
                        &mut out,
                        format_args!(
                            "{}\t{}\t{}\t{}\t{mask}",
                            s.category, s.label, s.class_word, s.image_rel
                        ),
                    )?;
                }
            }
            ignore_broken_pipe(out.flush())?;
            for k in &skipped {
                eprintln!("warning: skipped {}: {}", k.path.display(), k.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(reg: &Registry, names: Vec<String>) -> anyhow::Result<ExitCode> {
    let names = if names.is_empty() {
        reg.datasets.keys().cloned().collect()
    } else {
        names
    };
    let mut all_ok = true;
    println!(
        "{:<10} {:<16} {:>7} {:>9} {:>17}  status",
        "dataset", "category", "normal", "anomalous", "expected (n/a)"
    );
    for key in &names {
        let r = check_dataset(reg, key).with_context(|| format!("checking {key}"))?;
        let errors = r
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = r.problems.len() - errors;
        if r.categories.is_empty() {
            println!(
                "{key:<10} {:<16} {:>7} {:>9} {:>17}  MISSING",
                "-", "-", "-", "-"
            );
        }
        for c in &r.categories {
            let exp = format!(
                "{}/{}",
                c.expected_normal.map_or("?".into(), |v| v.to_string()),
                c.expected_anomalous.map_or("?".into(), |v| v.to_string())
            );
            let matches = c.expected_normal.is_none_or(|e| e == c.normal)
                && c.expected_anomalous.is_none_or(|e| e == c.anomalous);
            let status = if c.normal + c.anomalous == 0 {
                "EMPTY"
            } else if matches {
                "ok"
            } else {
                "count differs"
            };
            println!(
                "{key:<10} {:<16} {:>7} {:>9} {:>17}  {status}",
                c.name, c.normal, c.anomalous, exp
            );
        }
        let root = r
            .root
            .as_ref()
            .map_or("-".to_string(), |p| p.display().to_string());
        let kind = if r.synthetic { " (synthetic twin)" } else { "" };
        println!(
            "  {key}: root {root}{kind}; {} files decoded; {errors} error(s), {warnings} warning(s)",
            r.files_decoded
        );
        for p in &r.problems {
            let tag = match p.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            println!("  {tag} {}: {}", p.path.display(), p.message);
        }
        all_ok &= r.ok();
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
