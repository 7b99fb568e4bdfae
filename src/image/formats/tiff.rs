//! TIFF: the first IFD's tags decide, as in Pillow's `TiffImagePlugin`, which mode the image
//! has; only layouts whose pixels the `tiff` crate delivers exactly as Pillow's are decoded
//! (checked on the conformance corpus), everything else is refused with its layout named.
//!
//! Pillow specifics reproduced: associated alpha (`ExtraSamples = 1`) is unpremultiplied when
//! unpacked, 16-bit colour keeps the high byte, and the Orientation tag is applied on load
//! (`exif_transpose`). Refused: JPEG-compressed TIFFs (the `tiff` crate decodes JPEG with
//! zune-jpeg, not libjpeg), palette, YCbCr, CIELab, signed or float samples, reversed bit order,
//! and tiled files with separate planes (which make the `tiff` crate panic).

use std::io::Cursor;

use image::codecs::tiff::TiffDecoder;
use image::{DynamicImage, ImageDecoder};

use super::check_pixels;
use crate::image::pillow::{Image, Raster, unpremultiply};

pub fn is_tiff(data: &[u8]) -> bool {
    [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"]
        .iter()
        .any(|p| data.starts_with(*p))
}

/// The tags of the first image that decide how Pillow reads it.
#[derive(Debug, Default)]
struct Tags {
    width: u64,
    height: u64,
    bits: Vec<u64>,
    compression: u64,
    photometric: u64,
    fill_order: u64,
    spp: Option<u64>,
    planar: u64,
    tiled: bool,
    extra: Vec<u64>,
    sample_format: Vec<u64>,
}

struct Ifd<'a> {
    d: &'a [u8],
    le: bool,
    big: bool,
}

impl Ifd<'_> {
    fn uint(&self, at: usize, n: usize) -> Option<u64> {
        let b = self.d.get(at..at + n)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if self.le { b[n - 1 - i] } else { b[i] } as u64;
            v = (v << 8) | byte;
        }
        Some(v)
    }

    /// Up to 16 unsigned values of an entry (types BYTE, SHORT, LONG, LONG8).
    fn values(&self, entry: usize) -> Option<Vec<u64>> {
        let ty = self.uint(entry + 2, 2)?;
        let size = match ty {
            1 | 7 => 1,
            3 => 2,
            4 | 13 => 4,
            16 | 18 => 8,
            _ => return Some(Vec::new()),
        };
        let (count, inline) = if self.big {
            (self.uint(entry + 4, 8)?, 8)
        } else {
            (self.uint(entry + 4, 4)?, 4)
        };
        let n = count.min(16) as usize;
        let at = if count * size as u64 <= inline as u64 {
            entry + if self.big { 12 } else { 8 }
        } else {
            self.uint(entry + if self.big { 12 } else { 8 }, inline)? as usize
        };
        (0..n).map(|i| self.uint(at + i * size, size)).collect()
    }
}

fn read_tags(d: &[u8]) -> Result<Tags, String> {
    let bad = || "truncated or malformed TIFF header".to_string();
    let ifd = Ifd {
        d,
        le: d.starts_with(b"II"),
        big: d.get(2..4) == Some(if d.starts_with(b"II") { b"+\0" } else { b"\0+" }),
    };
    let (start, count_size, entry_size) = if ifd.big { (8, 8, 20) } else { (4, 2, 12) };
    let at = ifd
        .uint(start, if ifd.big { 8 } else { 4 })
        .ok_or_else(bad)? as usize;
    let n = ifd.uint(at, count_size).ok_or_else(bad)? as usize;
    let mut t = Tags {
        compression: 1,
        fill_order: 1,
        planar: 1,
        ..Default::default()
    };
    for i in 0..n.min(4096) {
        let e = at + count_size + i * entry_size;
        let tag = ifd.uint(e, 2).ok_or_else(bad)?;
        let v = ifd.values(e).ok_or_else(bad)?;
        let first = v.first().copied().unwrap_or(0);
        match tag {
            256 => t.width = first,
            257 => t.height = first,
            258 => t.bits = v,
            259 => t.compression = first,
            262 => t.photometric = first,
            266 => t.fill_order = first,
            277 => t.spp = Some(first),
            284 => t.planar = first,
            322 => t.tiled = true,
            338 => t.extra = v,
            339 => t.sample_format = v,
            _ => {}
        }
    }
    Ok(t)
}

/// What the decoded pixels are in Pillow's terms.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Gray8,
    Gray16,
    GrayAlpha,
    Rgb,
    Rgba,
    /// Premultiplied alpha (`RGBa`), unpremultiplied as Pillow unpacks it.
    RgbaAssociated,
    /// RGB plus an unspecified extra sample (`RGBX`).
    RgbX,
}

