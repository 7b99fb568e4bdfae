//! Image files to pixels exactly as the reference gets them, `Image.open(p).convert("RGB")`
//! (images) and `.convert("L")` (masks), or one error naming the file and what is unsupported.
//!
//! Every file goes through [`formats::decode`] under [`guard::catch`], so a panicking
//! third-party decoder is an error like any other. Sizes are checked against Pillow's pixel
//! limit and a 512 MiB working-memory limit before anything is allocated.

use std::path::Path;

use super::ImageError;
use super::formats;
use super::guard;
use super::pillow::Image;

/// A decoded 8-bit image, interleaved `[h][w][channels]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Decodes a file's bytes into the mode Pillow gives them, or the reason for refusing.
/// Not guarded: a decoder panic propagates (for fuzzing; files go through [`decode_image`]).
pub fn decode_bytes(bytes: &[u8]) -> Result<Image, String> {
    formats::decode(bytes)
}

/// Decodes `path` into the mode Pillow's `Image.open(path)` gives it.
pub fn decode_image(path: &Path) -> Result<Image, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    guard::catch("the image decoder", || decode_bytes(&bytes))
        .and_then(|r| r)
        .map_err(|reason| ImageError::Decode {
            path: path.to_path_buf(),
            reason,
        })
}

fn decode_to(
    path: &Path,
    channels: usize,
    convert: fn(Image) -> Vec<u8>,
) -> Result<Pixels, ImageError> {
    let img = decode_image(path)?;
    let (width, height) = (img.width, img.height);
    Ok(Pixels {
        width,
        height,
        channels,
        data: convert(img),
    })
}

/// Decodes `path` as Pillow's `Image.open(path).convert("RGB")` would.
pub fn decode_rgb(path: &Path) -> Result<Pixels, ImageError> {
    decode_to(path, 3, Image::into_rgb)
}

/// Decodes `path` as Pillow's `Image.open(path).convert("L")` would.
pub fn decode_luma(path: &Path) -> Result<Pixels, ImageError> {
    decode_to(path, 1, Image::into_luma)
}

/// Width and height as Pillow reports them (decodes the file: also detects broken data).
pub fn dimensions(path: &Path) -> Result<(u32, u32), ImageError> {
    let img = decode_image(path)?;
    Ok((img.width as u32, img.height as u32))
}
