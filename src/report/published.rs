//! `results/published.toml`: the paper's numbers and the baselines', in percent.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One published number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublishedValue {
    pub method: String,
    pub dataset: String,
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub source: String,
}

/// One row of the paper's ablation tables (Tables 2-4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AblationRow {
    pub table: String,
    pub variant: String,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub pixel_f1max: Option<f64>,
    pub w_normal: Option<f64>,
    pub w_anomaly: Option<f64>,
}

impl AblationRow {
    pub fn get(&self, metric: &str) -> Option<f64> {
        match metric {
            "image_auroc" => self.image_auroc,
            "pixel_auroc" => self.pixel_auroc,
            "pixel_f1max" => self.pixel_f1max,
            "w_normal" => self.w_normal,
            "w_anomaly" => self.w_anomaly,
            _ => None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Published {
    #[serde(default)]
    pub published: Vec<PublishedValue>,
    #[serde(default)]
    pub ablation: Vec<AblationRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error("cannot read {path}: {source}; it is committed as results/published.toml")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The paper's method name in `published.toml`.
pub const OURS: &str = "AVA-DINO";
/// Baselines shown in Table 1 (their own papers' numbers; re-implementations are not mixed in).
pub const BASELINES: [&str; 4] = ["WinCLIP", "AnomalyCLIP", "AdaCLIP", "Bayes-PFL"];

impl Published {
    pub fn read(path: &Path) -> Result<Self, PublishedError> {
        let text = std::fs::read_to_string(path).map_err(|source| PublishedError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| PublishedError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// A number by (method, dataset, metric).
    pub fn value(&self, method: &str, dataset: &str, metric: &str) -> Option<f64> {
        self.published
            .iter()
            .find(|p| p.method == method && p.dataset == dataset && p.metric == metric)
            .map(|p| p.value)
    }

    /// An ablation row by (table, variant).
    pub fn ablation(&self, table: &str, variant: &str) -> Option<&AblationRow> {
        self.ablation
            .iter()
            .find(|a| a.table == table && a.variant == variant)
    }
}
