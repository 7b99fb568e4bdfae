//! A report table and its three renderings: Markdown (for people), CSV through polars (for
//! spreadsheets and dataframes) and JSON (for `cargo xtask check`).

use std::path::{Path, PathBuf};

use polars::prelude::{Column, CsvWriter, DataFrame, SerWriter};
use serde::{Deserialize, Serialize};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// A number (percent, or a weight); `None` = not available (no run, or not published).
    Num(Option<f64>),
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
            Cell::Num(None) | Cell::Delta(None) => "–".into(),
            Cell::Delta(Some(v)) => format!("{v:+.decimals$}"),
            Cell::Int(n) => n.to_string(),
            Cell::NotDefined => "n/a".into(),
        }
    }
}

/// The settings every table states.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    pub git_revision: Vec<String>,
    /// Extra lines (definitions, what the deltas are).
    pub notes: Vec<String>,
}

/// A number the regression check compares: `<table>/<row>/<column>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckCell {
    pub key: String,
    pub ours: Option<f64>,
    /// The published value, when there is one.
    pub paper: Option<f64>,
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
    /// The table as a polars DataFrame: numeric columns are Float64 (null when missing or not
    /// defined), the others String.
    pub fn dataframe(&self) -> Result<DataFrame, TableError> {
        let mut cols = Vec::with_capacity(self.columns.len());
        for (j, name) in self.columns.iter().enumerate() {
            let cells: Vec<&Cell> = self.rows.iter().map(|r| &r[j]).collect();
            let numeric = cells.iter().all(|c| !matches!(c, Cell::Text(_)));
            let counts = cells.iter().all(|c| matches!(c, Cell::Int(_)));
            let col = if counts {
                let v: Vec<i64> = cells
                    .iter()
                    .map(|c| if let Cell::Int(n) = c { *n } else { 0 })
                    .collect();
                Column::new(name.as_str().into(), v)
            } else if numeric {
                let v: Vec<Option<f64>> = cells
                    .iter()
                    .map(|c| match c {
                        Cell::Num(v) | Cell::Delta(v) => *v,
                        _ => None,
                    })
                    .collect();
                Column::new(name.as_str().into(), v)
            } else {
                let v: Vec<Option<String>> = cells
                    .iter()
                    .map(|c| match c {
                        Cell::Text(s) => Some(s.clone()),
                        Cell::Num(v) | Cell::Delta(v) => v.map(|x| x.to_string()),
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
        let join = |v: &[String]| {
            if v.is_empty() {
                "–".to_string()
            } else {
                v.join(", ")
            }
        };
        let nums = |v: &[usize]| join(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let mut s = format!("## {}\n\n", self.title);
        s.push_str(&format!(
            "- numbers from: **{}** (profile `{}`)\n",
            if m.assets.is_empty() {
                "–"
            } else {
                &m.assets
            },
            m.profile
        ));
        s.push_str(&format!(
            "- image size: {}; protocol: {}; text activation: {}\n",
            nums(&m.image_size),
            join(&m.protocol),
            join(&m.activation)
        ));
        s.push_str(&format!("- epoch selection: {}\n", m.selection));
        s.push_str(&format!(
            "- seeds: {}\n",
            join(&m.seeds.iter().map(|x| x.to_string()).collect::<Vec<_>>())
        ));
        if !m.git_revision.is_empty() {
            s.push_str(&format!(
                "- harness revision: {}\n",
                m.git_revision.join(", ")
            ));
        }
        for n in &m.notes {
            s.push_str(&format!("- {n}\n"));
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
        let rows = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|c| match c {
                        Cell::Text(s) => serde_json::Value::String(s.clone()),
                        Cell::Num(Some(v)) | Cell::Delta(Some(v)) => serde_json::json!(v),
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
            columns: self.columns.clone(),
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
