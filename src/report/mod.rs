//! Reports: Tables 1-4 and per-category tables (polars; Markdown, CSV, JSON, LaTeX), charts
//! (plotters; PNG and SVG), and one HTML page holding them all, and the regression check.
//!
//! [`write_report`] turns collected runs into `results/<profile>/`:
//! `tableN.{md,csv,json,tex}`, `per_category/<run>.{md,csv,json}`, `charts/*.{png,svg}` and
//! `index.html`. Each table is built once and handed to every rendering.

pub mod charts;
pub mod check;
pub mod collect;
pub mod estimate;
pub mod gallery;
pub mod html;
pub mod latex;
pub mod published;
pub mod render;
pub mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use collect::{CollectedRun, collect_runs};
pub use estimate::Estimate;
pub use published::Published;
pub use render::{Best, Cell, CheckCell, EstimateColumns, Table, TableJson, TableMeta};
pub use tables::ReportInput;

use crate::experiment::{EpochSelection, TableKind, Variant};
use charts::{Drawn, Heading};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Table(#[from] render::TableError),
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error(transparent)]
    Map(#[from] gallery::MapError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no finished runs to report; run the sweep first (`ava-dino sweep <experiment.yaml> --all`)"
    )]
    NoRuns,
}

/// What was written.
#[derive(Debug, Default)]
pub struct ReportSummary {
    pub files: Vec<PathBuf>,
    /// Non-fatal problems (a chart without data, ...), one line each.
    pub warnings: Vec<String>,
}

/// Builds one of the paper's tables.
pub fn build_table(kind: TableKind, input: &ReportInput) -> Table {
    match kind {
        TableKind::Table1 => tables::table1(input),
        TableKind::Table2 => tables::table2(input),
        TableKind::Table3 => tables::table3(input),
        TableKind::Table4 => tables::table4(input),
    }
}

/// The caveat charts of a profile other than `full` carry under their title.
pub fn chart_caveat(profile: &str) -> Option<String> {
    (profile != "full")
        .then(|| format!("{profile} profile: these numbers say nothing about the paper"))
}

/// Writes `tables`, the per-category tables of every run, the charts and `index.html` into
/// `out`.
pub fn write_report(
    runs: &[CollectedRun],
    published: &Published,
    kinds: &[TableKind],
    selection: EpochSelection,
    profile: &str,
    out: &Path,
) -> Result<ReportSummary, ReportError> {
    if runs.is_empty() {
        return Err(ReportError::NoRuns);
    }
    let input = ReportInput {
        runs,
        published,
        selection,
        profile: profile.into(),
    };
    let mut summary = ReportSummary::default();
    let mut built = Vec::new();
    for &kind in kinds {
        let t = build_table(kind, &input);
        if t.cells.iter().all(|c| c.ours.is_none()) {
            summary.warnings.push(format!(
                "{}: none of its runs were found; its cells are empty",
                kind.name()
            ));
        }
        summary.files.extend(t.write(out)?);
        summary.files.push(write(
            &out.join(format!("{}.tex", t.name)),
            latex::to_latex(&t).as_bytes(),
        )?);
        built.push(t);
    }
    let per_category: Vec<Table> = runs
        .iter()
        .map(|r| tables::per_category(&input, r))
        .collect();
    for t in &per_category {
        summary.files.extend(t.write(out)?);
    }
    let drawn = write_charts(&input, &built, out, &mut summary.warnings)?;
    summary.files.extend(drawn.files.iter().cloned());
    let marks = marks(&built, profile, out, &mut summary.warnings);
    let trainings = trainings(runs, &per_category, &drawn);
    let page = html::Page {
        profile,
        selection,
        tables: &built,
        figures: drawn.summary,
        trainings,
        marks,
        runs,
    };
    summary.files.push(write(
        &out.join("index.html"),
        html::page(&page).as_bytes(),
    )?);
    Ok(summary)
}

fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf, ReportError> {
    crate::io::write_atomic(path, bytes).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// The cells the page flags: what `cargo xtask check` fails on for this profile - the published
/// numbers under [`check::Tolerances::PUBLISHED`] for `full`, `baseline.json` beside the tables
/// for `smoke`; nothing for other profiles, or for `smoke` without a baseline.
fn marks(built: &[Table], profile: &str, out: &Path, warnings: &mut Vec<String>) -> html::Marks {
    let json: Vec<TableJson> = built.iter().map(Table::to_json).collect();
    let report = match profile {
        "full" => {
            let t = check::Tolerances::PUBLISHED;
            let r = check::check_published(&json, t);
            let rule = format!(
                "the published value lies outside our interval widened by {} points ({} for routing weights), or, without an interval, differs from ours by more; what `cargo xtask check --profile full` fails on",
                t.percent_points, t.weight
            );
            Some((r, rule))
        }
        "smoke" => {
            let path = out.join("baseline.json");
            if !path.is_file() {
                None
            } else {
                match check::read_baseline(&path) {
                    Ok(b) => {
                        let rule = format!(
                            "moved from baseline.json by more than {} points ({} for routing weights; {}); what `cargo xtask check --profile smoke` fails on",
                            b.tolerance.percent_points,
                            b.tolerance.weight,
                            b.tolerance_rule.name()
                        );
                        Some((check::check_baseline(&json, &b), rule))
                    }
                    Err(e) => {
                        warnings.push(format!("page marks: {e}"));
                        None
                    }
                }
            }
        }
        _ => None,
    };
    match report {
        Some((r, rule)) => html::Marks {
            outside: r.mismatches().map(|c| c.key.clone()).collect(),
            rule,
        },
        None => html::Marks {
            outside: Default::default(),
            rule: format!(
                "no regression check for profile {profile} beside this page: no cell is checked"
            ),
        },
    }
}

/// Charts drawn for the report: the files, and the SVG the page inlines.
#[derive(Default)]
struct ChartSet {
    files: Vec<PathBuf>,
    /// Shown after the tables: ours vs published per metric, the routing weights behind Table 4.
    summary: Vec<html::Figure>,
    /// Loss curves by training key.
    loss: BTreeMap<String, html::Figure>,
    /// Routing weights by run directory name.
    routing: BTreeMap<String, html::Figure>,
    /// Overlays by run directory name.
    gallery: BTreeMap<String, Vec<html::Tile>>,
}

impl ChartSet {
    /// Keeps `drawn`'s files and returns its figure (`None` for a PNG-only chart).
    fn add(&mut self, drawn: Drawn, label: String, out: &Path) -> Option<html::Figure> {
        let png = drawn
            .files
            .iter()
            .find(|f| f.extension().is_some_and(|x| x == "png"))
            .map(|f| relative(f, out));
        self.files.extend(drawn.files);
        Some(html::Figure {
            svg: drawn.svg?,
            label,
            png,
        })
    }
}

/// `path` relative to `base`, `/`-separated (the page's links).
fn relative(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The trainings of `runs` in run order, each with its runs' drill-downs.
fn trainings<'a>(
    runs: &'a [CollectedRun],
    per_category: &'a [Table],
    charts: &ChartSet,
) -> Vec<html::TrainingView<'a>> {
    let mut out: Vec<html::TrainingView<'a>> = Vec::new();
    for (r, t) in runs.iter().zip(per_category) {
        let key = r.job().train_key();
        let name = r.job().dir_name();
        let view = html::RunView {
            run: r,
            per_category: t,
            routing: charts.routing.get(&name).cloned(),
            gallery: charts.gallery.get(&name).cloned().unwrap_or_default(),
        };
        match out.iter_mut().find(|tr| tr.key == key) {
            Some(tr) => tr.runs.push(view),
            None => out.push(html::TrainingView {
                loss: charts.loss.get(&key).cloned(),
                key,
                runs: vec![view],
            }),
        }
    }
    out
}

