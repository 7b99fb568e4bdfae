//! A report table and its three data renderings: Markdown (for people), CSV through polars (for
//! spreadsheets and dataframes) and JSON (for `cargo xtask check`); and what the printed
//! renderings (`latex`, `html`) share: the settings as lines, column groups, the best values.

use std::path::{Path, PathBuf};

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};
use serde::{Deserialize, Serialize};

use super::estimate::Estimate;

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// A number (percent, or a weight); `None` = not available (no run, or not published).
    Num(Option<f64>),
    /// A number of ours: mean over seeds, spread over seeds, confidence interval. Markdown
    /// shows them in one cell; CSV and JSON give each its own column ([`EstimateColumns`]).
    Estimate(Estimate),
    /// A difference, printed with its sign.
    Delta(Option<f64>),
    /// A count (images).
    Int(i64),
    /// Not defined for this row (I-AUROC of a medical set: every test image is anomalous).
    NotDefined,
}

impl Cell {
    fn markdown(&self, decimals: usize) -> String {
        match self {
            Cell::Text(s) => s.replace('|', "\\|"),
            Cell::Num(Some(v)) => format!("{v:.decimals$}"),
            Cell::Estimate(e) => e.markdown(decimals),
            Cell::Num(None) | Cell::Delta(None) => "–".into(),
            Cell::Delta(Some(v)) => format!("{v:+.decimals$}"),
            Cell::Int(n) => n.to_string(),
            Cell::NotDefined => "n/a".into(),
        }
    }
}

/// The settings every table states: each field holds the distinct values of the runs behind the
/// table (several values mean the table mixes runs that differ in that respect). Fields added
/// later read as empty from older table JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableMeta {
    pub profile: String,
    pub image_size: Vec<usize>,
    pub protocol: Vec<String>,
    /// The epoch-selection rule, in words.
    pub selection: String,
    pub seeds: Vec<u64>,
    /// Text-encoder activation(s).
    pub activation: Vec<String>,
    /// "embedded default (synthetic twins, seeded random backbones)", "real weights and data" or
    /// "mixed".
    pub assets: String,
    /// Commit of the binary (10 hex), `+dirty.<digest of the uncommitted changes>` when it was
    /// built with some (`+dirty` when the digest is unknown).
    pub git_revision: Vec<String>,
    /// Digest of the source that computes results (`build_info::CODE`).
    pub code: Vec<String>,
    /// `<backend>: <device>` (`cpu: AMD EPYC ...`, `cuda: NVIDIA H100 ...`).
    pub device: Vec<String>,
    /// Implementation of the backbone blocks (`avx512`, `avx2`, `portable`, `burn`).
    pub kernels: Vec<String>,
    /// Threads of the CPU compute pool.
    pub threads: Vec<usize>,
    /// Dtype the backbone computes in, and of stored features.
    pub backbone_dtype: Vec<String>,
    pub feature_dtype: Vec<String>,
    /// Extra lines (definitions, what the deltas are).
    pub notes: Vec<String>,
}

impl TableMeta {
    /// `assets`, or `–` when no run said.
    pub fn assets_or_dash(&self) -> &str {
        if self.assets.is_empty() {
            "–"
        } else {
            &self.assets
        }
    }

