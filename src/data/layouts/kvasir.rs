//! Kvasir-SEG: `images/<id>.jpg` with `masks/<id>.jpg`; every image shows a polyp.
//! The reference evaluates only a seeded subset (Python `random.seed(42)` shuffle, tail 15%).

use std::path::Path;

use super::{missing_dir, sample, sorted_files};
use crate::data::pyrandom::PyRandom;
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
    let images = root.join(&spec.images_dir);
    if !images.is_dir() {
        return Err(missing_dir(images, "Kvasir images"));
    }
    let masks_dir = root.join(&spec.masks_dir);
    let masks = if masks_dir.is_dir() {
        sorted_files(&masks_dir, |n| spec.is_image(n))?
    } else {
        Vec::new()
    };
    let mut names = sorted_files(&images, |n| spec.is_image(n))?;
    if let (Protocol::Reference, Some(sub)) = (protocol, &spec.reference_subset) {
        let total = names.len();
        let train_end = (total as f64 * sub.train_ratio) as usize;
        let val_end = train_end + (total as f64 * sub.val_ratio) as usize;
        PyRandom::new(sub.seed).shuffle(&mut names);
        names = names.split_off(val_end.min(total));
    }
    Ok(names
        .into_iter()
        .map(|n| {
            let mask = masks
                .binary_search(&n)
                .is_ok()
                .then(|| rel_join(&[&spec.masks_dir, &n]));
            sample(
                spec,
                root,
                cat,
                rel_join(&[&spec.images_dir, &n]),
                mask,
                1,
                protocol,
            )
        })
        .collect())
}