/// All charts that the runs allow, under `out/charts`.
fn write_charts(
    input: &ReportInput,
    built: &[Table],
    out: &Path,
    warnings: &mut Vec<String>,
) -> Result<ChartSet, ReportError> {
    let dir = out.join("charts");
    let caveat = chart_caveat(&input.profile);
    let mut set = ChartSet::default();
    // Ours vs published per dataset (Table 1's numbers).
    if let Some(t1) = built.iter().find(|t| t.name == TableKind::Table1.name()) {
        for (metric, label) in tables::MAIN_METRICS {
            let rows: Vec<(String, Option<f64>, Option<f64>)> = t1
                .cells
                .iter()
                .filter(|c| c.key.ends_with(&format!("/{metric}")))
                .map(|c| {
                    (
                        c.key.split('/').nth(1).unwrap_or("").to_string(),
                        c.ours,
                        c.paper,
                    )
                })
                .collect();
            let title = format!("{label}: ours vs published AVA-DINO");
            let provenance = t1.meta.provenance_line();
            let drawn = charts::ours_vs_published(
                &dir.join(format!("ours_vs_published_{metric}")),
                &Heading {
                    title: &title,
                    caveat: caveat.as_deref(),
                    provenance: &provenance,
                },
                &rows,
            )?;
            let fig = set.add(drawn, title, out);
            set.summary.extend(fig);
        }
    }
    // Routing-weight distributions per target (full variant, seeds pooled): the picture behind
    // Table 4 (the page shows Table 4's target; the others are files).
    let mut targets: Vec<&str> = input
        .runs
        .iter()
        .filter(|r| r.job().variant == Variant::Full)
        .map(|r| r.job().target.as_str())
        .collect();
    targets.sort();
    targets.dedup();
    for t in &targets {
        let runs: Vec<&CollectedRun> = input
            .runs
            .iter()
            .filter(|r| r.job().variant == Variant::Full && r.job().target == *t)
            .collect();
        let rows: Vec<_> = runs
            .iter()
            .filter_map(|r| r.routing.as_ref())
            .flatten()
            .collect();
        if rows.is_empty() {
            warnings.push(format!("routing chart for {t}: no routing.csv in its runs"));
            continue;
        }
        let (normal, anomalous) = split_weights(rows.iter().copied());
        let title = format!("Routing weights on {t}: normal vs anomalous");
        let provenance = input.meta(&runs, Vec::new()).provenance_line();
        let drawn = charts::routing_histogram(
            &dir.join(format!("routing_{t}")),
            &Heading {
                title: &title,
                caveat: caveat.as_deref(),
                provenance: &provenance,
            },
            &normal,
            &anomalous,
        )?;
        let behind_table4 = *t == tables::ABLATION_TARGET
            && built.iter().any(|t| t.name == TableKind::Table4.name());
        let label = if behind_table4 {
            format!("{title} (full variant, seeds pooled): the weights behind Table 4")
        } else {
            format!("{title} (full variant, seeds pooled)")
        };
        let fig = set.add(drawn, label, out);
        if behind_table4 {
            set.summary.extend(fig);
        }
    }
    for r in input.runs {
        let name = r.job().dir_name();
        let provenance = input.meta(&[r], Vec::new()).provenance_line();
        // Routing weights of this run alone: drawn for the page only (SVG, no file), since the
        // pooled charts above already are files.
        if let Some(rows) = r.routing.as_ref().filter(|rows| !rows.is_empty()) {
            let (normal, anomalous) = split_weights(rows.iter());
            let title = format!("Routing weights: {name}");
            let svg = charts::routing_histogram_svg(
                &Heading {
                    title: &title,
                    caveat: caveat.as_deref(),
                    provenance: &provenance,
                },
                &normal,
                &anomalous,
            )?;
            set.routing.insert(
                name.clone(),
                html::Figure {
                    svg,
                    label: title,
                    png: None,
                },
            );
        }
        // Loss curves: one per distinct training (variant, training set, seed).
        let key = r.job().train_key();
        if !r.metrics.epochs.is_empty() && !set.loss.contains_key(&key) {
            let title = format!("Training loss: {key}");
            let drawn = charts::loss_curves(
                &dir.join(format!("loss_{key}")),
                &Heading {
                    title: &title,
                    caveat: caveat.as_deref(),
                    provenance: &provenance,
                },
                &r.metrics.epochs,
            )?;
            if let Some(fig) = set.add(drawn, title, out) {
                set.loss.insert(key, fig);
            }
        }
        // Overlays from the maps each full-variant run saved.
        if r.job().variant != Variant::Full {
            continue;
        }
        for path in gallery::saved_maps(&r.dir) {
            let saved = gallery::SavedMap::read(&path)?;
            let title = format!("{} / {} / {}", r.job().target, saved.category, saved.name);
            let stem = dir
                .join("overlays")
                .join(&name)
                .join(format!("{}__{}", saved.category, saved.name));
            let drawn = charts::overlay(
                &saved,
                &stem,
                &Heading {
                    title: &title,
                    caveat: caveat.as_deref(),
                    provenance: &provenance,
                },
            )?;
            let png = drawn.files.first().map(|f| relative(f, out));
            set.files.extend(drawn.files);
            if let Some(src) = png {
                set.gallery
                    .entry(name.clone())
                    .or_default()
                    .push(html::Tile {
                        category: saved.category.clone(),
                        name: saved.name.clone(),
                        src,
                        anomalous: saved.anomalous,
                        score: saved.score(),
                    });
            }
        }
    }
    Ok(set)
}

/// The anomaly routing weights of normal and of anomalous images.
fn split_weights<'a>(
    rows: impl Iterator<Item = &'a crate::experiment::RoutingRow> + Clone,
) -> (Vec<f64>, Vec<f64>) {
    let of = |label: u8| {
        rows.clone()
            .filter(|r| r.label == label)
            .map(|r| r.w_anomaly)
            .collect()
    };
    (of(0), of(1))
}