    /// The settings, the provenance and the notes as plain lines, after the "numbers from" line
    /// (which each rendering emphasises its own way): what Markdown lists above the table and
    /// LaTeX and HTML print under it, so the three say the same. A provenance field no run
    /// recorded (runs made before it existed) gives no line.
    pub fn lines(&self) -> Vec<String> {
        let join = |v: &[String]| {
            if v.is_empty() {
                "–".to_string()
            } else {
                v.join(", ")
            }
        };
        let nums = |v: &[usize]| join(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let mut lines = vec![
            format!(
                "image size: {}; protocol: {}; text activation: {}",
                nums(&self.image_size),
                join(&self.protocol),
                join(&self.activation)
            ),
            format!("epoch selection: {}", self.selection),
            format!(
                "seeds: {}",
                join(&self.seeds.iter().map(|x| x.to_string()).collect::<Vec<_>>())
            ),
        ];
        let mut code = Vec::new();
        if !self.git_revision.is_empty() {
            code.push(format!("harness revision {}", self.git_revision.join(", ")));
        }
        if !self.code.is_empty() {
            code.push(format!("code digest {}", self.code.join(", ")));
        }
        if !code.is_empty() {
            lines.push(code.join("; "));
        }
        let compute = self.compute_parts();
        if !compute.is_empty() {
            lines.push(format!("computed on {}", compute.join("; ")));
        }
        lines.extend(self.notes.iter().cloned());
        lines
    }

    /// `device ...`, `kernels ...`, `threads ...`, `dtypes ...`: the parts that are known.
    fn compute_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if !self.device.is_empty() {
            parts.push(self.device.join(", "));
        }
        if !self.kernels.is_empty() {
            parts.push(format!("kernels {}", self.kernels.join(", ")));
        }
        if !self.threads.is_empty() {
            let t: Vec<String> = self.threads.iter().map(|t| t.to_string()).collect();
            parts.push(format!("threads {}", t.join(", ")));
        }
        if !self.backbone_dtype.is_empty() || !self.feature_dtype.is_empty() {
            let or_dash = |v: &[String]| {
                if v.is_empty() {
                    "–".to_string()
                } else {
                    v.join(", ")
                }
            };
            parts.push(format!(
                "backbone {}, features {}",
                or_dash(&self.backbone_dtype),
                or_dash(&self.feature_dtype)
            ));
        }
        parts
    }

    /// One short line for charts: revision, device, kernels, threads, dtypes.
    pub fn provenance_line(&self) -> String {
        let mut parts = Vec::new();
        if !self.git_revision.is_empty() {
            parts.push(format!("rev {}", self.git_revision.join(", ")));
        }
        parts.extend(self.compute_parts());
        parts.join(" | ")
    }
}

/// A number the regression check compares: `<table>/<row>/<column>`. Fields after `paper` were
/// added with the intervals; they read as empty (`None`, 0) from older table JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckCell {
    pub key: String,
    /// Mean over seeds.
    pub ours: Option<f64>,
    /// The published value, when there is one.
    pub paper: Option<f64>,
    /// Our confidence interval (the hull over seeds), same unit as `ours`.
    #[serde(default)]
    pub lo: Option<f64>,
    #[serde(default)]
    pub hi: Option<f64>,
    /// Sample standard deviation over seeds (two seeds or more).
    #[serde(default)]
    pub std: Option<f64>,
    /// Seeds behind `ours` (0: none, or a table written before this field existed).
    #[serde(default)]
    pub n_seeds: usize,
    /// The largest change of `ours` that one swapped pair of adjacent image scores can make, in
    /// percentage points (I-AUROC cells; `None` where a swap moves the number by a negligible
    /// amount, or where no image ranking is behind it). The smoke check's tolerance is never
    /// below it.
    #[serde(default)]
    pub granularity: Option<f64>,
    /// Where the cell sits in [`Table::rows`] (row, column), so a rendering can mark it; not
    /// written (the check reads cells by key).
    #[serde(skip)]
    pub at: Option<(usize, usize)>,
}

impl CheckCell {
    pub fn new(
        key: String,
        ours: &Estimate,
        paper: Option<f64>,
        granularity: Option<f64>,
    ) -> CheckCell {
        CheckCell {
            key,
            ours: ours.value,
            paper,
            lo: ours.interval.map(|i| i.lo),
            hi: ours.interval.map(|i| i.hi),
            std: ours.std,
            n_seeds: ours.n_seeds,
            granularity,
            at: None,
        }
    }

