//! What Pillow's `JpegImagePlugin._open` checks before libjpeg sees the file.
//!
//! Pillow parses the markers up to the first SOS in Python and refuses some files that libjpeg
//! alone would decode (12-bit or 2-component frames, short JFIF/Adobe segments, a truncated
//! Photoshop resource, a short ICC fragment). We refuse the same files, for the same reasons.

/// Width and height of the last frame header Pillow read (what its size limit is checked on).
pub type Size = (usize, usize);

struct Reader<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.d.get(self.p)?;
        self.p += 1;
        Some(b)
    }
    /// A segment body: `i16(read(2)) - 2` bytes (`_safe_read`: nothing for a length below 2).
    fn segment(&mut self) -> Result<&'a [u8], String> {
        let d = self.d;
        let n = d.get(self.p..self.p + 2).ok_or_else(truncated)?;
        let n = (((n[0] as usize) << 8) | n[1] as usize).saturating_sub(2);
        self.p += 2;
        let s = d.get(self.p..self.p + n).ok_or_else(truncated)?;
        self.p += n;
        Ok(s)
    }
}

fn truncated() -> String {
    "truncated JPEG header (a marker segment runs past the end of the file)".into()
}

fn be16(s: &[u8], at: usize) -> Option<usize> {
    s.get(at..at + 2)
        .map(|b| ((b[0] as usize) << 8) | b[1] as usize)
}

/// Pillow's header parse; the frame size of the last SOF on success.
pub fn check(data: &[u8]) -> Result<Size, String> {
    if !data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err("not a JPEG file (no FF D8 FF signature)".into());
    }
    let mut r = Reader { d: data, p: 3 };
    let mut size = None;
    let mut icc: Vec<&[u8]> = Vec::new();
    let mut first = Some(0xFFu8);
    let mut frames = 0;
    let no_scan = |size: Option<Size>, frames: usize| match size {
        None => "JPEG ends before its first scan (no frame header)".to_string(),
        Some((w, h)) => format!(
            "JPEG ends before its first scan ({frames} frame header(s), {w}x{h}; no image data)"
        ),
    };
    loop {
        let b = match first.take() {
            Some(b) => b,
            None => r.byte().ok_or_else(|| no_scan(size, frames))?,
        };
        if b != 0xFF {
            continue;
        }
        let m = r.byte().ok_or_else(|| no_scan(size, frames))?;
        match m {
            0xFF => first = Some(0xFF),
            0x00 => {}
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDE => {
                let s = r.segment()?;
                let (h, w) = (
                    be16(s, 1).ok_or("frame header too short")?,
                    be16(s, 3).ok_or("frame header too short")?,
                );
                if s[0] != 8 {
                    return Err(format!(
                        "{}-bit JPEG is not supported (Pillow reads only 8-bit JPEGs)",
                        s[0]
                    ));
                }
                let layers = *s.get(5).ok_or("frame header too short")?;
                if ![1, 3, 4].contains(&layers) {
                    return Err(format!("{layers}-component JPEG is not supported"));
                }
                if !icc.is_empty() {
                    icc.sort();
                    if icc[0].len() < 14 {
                        return Err("malformed ICC profile segment".into());
                    }
                    icc.clear();
                }
                size = Some((w, h));
                frames += 1;
            }
            0xDB => {
                let mut s = r.segment()?;
                while !s.is_empty() {
                    let len = if s[0] >> 4 == 0 { 65 } else { 129 };
                    if s.len() < len {
                        return Err("bad quantization table segment".into());
                    }
                    s = &s[len..];
                }
            }
            0xE0..=0xEF => {
                let s = r.segment()?;
                app(m, s, &mut icc)?;
            }
            0xC4 | 0xCC | 0xDA..=0xDD | 0xDF | 0xFE => {
                r.segment()?;
                if m == 0xDA {
                    return size.ok_or_else(|| "scan before the frame header".into());
                }
            }
            0xC8 | 0xD0..=0xD9 | 0xF0..=0xFD => {}
            _ => return Err(format!("invalid JPEG marker FF{m:02X} in the header")),
        }
    }
}

/// The APPn handlers' ways of failing.
fn app<'a>(m: u8, s: &'a [u8], icc: &mut Vec<&'a [u8]>) -> Result<(), String> {
    let short = || format!("malformed APP{} segment", m & 15);
    match m {
        0xE0 if s.starts_with(b"JFIF") => {
            be16(s, 5).ok_or_else(short)?;
        }
        0xEE if s.starts_with(b"Adobe") => {
            be16(s, 5).ok_or_else(short)?;
        }
        0xE2 if s.starts_with(b"ICC_PROFILE\0") => icc.push(s),
        0xED if s.starts_with(b"Photoshop 3.0\0") => {
            // Resource blocks: a missing name-length byte is an IndexError Pillow does not catch.
            let mut o = 14usize;
            while s.get(o..o + 4) == Some(b"8BIM") {
                o += 4;
                let Some(code) = be16(s, o) else { break };
                o += 2;
                let name_len = *s.get(o).ok_or_else(short)? as usize;
                o += 1 + name_len;
                o += o & 1;
                let Some(size) = s.get(o..o + 4) else { break };
                let size = u32::from_be_bytes(size.try_into().expect("4 bytes")) as usize;
                o += 4;
                let end = o.saturating_add(size);
                // ResolutionInfo is unpacked at once; a short one ends the parse (caught there).
                if code == 0x03ED && end.min(s.len()).saturating_sub(o) < 14 {
                    break;
                }
                o = end.saturating_add(end & 1);
            }
        }
        _ => {}
    }
    Ok(())
}