/// Pillow's `OPEN_INFO` key for the tags, restricted to what is decoded exactly here.
fn layout(t: &Tags) -> Result<Layout, String> {
    let describe = || {
        format!(
            "TIFF with photometric interpretation {}, {:?}-bit samples, extra samples {:?} and sample format {:?} is not supported",
            t.photometric, t.bits, t.extra, t.sample_format
        )
    };
    if matches!(t.compression, 6 | 7) {
        return Err("JPEG-compressed TIFF is not supported (its decoder is not libjpeg); convert the file to PNG".into());
    }
    if t.fill_order != 1 {
        return Err("TIFF with reversed bit order (FillOrder 2) is not supported".into());
    }
    if t.tiled && t.planar == 2 {
        return Err(
            "tiled TIFF with separate colour planes is not supported (convert the file to PNG)"
                .into(),
        );
    }
    // Pillow's normalisation of BitsPerSample and SampleFormat.
    let spp = t.spp.unwrap_or(1) as usize;
    let mut bits = t.bits.clone();
    if bits.is_empty() {
        bits.push(1);
    }
    let mut extra = t.extra.clone();
    let mut spp = spp;
    if t.planar == 2 && !extra.is_empty() && extra.iter().all(|&e| e == 0) {
        bits.truncate(bits.len().saturating_sub(extra.len()));
        spp = spp.saturating_sub(extra.len());
        extra.clear();
    }
    if spp < bits.len() {
        bits.truncate(spp);
    } else if spp > bits.len() && bits.len() == 1 {
        bits = vec![bits[0]; spp];
    }
    if bits.len() != spp {
        return Err(describe());
    }
    let sf = &t.sample_format;
    if !(sf.is_empty() || sf.iter().all(|&s| s == 1)) {
        return Err(describe());
    }
    let all = |b: u64| bits.iter().all(|&x| x == b);
    Ok(match (t.photometric, bits.len(), extra.as_slice()) {
        (1, 1, []) if all(8) => Layout::Gray8,
        (1, 1, []) if all(16) => Layout::Gray16,
        (0 | 1, 1, []) if all(1) => Layout::Gray8,
        (1, 2, [2]) if all(8) => Layout::GrayAlpha,
        (2, 3, []) if all(8) || all(16) => Layout::Rgb,
        (2, 4, [] | [2] | [999]) if all(8) => Layout::Rgba,
        (2, 4, [] | [2]) if all(16) => Layout::Rgba,
        (2, 4, [1]) if all(8) || all(16) => Layout::RgbaAssociated,
        (2, 4, [0]) if all(8) || all(16) => Layout::RgbX,
        _ => return Err(describe()),
    })
}

pub fn decode(data: &[u8]) -> Result<Image, String> {
    let tags = read_tags(data)?;
    let layout = layout(&tags)?;
    check_pixels(tags.width as usize, tags.height as usize)?;
    let mut dec = TiffDecoder::new(Cursor::new(data)).map_err(|e| e.to_string())?;
    let orientation = dec.orientation().map_err(|e| e.to_string())?;
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| e.to_string())?;
    // Pillow applies the Orientation tag when it loads a TIFF (`exif_transpose`).
    img.apply_orientation(orientation);
    let (width, height) = (img.width() as usize, img.height() as usize);
    let hi = |v: Vec<u16>| v.into_iter().map(|x| (x >> 8) as u8).collect::<Vec<u8>>();
    let drop_alpha = |v: Vec<u8>| v.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let raster = match (layout, img) {
        (Layout::Gray8, DynamicImage::ImageLuma8(b)) => Raster::L(b.into_raw()),
        (Layout::Gray16, DynamicImage::ImageLuma16(b)) => Raster::I16(b.into_raw()),
        (Layout::GrayAlpha, DynamicImage::ImageLumaA8(b)) => Raster::La(b.into_raw()),
        (Layout::Rgb, DynamicImage::ImageRgb8(b)) => Raster::Rgb(b.into_raw()),
        (Layout::Rgb, DynamicImage::ImageRgb16(b)) => Raster::Rgb(hi(b.into_raw())),
        (Layout::Rgba, DynamicImage::ImageRgba8(b)) => Raster::Rgba(b.into_raw()),
        (Layout::Rgba, DynamicImage::ImageRgba16(b)) => Raster::Rgba(hi(b.into_raw())),
        (Layout::RgbX, DynamicImage::ImageRgba8(b)) => Raster::Rgb(drop_alpha(b.into_raw())),
        (Layout::RgbX, DynamicImage::ImageRgba16(b)) => Raster::Rgb(drop_alpha(hi(b.into_raw()))),
        (Layout::RgbaAssociated, DynamicImage::ImageRgba8(b)) => {
            let mut v = b.into_raw();
            unpremultiply(&mut v);
            Raster::Rgba(v)
        }
        (Layout::RgbaAssociated, DynamicImage::ImageRgba16(b)) => {
            let mut v = hi(b.into_raw());
            unpremultiply(&mut v);
            Raster::Rgba(v)
        }
        (l, other) => {
            return Err(format!(
                "TIFF decoder returned {:?} for a {l:?} image; not supported",
                other.color()
            ));
        }
    };
    Ok(Image {
        width,
        height,
        raster,
    })
}
