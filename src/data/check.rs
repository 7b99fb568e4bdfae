//! `datasets check`: is each dataset present and complete, and would a run be able to read it?
//!
//! Per dataset: root present; every category folder of `datasets.toml` present (and folders on
//! disk that are not categories, e.g. a renamed one); per-category counts found vs expected (the
//! official counts, or `synth.json` for a synthetic twin); anomalous images without a mask; masks
//! without an image; files that do not decode; image/mask size mismatches. Every problem names
//! the path and says how to fix it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::layouts;
use super::preprocess::{decode_luma, decode_rgb};
use super::registry::{DatasetSpec, LayoutKind, Registry};
use super::synth::read_marker;
use super::{DataError, Protocol, Sample};

/// How bad a problem is: errors make `datasets check` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, about one path.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub path: PathBuf,
    pub message: String,
}

/// Counts of one category.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CategoryCount {
    pub name: String,
    pub normal: usize,
    pub anomalous: usize,
    pub expected_normal: Option<usize>,
    pub expected_anomalous: Option<usize>,
}

/// The result for one dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetCheck {
    pub key: String,
    pub root: Option<PathBuf>,
    pub synthetic: bool,
    pub categories: Vec<CategoryCount>,
    pub files_decoded: usize,
    pub problems: Vec<Problem>,
}

impl DatasetCheck {
    /// No error-level problem.
    pub fn ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

fn problem(
    problems: &mut Vec<Problem>,
    severity: Severity,
    path: impl Into<PathBuf>,
    message: impl Into<String>,
) {
    problems.push(Problem {
        severity,
        path: path.into(),
        message: message.into(),
    });
}

/// Checks dataset `key` (decodes every listed image and mask, in parallel).
pub fn check_dataset(registry: &Registry, key: &str) -> Result<DatasetCheck, DataError> {
    let spec = registry.get(key)?;
    let mut out = DatasetCheck {
        key: key.to_string(),
        root: None,
        synthetic: false,
        categories: Vec::new(),
        files_decoded: 0,
        problems: Vec::new(),
    };
    let root = match registry.root_path(key) {
        Ok(r) => r,
        Err(e) => {
            problem(
                &mut out.problems,
                Severity::Error,
                PathBuf::from(format!("${}", spec.env_var())),
                e.to_string(),
            );
            return Ok(out);
        }
    };
    out.root = Some(root.clone());
    if !root.is_dir() {
        let msg = format!(
            "dataset root does not exist; set {} or AVA_DINO_DATA_ROOT (holding `{}`)",
            spec.env_var(),
            spec.root
        );
        problem(&mut out.problems, Severity::Error, &root, msg);
        return Ok(out);
    }
    let marker = read_marker(&root);
    out.synthetic = marker.is_some();

    check_category_folders(spec, &root, &mut out.problems);

    let mut samples: Vec<Sample> = Vec::new();
    for cat in &spec.categories {
        match layouts::list(spec, &root, &[cat], Protocol::Corrected) {
            Ok(s) => samples.extend(s),
            Err(DataError::Layout { path, reason }) if !path.exists() => {
                problem(&mut out.problems, Severity::Error, path, reason);
            }
            Err(e) => {
                let path = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.clone());
                problem(&mut out.problems, Severity::Error, path, e.to_string());
            }
        }
    }

    for s in &samples {
        if s.label == 1 && s.mask.is_none() {
            let msg = format!(
                "anomalous image has no mask (expected `<stem>{}.<ext>` in its ground-truth folder); restore the mask or remove the image",
                spec.mask_suffix
            );
            problem(&mut out.problems, Severity::Error, &s.image, msg);
        }
    }
    orphan_masks(spec, &root, &samples, &mut out.problems);

    // Decode everything a run would read; compare image and mask sizes.
    let results: Vec<(Option<Problem>, Option<Problem>, usize)> = samples
        .par_iter()
        .map(|s| {
            let mut n = 1;
            let img = decode_rgb(&s.image);
            let mut p1 = None;
            let mut p2 = None;
            if let Err(e) = &img {
                p1 = Some(Problem { severity: Severity::Error, path: s.image.clone(), message: format!("unreadable image: {e}") });
            }
            if let Some(m) = &s.mask {
                n += 1;
                match decode_luma(m) {
                    Err(e) => p2 = Some(Problem { severity: Severity::Error, path: m.clone(), message: format!("unreadable mask: {e}") }),
                    Ok(mp) => {
                        if let Ok(ip) = &img
                            && (ip.width, ip.height) != (mp.width, mp.height)
                        {
                            p2 = Some(Problem {
                                severity: Severity::Error,
                                path: m.clone(),
                                message: format!(
                                    "mask is {}x{} but its image {} is {}x{}; regenerate the mask at the image's size",
                                    mp.width, mp.height, s.image.display(), ip.width, ip.height
                                ),
                            });
                        }
                    }
                }
            }
            (p1, p2, n)
        })
        .collect();
    for (p1, p2, n) in results {
        out.files_decoded += n;
        out.problems.extend(p1);
        out.problems.extend(p2);
    }

