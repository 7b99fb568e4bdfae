//! Reports: Tables 1-4 and per-category tables (polars; Markdown, CSV, JSON), charts
//! (plotters; PNG and SVG), and the regression check.
//!
//! [`write_report`] turns collected runs into `results/<profile>/`:
//! `tableN.{md,csv,json}`, `per_category/<run>.{md,csv,json}`, `charts/*.{png,svg}`.

pub mod charts;
pub mod check;
pub mod collect;
pub mod estimate;
pub mod published;
pub mod render;
pub mod tables;

use std::path::{Path, PathBuf};

pub use collect::{CollectedRun, collect_runs};
pub use estimate::Estimate;
pub use published::Published;
pub use render::{Cell, CheckCell, EstimateColumns, Table, TableJson, TableMeta};
pub use tables::ReportInput;

use crate::experiment::{EpochSelection, TableKind, Variant};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Table(#[from] render::TableError),
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
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

/// Writes `tables`, the per-category tables of every run and the charts into `out`.
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
    for &kind in kinds {
        let t = build_table(kind, &input);
        if t.cells.iter().all(|c| c.ours.is_none()) {
            summary.warnings.push(format!(
                "{}: none of its runs were found; its cells are empty",
                kind.name()
            ));
        }
        summary.files.extend(t.write(out)?);
    }
    for run in runs {
        summary
            .files
            .extend(tables::per_category(&input, run).write(out)?);
    }
    summary.files.extend(write_charts(
        &input,
        kinds,
        &out.join("charts"),
        &mut summary.warnings,
    )?);
    Ok(summary)
}

/// All charts that the runs allow.
fn write_charts(
    input: &ReportInput,
    kinds: &[TableKind],
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<PathBuf>, ReportError> {
    let mut files = Vec::new();
    // Routing-weight distributions per target (full variant, seeds pooled): the picture behind Table 4.
    let mut targets: Vec<&str> = input
        .runs
        .iter()
        .filter(|r| r.job().variant == Variant::Full)
        .map(|r| r.job().target.as_str())
        .collect();
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
        let normal: Vec<f64> = rows
            .iter()
            .filter(|r| r.label == 0)
            .map(|r| r.w_anomaly)
            .collect();
        let anomalous: Vec<f64> = rows
            .iter()
            .filter(|r| r.label == 1)
            .map(|r| r.w_anomaly)
            .collect();
        files.extend(charts::routing_histogram(
            &dir.join(format!("routing_{t}")),
            &format!("Routing weights on {t}: normal vs anomalous"),
            &input.meta(&runs, Vec::new()).provenance_line(),
            &normal,
            &anomalous,
        )?);
    }
    // Ours vs published per dataset (Table 1's numbers).
    if kinds.contains(&TableKind::Table1) {
        let t1 = tables::table1(input);
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
            files.extend(charts::ours_vs_published(
                &dir.join(format!("ours_vs_published_{metric}")),
                &format!("{label}: ours vs published AVA-DINO"),
                &t1.meta.provenance_line(),
                &rows,
            )?);
        }
    }
    // Loss curves: one per distinct training (variant, training set, seed).
    let mut seen = std::collections::BTreeSet::new();
    for r in input.runs {
        if r.metrics.epochs.is_empty() || !seen.insert(r.job().train_key()) {
            continue;
        }
        let key = r.job().train_key();
        files.extend(charts::loss_curves(
            &dir.join(format!("loss_{key}")),
            &format!("Training loss: {key}"),
            &input.meta(&[r], Vec::new()).provenance_line(),
            &r.metrics.epochs,
        )?);
    }
    // Overlays from the maps each run saved.
    for r in input
        .runs
        .iter()
        .filter(|r| r.job().variant == Variant::Full)
    {
        let provenance = input.meta(&[r], Vec::new()).provenance_line();
        let maps = r.dir.join("maps");
        let Ok(cats) = std::fs::read_dir(&maps) else {
            continue;
        };
        let mut cats: Vec<_> = cats
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        cats.sort();
        for cat in cats {
            let mut files_in: Vec<_> = std::fs::read_dir(&cat)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files_in.sort();
            for f in files_in {
                let cat_name = cat
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem_name = f
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let out = dir
                    .join("overlays")
                    .join(r.job().dir_name())
                    .join(format!("{cat_name}__{stem_name}"));
                files.extend(charts::overlay(
                    &f,
                    &out,
                    &format!("{} / {cat_name} / {stem_name}", r.job().target),
                    &provenance,
                )?);
            }
        }
    }
    Ok(files)
}
