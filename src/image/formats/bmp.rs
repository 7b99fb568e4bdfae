//! BMP exactly as Pillow's `BmpImagePlugin` reads it, with our own reader: its header rules
//! (where the pixels start, which bitfield layouts it accepts, no check of the plane count),
//! its palette handling (all-grey palettes become `L`/`1`, entries past the palette are black),
//! its raw unpackers (5- and 6-bit channels scaled by `* 255 / 31`) and its Python RLE decoder.
//! The `image` crate differs on several of these, so it is not used for BMP.
//!
//! Refused with a reason: layouts Pillow refuses, a palette cut short by the end of the file,
//! and all-grey palettes on 4-bit data (Pillow then reads the 4-bit pixels as bytes).

use super::check_pixels;
use crate::image::pillow::{Image, Raster};

pub fn is_bmp(data: &[u8]) -> bool {
    data.starts_with(b"BM")
}

fn u16le(s: &[u8], at: usize) -> Result<u32, String> {
    s.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)
        .ok_or_else(|| "truncated BMP header".into())
}

fn u32le(s: &[u8], at: usize) -> Result<u32, String> {
    s.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| "truncated BMP header".into())
}

/// Pillow's rawmodes for BMP pixel data.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Raw {
    /// Palette indices of 1, 4 or 8 bits.
    P(u32),
    /// `1`: bits as 0 / 255.
    Bit,
    /// `L`: bytes as grey.
    L,
    Bgr15,
    Bgr16,
    Bgr,
    /// 32-bit layouts: byte index of R, G, B and of alpha (`None`: RGB image).
    Rgb32([usize; 3], Option<usize>),
}

impl Raw {
    fn bits(self) -> u32 {
        match self {
            Raw::P(b) => b,
            Raw::Bit => 1,
            Raw::L => 8,
            Raw::Bgr15 | Raw::Bgr16 => 16,
            Raw::Bgr => 24,
            Raw::Rgb32(..) => 32,
        }
    }
}

/// The `SUPPORTED` / `MASK_MODES` tables: bitfield masks to a rawmode.
fn bitfields(bits: u32, m: [u32; 4]) -> Option<Raw> {
    Some(match (bits, m) {
        (32, [0xFF0000, 0xFF00, 0xFF, 0]) => Raw::Rgb32([2, 1, 0], None),
        (32, [0xFF000000, 0xFF0000, 0xFF00, 0]) => Raw::Rgb32([3, 2, 1], None),
        (32, [0xFF000000, 0xFF00, 0xFF, 0]) => Raw::Rgb32([3, 1, 0], None),
        (32, [0xFF000000, 0xFF0000, 0xFF00, 0xFF]) => Raw::Rgb32([3, 2, 1], Some(0)),
        (32, [0xFF, 0xFF00, 0xFF0000, 0xFF000000]) => Raw::Rgb32([0, 1, 2], Some(3)),
        (32, [0xFF0000, 0xFF00, 0xFF, 0xFF000000]) => Raw::Rgb32([2, 1, 0], Some(3)),
        (32, [0xFF000000, 0xFF00, 0xFF, 0xFF0000]) => Raw::Rgb32([3, 1, 0], Some(2)),
        (32, [0, 0, 0, 0]) => Raw::Rgb32([2, 1, 0], Some(3)),
        (24, [0xFF0000, 0xFF00, 0xFF, _]) => Raw::Bgr,
        (16, [0xF800, 0x7E0, 0x1F, _]) => Raw::Bgr16,
        (16, [0x7C00, 0x3E0, 0x1F, _]) => Raw::Bgr15,
        _ => return None,
    })
}

