//! Image files: our own decoders (JPEG reproducing libjpeg-turbo's arithmetic, PNG, BMP, TIFF
//! through their crates), guards against malformed and oversized files, Pillow's mode
//! conversions and its antialiased bilinear resize - each bit-identical to what the reference's
//! Pillow computes. It knows nothing of datasets: the data room reads files through it.

pub mod decode;
mod formats;
pub mod guard;
pub mod jpeg;
pub mod pillow;
pub mod resize;

use std::path::PathBuf;

pub use decode::{Pixels, decode_bytes, decode_image, decode_luma, decode_rgb, dimensions};
pub use resize::resize_bilinear_u8;

/// Per-channel input normalisation `(x / 255 - mean) / std` (torchvision's `Normalize`),
/// which a backbone was trained with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet's statistics (DINOv3, and the reference's `Normalize`).
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// One line naming it (part of the feature shards' preprocessing key).
    pub fn id(&self) -> String {
        if *self == Self::IMAGENET {
            "imagenet-norm".into()
        } else {
            format!("norm{:?}/{:?}", self.mean, self.std)
        }
    }
}

/// A file that cannot be read or decoded. Each names the file and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot decode image ({reason}); re-export or remove the file (or run with --skip-bad)"
    )]
    Decode { path: PathBuf, reason: String },
}
