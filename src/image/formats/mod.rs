//! File formats: which decoder reads a file (by its content, as `Image.open` does) and how its
//! pixels become the mode Pillow would give them.

mod bmp;
mod png;
mod tiff;

use super::jpeg;
use super::pillow::{Image, Raster};

/// Pillow's decompression-bomb limit (`2 * Image.MAX_IMAGE_PIXELS`): larger images are refused.
pub const MAX_PIXELS: u64 = 2 * 89_478_485;
/// Working memory a decoder may allocate (the `image` crate's default limit, 512 MiB).
pub const MAX_DECODE_BYTES: usize = 512 << 20;

/// Refuses what Pillow refuses as a decompression bomb, before anything is allocated.
fn check_pixels(width: usize, height: usize) -> Result<(), String> {
    let n = width as u64 * height as u64;
    if n > MAX_PIXELS {
        return Err(format!(
            "image is {width}x{height} = {n} pixels, over Pillow's limit of {MAX_PIXELS} (a possible decompression bomb)"
        ));
    }
    Ok(())
}

/// Decodes a file's bytes into the mode Pillow opens it in.
pub fn decode(bytes: &[u8]) -> Result<Image, String> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (w, h) = jpeg::pillow_size(bytes)?;
        check_pixels(w, h)?;
        let d = jpeg::decode(bytes, MAX_DECODE_BYTES)?;
        let raster = match d.space {
            jpeg::ColorSpace::Gray => Raster::L(d.data),
            jpeg::ColorSpace::Rgb => Raster::Rgb(d.data),
            // Pillow reads libjpeg's CMYK as "CMYK;I": Adobe's inverted convention.
            jpeg::ColorSpace::Cmyk => Raster::Cmyk(d.data.into_iter().map(|v| !v).collect()),
        };
        return Ok(Image {
            width: d.width,
            height: d.height,
            raster,
        });
    }
    if png::is_png(bytes) {
        let header = png::pillow_check(bytes)?;
        check_pixels(header.width, header.height)?;
        return png::decode(bytes, &header);
    }
    if bmp::is_bmp(bytes) {
        return bmp::decode(bytes);
    }
    if tiff::is_tiff(bytes) {
        return tiff::decode(bytes);
    }
    Err("not a PNG, JPEG, BMP or TIFF image (unknown file signature)".into())
}
