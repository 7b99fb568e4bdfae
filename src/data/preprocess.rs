//! Image and mask preprocessing, bit-compatible with the reference's PIL + torchvision pipeline.
//!
//! Image: `PIL.Image.open(p).convert("RGB")` -> `Resize((S, S))` (Pillow antialiased bilinear)
//! -> `ToTensor` (`u8 / 255` in f32) -> `Normalize(ImageNet mean, std)` in f32.
//! Mask: `.convert("L")` -> same resize -> `/ 255` -> `> threshold`.
//! Pillow's mode conversions are reproduced for the modes real datasets use: palette and
//! grey+alpha/RGBA drop alpha, 16-bit grey (`I;16`) clips to 255, 16-bit colour keeps the high byte,
//! RGB -> L uses Pillow's fixed-point ITU-R 601 weights.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};
use rayon::prelude::*;

use super::{DataError, Sample};
use crate::io::HostTensor;

pub use super::resize::resize_bilinear_u8;

/// ImageNet channel means used by the reference's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations used by the reference's `Normalize`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A decoded 8-bit image, interleaved `[h][w][channels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Baseline JPEG through the libjpeg-exact decoder; other JPEGs fall through to `image`.
        let bad = |reason: String| DataError::Decode {
            path: path.to_path_buf(),
            reason,
        };
        if let Some((w, h, c, data)) = super::jpeg::decode(&bytes).map_err(bad)? {
            let (w, h) = (w as u32, h as u32);
            return Ok(if c == 1 {
                DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, data).expect("sized"))
            } else {
                DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, data).expect("sized"))
            });
        }
    }
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .with_guessed_format()
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    reader.decode().map_err(|e| DataError::Decode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Pillow's `convert("RGB")`.
fn to_rgb(img: DynamicImage, path: &Path) -> Result<Pixels, DataError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().flat_map(|v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        // Pillow opens 16-bit grey as `I;16` and clips it to 255 on conversion.
        DynamicImage::ImageLuma16(b) => b
            .into_raw()
            .into_iter()
            .flat_map(|v| {
                let v = v.min(255) as u8;
                [v, v, v]
            })
            .collect(),
        DynamicImage::ImageLumaA16(b) => b
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| {
                let v = (p[0] >> 8) as u8;
                [v, v, v]
            })
            .collect(),
        // Pillow unpacks 16-bit colour (`RGB;16B`) by keeping the most significant byte.
        DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => b
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        other => {
            return Err(DataError::Decode {
                path: path.to_path_buf(),
                reason: format!(
                    "unsupported pixel format {:?}; convert the file to 8-bit RGB or greyscale",
                    other.color()
                ),
            });
        }
    };
    Ok(Pixels {
        width: w,
        height: h,
        channels: 3,
        data,
    })
}

/// Pillow's `L24` luma: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Pillow's `convert("L")`.
fn to_luma(img: DynamicImage, path: &Path) -> Result<Pixels, DataError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let data: Vec<u8> = match img {
        DynamicImage::ImageLuma8(b) => b.into_raw(),
        DynamicImage::ImageLumaA8(b) => b.into_raw().chunks_exact(2).map(|p| p[0]).collect(),
        DynamicImage::ImageLuma16(b) => {
            b.into_raw().into_iter().map(|v| v.min(255) as u8).collect()
        }
        other => {
            let rgb = to_rgb(other, path)?;
            rgb.data
                .chunks_exact(3)
                .map(|p| luma(p[0], p[1], p[2]))
                .collect()
        }
    };
    Ok(Pixels {
        width: w,
        height: h,
        channels: 1,
        data,
    })
}

/// Decodes `path` as Pillow's `Image.open(path).convert("RGB")` would.
pub fn decode_rgb(path: &Path) -> Result<Pixels, DataError> {
    to_rgb(decode(path)?, path)
}

/// Decodes `path` as Pillow's `Image.open(path).convert("L")` would.
pub fn decode_luma(path: &Path) -> Result<Pixels, DataError> {
    to_luma(decode(path)?, path)
}

/// Width and height from the file header only (cheap; does not detect truncated data).
pub fn dimensions(path: &Path) -> Result<(u32, u32), DataError> {
    ImageReader::open(path)
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .with_guessed_format()
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?
        .into_dimensions()
        .map_err(|e| DataError::Decode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

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

/// The model input: `[3, S, S]` f32, `(u8 / 255 - mean) / std` computed in f32 as torchvision does.
pub fn load_image(path: &Path, size: usize) -> Result<HostTensor, DataError> {
    let raw = load_image_u8(path, size)?;
    let n = size * size;
    let v = raw.as_u8().expect("u8 tensor");
    let out: Vec<f32> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| normalize(x, i / n))
        .collect();
    Ok(HostTensor::f32(vec![3, size, size], out))
}

/// One normalized channel value, exactly `ToTensor` then `Normalize` in f32.
#[inline]
pub fn normalize(v: u8, channel: usize) -> f32 {
    (v as f32 / 255.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
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

fn load_one(s: &Sample, size: usize) -> Result<Loaded, DataError> {
    let image = load_image(&s.image, size)?;
    let mask = load_mask(s.mask.as_deref(), size, s.mask_threshold)?;
    Ok((0, image, mask))
}

/// Decodes and preprocesses `samples` in parallel (rayon), keeping input order.
///
/// Without `skip_bad` the first bad file (in input order) is an error naming it. With `skip_bad`
/// every bad sample is left out and listed in the returned [`SkippedFile`]s, so a caller can
/// write them into the run's output.
pub fn load_batch(
    samples: &[Sample],
    size: usize,
    skip_bad: bool,
) -> Result<(Vec<Loaded>, Vec<SkippedFile>), DataError> {
    let results: Vec<Result<Loaded, DataError>> =
        samples.par_iter().map(|s| load_one(s, size)).collect();
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
