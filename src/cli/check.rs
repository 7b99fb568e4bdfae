//! `ava-dino check`: compare results/<profile>/table*.json with the published numbers (full) or
//! the committed smoke baseline (smoke). Exit code 3 when a cell is outside tolerance.

use std::path::PathBuf;
use std::process::ExitCode;

use ava_dino::experiment::Profile;
use ava_dino::report::{Published, check};

/// Exit code when the check ran and found cells outside tolerance.
pub const OUT_OF_TOLERANCE: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value = "smoke")]
    pub profile: Profile,
    /// Directory holding results/<profile>/ (default: results).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    #[arg(long, default_value = "results/published.toml")]
    pub published: PathBuf,
    /// Smoke baseline (default: results/smoke/baseline.json).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write the current numbers as the smoke baseline instead of checking.
    #[arg(long)]
    pub bless: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.results.join(args.profile.name());
    let tables = check::read_tables(&dir)?;
    let baseline_path = args
        .baseline
        .unwrap_or_else(|| args.results.join("smoke").join("baseline.json"));
    let report = match args.profile {
        Profile::Full => {
            anyhow::ensure!(
                !args.bless,
                "--bless writes the smoke baseline; the full profile is checked against results/published.toml"
            );
            let published = Published::read(&args.published)?;
            // Our table JSON carries the published value of each cell; reading the file here
            // makes a missing published.toml an error rather than a silent pass.
            let _ = published;
            let tol = check::Tolerances::PUBLISHED;
            println!(
                "check {}: against published numbers; a cell is outside when the published value lies outside our interval widened by the tolerance ({} points, {} for weights) on both sides, or, without an interval, when |ours - published| exceeds it",
                dir.display(),
                tol.percent_points,
                tol.weight
            );
            let report = check::check_published(&tables, tol);
            print!("{}", report.render_all());
            return Ok(exit_code(&report));
        }
        Profile::Rehearsal => anyhow::bail!(
            "the rehearsal profile runs random weights at the paper's shapes: its numbers have \
             nothing to be checked against (its point is the time and memory it takes, docs/scale.md)"
        ),
        Profile::Smoke => {
            if args.bless {
                let b = check::bless(&tables, "smoke", check::Tolerances::SMOKE);
                let json = serde_json::to_vec_pretty(&b)?;
                ava_dino::io::write_atomic(&baseline_path, &json)?;
                println!(
                    "blessed {} cells into {}",
                    b.values.len(),
                    baseline_path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let text = std::fs::read_to_string(&baseline_path).map_err(|e| {
                anyhow::anyhow!("{}: {e}; create it from a trusted run with `cargo xtask check --profile smoke --bless`", baseline_path.display())
            })?;
            let baseline: check::Baseline = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", baseline_path.display()))?;
            println!(
                "check {}: against {}, tolerance {} points, {} for weights, per cell {}",
                dir.display(),
                baseline_path.display(),
                baseline.tolerance.percent_points,
                baseline.tolerance.weight,
                baseline.tolerance_rule.name()
            );
            check::check_baseline(&tables, &baseline)
        }
    };
    print!("{}", report.render());
    Ok(exit_code(&report))
}

fn exit_code(report: &check::CheckReport) -> ExitCode {
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(OUT_OF_TOLERANCE)
    }
}
