//! The paper's Tables 1-4 and the per-category tables, built from collected runs.
//!
//! Our numbers are means over the seeds found (metrics x 100, i.e. percent), with the sample
//! standard deviation over seeds and the hull of the seeds' bootstrap intervals ([`Estimate`]);
//! the published ones come from `results/published.toml`. Deltas are ours minus published.

use std::collections::{BTreeMap, BTreeSet};

use super::collect::CollectedRun;
use super::estimate::Estimate;
use super::published::{BASELINES, OURS, Published};
use super::render::{Best, Block, Cell, CheckCell, EstimateColumns, Table, TableMeta};
use crate::experiment::{EpochSelection, Evaluation, MetricSet, Variant};

/// Tables 1-3: a cell is a mean over seeds with an interval.
const SEEDS_AND_INTERVALS: EstimateColumns = EstimateColumns {
    interval: true,
    seeds: true,
};

/// The nine targets in the paper's order.
pub const DATASETS: [&str; 9] = [
    "mvtec",
    "visa",
    "btad",
    "ksdd2",
    "mpdd",
    "mvtec_ad2",
    "kvasir",
    "colondb",
    "clinicdb",
];
/// Medical sets: every test image is anomalous, so I-AUROC is not defined.
pub const MEDICAL: [&str; 3] = ["kvasir", "colondb", "clinicdb"];
/// The three numbers of Tables 1 and 2.
pub const MAIN_METRICS: [(&str, &str); 3] = [
    ("image_auroc", "I-AUROC"),
    ("pixel_auroc", "P-AUROC"),
    ("pixel_f1max", "P-F1max"),
];

/// The ablation tables' target (paper: trained on VisA, evaluated on MVTec-AD).
pub const ABLATION_TARGET: &str = "mvtec";

/// What the builders need.
pub struct ReportInput<'a> {
    pub runs: &'a [CollectedRun],
    pub published: &'a Published,
    pub selection: EpochSelection,
    pub profile: String,
}