    /// The same cell, placed at (`row`, `column`) of its table.
    pub fn at(mut self, row: usize, column: usize) -> CheckCell {
        self.at = Some((row, column));
        self
    }

    /// Our interval, when the cell has one.
    pub fn interval(&self) -> Option<crate::experiment::Interval> {
        Some(crate::experiment::Interval {
            lo: self.lo?,
            hi: self.hi?,
        })
    }
}

/// Which parts of an [`Cell::Estimate`] get their own CSV and JSON columns beside the value
/// (named `<column> lo`, `<column> hi`, `<column> std`, `<column> seeds`). Fixed per table, not
/// per run set, so a table's schema does not change with the runs found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimateColumns {
    /// `lo` and `hi` (empty for runs without intervals).
    pub interval: bool,
    /// `std` and `seeds`: tables that average over seeds.
    pub seeds: bool,
}

/// Which values a table's printed renderings (LaTeX, HTML) set in bold as the best: the highest
/// among the numbers that compete. Differences (`Cell::Delta`), counts and text never compete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Best {
    /// Nothing competes (Table 4's routing weights describe two groups; per-category rows are
    /// categories, not methods).
    None,
    /// Rows are methods (Tables 2 and 3): the best value of each column.
    PerColumn,
    /// Methods are columns (Table 1: ours, untrained, the paper and the baselines side by side in
    /// one block per metric): the best value of each row within each block of
    /// [`Table::layout`].
    PerRowInBlock,
}

impl Best {
    /// The rule in words, for the notes of a printed table.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Best::None => None,
            Best::PerColumn => Some("bold: the best value of each column"),
            Best::PerRowInBlock => Some("bold: the best method of each dataset and metric"),
        }
    }
}

/// A finished table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// File stem: `table1`, `per_category/full__visa__mvtec__s0`, ...
    pub name: String,
    pub title: String,
    pub meta: TableMeta,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub cells: Vec<CheckCell>,
    /// Decimals printed in Markdown.
    pub decimals: usize,
    /// How the Markdown splits a wide table: the first `key_columns` columns head every block,
    /// then each block shows its columns (empty: one table). CSV and JSON keep the wide form.
    pub layout: Vec<Block>,
    pub key_columns: usize,
    /// The CSV and JSON columns of each estimate column.
    pub estimate_columns: EstimateColumns,
    /// Which values are set in bold where a rendering can ([`Table::best_cells`]).
    pub best: Best,
}

/// A group of columns as printed renderings head them: the key columns (no title), then one
/// group per [`Block`] of the layout (its title over its columns), then any column no block
/// names (no title). A table without a layout is one untitled group of every column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnGroup {
    pub title: Option<String>,
    /// (index into [`Table::columns`], the name to print: the block's prefix removed).
    pub columns: Vec<(usize, String)>,
}

/// One Markdown block of a wide table: a heading and the columns it shows (their names with
/// the block's `prefix` removed).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub title: String,
    pub prefix: String,
    pub columns: Vec<usize>,
}

/// The JSON rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableJson {
    pub table: String,
    pub title: String,
    pub meta: TableMeta,
    /// The columns of [`Table::flat`]: each estimate column followed by its `lo`, `hi`, `std`,
    /// `seeds` columns.
    pub columns: Vec<String>,
    /// Rows; numbers as numbers, `null` when missing, `"n/a"` when not defined.
    pub rows: Vec<Vec<serde_json::Value>>,
    pub cells: Vec<CheckCell>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the {table} dataframe: {message}")]
    Polars { table: String, message: String },
}

