//! The regression check: our table numbers against the published ones (profile `full`) or
//! against the committed smoke baseline (profile `smoke`), under stated tolerances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::render::TableJson;

/// Absolute tolerances: metric cells in percentage points, routing-weight cells in weight units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerances {
    pub percent_points: f64,
    pub weight: f64,
}

impl Tolerances {
    /// Against the paper: a faithful reproduction on real assets lands within a couple of points
    /// (the reference itself is unseeded; seeds move P-F1max most).
    pub const PUBLISHED: Tolerances = Tolerances {
        percent_points: 2.0,
        weight: 0.05,
    };
    /// Against the smoke baseline: the embedded default is seeded and deterministic on one
    /// machine; the slack covers float differences between CPUs and thread counts.
    pub const SMOKE: Tolerances = Tolerances {
        percent_points: 0.5,
        weight: 0.01,
    };

    fn for_key(&self, key: &str) -> f64 {
        if key.contains("/w_") {
            self.weight
        } else {
            self.percent_points
        }
    }
}

/// `results/smoke/baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub profile: String,
    pub tolerance: Tolerances,
    /// Cell key -> value (`null`: the cell was empty when blessed, and must stay empty).
    pub values: BTreeMap<String, Option<f64>>,
}

/// A cell outside tolerance (or missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub key: String,
    pub ours: Option<f64>,
    pub expected: Option<f64>,
    pub tolerance: f64,
}

/// Result of a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    pub compared: usize,
    pub mismatches: Vec<Mismatch>,
    /// Cells present in our tables but not in the baseline (informational).
    pub unchecked: Vec<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.compared > 0
    }

    /// One line per mismatch, then a summary line.
    pub fn render(&self) -> String {
        let f = |v: Option<f64>| {
            v.map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "missing".into())
        };
        let mut s = String::new();
        for m in &self.mismatches {
            let d = match (m.ours, m.expected) {
                (Some(a), Some(b)) => format!("{:+.3}", a - b),
                _ => "-".into(),
            };
            s.push_str(&format!(
                "outside {}: ours={} expected={} delta={d} tol={}\n",
                m.key,
                f(m.ours),
                f(m.expected),
                m.tolerance
            ));
        }
        s.push_str(&format!(
            "check: {} cells compared, {} outside tolerance, {} not in the baseline -> {}\n",
            self.compared,
            self.mismatches.len(),
            self.unchecked.len(),
            if self.passed() { "ok" } else { "FAIL" }
        ));
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "no table JSON files (table1..table4.json) in {dir}; run `cargo xtask reproduce` first"
    )]
    NoTables { dir: PathBuf },
}

/// Reads `table1.json` .. `table4.json` present in `dir`.
pub fn read_tables(dir: &Path) -> Result<Vec<TableJson>, CheckError> {
    let mut out = Vec::new();
    for n in 1..=4 {
        let path = dir.join(format!("table{n}.json"));
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| CheckError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(
            serde_json::from_slice(&bytes).map_err(|e| CheckError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?,
        );
    }
    if out.is_empty() {
        return Err(CheckError::NoTables {
            dir: dir.to_path_buf(),
        });
    }
    Ok(out)
}

/// Every cell with a published number is compared; a missing number of ours is a mismatch.
pub fn check_published(tables: &[TableJson], tol: Tolerances) -> CheckReport {
    let mut r = CheckReport::default();
    for c in tables.iter().flat_map(|t| &t.cells) {
        let Some(paper) = c.paper else {
            r.unchecked.push(c.key.clone());
            continue;
        };
        r.compared += 1;
        let t = tol.for_key(&c.key);
        if !c.ours.is_some_and(|o| (o - paper).abs() <= t) {
            r.mismatches.push(Mismatch {
                key: c.key.clone(),
                ours: c.ours,
                expected: Some(paper),
                tolerance: t,
            });
        }
    }
    r
}

/// Every baseline cell is compared; a cell the baseline has but our tables lack is a mismatch.
pub fn check_baseline(tables: &[TableJson], baseline: &Baseline) -> CheckReport {
    let ours: BTreeMap<&str, Option<f64>> = tables
        .iter()
        .flat_map(|t| &t.cells)
        .map(|c| (c.key.as_str(), c.ours))
        .collect();
    let mut r = CheckReport::default();
    for (key, expected) in &baseline.values {
        r.compared += 1;
        let t = baseline.tolerance.for_key(key);
        let got = ours.get(key.as_str()).copied();
        let ok = match (got, expected) {
            (Some(Some(a)), Some(b)) => (a - b).abs() <= t,
            (Some(None), None) => true,
            _ => false,
        };
        if !ok {
            r.mismatches.push(Mismatch {
                key: key.clone(),
                ours: got.flatten(),
                expected: *expected,
                tolerance: t,
            });
        }
    }
    r.unchecked = ours
        .keys()
        .filter(|k| !baseline.values.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    r
}

/// A baseline holding the current cells (`cargo xtask check --profile smoke --bless`).
pub fn bless(tables: &[TableJson], profile: &str, tolerance: Tolerances) -> Baseline {
    Baseline {
        profile: profile.into(),
        tolerance,
        values: tables
            .iter()
            .flat_map(|t| &t.cells)
            .map(|c| (c.key.clone(), c.ours))
            .collect(),
    }
}
