//! PNG: Pillow's chunk rules (`PngImagePlugin`), then the `png` crate for the pixels.
//!
//! Pillow refuses PNGs the `png` crate would decode: a bad chunk id or CRC before the image
//! data, truncated or malformed ancillary chunks (gAMA, cHRM, pHYs, sRGB, tRNS, acTL, fcTL),
//! compressed text or ICC profiles that inflate past 1 MiB, APNG sequence errors, an unknown
//! filter or compression method. [`pillow_check`] walks the chunks as `_open` and `load_end` do
//! and refuses the same files. The decoded pixels are then mapped to Pillow's mode for the
//! header's bit depth and colour type (16-bit grey is `I;16` even when tRNS gave it alpha).

use std::io::{Cursor, Read};

use image::DynamicImage;
use image::codecs::png::PngDecoder;

use crate::image::pillow::{Image, Raster};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// `PngImagePlugin.MAX_TEXT_CHUNK` and `MAX_TEXT_MEMORY`.
const MAX_TEXT_CHUNK: usize = 1 << 20;
const MAX_TEXT_MEMORY: usize = 64 << 20;

pub fn is_png(data: &[u8]) -> bool {
    data.starts_with(SIGNATURE)
}

/// The header facts the pixel mapping needs.
pub struct Header {
    pub width: usize,
    pub height: usize,
    depth: u8,
    color_type: u8,
}

struct Walk {
    header: Option<Header>,
    seq: Option<u32>,
    frames: Option<u32>,
    /// An fcTL came before the image data (its IDAT is then a frame, not a default image).
    framed: bool,
    text: usize,
}

