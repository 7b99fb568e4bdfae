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