impl Table {
    /// The (row, column) positions holding the best value under [`Table::best`]. Values are
    /// compared as printed (rounded to `decimals`), so a tie on the page is bold twice.
    pub fn best_cells(&self) -> std::collections::BTreeSet<(usize, usize)> {
        let mut out = std::collections::BTreeSet::new();
        let value = |i: usize, j: usize| -> Option<i64> {
            let v = match self.rows.get(i)?.get(j)? {
                Cell::Num(v) => *v,
                Cell::Estimate(e) => e.value,
                _ => None,
            }?;
            let scale = 10f64.powi(self.decimals as i32);
            v.is_finite().then(|| (v * scale).round() as i64)
        };
        let mut mark = |group: Vec<(usize, usize)>| {
            let best = group.iter().filter_map(|&(i, j)| value(i, j)).max();
            if let Some(b) = best {
                out.extend(group.into_iter().filter(|&(i, j)| value(i, j) == Some(b)));
            }
        };
        match self.best {
            Best::None => {}
            Best::PerColumn => {
                for j in 0..self.columns.len() {
                    mark((0..self.rows.len()).map(|i| (i, j)).collect());
                }
            }
            Best::PerRowInBlock => {
                for i in 0..self.rows.len() {
                    for b in &self.layout {
                        mark(b.columns.iter().map(|&j| (i, j)).collect());
                    }
                }
            }
        }
        out
    }

    /// The column groups of [`ColumnGroup`], in printing order; every column appears once.
    pub fn column_groups(&self) -> Vec<ColumnGroup> {
        let named = |j: usize, prefix: &str| {
            let name = &self.columns[j];
            (j, name.strip_prefix(prefix).unwrap_or(name).to_string())
        };
        if self.layout.is_empty() {
            return vec![ColumnGroup {
                title: None,
                columns: (0..self.columns.len()).map(|j| named(j, "")).collect(),
            }];
        }
        let keys = self.key_columns.min(self.columns.len());
        let mut seen: std::collections::BTreeSet<usize> = (0..keys).collect();
        let mut groups = vec![ColumnGroup {
            title: None,
            columns: (0..keys).map(|j| named(j, "")).collect(),
        }];
        for b in &self.layout {
            let columns: Vec<(usize, String)> = b
                .columns
                .iter()
                .filter(|&&j| j < self.columns.len() && seen.insert(j))
                .map(|&j| named(j, &b.prefix))
                .collect();
            if !columns.is_empty() {
                groups.push(ColumnGroup {
                    title: Some(b.title.clone()),
                    columns,
                });
            }
        }
        let rest: Vec<(usize, String)> = (0..self.columns.len())
            .filter(|j| !seen.contains(j))
            .map(|j| named(j, ""))
            .collect();
        if !rest.is_empty() {
            groups.push(ColumnGroup {
                title: None,
                columns: rest,
            });
        }
        groups.retain(|g| !g.columns.is_empty());
        groups
    }

