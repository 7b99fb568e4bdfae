//! `datasets.toml`: one entry per dataset (root, layout, categories, expected counts, threshold,
//! class words) and root resolution from the environment.
//!
//! Root of dataset `key`: `$AVA_DINO_<KEY>_ROOT` (the dataset folder itself) wins; otherwise
//! `<data root>/<root>` where the data root is set with [`Registry::with_data_root`] or read from
//! `$AVA_DINO_DATA_ROOT` when the registry is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::DataError;

/// Environment variable naming the folder that holds every dataset.
pub const DATA_ROOT_ENV: &str = "AVA_DINO_DATA_ROOT";

/// Industrial or medical (medical sets have no normal test images).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Industrial,
    Medical,
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Domain::Industrial => "industrial",
            Domain::Medical => "medical",
        })
    }
}

/// On-disk layout families, one loader each (`src/data/layouts/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// `<category>/<split_dir>/<type>/<img>` + `<category>/<gt_dir>/<type>/<mask>`.
    Mvtec,
    /// VisA: `meta.json` (APRIL-GAN schema) or `split_csv/1cls.csv`.
    Visa,
    /// KSDD2: flat `<split_dir>/<id>.png` + `<id>_GT.png`.
    Ksdd2,
    /// Kvasir-SEG: `images/<id>` + `masks/<id>`.
    Kvasir,
}

/// How the reference pairs a mask with an image in MVTec-like trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pairing {
    /// i-th sorted image with the i-th sorted mask of the same type folder.
    Sorted,
    /// `<stem><mask_suffix>.<ext>` or `<stem>.<ext>` in the type's ground-truth folder.
    Name,
}

/// One category and what a complete official copy holds.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CategorySpec {
    pub name: String,
    /// Prompt word under `protocol: corrected` (default: `name` with `_` -> space).
    #[serde(default)]
    pub class_word: Option<String>,
    /// Expected normal / anomalous test images (official split), when known.
    #[serde(default)]
    pub normal: Option<usize>,
    #[serde(default)]
    pub anomalous: Option<usize>,
}

impl CategorySpec {
    /// The corrected-protocol class word.
    pub fn true_class_word(&self) -> String {
        self.class_word
            .clone()
            .unwrap_or_else(|| self.name.replace('_', " "))
    }
}

/// Kvasir's reference split: Python `random.seed(seed)`, shuffle, keep the tail after train + val.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeededSubset {
    pub seed: u64,
    pub train_ratio: f64,
    pub val_ratio: f64,
}

fn d_test() -> String {
    "test".into()
}
fn d_gt() -> String {
    "ground_truth".into()
}
fn d_good() -> Vec<String> {
    vec!["good".into()]
}
fn d_mask_suffix() -> String {
    "_mask".into()
}
fn d_sorted() -> Pairing {
    Pairing::Sorted
}
fn d_images() -> String {
    "images".into()
}
fn d_masks() -> String {
    "masks".into()
}
fn d_meta() -> String {
    "meta.json".into()
}
fn d_csv() -> String {
    "split_csv/1cls.csv".into()
}
fn d_exts() -> Vec<String> {
    ["png", "jpg", "jpeg", "bmp", "tif", "tiff"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// One `[datasets.<key>]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Filled from the table key.
    #[serde(skip_deserializing)]
    pub key: String,
    /// Display name.
    pub name: String,
    pub domain: Domain,
    /// Folder name under the data root.
    pub root: String,
    pub layout: LayoutKind,
    /// Reference mask threshold after resize (`v/255 > t`): 0 or 0.5 depending on the loader.
    pub mask_threshold: f32,
    /// The absolute root the reference used by default (e.g. `/data/industrial/MVTecAD`); the
    /// reference class word is component `[-4]` of `<reference_prefix>/<image_rel>`.
    pub reference_prefix: String,
    /// Test split folder (mvtec: under each category; ksdd2: under the root).
    #[serde(default = "d_test")]
    pub split_dir: String,
    /// Mask folder relative to the category folder (mvtec layout).
    #[serde(default = "d_gt")]
    pub gt_dir: String,
    /// Type folders holding normal images.
    #[serde(default = "d_good")]
    pub normal_dirs: Vec<String>,
    /// Folders under the split folder that are not image types (MVTec AD 2's `ground_truth`).
    #[serde(default)]
    pub exclude_dirs: Vec<String>,
    /// Mask name = `<image stem><mask_suffix>.<ext>` (or the image's own name when absent).
    #[serde(default = "d_mask_suffix")]
    pub mask_suffix: String,
    /// How the reference pairs masks (corrected always pairs by name).
    #[serde(default = "d_sorted")]
    pub reference_pairing: Pairing,
    /// Image file extensions considered (lower case).
    #[serde(default = "d_exts")]
    pub extensions: Vec<String>,
    #[serde(default = "d_images")]
    pub images_dir: String,
    #[serde(default = "d_masks")]
    pub masks_dir: String,
    #[serde(default = "d_meta")]
    pub meta: String,
    #[serde(default = "d_csv")]
    pub split_csv: String,
    /// Reference-only seeded subset (Kvasir).
    #[serde(default)]
    pub reference_subset: Option<SeededSubset>,
    pub categories: Vec<CategorySpec>,
}

impl DatasetSpec {
    /// `AVA_DINO_<KEY>_ROOT`.
    pub fn env_var(&self) -> String {
        format!("AVA_DINO_{}_ROOT", self.key.to_uppercase())
    }

    /// Whether `name` has one of the accepted image extensions (case-insensitive).
    pub fn is_image(&self, name: &str) -> bool {
        match name.rsplit_once('.') {
            Some((_, ext)) => self.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)),
            None => false,
        }
    }

    /// Reference class word: component `[-4]` of `<reference_prefix>/<image_rel>`.
    pub fn reference_class_word(&self, image_rel: &str) -> String {
        let full = format!(
            "{}/{}",
            self.reference_prefix.trim_end_matches('/'),
            image_rel
        );
        let parts: Vec<&str> = full.split('/').collect();
        parts
            .len()
            .checked_sub(4)
            .map(|i| parts[i].to_string())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    datasets: BTreeMap<String, DatasetSpec>,
}