fn be32(s: &[u8], at: usize) -> Option<u32> {
    s.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// `_safe_zlib_decompress`: `Err` past 1 MiB; undecodable data is ignored (`zlib.error`).
fn inflate_limited(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut z = flate2::read::ZlibDecoder::new(s).take(MAX_TEXT_CHUNK as u64 + 1);
    if z.read_to_end(&mut out).is_err() {
        return Ok(Vec::new());
    }
    if out.len() > MAX_TEXT_CHUNK {
        return Err("a compressed PNG text or ICC chunk inflates past Pillow's 1 MiB limit".into());
    }
    Ok(out)
}

impl Walk {
    /// One chunk handler (`PngStream.chunk_*`). `Ok(true)`: image data starts here.
    fn chunk(&mut self, cid: &[u8], s: &[u8]) -> Result<bool, String> {
        let short = |what: &str| format!("truncated PNG {what} chunk");
        match cid {
            b"IHDR" => {
                if s.len() < 13 {
                    return Err(short("IHDR"));
                }
                if s[11] != 0 {
                    return Err("PNG with an unknown filter method".into());
                }
                self.header = Some(Header {
                    width: be32(s, 0).expect("13 bytes") as usize,
                    height: be32(s, 4).expect("13 bytes") as usize,
                    depth: s[8],
                    color_type: s[9],
                });
            }
            b"IDAT" | b"IEND" => return Ok(true),
            b"fdAT" => {
                if s.len() < 4 {
                    return Err(short("fdAT"));
                }
                let seq = be32(s, 0).expect("4 bytes");
                if self.seq.is_none() || seq.checked_sub(1) != self.seq {
                    return Err("APNG contains frame sequence errors".into());
                }
                self.seq = Some(seq);
                return Ok(true);
            }
            b"tRNS" => {
                let need = match self.header.as_ref().map(|h| (h.depth, h.color_type)) {
                    Some((_, 0)) => 2,
                    Some((8 | 16, 2)) => 6,
                    _ => 0,
                };
                if s.len() < need {
                    return Err(short("tRNS"));
                }
            }
            b"gAMA" if s.len() < 4 => return Err(short("gAMA")),
            b"cHRM" if s.len() < 32 => return Err(short("cHRM")),
            b"sRGB" if s.is_empty() => return Err(short("sRGB")),
            b"pHYs" if s.len() < 9 => return Err(short("pHYs")),
            b"iCCP" => {
                let i = s.iter().position(|&b| b == 0).map_or(0, |i| i + 1);
                match s.get(i) {
                    None => return Err("malformed PNG iCCP chunk".into()),
                    Some(0) => {
                        inflate_limited(&s[i + 1..])?;
                    }
                    Some(_) => {
                        return Err("PNG iCCP chunk with an unknown compression method".into());
                    }
                }
            }
            b"tEXt" => {
                let (k, v) = split0(s);
                if !k.is_empty() {
                    self.text_memory(v.len())?;
                }
            }
            b"zTXt" => {
                let (k, v) = split0(s);
                if v.first().is_some_and(|&m| m != 0) {
                    return Err("PNG zTXt chunk with an unknown compression method".into());
                }
                let text = inflate_limited(v.get(1..).unwrap_or(&[]))?;
                if !k.is_empty() {
                    self.text_memory(text.len())?;
                }
            }
            b"iTXt" => self.itxt(s)?,
            b"acTL" => {
                if s.len() < 8 {
                    return Err(short("acTL"));
                }
                let n = be32(s, 0).expect("8 bytes");
                self.frames = if self.frames.is_some() || n == 0 || n > 0x8000_0000 {
                    None
                } else {
                    Some(n)
                };
            }
            b"fcTL" => {
                if s.len() < 26 {
                    return Err(short("fcTL"));
                }
                self.sequence(be32(s, 0).expect("26 bytes"))?;
                let [w, h, x, y] = [4, 8, 12, 16].map(|o| be32(s, o).expect("26 bytes") as u64);
                self.framed = true;
                let hd = self.header.as_ref().ok_or("PNG fcTL chunk before IHDR")?;
                if x + w > hd.width as u64 || y + h > hd.height as u64 {
                    return Err("APNG contains invalid frames".into());
                }
            }
            _ => {}
        }
        Ok(false)
    }

    fn sequence(&mut self, seq: u32) -> Result<(), String> {
        let ok = match self.seq {
            None => seq == 0,
            Some(prev) => seq.checked_sub(1) == Some(prev),
        };
        if !ok {
            return Err("APNG contains frame sequence errors".into());
        }
        self.seq = Some(seq);
        Ok(())
    }

    fn text_memory(&mut self, n: usize) -> Result<(), String> {
        self.text += n;
        if self.text > MAX_TEXT_MEMORY {
            return Err("PNG text chunks exceed Pillow's 64 MiB limit".into());
        }
        Ok(())
    }

    /// `chunk_iTXt`: only a compressed value that inflates too far is an error.
    fn itxt(&mut self, s: &[u8]) -> Result<(), String> {
        let Some(i) = s.iter().position(|&b| b == 0) else {
            return Ok(());
        };
        let r = &s[i + 1..];
        if r.len() < 2 {
            return Ok(());
        }
        let (cf, cm, r) = (r[0], r[1], &r[2..]);
        let mut parts = r.splitn(3, |&b| b == 0);
        let (Some(lang), Some(tk), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
            return Ok(());
        };
        let v = match (cf, cm) {
            (0, _) => v.to_vec(),
            (_, 0) => inflate_limited(v)?,
            _ => return Ok(()),
        };
        let utf8 = |b: &[u8]| std::str::from_utf8(b).is_ok();
        if utf8(lang)
            && utf8(tk)
            && let Ok(text) = std::str::from_utf8(&v)
        {
            self.text_memory(text.chars().count())?;
        }
        Ok(())
    }
}

/// `k, v = s.split(b"\0", 1)`, or the whole chunk as the key.
fn split0(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == 0) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn is_cid(c: &[u8]) -> bool {
    c.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Walks the chunks as Pillow does: up to the image data with CRCs checked (`_open`), then
/// after it without (`load_end`). Returns the header.
pub fn pillow_check(data: &[u8]) -> Result<Header, String> {
    let mut w = Walk {
        header: None,
        seq: None,
        frames: None,
        framed: false,
        text: 0,
    };
    let mut p = SIGNATURE.len();
    loop {
        let hdr = data.get(p..p + 8).ok_or("truncated PNG: no image data")?;
        let (len, cid) = (be32(hdr, 0).expect("8 bytes") as usize, &hdr[4..8]);
        if !is_cid(cid) {
            return Err("broken PNG file (bad chunk id)".into());
        }
        // Pillow does not read image data while opening; the decoder judges its length.
        let body = if matches!(cid, b"IDAT" | b"fdAT") {
            &data[(p + 8).min(data.len())..(p + 8 + len).min(data.len())]
        } else {
            data.get(p + 8..p + 8 + len).ok_or("truncated PNG chunk")?
        };
        p += 12 + len;
        if w.chunk(cid, body)? {
            if cid == b"IEND" {
                return Err("PNG has no image data".into());
            }
            break;
        }
        let crc = be32(data, p - 4).ok_or("broken PNG file (incomplete checksum)")?;
        let mut h = flate2::Crc::new();
        h.update(cid);
        h.update(body);
        if h.sum() != crc {
            return Err("broken PNG file (bad chunk checksum)".into());
        }
    }
    let valid = w.header.as_ref().map(|h| (h.depth, h.color_type));
    if !matches!(
        valid.ok_or("PNG without a header (IHDR) chunk")?,
        (1 | 2 | 4 | 8 | 16, 0) | (8 | 16, 2) | (1 | 2 | 4 | 8, 3) | (8 | 16, 4) | (8 | 16, 6)
    ) {
        return Err("PNG with an invalid bit depth and colour type combination".into());
    }
    // After the first data chunk: chunk headers that cannot be read end the walk quietly;
    // handler errors, and a chunk running past the end of the file, do not.
    // `n_frames`, plus the default image when the IDAT is not a frame.
    let animated = w
        .frames
        .is_some_and(|n| n as u64 + u64::from(!w.framed) > 1);
    while let Some(hdr) = data.get(p..p + 8) {
        let (len, cid) = (be32(hdr, 0).expect("8 bytes") as usize, &hdr[4..8]);
        if !is_cid(cid) || cid == b"IEND" || (cid == b"fcTL" && animated) {
            break;
        }
        let body = data.get(p + 8..p + 8 + len).ok_or("truncated PNG chunk")?;
        if !matches!(cid, b"IDAT" | b"DDAT") {
            w.chunk(cid, body)?;
        }
        p += 12 + len;
    }
    Ok(w.header.expect("checked above"))
}

/// Decodes with the `png` crate and maps to Pillow's mode for the header.
pub fn decode(data: &[u8], header: &Header) -> Result<Image, String> {
    let dec = PngDecoder::new(Cursor::new(data)).map_err(|e| e.to_string())?;
    let img = DynamicImage::from_decoder(dec).map_err(|e| e.to_string())?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let hi = |v: Vec<u16>| v.into_iter().map(|x| (x >> 8) as u8).collect::<Vec<u8>>();
    let raster = match (header.color_type, img) {
        (_, DynamicImage::ImageLuma8(b)) => Raster::L(b.into_raw()),
        (_, DynamicImage::ImageLumaA8(b)) => Raster::La(b.into_raw()),
        (_, DynamicImage::ImageRgb8(b)) => Raster::Rgb(b.into_raw()),
        (_, DynamicImage::ImageRgba8(b)) => Raster::Rgba(b.into_raw()),
        (_, DynamicImage::ImageLuma16(b)) => Raster::I16(b.into_raw()),
        // 16-bit grey whose alpha came from tRNS: Pillow keeps it as `I;16`.
        (0, DynamicImage::ImageLumaA16(b)) => {
            Raster::I16(b.into_raw().chunks_exact(2).map(|p| p[0]).collect())
        }
        // `LA;16B`, `RGB;16B`, `RGBA;16B`: the high byte of each sample.
        (_, DynamicImage::ImageLumaA16(b)) => Raster::La(hi(b.into_raw())),
        (_, DynamicImage::ImageRgb16(b)) => Raster::Rgb(hi(b.into_raw())),
        (_, DynamicImage::ImageRgba16(b)) => Raster::Rgba(hi(b.into_raw())),
        (_, other) => return Err(format!("unexpected PNG pixel format {:?}", other.color())),
    };
    Ok(Image {
        width,
        height,
        raster,
    })
}