    for cat in &spec.categories {
        let normal = samples
            .iter()
            .filter(|s| s.category == cat.name && s.label == 0)
            .count();
        let anomalous = samples
            .iter()
            .filter(|s| s.category == cat.name && s.label == 1)
            .count();
        let (en, ea) = match &marker {
            Some(m) => m
                .categories
                .iter()
                .find(|c| c.name == cat.name)
                .map(|c| (Some(c.normal), Some(c.anomalous)))
                .unwrap_or((None, None)),
            None => (cat.normal, cat.anomalous),
        };
        let cat_dir = root.join(&cat.name);
        if normal + anomalous == 0 {
            problem(
                &mut out.problems,
                Severity::Error,
                &cat_dir,
                format!("category `{}` has no test images", cat.name),
            );
        } else if en.is_some_and(|e| e != normal) || ea.is_some_and(|e| e != anomalous) {
            let source = if marker.is_some() {
                "synth.json"
            } else {
                "datasets.toml (official split)"
            };
            let msg = format!(
                "category `{}`: found {normal} normal / {anomalous} anomalous, {source} expects {} / {}; a partial or modified copy changes the results",
                cat.name,
                en.map_or("?".into(), |v| v.to_string()),
                ea.map_or("?".into(), |v| v.to_string())
            );
            problem(&mut out.problems, Severity::Warning, &cat_dir, msg);
        }
        out.categories.push(CategoryCount {
            name: cat.name.clone(),
            normal,
            anomalous,
            expected_normal: en,
            expected_anomalous: ea,
        });
    }
    out.problems
        .sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
    Ok(out)
}

/// Folders on disk that look like categories but are not in the registry (renamed copies).
fn check_category_folders(spec: &DatasetSpec, root: &Path, problems: &mut Vec<Problem>) {
    if !matches!(spec.layout, LayoutKind::Mvtec | LayoutKind::Visa) {
        return;
    }
    let known: HashSet<&str> = spec.categories.iter().map(|c| c.name.as_str()).collect();
    let Ok(dirs) = layouts::sorted_dirs(root) else {
        return;
    };
    for d in dirs {
        if known.contains(d.as_str()) || d.starts_with('.') {
            continue;
        }
        let marker = match spec.layout {
            LayoutKind::Mvtec => root.join(&d).join(&spec.split_dir),
            _ => root.join(&d).join("Data"),
        };
        if marker.is_dir() {
            let msg = format!(
                "folder `{d}` looks like a category but is not in datasets.toml [datasets.{}] (renamed? rename it back or add it to the registry)",
                spec.key
            );
            problems.push(Problem {
                severity: Severity::Error,
                path: root.join(&d),
                message: msg,
            });
        }
    }
}

/// Mask files that no listed image uses.
fn orphan_masks(spec: &DatasetSpec, root: &Path, samples: &[Sample], problems: &mut Vec<Problem>) {
    let used: HashSet<&Path> = samples.iter().filter_map(|s| s.mask.as_deref()).collect();
    let mut dirs: Vec<PathBuf> = Vec::new();
    match spec.layout {
        LayoutKind::Mvtec => {
            for c in &spec.categories {
                let gt = root.join(&c.name).join(&spec.gt_dir);
                if let Ok(types) = layouts::sorted_dirs(&gt) {
                    dirs.extend(types.into_iter().map(|t| gt.join(t)));
                }
            }
        }
        LayoutKind::Kvasir => dirs.push(root.join(&spec.masks_dir)),
        LayoutKind::Ksdd2 => dirs.push(root.join(&spec.split_dir)),
        LayoutKind::Visa => {
            for c in &spec.categories {
                dirs.push(root.join(&c.name).join("Data/Masks/Anomaly"));
            }
        }
    }
    let gt_tail = format!("{}.png", spec.mask_suffix);
    for dir in dirs {
        let Ok(files) = layouts::sorted_files(&dir, |n| spec.is_image(n)) else {
            continue;
        };
        for f in files {
            if spec.layout == LayoutKind::Ksdd2 && !f.ends_with(&gt_tail) {
                continue;
            }
            let p = dir.join(&f);
            if !used.contains(p.as_path()) {
                problems.push(Problem {
                    severity: Severity::Warning,
                    path: p,
                    message: "mask without an image (its image was removed or renamed); restore the image or delete the mask".into(),
                });
            }
        }
    }
}
