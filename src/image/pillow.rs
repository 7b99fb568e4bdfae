//! Pillow's image modes and its `convert("RGB")` / `convert("L")` (`libImaging/Convert.c`).
//!
//! Format decoders produce a [`Raster`] in the mode Pillow would give the file; these
//! conversions then follow Pillow's exactly: alpha is dropped (not composited), 16-bit grey
//! (`I;16`) is clipped to 255, CMYK goes through `cmyk2rgb`, RGB -> L uses Pillow's fixed-point
//! ITU-R 601 weights.

/// Pixels in one of Pillow's modes, interleaved, `width * height * channels`.
#[derive(Debug, Clone, PartialEq)]
pub enum Raster {
    /// `L` (and `1`, whose samples are 0 or 255).
    L(Vec<u8>),
    /// `LA`.
    La(Vec<u8>),
    /// `RGB`.
    Rgb(Vec<u8>),
    /// `RGBA` (straight alpha; premultiplied input is unpremultiplied when unpacked).
    Rgba(Vec<u8>),
    /// `CMYK` as Pillow holds it (ink amounts, 255 = full ink).
    Cmyk(Vec<u8>),
    /// `I;16`: 16-bit grey.
    I16(Vec<u16>),
}

/// A decoded image in a Pillow mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub raster: Raster,
}

/// Pillow's `L24` luma: `(R*19595 + G*38470 + B*7471 + 0x8000) >> 16`.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `MULDIV255(a, b)`: `a * b / 255` rounded as Pillow does.
#[inline]
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// `cmyk2rgb`.
#[inline]
fn cmyk_to_rgb(p: &[u8]) -> [u8; 3] {
    let nk = 255 - p[3] as i32;
    let ch = |c: u8| (nk - muldiv255(c as i32, nk)).clamp(0, 255) as u8;
    [ch(p[0]), ch(p[1]), ch(p[2])]
}

impl Image {
    /// `convert("RGB")`: interleaved RGB.
    pub fn into_rgb(self) -> Vec<u8> {
        match self.raster {
            Raster::Rgb(d) => d,
            Raster::L(d) => d.into_iter().flat_map(|v| [v, v, v]).collect(),
            Raster::La(d) => d.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
            Raster::Rgba(d) => d.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            Raster::Cmyk(d) => d.chunks_exact(4).flat_map(cmyk_to_rgb).collect(),
            Raster::I16(d) => d.into_iter().flat_map(|v| [v.min(255) as u8; 3]).collect(),
        }
    }

    /// `convert("L")`: one byte per pixel.
    pub fn into_luma(self) -> Vec<u8> {
        match self.raster {
            Raster::L(d) => d,
            Raster::La(d) => d.chunks_exact(2).map(|p| p[0]).collect(),
            Raster::I16(d) => d.into_iter().map(|v| v.min(255) as u8).collect(),
            Raster::Rgb(d) => d.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect(),
            Raster::Rgba(d) => d.chunks_exact(4).map(|p| luma(p[0], p[1], p[2])).collect(),
            // CMYK has no direct converter: Pillow goes through its base mode, RGB.
            Raster::Cmyk(d) => d
                .chunks_exact(4)
                .map(|p| {
                    let [r, g, b] = cmyk_to_rgb(p);
                    luma(r, g, b)
                })
                .collect(),
        }
    }
}

/// `unpackRGBa` (and its 16-bit forms on the high bytes): premultiplied to straight alpha;
/// a fully transparent pixel becomes black.
pub fn unpremultiply(rgba: &mut [u8]) {
    for p in rgba.chunks_exact_mut(4) {
        let a = p[3] as i32;
        match a {
            0 => p[..3].fill(0),
            255 => {}
            _ => {
                for c in &mut p[..3] {
                    *c = (*c as i32 * 255 / a).min(255) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(raster: Raster) -> Image {
        Image {
            width: 1,
            height: 1,
            raster,
        }
    }

    #[test]
    fn conversions_follow_pillow() {
        // Values checked against Pillow 13: Image.new("CMYK", (1, 1), (10, 200, 30, 40)).convert("RGB").
        assert_eq!(
            img(Raster::Cmyk(vec![10, 200, 30, 40])).into_rgb(),
            [207, 46, 190]
        );
        assert_eq!(img(Raster::Cmyk(vec![10, 200, 30, 40])).into_luma(), [111]);
        assert_eq!(img(Raster::I16(vec![300])).into_rgb(), [255, 255, 255]);
        assert_eq!(img(Raster::Rgba(vec![10, 20, 30, 0])).into_luma(), [18]);
        let mut p = [100, 50, 0, 128, 9, 9, 9, 0];
        unpremultiply(&mut p);
        assert_eq!(p, [199, 99, 0, 128, 0, 0, 0, 0]);
    }
}