impl<'a> ReportInput<'a> {
    /// Runs of `variant` on `target` (every seed; the training set is whatever the runs used).
    fn runs_of(&self, variant: Variant, target: &str) -> Vec<&'a CollectedRun> {
        self.runs
            .iter()
            .filter(|r| r.job().variant == variant && r.job().target == target)
            .collect()
    }

    /// Our number of `metric` over `runs` (one per seed), in percent: the mean of the selected
    /// evaluations' means, their spread, and the hull of their bootstrap intervals.
    fn ours(&self, runs: &[&CollectedRun], metric: &str) -> Estimate {
        Estimate::over_seeds(runs.iter().filter_map(|r| {
            let e = r.metrics.selected(self.selection);
            let v = e.mean.get(metric)?;
            Some((v, e.mean_interval.as_ref().and_then(|i| i.get(metric))))
        }))
        .scaled(100.0)
    }

    /// [`swap_granularity`] of the selected evaluations of `runs`.
    fn granularity(&self, runs: &[&CollectedRun], metric: &str) -> Option<f64> {
        let evals: Vec<&Evaluation> = runs
            .iter()
            .map(|r| r.metrics.selected(self.selection))
            .collect();
        swap_granularity(&evals, metric)
    }

    /// The check cell of `ours` under `key`.
    fn check_cell(
        &self,
        key: String,
        runs: &[&CollectedRun],
        metric: &str,
        ours: &Estimate,
        paper: Option<f64>,
    ) -> CheckCell {
        CheckCell::new(key, ours, paper, self.granularity(runs, metric))
    }

    /// What the `±` and the brackets of a table's cells are. `intervals`: the table shows
    /// bootstrap intervals (Table 4's routing weights have none).
    fn estimate_notes(&self, used: &[&CollectedRun], intervals: bool) -> Vec<String> {
        let mut notes = Vec::new();
        let evals: Vec<&Evaluation> = used
            .iter()
            .map(|r| r.metrics.selected(self.selection))
            .collect();
        if intervals {
            let methods: BTreeSet<String> = evals
                .iter()
                .filter_map(|e| e.bootstrap.as_ref())
                .map(|b| {
                    format!(
                        "{:.0} % bootstrap interval over test images, {} replicates ({})",
                        b.level * 100.0,
                        b.replicates,
                        b.method
                    )
                })
                .collect();
            if !methods.is_empty() {
                notes.push(format!(
                    "[lo, hi] = {}",
                    methods.into_iter().collect::<Vec<_>>().join("; ")
                ));
                if evals.iter().any(|e| e.mean_interval.is_none()) {
                    notes.push(
                        "runs made before intervals existed have none: a cell shows brackets only when every seed behind it has an interval".into(),
                    );
                }
            }
        }
        let mut seeds_per_cell: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for r in used {
            let j = r.job();
            *seeds_per_cell
                .entry((j.variant.to_string(), j.train.clone(), j.target.clone()))
                .or_default() += 1;
        }
        if seeds_per_cell.values().any(|&n| n > 1) {
            notes.push(if intervals {
                "several seeds: value ± sample standard deviation over seeds, then the hull of the seeds' intervals (lowest lo, highest hi); the check flags a published value only when it lies outside every seed's interval".into()
            } else {
                "several seeds: value ± sample standard deviation over seeds".into()
            });
        }
        notes
    }

    fn untrained(&self, runs: &[&CollectedRun], metric: &str) -> Option<f64> {
        mean(
            runs.iter()
                .filter_map(|r| r.metrics.untrained.as_ref()?.mean.get(metric))
                .map(|v| v * 100.0),
        )
    }

    /// The settings of the runs behind a table.
    pub fn meta(&self, used: &[&CollectedRun], notes: Vec<String>) -> TableMeta {
        let set = |f: &dyn Fn(&CollectedRun) -> String| {
            used.iter()
                .map(|r| f(r))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let embedded: BTreeSet<bool> = used.iter().map(|r| r.metrics.provenance.embedded).collect();
        let assets = match (embedded.contains(&true), embedded.contains(&false)) {
            (true, false) => {
                "embedded default (synthetic twins, seeded random backbones) - not comparable to the paper"
            }
            (false, true) => "real weights and data",
            (true, true) => "mixed: some runs embedded, some real",
            (false, false) => "no runs found",
        };
        TableMeta {
            profile: self.profile.clone(),
            image_size: used
                .iter()
                .map(|r| r.metrics.provenance.image_size)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            protocol: set(&|r| r.metrics.provenance.protocol.clone()),
            selection: self.selection.label().into(),
            seeds: used
                .iter()
                .map(|r| r.job().seed)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            activation: set(&|r| r.metrics.provenance.activation.clone()),
            assets: assets.into(),
            git_revision: set(&|r| revision(&r.metrics.provenance)),
            code: known(set(&|r| r.metrics.provenance.code.clone())),
            device: known(set(&|r| {
                let p = &r.metrics.provenance;
                match (p.backend.is_empty(), p.device.is_empty()) {
                    (_, true) => p.backend.clone(),
                    (true, false) => p.device.clone(),
                    (false, false) => format!("{}: {}", p.backend, p.device),
                }
            })),
            kernels: known(set(&|r| r.metrics.provenance.kernels.clone())),
            threads: used
                .iter()
                .map(|r| r.metrics.provenance.threads)
                .filter(|&t| t > 0)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            backbone_dtype: known(set(&|r| r.metrics.provenance.backbone_dtype.clone())),
            feature_dtype: known(set(&|r| r.metrics.provenance.feature_dtype.clone())),
            notes,
        }
    }
}

/// `<10 hex>`, `<10 hex>+dirty.<digest of the uncommitted changes>` (`+dirty` when the digest
/// is unknown) or `unknown`.
fn revision(p: &crate::experiment::Provenance) -> String {
    let rev = p.git_revision.clone().unwrap_or_else(|| "unknown".into());
    let short: String = rev.chars().take(10).collect();
    match (p.git_dirty, &p.git_diff) {
        (Some(true), Some(d)) => format!("{short}+dirty.{d}"),
        (Some(true), None) => format!("{short}+dirty"),
        _ => short,
    }
}

/// Drops the empty value that runs made before a provenance field existed carry.
fn known(v: Vec<String>) -> Vec<String> {
    v.into_iter().filter(|s| !s.is_empty()).collect()
}