pub fn decode(data: &[u8]) -> Result<Image, String> {
    let offset = u32le(data, 10)? as usize;
    let header_size = u32le(data, 14)? as usize;
    let body = header_size.saturating_sub(4);
    let hd = data.get(18..18 + body).ok_or("truncated BMP header")?;
    let mut pos = 18 + body;
    let (width, height, bits, compression, mut colors, padding, bottom_up);
    let mut masks = [0u32; 4];
    match header_size {
        12 => {
            (width, height, bits) = (u16le(hd, 0)?, u16le(hd, 2)?, u16le(hd, 6)?);
            (compression, colors, padding, bottom_up) = (0, 0, 3, true);
        }
        40 | 52 | 56 | 64 | 108 | 124 => {
            let y_flip = hd[7] == 0xFF;
            width = u32le(hd, 0)?;
            height = if y_flip {
                u32le(hd, 4)?.wrapping_neg()
            } else {
                u32le(hd, 4)?
            };
            (bits, compression, colors) = (u16le(hd, 10)?, u32le(hd, 12)?, u32le(hd, 28)?);
            (padding, bottom_up) = (4, !y_flip);
            if compression == 3 {
                if hd.len() >= 48 {
                    for (i, m) in
                        masks
                            .iter_mut()
                            .enumerate()
                            .take(if hd.len() >= 52 { 4 } else { 3 })
                    {
                        *m = u32le(hd, 36 + 4 * i)?;
                    }
                } else {
                    for m in masks.iter_mut().take(3) {
                        *m = u32le(data, pos)?;
                        pos += 4;
                    }
                }
            }
        }
        n => return Err(format!("unsupported BMP header type (size {n})")),
    }
    let (width, height) = (width as usize, height as usize);
    check_pixels(width, height)?;
    if colors == 0 && bits <= 32 {
        colors = 1u32.checked_shl(bits).unwrap_or(0);
    }
    let mut offset = offset;
    if offset == 14 + header_size && bits <= 8 {
        offset += padding * colors as usize;
    }
    let mut raw = match bits {
        1 | 4 | 8 => Raw::P(bits),
        16 => Raw::Bgr15,
        24 => Raw::Bgr,
        32 => Raw::Rgb32([2, 1, 0], None),
        _ => return Err(format!("unsupported BMP pixel depth ({bits})")),
    };
    let rle = match compression {
        0 => false,
        1 | 2 => true,
        3 => {
            raw = bitfields(bits, masks).ok_or("unsupported BMP bitfields layout")?;
            false
        }
        c => return Err(format!("unsupported BMP compression ({c})")),
    };
    let mut palette: Option<Vec<[u8; 3]>> = None;
    if let Raw::P(_) = raw {
        if !(1..=65536).contains(&colors) {
            return Err(format!("unsupported BMP palette size ({colors})"));
        }
        let want = padding * colors as usize;
        let bytes = &data[pos.min(data.len())..(pos + want).min(data.len())];
        pos += bytes.len();
        let grey = if colors == 2 {
            vec![0u8, 255]
        } else {
            (0..colors).map(|i| i as u8).collect()
        };
        let grayscale = (0..colors as usize)
            .all(|i| bytes.get(i * padding..i * padding + 3) == Some(&[grey[i]; 3][..]));
        if grayscale {
            raw = if colors <= 2 { Raw::Bit } else { Raw::L };
            if raw.bits() != bits && !rle {
                return Err("BMP with an all-grey palette on packed pixels is not supported (Pillow reads them as bytes)".into());
            }
        } else {
            if bytes.len() < want {
                return Err("truncated BMP palette".into());
            }
            if colors > 256 {
                return Err(format!(
                    "BMP palette of {colors} colours (Pillow allows 256)"
                ));
            }
            palette = Some(
                bytes
                    .chunks_exact(padding)
                    .map(|e| [e[2], e[1], e[0]])
                    .collect(),
            );
        }
    }
    let start = if offset == 0 { pos } else { offset };
    let expanded;
    let rows = if rle {
        expanded = rle_expand(data, start, width, height, compression == 2, raw)?;
        // One index (or grey value) per byte now, whatever the file's bit depth.
        if let Raw::P(_) = raw {
            raw = Raw::P(8);
        }
        expanded.chunks(width.max(1)).take(height).collect()
    } else {
        raw_rows(data, start, width, height, bits, raw)?
    };
    // Rows in file order; BMPs are stored bottom-up unless the height is negative.
    let order = |i: usize| if bottom_up { height - 1 - i } else { i };
    let raster = unpack(&rows, width, height, raw, palette.as_deref(), order);
    Ok(Image {
        width,
        height,
        raster,
    })
}

/// The raw decoder: `height` rows of `stride` bytes from `start`; the last row needs only its
/// pixel bytes. `Err` when the file is shorter (Pillow: "image file is truncated").
fn raw_rows(
    data: &[u8],
    start: usize,
    width: usize,
    height: usize,
    bits: u32,
    raw: Raw,
) -> Result<Vec<&[u8]>, String> {
    let stride = ((width * bits as usize + 31) >> 3) & !3;
    let row_bytes = (raw.bits() as usize * width).div_ceil(8);
    if stride < row_bytes {
        return Err("BMP rows are shorter than their pixels".into());
    }
    (0..height)
        .map(|i| {
            let at = start + i * stride;
            data.get(at..at + row_bytes)
                .ok_or_else(|| "truncated BMP: the file ends inside the pixel data".into())
        })
        .collect()
}

