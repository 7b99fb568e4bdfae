//! JPEG decoding bit-identical to libjpeg-turbo as Pillow drives it, or a refusal that says why.
//!
//! The reference opens images with Pillow, which parses the header in Python
//! (`JpegImagePlugin`, reproduced in [`header`]) and decodes with libjpeg-turbo: ISLOW integer
//! IDCT, "fancy" chroma upsampling, fixed-point YCbCr -> RGB. The `image` crate's decoder lands
//! 1-3 units away, so this module reproduces libjpeg instead, including its handling of damaged
//! data (zero-filled segments, restart resynchronisation, padded run lengths, 16-bit
//! coefficients) and its errors, and Pillow's verdict on truncated files.
//!
//! Decoded: 8-bit baseline, extended and progressive Huffman JPEGs with 1 (grey), 3 (YCbCr or
//! RGB) or 4 (CMYK or YCCK) components, any integral sampling factors, restart markers,
//! interleaved and non-interleaved scans; the IDCT follows libjpeg-turbo's x86 SIMD arithmetic,
//! so damaged blocks decode as Pillow decodes them here. Refused with a reason: arithmetic
//! coding, lossless and hierarchical processes (which Pillow would decode), progressive files
//! whose scans leave low-frequency coefficients unfinished (libjpeg smooths those blocks),
//! images over the memory limit, and everything libjpeg or Pillow refuse.

mod bits;
mod header;
mod idct;
mod output;
mod scan;
mod tables;

use bits::{BitReader, HuffSpec, Huffman};
use output::Source;

/// What libjpeg hands Pillow: grey, RGB, or CMYK (Pillow reads CMYK as inverted, "CMYK;I").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorSpace {
    Gray,
    Rgb,
    Cmyk,
}

impl ColorSpace {
    pub fn channels(self) -> usize {
        match self {
            ColorSpace::Gray => 1,
            ColorSpace::Rgb => 3,
            ColorSpace::Cmyk => 4,
        }
    }
}

/// A decoded image: interleaved samples, `width * height * space.channels()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub space: ColorSpace,
    pub data: Vec<u8>,
}

/// Why decoding stopped: the file ended where libjpeg needed more (Pillow: "image file is
/// truncated"), or an error.
#[derive(Debug)]
pub enum Stop {
    Truncated,
    Corrupt(String),
}

impl Stop {
    fn corrupt(msg: impl Into<String>) -> Self {
        Stop::Corrupt(msg.into())
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Truncated => write!(f, "truncated JPEG: the file ends inside the image data"),
            Stop::Corrupt(m) => f.write_str(m),
        }
    }
}

/// Largest image side libjpeg accepts (`JPEG_MAX_DIMENSION`).
const MAX_DIMENSION: usize = 65500;
/// Scans a component may take part in before the file is refused (a legitimate progressive
/// JPEG uses ~10; each scan costs a pass over the component, so this bounds the work).
const MAX_SCANS_PER_COMPONENT: usize = 100;

/// One frame component (`jpeg_component_info`).
pub(crate) struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: u8,
    /// Blocks covering the component (`width_in_blocks`, `height_in_blocks`).
    bw: usize,
    bh: usize,
    /// Component size in samples (`downsampled_width`, `downsampled_height`).
    dw: usize,
    dh: usize,
    /// Quantization table latched at the component's first scan.
    qt: Option<[u16; 64]>,
    /// Progressive: precision reached per coefficient (-1: not yet coded).
    coef_bits: [i32; 64],
    scans: usize,
}

/// The frame header plus what libjpeg derives from it at the first scan.
pub(crate) struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    comps: Vec<Component>,
    hmax: usize,
    vmax: usize,
    /// MCUs per row and MCU rows of an interleaved scan.
    mcux: usize,
    mcuy: usize,
}

impl Frame {
    /// Blocks per row of component `ci`'s storage (whole MCUs).
    fn blocks_per_row(&self, ci: usize) -> usize {
        self.mcux * self.comps[ci].h
    }
    fn block_rows(&self, ci: usize) -> usize {
        self.mcuy * self.comps[ci].v
    }
}

/// Where decoded blocks go: straight through the IDCT into sample planes (single-scan images,
/// as libjpeg's one-pass mode), or into coefficient arrays transformed after the last scan.
pub(crate) enum Store {
    Direct {
        planes: Vec<Vec<u8>>,
    },
    Buffered {
        coefs: Vec<Vec<[i16; 64]>>,
        planes: Vec<Vec<u8>>,
    },
}