/// The parsed `datasets.toml`.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub datasets: BTreeMap<String, DatasetSpec>,
    /// Common parent of the dataset folders (`$AVA_DINO_DATA_ROOT` unless overridden).
    pub data_root: Option<PathBuf>,
    /// When set, `$AVA_DINO_<KEY>_ROOT` variables are ignored (the embedded synthetic twins must
    /// not pick up a real dataset a user happens to have configured).
    pub ignore_env_roots: bool,
}

/// `datasets.toml` as compiled into the binary.
pub const EMBEDDED_REGISTRY: &str = include_str!("../../datasets.toml");

impl Registry {
    /// `datasets.toml` at the crate's top level.
    pub fn default_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets.toml")
    }

    /// `datasets.toml` of this checkout, or the copy compiled into the binary when that file is
    /// absent (an installed binary).
    pub fn load_default() -> Result<Registry, DataError> {
        let path = Self::default_path();
        if path.is_file() {
            Self::load(&path)
        } else {
            Self::embedded()
        }
    }

    /// The registry a run reads: the file `path` when it exists, else [`Registry::load_default`].
    pub fn load_or_default(path: &Path) -> Result<Registry, DataError> {
        if path.is_file() {
            Self::load(path)
        } else {
            Self::load_default()
        }
    }

    /// The registry compiled into the binary (the synthetic twins follow it).
    pub fn embedded() -> Result<Registry, DataError> {
        Self::parse(Path::new("<embedded datasets.toml>"), EMBEDDED_REGISTRY)
    }

    /// Reads and validates a registry file; the data root comes from `$AVA_DINO_DATA_ROOT`.
    pub fn load(path: &Path) -> Result<Registry, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(path, &text)
    }

    /// Parses registry text (`path` is only used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Registry, DataError> {
        let err = |reason: String| DataError::Registry {
            path: path.to_path_buf(),
            reason,
        };
        let file: RegistryFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut datasets = file.datasets;
        for (key, spec) in datasets.iter_mut() {
            spec.key = key.clone();
            if spec.categories.is_empty() {
                return Err(err(format!(
                    "[datasets.{key}] has no categories; add `categories = [{{ name = \"...\" }}]`"
                )));
            }
            if !(0.0..1.0).contains(&spec.mask_threshold) {
                return Err(err(format!(
                    "[datasets.{key}] mask_threshold {} must be in [0, 1)",
                    spec.mask_threshold
                )));
            }
            let mut seen = std::collections::HashSet::new();
            for c in &spec.categories {
                if !seen.insert(&c.name) {
                    return Err(err(format!(
                        "[datasets.{key}] lists category `{}` twice",
                        c.name
                    )));
                }
            }
        }
        let data_root = std::env::var_os(DATA_ROOT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(Registry {
            path: path.to_path_buf(),
            datasets,
            data_root,
            ignore_env_roots: false,
        })
    }

    /// Uses `dir` as the common parent of the dataset folders (overrides `$AVA_DINO_DATA_ROOT`;
    /// `$AVA_DINO_<KEY>_ROOT` still wins for its dataset).
    pub fn with_data_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_root = Some(dir.into());
        self
    }

    /// Uses `dir` as the only place datasets are looked for, ignoring every `$AVA_DINO_*_ROOT`.
    pub fn with_fixed_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_root = Some(dir.into());
        self.ignore_env_roots = true;
        self
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Result<&DatasetSpec, DataError> {
        self.datasets
            .get(key)
            .ok_or_else(|| DataError::UnknownDataset {
                key: key.to_string(),
                known: self.datasets.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The dataset's folder (not checked for existence; see [`Registry::resolve_root`]).
    pub fn root_path(&self, key: &str) -> Result<PathBuf, DataError> {
        let spec = self.get(key)?;
        if let Some(p) =
            std::env::var_os(spec.env_var()).filter(|v| !v.is_empty() && !self.ignore_env_roots)
        {
            return Ok(PathBuf::from(p));
        }
        match &self.data_root {
            Some(dir) => Ok(dir.join(&spec.root)),
            None => Err(DataError::NoRoot {
                key: key.to_string(),
                env: spec.env_var(),
                root: spec.root.clone(),
            }),
        }
    }

    /// The dataset's folder, which must exist.
    pub fn resolve_root(&self, key: &str) -> Result<PathBuf, DataError> {
        let path = self.root_path(key)?;
        if !path.is_dir() {
            let spec = self.get(key)?;
            return Err(DataError::MissingRoot {
                key: key.to_string(),
                path,
                env: spec.env_var(),
            });
        }
        Ok(path)
    }
}
