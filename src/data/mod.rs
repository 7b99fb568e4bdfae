//! Datasets: the `datasets.toml` registry, one loader per on-disk layout, Pillow-exact
//! preprocessing (files decoded and resized by [`crate::image`]), synthetic twins of all nine
//! layouts, and the `datasets check` report.
//!
//! The engine calls [`Registry::load`], [`list_samples`] and [`preprocess::load_batch`]; nothing
//! here knows about models or the CLI.

pub mod check;
pub mod layouts;
pub mod mt19937;
pub mod preprocess;
pub mod pyrandom;
pub mod registry;
pub mod synth;
pub mod torch_order;

use std::path::{Path, PathBuf};

pub use preprocess::{SkippedFile, load_batch, load_image, load_image_u8, load_mask};
pub use registry::{CategorySpec, DatasetSpec, Domain, LayoutKind, Registry};

pub use crate::protocol::Protocol;

/// One test image a run evaluates.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Registry key (`mvtec`, `visa`, ...).
    pub dataset: String,
    /// Category name as in `datasets.toml`.
    pub category: String,
    /// Absolute image path.
    pub image: PathBuf,
    /// Image path relative to the dataset root, `/`-separated.
    pub image_rel: String,
    /// Absolute mask path; `None` for normal images without a mask file.
    pub mask: Option<PathBuf>,
    /// Mask path relative to the dataset root.
    pub mask_rel: Option<String>,
    /// 1 = anomalous, 0 = normal.
    pub label: u8,
    /// The word put in the prompts for this image.
    pub class_word: String,
    /// Binarization threshold applied to the resized mask (`v / 255 > t`).
    pub mask_threshold: f32,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only these categories (empty = all in the registry).
    pub categories: Vec<String>,
    /// Leave out (and report) anomalous images whose mask is missing instead of failing.
    pub skip_bad: bool,
    /// In which order the samples come.
    pub order: SampleOrder,
}

/// The order of a sample list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleOrder {
    /// By category, then by image path (byte order): the same list whatever the layout's
    /// source (folders, `meta.json` or a split CSV) and whatever order the registry names the
    /// categories in.
    #[default]
    Sorted,
    /// Registry category order, then the order the layout itself gives: sorted defect-type
    /// folders and files for MVTec-like trees, entry order of `meta.json` (or of the split CSV)
    /// for VisA. With the registry's category order this is the order in which the reference's
    /// `Dataset` classes index their images, which a torch-shuffled loader permutes
    /// (`train.shuffle: torch`).
    Layout,
}

/// Errors of the data room. Each names the file or key and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot decode image ({reason}); re-export or remove the file (or run with --skip-bad)"
    )]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: invalid registry: {reason}")]
    Registry { path: PathBuf, reason: String },
    #[error("unknown dataset `{key}`; known: {known} (add it to datasets.toml)")]
    UnknownDataset { key: String, known: String },
    #[error("dataset `{key}`: unknown category `{category}`; known: {known}")]
    UnknownCategory {
        key: String,
        category: String,
        known: String,
    },
    #[error(
        "dataset `{key}`: no root configured; set {env} to the dataset folder, or AVA_DINO_DATA_ROOT to the folder holding `{root}` (try `ava-dino synth --out DIR` for synthetic twins)"
    )]
    NoRoot {
        key: String,
        env: String,
        root: String,
    },
    #[error(
        "dataset `{key}`: root {path} does not exist; set {env} or AVA_DINO_DATA_ROOT, or run `ava-dino datasets check {key}`"
    )]
    MissingRoot {
        key: String,
        path: PathBuf,
        env: String,
    },
    #[error("{path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Meta { path: PathBuf, reason: String },
}

/// An image the data room could not read keeps its message (and its variant: `--skip-bad`
/// matches on `Decode`).
impl From<crate::image::ImageError> for DataError {
    fn from(e: crate::image::ImageError) -> Self {
        match e {
            crate::image::ImageError::Io { path, source } => DataError::Io { path, source },
            crate::image::ImageError::Decode { path, reason } => DataError::Decode { path, reason },
        }
    }
}

impl DataError {
    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. }
            | Self::Decode { path, .. }
            | Self::Registry { path, .. }
            | Self::MissingRoot { path, .. }
            | Self::Layout { path, .. }
            | Self::Meta { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Every test sample of dataset `key` under `protocol`, in `opts.order` (by default sorted by
/// category then image path).
///
/// An anomalous image without a mask is an error naming it, unless `opts.skip_bad` (then use
/// [`list_samples_with_skipped`] to get the list of what was left out).
pub fn list_samples(
    registry: &Registry,
    key: &str,
    protocol: Protocol,
    opts: &ListOptions,
) -> Result<Vec<Sample>, DataError> {
    list_samples_with_skipped(registry, key, protocol, opts).map(|(s, _)| s)
}

/// That dataset `key` is in the registry and has every category of `categories` (a check that
/// reads no file, for commands that want it before loading any model).
pub fn check_categories(
    registry: &Registry,
    key: &str,
    categories: &[String],
) -> Result<(), DataError> {
    let spec = registry.get(key)?;
    for c in categories {
        if !spec.categories.iter().any(|s| &s.name == c) {
            return Err(DataError::UnknownCategory {
                key: key.to_string(),
                category: c.clone(),
                known: spec
                    .categories
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(())
}

/// [`list_samples`], also returning the samples left out under `opts.skip_bad`.
pub fn list_samples_with_skipped(
    registry: &Registry,
    key: &str,
    protocol: Protocol,
    opts: &ListOptions,
) -> Result<(Vec<Sample>, Vec<SkippedFile>), DataError> {
    check_categories(registry, key, &opts.categories)?;
    let spec = registry.get(key)?;
    let root = registry.resolve_root(key)?;
    let cats: Vec<&CategorySpec> = spec
        .categories
        .iter()
        .filter(|c| opts.categories.is_empty() || opts.categories.contains(&c.name))
        .collect();
    let all = layouts::list(spec, &root, &cats, protocol)?;
    for c in &cats {
        if !all.iter().any(|s| s.category == c.name) {
            let path = root.join(&c.name);
            let reason = format!(
                "category `{}` of dataset `{key}` has no test images; restore them or remove the category from datasets.toml",
                c.name
            );
            return Err(DataError::Layout { path, reason });
        }
    }
    let mut samples = Vec::with_capacity(all.len());
    let mut skipped = Vec::new();
    for s in all {
        if s.label == 1 && s.mask.is_none() {
            let reason = format!(
                "anomalous image has no mask in the ground-truth folder (dataset `{key}`); restore the mask or remove the image"
            );
            if !opts.skip_bad {
                return Err(DataError::Layout {
                    path: s.image,
                    reason,
                });
            }
            skipped.push(SkippedFile {
                path: s.image,
                reason,
            });
            continue;
        }
        samples.push(s);
    }
    if opts.order == SampleOrder::Sorted {
        samples.sort_by(|a, b| {
            a.category
                .cmp(&b.category)
                .then_with(|| a.image_rel.cmp(&b.image_rel))
        });
    }
    Ok((samples, skipped))
}

/// Joins `/`-separated relative path parts.
pub(crate) fn rel_join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}