/// The largest change that one swapped pair of adjacent image scores (a normal and an anomalous
/// image trading ranks, which a different f32 summation order can cause) makes in a cell of
/// `metric` averaged over categories and over the seeds of `evals`, in percentage points.
///
/// I-AUROC counts the correctly ordered (anomalous, normal) pairs: one swap changes a category's
/// value by `1 / (n_normal x n_anomalous)`, its mean over the `k` categories with a defined value
/// by that over `k`, and the mean over `n` seeds by that over `n`. The worst category of the
/// worst seed bounds it. Pixel metrics: `None` (a swapped pixel pair moves them by less than
/// 1e-6); other image metrics have no such simple bound and are only in per-category tables,
/// which no check reads: `None` too.
pub fn swap_granularity(evals: &[&Evaluation], metric: &str) -> Option<f64> {
    if metric != "image_auroc" {
        return None;
    }
    let per_seed: Vec<f64> = evals
        .iter()
        .filter_map(|e| {
            let defined: Vec<_> = e
                .per_category
                .iter()
                .filter(|c| c.metrics.image_auroc.is_some_and(f64::is_finite))
                .collect();
            let worst = defined
                .iter()
                .filter(|c| c.n_normal > 0 && c.n_anomalous > 0)
                .map(|c| 100.0 / (c.n_normal as f64 * c.n_anomalous as f64))
                .reduce(f64::max)?;
            Some(worst / defined.len() as f64)
        })
        .collect();
    let worst = per_seed.iter().copied().reduce(f64::max)?;
    Some(worst / per_seed.len() as f64)
}

