//! KolektorSDD2: flat `<split_dir>/<id>.png` with `<id>_GT.png` next to it (official copies ship
//! a GT file for every image, all-zero for defect-free ones).

use std::path::Path;

use rayon::prelude::*;

use super::{missing_dir, sample, sorted_files, stem};
use crate::data::preprocess::decode_luma;
use crate::data::registry::{CategorySpec, DatasetSpec};
use crate::data::{DataError, Protocol, Sample, rel_join};

pub fn list(
    spec: &DatasetSpec,
    root: &Path,
    cats: &[&CategorySpec],
    protocol: Protocol,
) -> Result<Vec<Sample>, DataError> {
    let Some(cat) = cats.first() else {
        return Ok(Vec::new());
    };
    let dir = root.join(&spec.split_dir);
    if !dir.is_dir() {
        return Err(missing_dir(dir, "KSDD2 split"));
    }
    let gt_tail = format!("{}.png", spec.mask_suffix);
    let names = sorted_files(&dir, |n| spec.is_image(n))?;
    let set: std::collections::HashSet<&str> = names.iter().map(|s| s.as_str()).collect();
    let pairs: Vec<(String, Option<String>)> = names
        .iter()
        .filter(|n| !n.ends_with(&gt_tail))
        .map(|n| {
            let gt = format!("{}{}", stem(n), gt_tail);
            let has = set.contains(gt.as_str());
            (
                rel_join(&[&spec.split_dir, n]),
                has.then(|| rel_join(&[&spec.split_dir, &gt])),
            )
        })
        .collect();
    // Reference: anomalous iff a GT file exists. Corrected: iff the GT has a non-zero pixel.
    let labels: Vec<u8> = match protocol {
        Protocol::Reference => pairs.iter().map(|(_, m)| u8::from(m.is_some())).collect(),
        Protocol::Corrected => pairs
            .par_iter()
            .map(|(_, m)| match m {
                Some(m) => {
                    decode_luma(&root.join(m)).map(|p| u8::from(p.data.iter().any(|&v| v > 0)))
                }
                None => Ok(0),
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(pairs
        .into_iter()
        .zip(labels)
        .map(|((img, mask), label)| sample(spec, root, cat, img, mask, label, protocol))
        .collect())
}
