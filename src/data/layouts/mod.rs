//! One loader per on-disk layout family. Each returns the samples of the requested categories,
//! category by category in the order given, each category in the order the reference's
//! `Dataset` class reads it ([`crate::data::SampleOrder::Layout`]);
//! [`crate::data::list_samples`] sorts them unless asked for that order.

mod ksdd2;
mod kvasir;
mod mvtec;
mod visa;

use std::path::{Path, PathBuf};

use super::registry::{CategorySpec, DatasetSpec, LayoutKind};
use super::{DataError, Protocol, Sample};

/// Lists the samples of `cats` under `root` with the loader `spec.layout` names.
pub fn list(
    spec: &DatasetSpec,
    root: &Path,
    cats: &[&CategorySpec],
    protocol: Protocol,
) -> Result<Vec<Sample>, DataError> {
    match spec.layout {
        LayoutKind::Mvtec => mvtec::list(spec, root, cats, protocol),
        LayoutKind::Visa => visa::list(spec, root, cats, protocol),
        LayoutKind::Ksdd2 => ksdd2::list(spec, root, cats, protocol),
        LayoutKind::Kvasir => kvasir::list(spec, root, cats, protocol),
    }
}

/// Builds a sample; the class word follows the protocol.
pub(crate) fn sample(
    spec: &DatasetSpec,
    root: &Path,
    cat: &CategorySpec,
    image_rel: String,
    mask_rel: Option<String>,
    label: u8,
    protocol: Protocol,
) -> Sample {
    let class_word = match protocol {
        Protocol::Reference => spec.reference_class_word(&image_rel),
        Protocol::Corrected => cat.true_class_word(),
    };
    Sample {
        dataset: spec.key.clone(),
        category: cat.name.clone(),
        image: root.join(&image_rel),
        mask: mask_rel.as_ref().map(|m| root.join(m)),
        image_rel,
        mask_rel,
        label,
        class_word,
        mask_threshold: spec.mask_threshold,
    }
}

/// Suffix of anomaly-map overlay files (`<image>.anomaly.png`): never a dataset image, wherever
/// one lies.
pub const OVERLAY_SUFFIX: &str = ".anomaly.png";

/// An overlay written by `predict`, not a dataset image: loaders never list these.
pub fn is_overlay(name: &str) -> bool {
    name.len() >= OVERLAY_SUFFIX.len()
        && name[name.len() - OVERLAY_SUFFIX.len()..].eq_ignore_ascii_case(OVERLAY_SUFFIX)
}

/// Sorted names of the files in `dir` that `keep` accepts (byte order, as Python's `sorted`),
/// leaving out `predict` overlays (`*.anomaly.png`).
pub fn sorted_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep(&name) && !is_overlay(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Sorted names of the sub-folders of `dir`.
pub fn sorted_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// `Layout` error for a missing folder.
pub(crate) fn missing_dir(path: PathBuf, what: &str) -> DataError {
    DataError::Layout {
        reason: format!(
            "{what} folder is missing; check the category names in datasets.toml against the data (run `ava-dino datasets check`)"
        ),
        path,
    }
}

/// File stem (name without the last extension).
pub(crate) fn stem(name: &str) -> &str {
    name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_are_recognised_in_any_case() {
        assert!(is_overlay("000.anomaly.png"));
        assert!(is_overlay("a.ANOMALY.PNG"));
        assert!(!is_overlay("anomaly.png.jpg"));
        assert!(!is_overlay("000.png"));
        assert!(!is_overlay(".png"));
    }
}
