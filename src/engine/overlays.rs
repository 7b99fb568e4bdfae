//! The anomaly maps behind the overlay charts: `eval.maps_per_category` images per category
//! (anomalous first), each saved with its resized input, its ground truth and the map of the
//! reported checkpoint. The few images are run through the backbone again rather than keeping
//! every checkpoint's maps of the whole target until the reported epoch is known.

use std::path::Path;

use super::EngineError;
use super::evaluate::TargetSet;
use super::extract::{Extractor, features_of};
use super::inference::run_batch;
use crate::experiment::RunDir;
use crate::io::HostTensor;
use crate::model::AvaDino;

/// Writes the overlay maps of `model` for `k` images per category of `target` into `run`.
pub fn write_overlays(
    run: &RunDir,
    model: &AvaDino,
    target: &TargetSet,
    extractor: &Extractor,
    k: usize,
) -> Result<(), EngineError> {
    if k == 0 {
        return Ok(());
    }
    let mut cats: Vec<&str> = target.samples.iter().map(|s| s.category.as_str()).collect();
    cats.dedup();
    let s = extractor.size;
    for cat in cats {
        let mut idx: Vec<usize> = (0..target.samples.len())
            .filter(|&i| target.samples[i].category == cat)
            .collect();
        idx.sort_by_key(|&i| (target.samples[i].label == 0, i));
        idx.truncate(k);
        let (batch, done, _) = target.extract(extractor, &idx)?;
        if done.is_empty() {
            continue;
        }
        let words = done.iter().map(|e| batch[e.index].class_word.as_str());
        let text = target.prompts.tensor(words, &extractor.device);
        let outs = run_batch(
            model,
            &features_of(&done),
            extractor.grid(),
            text,
            &extractor.device,
        );
        for (e, o) in done.iter().zip(outs) {
            let sample = &batch[e.index];
            let chw = crate::data::load_image_u8(&sample.image, s)?;
            let name = Path::new(&sample.image_rel)
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            run.write_map(
                cat,
                &format!("{:04}_{name}", idx[e.index]),
                HostTensor::u8(vec![s, s, 3], hwc(chw.as_u8().expect("u8 image"), s)),
                HostTensor::u8(vec![s, s], e.mask.clone()),
                HostTensor::f32(vec![s, s], o.map),
            )?;
        }
    }
    Ok(())
}

/// `[3, S, S]` planes to `[S, S, 3]` pixels.
pub fn hwc(chw: &[u8], s: usize) -> Vec<u8> {
    (0..s * s)
        .flat_map(|i| (0..3).map(move |c| chw[c * s * s + i]))
        .collect()
}