/// `BmpRleDecoder`: RLE8/RLE4 into `width * height` indices (then Pillow's raw decoder).
fn rle_expand(
    data: &[u8],
    start: usize,
    width: usize,
    height: usize,
    rle4: bool,
    raw: Raw,
) -> Result<Vec<u8>, String> {
    if !matches!(raw, Raw::P(_) | Raw::L) {
        return Err("RLE-compressed BMP in a mode Pillow cannot unpack".into());
    }
    let dest = width * height;
    let mut out: Vec<u8> = Vec::with_capacity(dest);
    let mut p = start;
    let mut x = 0usize;
    let next = |p: &mut usize| -> Option<u8> {
        let b = *data.get(*p)?;
        *p += 1;
        Some(b)
    };
    while out.len() < dest {
        let (Some(n), Some(byte)) = (next(&mut p), next(&mut p)) else {
            break;
        };
        if n != 0 {
            let n = if x + n as usize > width {
                width.saturating_sub(x)
            } else {
                n as usize
            };
            if rle4 {
                out.extend((0..n).map(|i| if i % 2 == 0 { byte >> 4 } else { byte & 15 }));
            } else {
                out.extend(std::iter::repeat_n(byte, n));
            }
            x += n;
        } else if byte == 0 {
            while !out.len().is_multiple_of(width.max(1)) {
                out.push(0);
            }
            x = 0;
        } else if byte == 1 {
            break;
        } else if byte == 2 {
            let (Some(right), Some(up)) = (next(&mut p), next(&mut p)) else {
                break;
            };
            let skip = (right as usize + up as usize * width).min(dest - out.len());
            out.extend(std::iter::repeat_n(0, skip));
            x = out.len() % width.max(1);
        } else {
            let count = (dest - out.len()).min(byte as usize);
            let byte_count = if rle4 { count.div_ceil(2) } else { count };
            let got = &data[p.min(data.len())..(p + byte_count).min(data.len())];
            p += got.len();
            if rle4 {
                for (i, &b) in got.iter().enumerate() {
                    out.push(b >> 4);
                    if i * 2 + 1 < count {
                        out.push(b & 15);
                    }
                }
            } else {
                out.extend_from_slice(got);
            }
            if got.len() < byte_count || out.len() == dest {
                break;
            }
            x += byte as usize;
            if !p.is_multiple_of(2) {
                p += 1;
            }
        }
    }
    if out.len() < dest {
        return Err("not enough image data in the RLE-compressed BMP".into());
    }
    out.truncate(dest);
    Ok(out)
}

/// Unpacks file rows into a raster (`order`: file row -> image row).
fn unpack(
    rows: &[&[u8]],
    width: usize,
    height: usize,
    raw: Raw,
    palette: Option<&[[u8; 3]]>,
    order: impl Fn(usize) -> usize,
) -> Raster {
    let scale5 = |v: u32| ((v & 31) * 255 / 31) as u8;
    let (channels, alpha) = match raw {
        Raw::Bit | Raw::L => (1, false),
        Raw::P(_) | Raw::Bgr15 | Raw::Bgr16 | Raw::Bgr | Raw::Rgb32(_, None) => (3, false),
        Raw::Rgb32(_, Some(_)) => (4, true),
    };
    let mut out = vec![0u8; width * height * channels];
    for (i, row) in rows.iter().enumerate() {
        let o = &mut out[order(i) * width * channels..(order(i) + 1) * width * channels];
        for x in 0..width {
            let px = &mut o[x * channels..(x + 1) * channels];
            match raw {
                Raw::P(b) => {
                    let index = match b {
                        1 => (row[x / 8] >> (7 - x % 8)) & 1,
                        4 => (row[x / 2] >> (4 * (1 - x % 2))) & 15,
                        _ => row[x],
                    };
                    let pal = palette.expect("palette for P");
                    px.copy_from_slice(pal.get(index as usize).unwrap_or(&[0, 0, 0]));
                }
                Raw::Bit => {
                    px[0] = if (row[x / 8] >> (7 - x % 8)) & 1 == 1 {
                        255
                    } else {
                        0
                    }
                }
                Raw::L => px[0] = row[x],
                Raw::Bgr15 | Raw::Bgr16 => {
                    let v = row[2 * x] as u32 | (row[2 * x + 1] as u32) << 8;
                    let (g, r) = if raw == Raw::Bgr16 {
                        ((((v >> 5) & 63) * 255 / 63) as u8, scale5(v >> 11))
                    } else {
                        (scale5(v >> 5), scale5(v >> 10))
                    };
                    px.copy_from_slice(&[r, g, scale5(v)]);
                }
                Raw::Bgr => px.copy_from_slice(&[row[3 * x + 2], row[3 * x + 1], row[3 * x]]),
                Raw::Rgb32(rgb, a) => {
                    let s = &row[4 * x..4 * x + 4];
                    px[..3].copy_from_slice(&[s[rgb[0]], s[rgb[1]], s[rgb[2]]]);
                    if let Some(a) = a {
                        px[3] = s[a];
                    }
                }
            }
        }
    }
    match (channels, alpha) {
        (1, _) => Raster::L(out),
        (_, true) => Raster::Rgba(out),
        _ => Raster::Rgb(out),
    }
}