fn mean(vals: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn delta(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

fn is_medical(runs: &[&CollectedRun], dataset: &str) -> bool {
    runs.first()
        .map(|r| r.metrics.target_domain == "medical")
        .unwrap_or(false)
        || MEDICAL.contains(&dataset)
}

/// Table 1: nine targets x (I-AUROC, P-AUROC, P-F1max): ours (trained, and untrained), the
/// paper's AVA-DINO, the delta, and the baselines.
pub fn table1(input: &ReportInput) -> Table {
    let mut targets: Vec<String> = DATASETS.iter().map(|s| s.to_string()).collect();
    for r in input
        .runs
        .iter()
        .filter(|r| r.job().variant == Variant::Full)
    {
        if !targets.contains(&r.job().target) {
            targets.push(r.job().target.clone());
        }
    }
    let mut columns = vec!["dataset".to_string(), "trained on".to_string()];
    for (_, label) in MAIN_METRICS {
        columns.push(format!("{label} ours"));
        columns.push(format!("{label} untrained"));
        columns.push(format!("{label} paper"));
        columns.push(format!("{label} Δ"));
        for b in BASELINES {
            columns.push(format!("{label} {b}"));
        }
    }
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut used = Vec::new();
    for t in &targets {
        let runs = input.runs_of(Variant::Full, t);
        used.extend(runs.iter().copied());
        let trains: BTreeSet<&str> = runs.iter().map(|r| r.job().train.as_str()).collect();
        let mut row = vec![
            Cell::Text(t.clone()),
            Cell::Text(trains.into_iter().collect::<Vec<_>>().join("+")),
        ];
        let medical = is_medical(&runs, t);
        for (metric, _) in MAIN_METRICS {
            let undefined = medical && metric == "image_auroc";
            let ours = input.ours(&runs, metric);
            let paper = input.published.value(OURS, t, metric);
            let cell = |v: Option<f64>| {
                if undefined {
                    Cell::NotDefined
                } else {
                    Cell::Num(v)
                }
            };
            let ours_column = row.len();
            row.push(if undefined {
                Cell::NotDefined
            } else {
                Cell::Estimate(ours)
            });
            row.push(cell(input.untrained(&runs, metric)));
            row.push(cell(paper));
            row.push(if undefined {
                Cell::NotDefined
            } else {
                Cell::Delta(delta(ours.value, paper))
            });
            for b in BASELINES {
                row.push(cell(input.published.value(b, t, metric)));
            }
            if !undefined {
                cells.push(
                    input
                        .check_cell(format!("table1/{t}/{metric}"), &runs, metric, &ours, paper)
                        .at(rows.len(), ours_column),
                );
            }
        }
        rows.push(row);
    }
    let mut notes = vec![
        "ours = AVA-DINO as reproduced here (full variant), mean over seeds; untrained = the same adapters at initialization; paper = published AVA-DINO; Δ = ours - paper".into(),
        "percent; I-AUROC is n/a on the medical sets (every test image is anomalous); – = no run or not published".into(),
        format!("baselines as published by their authors: {}", BASELINES.join(", ")),
    ];
    notes.extend(input.estimate_notes(&used, true));
    // As the paper shows it: one block per metric, the datasets down the side.
    let per_metric = 4 + BASELINES.len();
    let layout = MAIN_METRICS
        .iter()
        .enumerate()
        .map(|(k, (_, label))| Block {
            title: label.to_string(),
            prefix: format!("{label} "),
            columns: (2 + k * per_metric..2 + (k + 1) * per_metric).collect(),
        })
        .collect();
    Table {
        name: "table1".into(),
        title: "Table 1: zero-shot anomaly detection on nine datasets".into(),
        meta: input.meta(&used, notes),
        columns,
        rows,
        cells,
        decimals: 1,
        layout,
        key_columns: 2,
        estimate_columns: SEEDS_AND_INTERVALS,
        best: Best::PerRowInBlock,
    }
}

/// The ablation rows of Table 2, in the paper's order, with the paper's labels.
pub const TABLE2_ROWS: [(Variant, &str, &str); 4] = [
    (Variant::SingleAdapter, "single_adapter", "Single adapter"),
    (
        Variant::LearnableRouting,
        "learnable_routing",
        "Dual + learnable routing",
    ),
    (
        Variant::TextRoutingNoLroute,
        "text_routing_no_lroute",
        "Dual + text routing (no L_route)",
    ),
    (Variant::Full, "full", "Full AVA-DINO"),
];

/// The rows of Table 3: the last-layer ablation beside the full model.
pub const TABLE3_ROWS: [(Variant, &str, &str); 2] = [
    (Variant::LastLayer, "last_layer", "Last layer only"),
    (Variant::Full, "multi_layer", "Multi-layer (4 taps)"),
];

/// The tables some of `runs` feed: Table 1 always (its rows are the full model's), Table 2 when
/// an ablation of its rows is present, Table 3 with the last-layer variant, Table 4 when a run
/// recorded routing weights. The one place that maps variants to tables.
pub fn tables_fed_by(runs: &[CollectedRun]) -> Vec<crate::experiment::TableKind> {
    use crate::experiment::TableKind;
    let has = |v: Variant| runs.iter().any(|r| r.job().variant == v);
    let mut t = vec![TableKind::Table1];
    if TABLE2_ROWS
        .iter()
        .any(|&(v, _, _)| v != Variant::Full && has(v))
    {
        t.push(TableKind::Table2);
    }
    if TABLE3_ROWS
        .iter()
        .any(|&(v, _, _)| v != Variant::Full && has(v))
    {
        t.push(TableKind::Table3);
    }
    if runs.iter().any(|r| r.metrics.routing.is_some()) {
        t.push(TableKind::Table4);
    }
    t
}

/// Table 2: the ablation rows on MVTec-AD with deltas to the single-adapter row.
pub fn table2(input: &ReportInput) -> Table {
    let mut columns = vec!["variant".to_string()];
    for (_, label) in MAIN_METRICS {
        for suffix in ["ours", "Δ single (ours)", "paper", "Δ single (paper)"] {
            columns.push(format!("{label} {suffix}"));
        }
    }
    let base_runs = input.runs_of(Variant::SingleAdapter, ABLATION_TARGET);
    let base_paper = input.published.ablation("table2", "single_adapter");
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut used = Vec::new();
    for (variant, key, label) in TABLE2_ROWS {
        let runs = input.runs_of(variant, ABLATION_TARGET);
        used.extend(runs.iter().copied());
        let paper_row = input.published.ablation("table2", key);
        let mut row = vec![Cell::Text(label.into())];
        for (metric, _) in MAIN_METRICS {
            let ours = input.ours(&runs, metric);
            let paper = paper_row.and_then(|p| p.get(metric));
            let ours_column = row.len();
            row.push(Cell::Estimate(ours));
            row.push(Cell::Delta(delta(
                ours.value,
                input.ours(&base_runs, metric).value,
            )));
            row.push(Cell::Num(paper));
            row.push(Cell::Delta(delta(
                paper,
                base_paper.and_then(|p| p.get(metric)),
            )));
            cells.push(
                input
                    .check_cell(
                        format!("table2/{key}/{metric}"),
                        &runs,
                        metric,
                        &ours,
                        paper,
                    )
                    .at(rows.len(), ours_column),
            );
        }
        rows.push(row);
    }
    let mut notes = vec![
        format!(
            "target {ABLATION_TARGET}; Δ single = row minus the single-adapter row (ours against ours, paper against paper); percent"
        ),
        "variant definitions (no reference code exists): docs/DEVIATIONS.md".into(),
    ];
    notes.extend(input.estimate_notes(&used, true));
    // Cells with a spread or an interval are wide: then one block per metric, as in Table 1.
    let layout = if cells.iter().any(|c| c.lo.is_some() || c.std.is_some()) {
        MAIN_METRICS
            .iter()
            .enumerate()
            .map(|(k, (_, label))| Block {
                title: label.to_string(),
                prefix: format!("{label} "),
                columns: (1 + 4 * k..1 + 4 * (k + 1)).collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Table {
        name: "table2".into(),
        title: "Table 2: ablation of the adapters and routing (MVTec-AD)".into(),
        meta: input.meta(&used, notes),
        columns,
        rows,
        cells,
        decimals: 1,
        layout,
        key_columns: 1,
        estimate_columns: SEEDS_AND_INTERVALS,
        best: Best::PerColumn,
    }
}

/// Table 3: last layer only vs the four taps.
pub fn table3(input: &ReportInput) -> Table {
    let mut columns = vec!["layers".to_string(), "taps".to_string()];
    for (_, label) in &MAIN_METRICS[..2] {
        for suffix in ["ours", "paper", "Δ"] {
            columns.push(format!("{label} {suffix}"));
        }
    }
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let mut used = Vec::new();
    for (variant, key, label) in TABLE3_ROWS {
        let runs = input.runs_of(variant, ABLATION_TARGET);
        used.extend(runs.iter().copied());
        let taps: BTreeSet<String> = runs
            .iter()
            .map(|r| format!("{:?}", r.metrics.provenance.taps))
            .collect();
        let paper_row = input.published.ablation("table3", key);
        let mut row = vec![
            Cell::Text(label.into()),
            Cell::Text(taps.into_iter().collect::<Vec<_>>().join(" ")),
        ];
        for (metric, _) in &MAIN_METRICS[..2] {
            let ours = input.ours(&runs, metric);
            let paper = paper_row.and_then(|p| p.get(metric));
            let ours_column = row.len();
            row.extend([
                Cell::Estimate(ours),
                Cell::Num(paper),
                Cell::Delta(delta(ours.value, paper)),
            ]);
            cells.push(
                input
                    .check_cell(
                        format!("table3/{key}/{metric}"),
                        &runs,
                        metric,
                        &ours,
                        paper,
                    )
                    .at(rows.len(), ours_column),
            );
        }
        rows.push(row);
    }
    let mut notes = vec![format!(
        "target {ABLATION_TARGET}; percent; Δ = ours - paper"
    )];
    notes.extend(input.estimate_notes(&used, true));
    Table {
        name: "table3".into(),
        title: "Table 3: last layer vs multi-layer taps (MVTec-AD)".into(),
        meta: input.meta(&used, notes),
        columns,
        rows,
        cells,
        decimals: 1,
        layout: Vec::new(),
        key_columns: 0,
        estimate_columns: SEEDS_AND_INTERVALS,
        best: Best::PerColumn,
    }
}

/// Table 4: mean routing weights of normal and anomalous test images (full variant, MVTec-AD).
pub fn table4(input: &ReportInput) -> Table {
    let runs = input.runs_of(Variant::Full, ABLATION_TARGET);
    let columns: Vec<String> = [
        "test images",
        "count",
        "w_normal ours",
        "w_normal paper",
        "w_anomaly ours",
        "w_anomaly paper",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    for (key, label, anomalous) in [("normal", "Normal", false), ("anomaly", "Anomalous", true)] {
        let stats: Vec<_> = runs
            .iter()
            .filter_map(|r| r.metrics.routing.as_ref())
            .map(|s| {
                if anomalous {
                    s.anomalous.clone()
                } else {
                    s.normal.clone()
                }
            })
            .collect();
        let count: usize = stats.iter().map(|s| s.count).sum();
        // No bootstrap of routing weights: the spread over seeds only.
        let over_seeds =
            |v: Vec<Option<f64>>| Estimate::over_seeds(v.into_iter().flatten().map(|w| (w, None)));
        let wn = over_seeds(stats.iter().map(|s| s.mean_w_normal).collect());
        let wa = over_seeds(stats.iter().map(|s| s.mean_w_anomaly).collect());
        let paper = input.published.ablation("table4", key);
        let (pn, pa) = (
            paper.and_then(|p| p.w_normal),
            paper.and_then(|p| p.w_anomaly),
        );
        // Routing weights rank no images: no swap granularity.
        cells.push(
            CheckCell::new(format!("table4/{key}/w_normal"), &wn, pn, None).at(rows.len(), 2),
        );
        cells.push(
            CheckCell::new(format!("table4/{key}/w_anomaly"), &wa, pa, None).at(rows.len(), 4),
        );
        rows.push(vec![
            Cell::Text(label.into()),
            Cell::Int(count as i64),
            Cell::Estimate(wn),
            Cell::Num(pn),
            Cell::Estimate(wa),
            Cell::Num(pa),
        ]);
    }
    let mut notes = vec![format!(
        "target {ABLATION_TARGET}; routing weights of the reported checkpoint, averaged over taps, then over the images of each group (and over seeds)"
    )];
    notes.extend(input.estimate_notes(&runs, false));
    let separation = mean(
        runs.iter()
            .filter_map(|r| r.metrics.routing.as_ref()?.separation_auroc),
    );
    if let Some(auc) = separation {
        notes.push(format!(
            "separation: AUROC of w_anomaly, anomalous vs normal images = {auc:.3} (0.5 = none, 1 = perfect; not in the paper)"
        ));
    }
    if runs.iter().any(|r| r.metrics.provenance.embedded) {
        notes.push(
            "embedded default: the random backbone's CLS row carries no category-independent anomaly cue, so the routing cannot separate the groups here; measurements in docs/engine.md"
                .into(),
        );
    }
    Table {
        name: "table4".into(),
        title: "Table 4: mean routing weights, normal vs anomalous images (MVTec-AD)".into(),
        meta: input.meta(&runs, notes),
        columns,
        rows,
        cells,
        decimals: 2,
        layout: Vec::new(),
        key_columns: 0,
        estimate_columns: EstimateColumns {
            interval: false,
            seeds: true,
        },
        best: Best::None,
    }
}

/// Per-category table of one run (the selected epoch), with a mean row.
pub fn per_category(input: &ReportInput, run: &CollectedRun) -> Table {
    let eval = run.metrics.selected(input.selection);
    let mut columns = vec!["category".to_string(), "normal".into(), "anomalous".into()];
    columns.extend(MetricSet::NAMES.iter().map(|s| s.to_string()));
    // One run: the value and its interval (percent), no spread.
    let estimate = |m: &MetricSet, i: Option<&crate::experiment::MetricIntervals>, n: &str| {
        Estimate::over_seeds(m.get(n).map(|v| (v, i.and_then(|i| i.get(n))))).scaled(100.0)
    };
    let mut rows: Vec<Vec<Cell>> = eval
        .per_category
        .iter()
        .map(|c| {
            let mut row = vec![
                Cell::Text(c.category.clone()),
                Cell::Int(c.n_normal as i64),
                Cell::Int(c.n_anomalous as i64),
            ];
            row.extend(
                MetricSet::NAMES
                    .iter()
                    .map(|n| Cell::Estimate(estimate(&c.metrics, c.interval.as_ref(), n))),
            );
            row
        })
        .collect();
    let (nn, na) = eval
        .per_category
        .iter()
        .fold((0, 0), |(a, b), c| (a + c.n_normal, b + c.n_anomalous));
    let mut mean_row = vec![
        Cell::Text("mean".into()),
        Cell::Int(nn as i64),
        Cell::Int(na as i64),
    ];
    let means: Vec<Estimate> = MetricSet::NAMES
        .iter()
        .map(|n| estimate(&eval.mean, eval.mean_interval.as_ref(), n))
        .collect();
    mean_row.extend(means.iter().map(|e| Cell::Estimate(*e)));
    rows.push(mean_row);
    let job = run.job();
    let mean_row = rows.len() - 1;
    let cells = MetricSet::NAMES
        .iter()
        .zip(&means)
        .enumerate()
        .map(|(k, (n, e))| {
            CheckCell::new(
                format!("per_category/{}/mean/{n}", job.dir_name()),
                e,
                None,
                swap_granularity(&[eval], n),
            )
            .at(mean_row, 3 + k)
        })
        .collect();
    let mut notes = vec![
        format!("epoch {} ({}); mean = over categories, skipping undefined values", eval.epoch, eval.selection),
        "percent; AUPRO integrates FPR up to the configured limit (0.3 by default); F1-max = max over the PR curve of 2PR/(P+R+1e-8)".into(),
    ];
    notes.extend(input.estimate_notes(&[run], true));
    // With intervals six metrics are too wide for one grid: image-level, then pixel-level.
    let has_intervals =
        eval.mean_interval.is_some() || eval.per_category.iter().any(|c| c.interval.is_some());
    let layout = if has_intervals {
        vec![
            Block {
                title: "image level".into(),
                prefix: String::new(),
                columns: vec![3, 4, 5],
            },
            Block {
                title: "pixel level".into(),
                prefix: String::new(),
                columns: vec![6, 7, 8],
            },
        ]
    } else {
        Vec::new()
    };
    Table {
        name: format!("per_category/{}", job.dir_name()),
        title: format!(
            "Per category: {} trained on {}, evaluated on {} (seed {})",
            job.variant, job.train, job.target, job.seed
        ),
        meta: input.meta(&[run], notes),
        columns,
        rows,
        cells,
        decimals: 1,
        layout,
        key_columns: 3,
        estimate_columns: EstimateColumns {
            interval: true,
            seeds: false,
        },
        best: Best::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::CategoryMetrics;

    fn category(n_normal: usize, n_anomalous: usize, auroc: Option<f64>) -> CategoryMetrics {
        CategoryMetrics {
            category: format!("c{n_normal}x{n_anomalous}"),
            n_normal,
            n_anomalous,
            metrics: MetricSet {
                image_auroc: auroc,
                pixel_auroc: Some(0.9),
                ..Default::default()
            },
            interval: None,
        }
    }

    #[test]
    fn one_swapped_pair_on_the_smoke_twins_is_12_5_points() {
        // One category of 2 normal and 4 anomalous images: 100 / 8.
        let e = Evaluation::new(1, "x", vec![category(2, 4, Some(0.5))]);
        assert_eq!(swap_granularity(&[&e], "image_auroc"), Some(12.5));
        // Pixel metrics and anything else: none.
        assert_eq!(swap_granularity(&[&e], "pixel_auroc"), None);
        assert_eq!(swap_granularity(&[&e], "w_anomaly"), None);
    }

    #[test]
    fn granularity_is_the_worst_category_over_defined_categories_and_seeds() {
        // Defined: 2x4 (12.5) and 3x3 (11.1); undefined (no normal image): left out of both
        // the maximum and the count.
        let e = Evaluation::new(
            1,
            "x",
            vec![
                category(2, 4, Some(0.5)),
                category(3, 3, Some(0.7)),
                category(0, 5, None),
            ],
        );
        let g = swap_granularity(&[&e], "image_auroc").unwrap();
        assert!((g - 12.5 / 2.0).abs() < 1e-12, "{g}");
        // Two seeds: the mean over seeds moves half as much.
        let g = swap_granularity(&[&e, &e], "image_auroc").unwrap();
        assert!((g - 12.5 / 4.0).abs() < 1e-12, "{g}");
        // A seed with finer categories: the worst seed bounds it.
        let fine = Evaluation::new(1, "x", vec![category(10, 10, Some(0.5))]);
        let g = swap_granularity(&[&fine, &e], "image_auroc").unwrap();
        assert!((g - 12.5 / 2.0 / 2.0).abs() < 1e-12, "{g}");
        // No defined category (a medical set): none.
        let medical = Evaluation::new(1, "x", vec![category(0, 5, None)]);
        assert_eq!(swap_granularity(&[&medical], "image_auroc"), None);
        assert_eq!(swap_granularity(&[], "image_auroc"), None);
    }
}