    /// Whether column `j` holds text (left-aligned) rather than numbers.
    pub fn is_text_column(&self, j: usize) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.get(j), Some(Cell::Text(_))))
    }

    /// Columns and rows as CSV and JSON have them: every estimate column expanded into the
    /// value and the columns of [`EstimateColumns`], so dataframes get numbers, not strings.
    pub fn flat(&self) -> (Vec<String>, Vec<Vec<Cell>>) {
        let ec = self.estimate_columns;
        let mut names = Vec::new();
        let mut widths = Vec::with_capacity(self.columns.len());
        for (j, name) in self.columns.iter().enumerate() {
            names.push(name.clone());
            let estimate = self
                .rows
                .iter()
                .any(|r| matches!(r.get(j), Some(Cell::Estimate(_))));
            if !estimate {
                widths.push(1);
                continue;
            }
            let mut extra = Vec::new();
            if ec.interval {
                extra.extend(["lo", "hi"]);
            }
            if ec.seeds {
                extra.extend(["std", "seeds"]);
            }
            names.extend(extra.iter().map(|x| format!("{name} {x}")));
            widths.push(1 + extra.len());
        }
        let rows = self
            .rows
            .iter()
            .map(|r| {
                let mut out = Vec::with_capacity(names.len());
                for (c, &w) in r.iter().zip(&widths) {
                    match c {
                        Cell::Estimate(e) => {
                            out.push(Cell::Num(e.value));
                            if ec.interval {
                                out.push(Cell::Num(e.interval.map(|i| i.lo)));
                                out.push(Cell::Num(e.interval.map(|i| i.hi)));
                            }
                            if ec.seeds {
                                out.push(Cell::Num(e.std));
                                out.push(Cell::Int(e.n_seeds as i64));
                            }
                        }
                        // Not defined, or missing: so are its interval and spread.
                        other => out.extend(std::iter::repeat_n(other.clone(), w)),
                    }
                }
                out
            })
            .collect();
        (names, rows)
    }

    /// The table as a polars DataFrame ([`Table::flat`]): numeric columns are Float64 (null
    /// when missing or not defined), counts Int64, the others String.
    pub fn dataframe(&self) -> Result<DataFrame, TableError> {
        let (names, rows) = self.flat();
        let mut cols = Vec::with_capacity(names.len());
        for (j, name) in names.iter().enumerate() {
            let cells: Vec<&Cell> = rows.iter().map(|r| &r[j]).collect();
            let numeric = cells.iter().all(|c| !matches!(c, Cell::Text(_)));
            // Counts (images, seeds), null where not defined.
            let counts = cells.iter().any(|c| matches!(c, Cell::Int(_)))
                && cells
                    .iter()
                    .all(|c| matches!(c, Cell::Int(_) | Cell::NotDefined));
            let col = if counts {
                let v: Vec<Option<i64>> = cells
                    .iter()
                    .map(|c| if let Cell::Int(n) = c { Some(*n) } else { None })
                    .collect();
                Column::new(name.as_str().into(), v)
            } else if numeric {
                let v: Vec<Option<f64>> = cells
                    .iter()
                    .map(|c| match c {
                        Cell::Num(v) | Cell::Delta(v) => *v,
                        Cell::Int(n) => Some(*n as f64),
                        Cell::Estimate(e) => e.value,
                        Cell::Text(_) | Cell::NotDefined => None,
                    })
                    .collect();
                Column::new(name.as_str().into(), v)
            } else {
                let v: Vec<Option<String>> = cells
                    .iter()
                    .map(|c| match c {
                        Cell::Text(s) => Some(s.clone()),
                        Cell::Num(v) | Cell::Delta(v) => v.map(|x| x.to_string()),
                        Cell::Estimate(e) => e.value.map(|x| x.to_string()),
                        Cell::Int(n) => Some(n.to_string()),
                        Cell::NotDefined => Some("n/a".into()),
                    })
                    .collect();
                Column::new(name.as_str().into(), v)
            };
            cols.push(col);
        }
        DataFrame::new_infer_height(cols).map_err(|e| TableError::Polars {
            table: self.name.clone(),
            message: e.to_string(),
        })
    }

    pub fn to_csv(&self) -> Result<String, TableError> {
        let mut df = self.dataframe()?;
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .with_float_precision(Some(4))
            .finish(&mut df)
            .map_err(|e| TableError::Polars {
                table: self.name.clone(),
                message: e.to_string(),
            })?;
        Ok(String::from_utf8(buf).expect("polars writes UTF-8"))
    }

    pub fn to_markdown(&self) -> String {
        let m = &self.meta;
        let mut s = format!("## {}\n\n", self.title);
        s.push_str(&format!(
            "- numbers from: **{}** (profile `{}`)\n",
            m.assets_or_dash(),
            m.profile
        ));
        for line in m.lines() {
            s.push_str(&format!("- {line}\n"));
        }
        if self.layout.is_empty() {
            let all: Vec<usize> = (0..self.columns.len()).collect();
            s.push('\n');
            self.markdown_grid(&mut s, &all, "");
        }
        for b in &self.layout {
            s.push_str(&format!("\n### {}\n\n", b.title));
            let cols: Vec<usize> = (0..self.key_columns).chain(b.columns.clone()).collect();
            self.markdown_grid(&mut s, &cols, &b.prefix);
        }
        s
    }

    /// A Markdown grid of the columns `cols` (names without `prefix`).
    fn markdown_grid(&self, s: &mut String, cols: &[usize], prefix: &str) {
        let names: Vec<&str> = cols
            .iter()
            .map(|&j| {
                self.columns[j]
                    .strip_prefix(prefix)
                    .unwrap_or(&self.columns[j])
            })
            .collect();
        s.push_str(&format!("| {} |\n", names.join(" | ")));
        s.push_str(&format!(
            "|{}\n",
            (0..cols.len())
                .map(|i| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        ));
        for r in &self.rows {
            let cells: Vec<String> = cols.iter().map(|&j| r[j].markdown(self.decimals)).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }

    pub fn to_json(&self) -> TableJson {
        let (columns, rows) = self.flat();
        let rows = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| match c {
                        Cell::Text(s) => serde_json::Value::String(s.clone()),
                        Cell::Num(Some(v)) | Cell::Delta(Some(v)) => serde_json::json!(v),
                        Cell::Estimate(e) => e
                            .value
                            .map_or(serde_json::Value::Null, |v| serde_json::json!(v)),
                        Cell::Num(None) | Cell::Delta(None) => serde_json::Value::Null,
                        Cell::Int(n) => serde_json::json!(n),
                        Cell::NotDefined => serde_json::Value::String("n/a".into()),
                    })
                    .collect()
            })
            .collect();
        TableJson {
            table: self.name.clone(),
            title: self.title.clone(),
            meta: self.meta.clone(),
            columns,
            rows,
            cells: self.cells.clone(),
        }
    }

    /// Writes `<dir>/<name>.md`, `.csv` and `.json` atomically; returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, TableError> {
        let files = [
            (
                dir.join(format!("{}.md", self.name)),
                self.to_markdown().into_bytes(),
            ),
            (
                dir.join(format!("{}.csv", self.name)),
                self.to_csv()?.into_bytes(),
            ),
            (
                dir.join(format!("{}.json", self.name)),
                serde_json::to_vec_pretty(&self.to_json()).expect("table serializes"),
            ),
        ];
        let mut out = Vec::new();
        for (path, bytes) in files {
            crate::io::write_atomic(&path, &bytes).map_err(|source| TableError::Io {
                path: path.clone(),
                source,
            })?;
            out.push(path);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Interval;

    fn table(estimates: [Estimate; 2], columns: EstimateColumns) -> Table {
        Table {
            name: "t".into(),
            title: "T".into(),
            meta: TableMeta::default(),
            columns: vec![
                "dataset".into(),
                "I-AUROC ours".into(),
                "I-AUROC paper".into(),
            ],
            rows: vec![
                vec![
                    Cell::Text("a".into()),
                    Cell::Estimate(estimates[0]),
                    Cell::Num(Some(90.0)),
                ],
                vec![
                    Cell::Text("b".into()),
                    Cell::Estimate(estimates[1]),
                    Cell::Num(None),
                ],
                vec![Cell::Text("med".into()), Cell::NotDefined, Cell::NotDefined],
            ],
            cells: Vec::new(),
            decimals: 1,
            layout: Vec::new(),
            key_columns: 0,
            estimate_columns: columns,
            best: Best::PerColumn,
        }
    }

    fn two() -> [Estimate; 2] {
        let iv = |lo, hi| Some(Interval { lo, hi });
        [
            Estimate::over_seeds([(44.0, iv(36.0, 52.0)), (46.0, iv(38.0, 55.1))]),
            // An old run: no interval.
            Estimate::over_seeds([(50.0, None)]),
        ]
    }

    #[test]
    fn markdown_shows_value_spread_and_interval_in_one_cell() {
        let md = table(
            two(),
            EstimateColumns {
                interval: true,
                seeds: true,
            },
        )
        .to_markdown();
        assert!(
            md.contains("| a | 45.0 ± 1.4 [36.0, 55.1] | 90.0 |"),
            "{md}"
        );
        assert!(md.contains("| b | 50.0 | – |"), "{md}");
        assert!(md.contains("| med | n/a | n/a |"), "{md}");
    }

    #[test]
    fn csv_and_json_give_interval_and_seeds_their_own_numeric_columns() {
        let t = table(
            two(),
            EstimateColumns {
                interval: true,
                seeds: true,
            },
        );
        let csv = t.to_csv().unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "dataset,I-AUROC ours,I-AUROC ours lo,I-AUROC ours hi,I-AUROC ours std,I-AUROC ours seeds,I-AUROC paper"
        );
        assert_eq!(lines[1], "a,45.0000,36.0000,55.1000,1.4142,2,90.0000");
        // No interval: empty columns; one seed: no spread; not defined: all empty.
        assert_eq!(lines[2], "b,50.0000,,,,1,");
        assert_eq!(lines[3], "med,,,,,,");
        let df = t.dataframe().unwrap();
        for name in ["I-AUROC ours lo", "I-AUROC ours hi", "I-AUROC ours std"] {
            assert_eq!(
                df.column(name).unwrap().dtype(),
                &polars::prelude::DataType::Float64
            );
        }
        let json = t.to_json();
        assert_eq!(json.columns.len(), 7);
        assert_eq!(json.rows[0][2], serde_json::json!(36.0));
        assert_eq!(json.rows[0][5], serde_json::json!(2));
        assert_eq!(
            df.column("I-AUROC ours seeds").unwrap().dtype(),
            &polars::prelude::DataType::Int64
        );
        assert_eq!(json.rows[1][2], serde_json::Value::Null);
        assert_eq!(json.rows[2][2], serde_json::json!("n/a"));
    }

    #[test]
    fn column_groups_and_best_values() {
        let mut t = table(
            two(),
            EstimateColumns {
                interval: true,
                seeds: true,
            },
        );
        // No layout: one untitled group of every column.
        let g = t.column_groups();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].title, None);
        assert_eq!(g[0].columns.len(), 3);
        // Best per column: ours 50.0 (row b) beats 45.0; paper 90.0 is alone; n/a never competes.
        assert_eq!(t.best_cells(), [(1, 1), (0, 2)].into());
        // A tie as printed (45.04 and 45.0 both print 45.0) is bold twice.
        t.rows[1][1] = Cell::Num(Some(45.04));
        t.rows[0][1] = Cell::Num(Some(45.0));
        assert!(t.best_cells().contains(&(0, 1)) && t.best_cells().contains(&(1, 1)));
        // Keys, then a block (its prefix removed), then the columns no block names.
        t.key_columns = 1;
        t.layout = vec![Block {
            title: "I-AUROC".into(),
            prefix: "I-AUROC ".into(),
            columns: vec![2],
        }];
        let g = t.column_groups();
        let titles: Vec<Option<&str>> = g.iter().map(|g| g.title.as_deref()).collect();
        assert_eq!(titles, [None, Some("I-AUROC"), None]);
        assert_eq!(g[0].columns, [(0, "dataset".to_string())]);
        assert_eq!(g[1].columns, [(2, "paper".to_string())]);
        assert_eq!(g[2].columns, [(1, "I-AUROC ours".to_string())]);
        t.best = Best::None;
        assert!(t.best_cells().is_empty());
    }

    #[test]
    fn a_per_run_table_has_interval_columns_only() {
        let t = table(
            two(),
            EstimateColumns {
                interval: true,
                seeds: false,
            },
        );
        let (names, rows) = t.flat();
        assert_eq!(
            names,
            [
                "dataset",
                "I-AUROC ours",
                "I-AUROC ours lo",
                "I-AUROC ours hi",
                "I-AUROC paper"
            ]
        );
        assert!(rows.iter().all(|r| r.len() == names.len()));
    }
}
