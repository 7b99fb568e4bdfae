//! The anomaly maps behind the overlay charts: `eval.maps_per_category` images per category
//! (half anomalous, rounded up, and half normal, so a gallery shows what a normal image's map
//! looks like too; the other kind fills in where a category lacks one), each saved with its
//! resized input, its ground truth, its label and the map of the reported checkpoint. The few images are run through the backbone again rather than keeping
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
        let in_cat: Vec<usize> = (0..target.samples.len())
            .filter(|&i| target.samples[i].category == cat)
            .collect();
        let labels: Vec<u8> = in_cat.iter().map(|&i| target.samples[i].label).collect();
        let idx: Vec<usize> = pick_mixed(&labels, k)
            .into_iter()
            .map(|j| in_cat[j])
            .collect();
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
                sample.label,
            )?;
        }
    }
    Ok(())
}

/// Positions of up to `k` images out of `labels` (0 = normal): the first `ceil(k / 2)`
/// anomalous and the first `k / 2` normal ones, topped up with the other kind when one runs
/// short; anomalous first, then normal, each in file order.
pub fn pick_mixed(labels: &[u8], k: usize) -> Vec<usize> {
    let of = |anomalous: bool| -> Vec<usize> {
        (0..labels.len())
            .filter(|&i| (labels[i] != 0) == anomalous)
            .collect()
    };
    let (anomalous, normal) = (of(true), of(false));
    let n_normal = (k / 2).min(normal.len());
    let n_anomalous = (k - n_normal).min(anomalous.len());
    let n_normal = (k - n_anomalous).min(normal.len());
    let mut out: Vec<usize> = anomalous[..n_anomalous].to_vec();
    out.extend(&normal[..n_normal]);
    out
}

/// `[3, S, S]` planes to `[S, S, 3]` pixels.
pub fn hwc(chw: &[u8], s: usize) -> Vec<u8> {
    (0..s * s)
        .flat_map(|i| (0..3).map(move |c| chw[c * s * s + i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pick_mixed;

    #[test]
    fn a_gallery_gets_anomalous_and_normal_images() {
        // 0 = normal: normal at 0, 1, 4; anomalous at 2, 3, 5.
        let labels = [0, 0, 1, 1, 0, 1];
        assert_eq!(pick_mixed(&labels, 1), [2]);
        assert_eq!(pick_mixed(&labels, 2), [2, 0]);
        assert_eq!(pick_mixed(&labels, 3), [2, 3, 0]);
        assert_eq!(pick_mixed(&labels, 4), [2, 3, 0, 1]);
        assert_eq!(pick_mixed(&labels, 0), Vec::<usize>::new());
        // One kind short: the other fills in; never more than there are.
        assert_eq!(pick_mixed(&[1, 1, 1], 2), [0, 1]);
        assert_eq!(pick_mixed(&[0, 1, 0, 0], 4), [1, 0, 2, 3]);
        assert_eq!(pick_mixed(&[0, 1], 9), [1, 0]);
    }
}
