//! Image and mask preprocessing, bit-compatible with the reference's PIL + torchvision pipeline.
//!
//! Image: `PIL.Image.open(p).convert("RGB")` -> `Resize((S, S))` (Pillow antialiased bilinear)
//! -> `ToTensor` (`u8 / 255` in f32) -> `Normalize(ImageNet mean, std)` in f32.
//! Mask: `.convert("L")` -> same resize -> `/ 255` -> `> threshold`.
//! Decoding, Pillow's mode conversions and its resize live in [`crate::image`].

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{DataError, Sample};
use crate::io::HostTensor;

pub use crate::image::{
    Normalize, Pixels, decode_luma, decode_rgb, dimensions, resize_bilinear_u8,
};

/// Pillow-exact resize of a decoded image to `size x size`.
pub fn resize_square(p: &Pixels, size: usize) -> Pixels {
    let data = resize_bilinear_u8(&p.data, p.width, p.height, p.channels, size, size);
    Pixels {
        width: size,
        height: size,
        channels: p.channels,
        data,
    }
}

/// The resized RGB image as u8 `[3, S, S]` (channel-first), before any scaling: for overlays and
/// for exact comparisons with Pillow.
pub fn load_image_u8(path: &Path, size: usize) -> Result<HostTensor, DataError> {
    let p = resize_square(&decode_rgb(path)?, size);
    let n = size * size;
    let mut chw = vec![0u8; 3 * n];
    for (i, px) in p.data.chunks_exact(3).enumerate() {
        chw[i] = px[0];
        chw[n + i] = px[1];
        chw[2 * n + i] = px[2];
    }
    Ok(HostTensor::u8(vec![3, size, size], chw))
}

/// The model input: `[3, S, S]` f32, `(u8 / 255 - mean) / std` computed in f32 as torchvision
/// does, with the backbone's normalisation `norm`.
pub fn load_image(path: &Path, size: usize, norm: &Normalize) -> Result<HostTensor, DataError> {
    let raw = load_image_u8(path, size)?;
    let n = size * size;
    let v = raw.as_u8().expect("u8 tensor");
    let out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| normalize(x, i / n, norm))
        .collect();
    Ok(HostTensor::f32(vec![3, size, size], out))
}

/// One normalized channel value, exactly `ToTensor` then `Normalize` in f32.
#[inline]
pub fn normalize(v: u8, channel: usize, norm: &Normalize) -> f32 {
    (v as f32 / 255.0 - norm.mean[channel]) / norm.std[channel]
}

/// The binary ground truth `[S, S]` u8 (0/1): `convert("L")`, Pillow resize, `v / 255 > threshold`
/// (in f32, as the reference compares the `ToTensor` output). `None` (a normal image) gives zeros.
pub fn load_mask(
    path: Option<&Path>,
    size: usize,
    threshold: f32,
) -> Result<HostTensor, DataError> {
    let Some(path) = path else {
        return Ok(HostTensor::u8(vec![size, size], vec![0; size * size]));
    };
    let p = resize_square(&decode_luma(path)?, size);
    let data = p
        .data
        .iter()
        .map(|&v| u8::from(v as f32 / 255.0 > threshold))
        .collect();
    Ok(HostTensor::u8(vec![size, size], data))
}

/// A file left out of a batch because it could not be used, with the reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// One loaded sample: its index in the input slice, image `[3,S,S]` f32 and mask `[S,S]` u8.
pub type Loaded = (usize, HostTensor, HostTensor);

fn load_one(s: &Sample, size: usize, norm: &Normalize) -> Result<Loaded, DataError> {
    let image = load_image(&s.image, size, norm)?;
    let mask = load_mask(s.mask.as_deref(), size, s.mask_threshold)?;
    Ok((0, image, mask))
}

/// [`load_one`] with any panic (ours or a dependency's) turned into an error naming the image,
/// so that one bad file cannot take down the parallel batch.
fn load_one_guarded(s: &Sample, size: usize, norm: &Normalize) -> Result<Loaded, DataError> {
    crate::image::guard::catch("preprocessing", || load_one(s, size, norm)).unwrap_or_else(
        |reason| {
            Err(DataError::Decode {
                path: s.image.clone(),
                reason,
            })
        },
    )
}

/// Decodes and preprocesses `samples` in parallel (rayon), keeping input order.
///
/// Without `skip_bad` the first bad file (in input order) is an error naming it. With `skip_bad`
/// every bad sample is left out and listed in the returned [`SkippedFile`]s, so a caller can
/// write them into the run's output.
pub fn load_batch(
    samples: &[Sample],
    size: usize,
    norm: &Normalize,
    skip_bad: bool,
) -> Result<(Vec<Loaded>, Vec<SkippedFile>), DataError> {
    let results: Vec<Result<Loaded, DataError>> = samples
        .par_iter()
        .map(|s| load_one_guarded(s, size, norm))
        .collect();
    let mut ok = Vec::with_capacity(samples.len());
    let mut skipped = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok((_, img, mask)) => ok.push((i, img, mask)),
            Err(e) if skip_bad => skipped.push(SkippedFile {
                path: e.path().unwrap_or(&samples[i].image).to_path_buf(),
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((ok, skipped))
}
