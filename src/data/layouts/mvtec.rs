//! MVTec-like trees: `<cat>/<split_dir>/<type>/<img>`, masks in `<cat>/<gt_dir>/<type>/`.
//! Used by MVTec-AD, MPDD, BTAD, MVTec-AD2 (`test_public`), CVC-ColonDB/ClinicDB (re-packaged).

use std::collections::HashSet;
use std::path::Path;

use super::{missing_dir, sample, sorted_dirs, sorted_files, stem};
use crate::data::registry::{CategorySpec, DatasetSpec, Pairing};
use crate::data::{DataError, Protocol, Sample, rel_join};

pub fn list(
    spec: &DatasetSpec,
    root: &Path,
    cats: &[&CategorySpec],
    protocol: Protocol,
) -> Result<Vec<Sample>, DataError> {
    let pairing = match protocol {
        Protocol::Reference => spec.reference_pairing,
        Protocol::Corrected => Pairing::Name,
    };
    let mut out = Vec::new();
    for cat in cats {
        let split_rel = rel_join(&[&cat.name, &spec.split_dir]);
        let split = root.join(&split_rel);
        if !split.is_dir() {
            return Err(missing_dir(split, &format!("category `{}` test", cat.name)));
        }
        for ty in sorted_dirs(&split)? {
            if spec.exclude_dirs.contains(&ty) {
                continue;
            }
            let files = sorted_files(&split.join(&ty), |n| spec.is_image(n))?;
            let img_rel = |f: &str| rel_join(&[&split_rel, &ty, f]);
            if spec.normal_dirs.contains(&ty) {
                for f in &files {
                    out.push(sample(spec, root, cat, img_rel(f), None, 0, protocol));
                }
                continue;
            }
            let gt_rel = rel_join(&[&cat.name, &spec.gt_dir, &ty]);
            let gt = root.join(&gt_rel);
            let masks = if gt.is_dir() {
                sorted_files(&gt, |n| spec.is_image(n))?
            } else {
                Vec::new()
            };
            match pairing {
                Pairing::Sorted => {
                    if masks.len() != files.len() {
                        return Err(DataError::Layout {
                            path: gt,
                            reason: format!(
                                "{} masks for {} images in {}; the reference pairs them by sorted order, so every \
                                 image needs exactly one mask (restore the missing files, or use --protocol corrected to pair by name)",
                                masks.len(),
                                files.len(),
                                split.join(&ty).display()
                            ),
                        });
                    }
                    for (f, m) in files.iter().zip(&masks) {
                        out.push(sample(
                            spec,
                            root,
                            cat,
                            img_rel(f),
                            Some(rel_join(&[&gt_rel, m])),
                            1,
                            protocol,
                        ));
                    }
                }
                Pairing::Name => {
                    let set: HashSet<&str> = masks.iter().map(|s| s.as_str()).collect();
                    for f in &files {
                        let m = mask_for(spec, stem(f), &set);
                        out.push(sample(
                            spec,
                            root,
                            cat,
                            img_rel(f),
                            m.map(|m| rel_join(&[&gt_rel, &m])),
                            1,
                            protocol,
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The mask file named after an image stem: `<stem><mask_suffix>.<ext>`, else `<stem>.<ext>`.
pub(crate) fn mask_for(spec: &DatasetSpec, stem: &str, masks: &HashSet<&str>) -> Option<String> {
    for suffix in [spec.mask_suffix.as_str(), ""] {
        for ext in &spec.extensions {
            for e in [ext.to_lowercase(), ext.to_uppercase()] {
                let name = format!("{stem}{suffix}.{e}");
                if masks.contains(name.as_str()) {
                    return Some(name);
                }
            }
        }
    }
    None
}