/// `next_marker`: skips to the next marker (garbage, `FF` fill and `FF 00` are skipped) and
/// returns its code, leaving `pos` after it.
fn next_marker(data: &[u8], pos: &mut usize) -> Result<u8, Stop> {
    loop {
        let mut c = *data.get(*pos).ok_or(Stop::Truncated)?;
        *pos += 1;
        while c != 0xFF {
            c = *data.get(*pos).ok_or(Stop::Truncated)?;
            *pos += 1;
        }
        while c == 0xFF {
            c = *data.get(*pos).ok_or(Stop::Truncated)?;
            *pos += 1;
        }
        if c != 0 {
            return Ok(c);
        }
    }
}

/// Decodes a JPEG file as Pillow (`Image.open(p)` + load) does; refuses above `max_bytes` of
/// working memory (planes, coefficients and output), checked before allocating.
pub fn decode(data: &[u8], max_bytes: usize) -> Result<Decoded, String> {
    header::check(data)?;
    Decoder::new(data).run(max_bytes).map_err(|e| e.to_string())
}

/// The frame size Pillow reads from the header (for its pixel limit), or why it refuses.
pub fn pillow_size(data: &[u8]) -> Result<(usize, usize), String> {
    header::check(data)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    qt: [Option<[u16; 64]>; 4],
    dc: [Option<HuffSpec>; 4],
    ac: [Option<HuffSpec>; 4],
    restart_interval: usize,
    saw_jfif: bool,
    adobe: Option<u8>,
    frame: Option<Frame>,
    store: Option<Store>,
    source: Option<Source>,
    /// Set once the only scan of a single-scan image is decoded: what follows can only fail.
    single_done: bool,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Self {
        Decoder {
            data,
            pos: 2,
            qt: [None; 4],
            dc: Default::default(),
            ac: Default::default(),
            restart_interval: 0,
            saw_jfif: false,
            adobe: None,
            frame: None,
            store: None,
            source: None,
            single_done: false,
        }
    }

    fn run(mut self, max_bytes: usize) -> Result<Decoded, Stop> {
        if !self.data.starts_with(&[0xFF, 0xD8]) {
            return Err(Stop::corrupt("not a JPEG file (no SOI marker)"));
        }
        let mut pending: Option<u8> = None;
        loop {
            let step = match pending.take() {
                Some(m) => self.marker(m, max_bytes),
                None => {
                    next_marker(self.data, &mut self.pos).and_then(|m| self.marker(m, max_bytes))
                }
            };
            match step {
                Ok(Some(Next::Eoi)) => break,
                Ok(Some(Next::Marker(m))) => pending = Some(m),
                Ok(None | Some(Next::Continue)) => {}
                // After its only scan, Pillow has every row; running out of file while libjpeg
                // looks for EOI does not matter then (`jpeg_finish_decompress` suspending).
                Err(Stop::Truncated) if self.single_done => break,
                Err(e) => return Err(e),
            }
        }
        self.finish()
    }

    fn segment(&mut self) -> Result<&'a [u8], Stop> {
        let d = self.data;
        let len = d.get(self.pos..self.pos + 2).ok_or(Stop::Truncated)?;
        let len = ((len[0] as usize) << 8) | len[1] as usize;
        if len < 2 {
            return Err(Stop::corrupt("bad JPEG marker segment length"));
        }
        let s = d.get(self.pos + 2..self.pos + len).ok_or(Stop::Truncated)?;
        self.pos += len;
        Ok(s)
    }

    /// `skip_variable`: a length below 2 skips nothing but the length itself.
    fn skip(&mut self) -> Result<(), Stop> {
        let d = self.data;
        let len = d.get(self.pos..self.pos + 2).ok_or(Stop::Truncated)?;
        let len = ((len[0] as usize) << 8) | len[1] as usize;
        if len > 2 && self.pos + len > d.len() {
            return Err(Stop::Truncated);
        }
        self.pos += len.max(2);
        Ok(())
    }

    /// Processes one marker (`read_markers`); a scan returns the marker that ended its data.
    fn marker(&mut self, m: u8, max_bytes: usize) -> Result<Option<Next>, Stop> {
        match m {
            0xD8 => return Err(Stop::corrupt("corrupt JPEG: a second SOI marker")),
            0xC0..=0xC2 => self.sof(m == 0xC2)?,
            0xC3 | 0xC9..=0xCB => {
                return Err(Stop::corrupt(
                    "arithmetic-coded or lossless JPEG is not supported (re-save it as a baseline JPEG or PNG)",
                ));
            }
            0xC5..=0xC8 | 0xCD..=0xCF => {
                return Err(Stop::corrupt(format!(
                    "JPEG process SOF{} is not supported",
                    m - 0xC0
                )));
            }
            0xDA => return self.sos(max_bytes).map(Some),
            0xD9 => {
                if self.store.is_none() {
                    return Err(Stop::corrupt(
                        "JPEG has no image data (no scan before the end marker)",
                    ));
                }
                return Ok(Some(Next::Eoi));
            }
            0xC4 => tables::dht(self.segment()?, &mut self.dc, &mut self.ac)?,
            0xDB => tables::dqt(self.segment()?, &mut self.qt)?,
            0xDD => {
                let s = self.segment()?;
                if s.len() != 2 {
                    return Err(Stop::corrupt("bad DRI marker length"));
                }
                self.restart_interval = ((s[0] as usize) << 8) | s[1] as usize;
            }
            0xCC => tables::dac(self.segment()?)?,
            0xE0 | 0xEE => {
                // `get_interesting_appn`: the first bytes are examined, the rest skipped.
                let start = self.pos + 2;
                self.skip()?;
                let s = &self.data[start.min(self.pos)..self.pos];
                if m == 0xE0 && s.len() >= 14 && s.starts_with(b"JFIF\0") {
                    self.saw_jfif = true;
                }
                if m == 0xEE && s.len() >= 12 && s.starts_with(b"Adobe") {
                    self.adobe = Some(s[11]);
                }
            }
            0xE1..=0xEF | 0xFE | 0xDC => self.skip()?,
            0xD0..=0xD7 | 0x01 => {}
            _ => {
                return Err(Stop::corrupt(format!(
                    "corrupt JPEG: unknown marker FF{m:02X}"
                )));
            }
        }
        Ok(None)
    }

    fn sof(&mut self, progressive: bool) -> Result<(), Stop> {
        if self.frame.is_some() {
            return Err(Stop::corrupt("corrupt JPEG: a second frame header (SOF)"));
        }
        let s = self.segment()?;
        if s.len() < 6 {
            return Err(Stop::corrupt("bad SOF marker length"));
        }
        let (height, width, n) = (
            ((s[1] as usize) << 8) | s[2] as usize,
            ((s[3] as usize) << 8) | s[4] as usize,
            s[5] as usize,
        );
        if height == 0 || width == 0 || n == 0 {
            return Err(Stop::corrupt("JPEG frame declares an empty image"));
        }
        if s.len() != 6 + 3 * n {
            return Err(Stop::corrupt("bad SOF marker length"));
        }
        if s[0] != 8 {
            return Err(Stop::corrupt(format!("{}-bit JPEG is not supported", s[0])));
        }
        let comps = s[6..]
            .chunks_exact(3)
            .map(|b| Component {
                id: b[0],
                h: (b[1] >> 4) as usize,
                v: (b[1] & 15) as usize,
                tq: b[2],
                bw: 0,
                bh: 0,
                dw: 0,
                dh: 0,
                qt: None,
                coef_bits: [-1; 64],
                scans: 0,
            })
            .collect();
        self.frame = Some(Frame {
            progressive,
            width,
            height,
            comps,
            hmax: 1,
            vmax: 1,
            mcux: 0,
            mcuy: 0,
        });
        Ok(())
    }

    /// A SOS header and its scan: setup on the first one, then the entropy-coded data.
    fn sos(&mut self, max_bytes: usize) -> Result<Next, Stop> {
        if self.frame.is_none() {
            return Err(Stop::corrupt("corrupt JPEG: scan before the frame header"));
        }
        if self.single_done {
            return Err(Stop::corrupt(
                "corrupt JPEG: a second scan in a single-scan image",
            ));
        }
        let s = self.segment()?;
        let n = *s
            .first()
            .ok_or_else(|| Stop::corrupt("bad SOS marker length"))? as usize;
        if s.len() != 2 * n + 4 || !(1..=4).contains(&n) {
            return Err(Stop::corrupt("bad SOS marker length"));
        }
        let frame = self.frame.as_mut().expect("checked");
        // libjpeg's lookup: the first frame component (of the first four) with this id whose
        // scan slot of the same index is still free.
        let mut slots: [Option<usize>; 4] = [None; 4];
        let mut tables = Vec::with_capacity(n);
        for i in 0..n {
            let (cc, t) = (s[1 + 2 * i], s[2 + 2 * i]);
            let ci = (0..frame.comps.len().min(4))
                .find(|&ci| frame.comps[ci].id == cc && slots[ci].is_none())
                .ok_or_else(|| Stop::corrupt("corrupt JPEG: scan names an unknown component"))?;
            if slots[..i].contains(&Some(ci)) {
                return Err(Stop::corrupt("corrupt JPEG: scan names a component twice"));
            }
            slots[i] = Some(ci);
            tables.push(((t >> 4) as usize, (t & 15) as usize));
        }
        let comps: Vec<usize> = slots[..n].iter().map(|s| s.expect("filled")).collect();
        let (ss, se, ah, al) = (
            s[1 + 2 * n] as usize,
            s[2 + 2 * n] as usize,
            (s[3 + 2 * n] >> 4) as u32,
            (s[3 + 2 * n] & 15) as u32,
        );
        if self.store.is_none() {
            self.setup(comps.len(), max_bytes)?;
        }
        let frame = self.frame.as_mut().expect("checked");
        // `per_scan_setup`: an interleaved MCU holds at most 10 blocks.
        if comps.len() > 1
            && comps
                .iter()
                .map(|&ci| frame.comps[ci].h * frame.comps[ci].v)
                .sum::<usize>()
                > 10
        {
            return Err(Stop::corrupt(
                "corrupt JPEG: MCU too large (sampling factors)",
            ));
        }
        // `latch_quant_tables`.
        for &ci in &comps {
            let c = &mut frame.comps[ci];
            if c.qt.is_none() {
                let q = self
                    .qt
                    .get(c.tq as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(|| {
                        Stop::corrupt(format!(
                            "corrupt JPEG: quantization table {} is missing",
                            c.tq
                        ))
                    })?;
                c.qt = Some(q);
            }
            c.scans += 1;
            if c.scans > MAX_SCANS_PER_COMPONENT {
                return Err(Stop::corrupt(format!(
                    "JPEG with more than {MAX_SCANS_PER_COMPONENT} scans per component is not supported"
                )));
            }
        }
        let (dc_needed, ac_needed) = if frame.progressive {
            scan::progression(frame, &comps, ss, se, ah, al)?
        } else {
            (true, true)
        };
        let derive =
            |specs: &[Option<HuffSpec>; 4], t: usize, is_dc: bool| -> Result<Huffman, Stop> {
                let spec = specs.get(t).and_then(|s| s.as_ref()).ok_or_else(|| {
                    Stop::corrupt(format!("corrupt JPEG: Huffman table {t} is missing"))
                })?;
                Huffman::derive(spec, is_dc)
            };
        let mut dc = Vec::with_capacity(n);
        let mut ac = Vec::with_capacity(n);
        for &(td, ta) in &tables {
            dc.push(if dc_needed {
                Some(derive(&self.dc, td, true)?)
            } else {
                None
            });
            ac.push(if ac_needed {
                Some(derive(&self.ac, ta, false)?)
            } else {
                None
            });
        }
        let scan = scan::Scan {
            comps,
            dc,
            ac,
            ss,
            se,
            ah,
            al,
        };
        let mut reader = BitReader::new(self.data, self.pos);
        let frame = self.frame.as_ref().expect("checked");
        let store = self.store.as_mut().expect("set up");
        scan::decode(&mut reader, frame, store, &scan, self.restart_interval)?;
        self.pos = reader.pos;
        if matches!(store, Store::Direct { .. }) {
            self.single_done = true;
        }
        Ok(match reader.unread_marker {
            Some(m) => Next::Marker(m),
            None => Next::Continue,
        })
    }

    /// `initial_setup` and `jinit_*` at the first scan: checks, geometry, colour space, memory.
    fn setup(&mut self, comps_in_scan: usize, max_bytes: usize) -> Result<(), Stop> {
        let frame = self.frame.as_mut().expect("checked");
        if frame.width > MAX_DIMENSION || frame.height > MAX_DIMENSION {
            return Err(Stop::corrupt(format!(
                "JPEG is {}x{}, larger than libjpeg's {MAX_DIMENSION}-pixel limit per side",
                frame.width, frame.height
            )));
        }
        for c in &frame.comps {
            if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) {
                return Err(Stop::corrupt("corrupt JPEG: bad sampling factors"));
            }
        }
        frame.hmax = frame.comps.iter().map(|c| c.h).max().expect("components");
        frame.vmax = frame.comps.iter().map(|c| c.v).max().expect("components");
        let (hmax, vmax) = (frame.hmax, frame.vmax);
        if frame
            .comps
            .iter()
            .any(|c| hmax % c.h != 0 || vmax % c.v != 0)
        {
            return Err(Stop::corrupt(
                "JPEG with fractional chroma sampling is not supported (libjpeg refuses it too)",
            ));
        }
        frame.mcux = frame.width.div_ceil(8 * hmax);
        frame.mcuy = frame.height.div_ceil(8 * vmax);
        let (w, h) = (frame.width, frame.height);
        for c in frame.comps.iter_mut() {
            c.dw = (w * c.h).div_ceil(hmax);
            c.dh = (h * c.v).div_ceil(vmax);
            c.bw = c.dw.div_ceil(8);
            c.bh = c.dh.div_ceil(8);
        }
        self.source = Some(match frame.comps.len() {
            1 => Source::Gray,
            3 if self.saw_jfif => Source::YCbCr,
            3 => match self.adobe {
                Some(0) => Source::Rgb,
                Some(_) => Source::YCbCr,
                None => {
                    let ids: Vec<u8> = frame.comps.iter().map(|c| c.id).collect();
                    if ids == [82, 71, 66] {
                        Source::Rgb
                    } else {
                        Source::YCbCr
                    }
                }
            },
            4 => match self.adobe {
                Some(0) | None => Source::Cmyk,
                Some(_) => Source::Ycck,
            },
            n => {
                return Err(Stop::corrupt(format!(
                    "{n}-component JPEG is not supported"
                )));
            }
        });
        let buffered = frame.progressive || comps_in_scan < frame.comps.len();
        let blocks: Vec<usize> = (0..frame.comps.len())
            .map(|ci| frame.blocks_per_row(ci) * frame.block_rows(ci))
            .collect();
        let total_blocks: usize = blocks.iter().sum();
        // Planes, coefficient arrays (16-bit) when buffered, and the output pixels.
        let need = total_blocks * 64 * if buffered { 3 } else { 1 } + w * h * frame.comps.len();
        if need > max_bytes {
            return Err(Stop::corrupt(format!(
                "JPEG is {w}x{h}; decoding it needs {} MiB, over the {} MiB limit",
                need >> 20,
                max_bytes >> 20
            )));
        }
        let planes = blocks.iter().map(|&b| vec![128u8; b * 64]).collect();
        self.store = Some(if buffered {
            Store::Buffered {
                coefs: blocks.iter().map(|&b| vec![[0i16; 64]; b]).collect(),
                planes,
            }
        } else {
            Store::Direct { planes }
        });
        if !frame.progressive {
            // Motion-JPEG convention (`std_huff_tables`): missing tables 0 and 1 are the standard ones.
            for (slot, spec) in self.dc.iter_mut().zip(tables::standard(true)) {
                slot.get_or_insert(spec);
            }
            for (slot, spec) in self.ac.iter_mut().zip(tables::standard(false)) {
                slot.get_or_insert(spec);
            }
        }
        Ok(())
    }

    /// After the last scan: inverse DCT of buffered coefficients, upsampling, colour conversion.
    fn finish(self) -> Result<Decoded, Stop> {
        let (Some(frame), Some(store), Some(source)) = (self.frame, self.store, self.source) else {
            return Err(Stop::corrupt("JPEG has no image data"));
        };
        let planes = match store {
            Store::Direct { planes } => planes,
            Store::Buffered { coefs, mut planes } => {
                if frame.progressive && smoothing_applies(&frame) {
                    return Err(Stop::corrupt(
                        "progressive JPEG whose scans leave low-frequency coefficients unfinished is not supported (libjpeg smooths such blocks)",
                    ));
                }
                for (ci, c) in frame.comps.iter().enumerate() {
                    // A component no scan covered stays mid-grey, as libjpeg's zero blocks.
                    let Some(q) = c.qt.as_ref() else { continue };
                    let bpr = frame.blocks_per_row(ci);
                    let stride = bpr * 8;
                    for by in 0..c.bh {
                        for bx in 0..c.bw {
                            idct::idct_block(
                                &coefs[ci][by * bpr + bx],
                                q,
                                &mut planes[ci][by * 8 * stride + bx * 8..],
                                stride,
                            );
                        }
                    }
                }
                planes
            }
        };
        Ok(Decoded {
            width: frame.width,
            height: frame.height,
            space: source.output(),
            data: output::render(&frame, &planes, source),
        })
    }
}

enum Next {
    Continue,
    Marker(u8),
    Eoi,
}

/// `smoothing_ok` at the output pass: libjpeg applies block smoothing when every component has
/// been scanned with usable quantizers, all DC terms are at least partly known and some of the
/// first nine AC terms are not at full precision.
fn smoothing_applies(frame: &Frame) -> bool {
    const Q: [usize; 10] = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24];
    let mut useful = false;
    for c in &frame.comps {
        let Some(q) = c.qt.as_ref() else { return false };
        if Q.iter().any(|&i| q[i] == 0) || c.coef_bits[0] < 0 {
            return false;
        }
        useful |= c.coef_bits[1..10].iter().any(|&b| b != 0);
    }
    useful
}
