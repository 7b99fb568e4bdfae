//! Baseline JPEG decoding bit-identical to libjpeg-turbo as Pillow uses it (ISLOW integer IDCT,
//! "fancy" triangle chroma upsampling with libjpeg's rounding biases and edge replication,
//! table-based YCbCr -> RGB). The `image` crate's decoder (zune-jpeg) uses a different IDCT and
//! colour conversion and lands 1-2 units away from Pillow, which the parity tolerance forbids.
//!
//! Supported: 8-bit baseline/extended/progressive Huffman (SOF0/SOF1/SOF2), 1 or 3 components
//! (YCbCr), any sampling factors, restart intervals, interleaved and single-component scans.
//! Anything else (arithmetic, lossless, CMYK/Adobe RGB, 12-bit) returns `Ok(None)` and the caller falls back
//! to the `image` crate.

/// Decoded image: width, height, channels (1 or 3), interleaved samples.
pub type Decoded = (usize, usize, usize, Vec<u8>);

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

const LUT_BITS: u32 = 9;

#[derive(Clone, Default)]
struct Huffman {
    /// Per code length 1..=16: largest code of that length (or -1), and index offset.
    maxcode: [i32; 18],
    valoff: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
    /// Fast path: for every 9-bit prefix, `(code length << 8) | symbol` of a code of length <= 9
    /// that it starts with (0 = longer code, take the slow path).
    lut: Vec<u16>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Self {
        let mut h = Huffman {
            maxcode: [-1; 18],
            values,
            ..Default::default()
        };
        let (mut code, mut k) = (0i32, 0i32);
        for l in 1..=16 {
            let n = counts[l - 1] as i32;
            if n > 0 {
                h.valoff[l] = k;
                h.mincode[l] = code;
                code += n;
                k += n;
                h.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        h.lut = vec![0; 1 << LUT_BITS];
        for l in 1..=LUT_BITS as usize {
            if h.maxcode[l] < 0 {
                continue;
            }
            for code in h.mincode[l]..=h.maxcode[l] {
                let Some(&sym) = h.values.get((h.valoff[l] + code - h.mincode[l]) as usize) else {
                    continue;
                };
                let shift = LUT_BITS as usize - l;
                for fill in 0..(1usize << shift) {
                    h.lut[((code as usize) << shift) | fill] = ((l as u16) << 8) | sym as u16;
                }
            }
        }
        h
    }
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    n: u32,
    hit_marker: bool,
    /// Ran off the end of the file inside entropy-coded data (a truncated file).
    eof: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.n <= 24 {
            let mut b = 0u8;
            if !self.hit_marker && self.pos < self.data.len() {
                b = self.data[self.pos];
                if b == 0xFF {
                    let nx = self.data.get(self.pos + 1).copied().unwrap_or(0xD9);
                    if nx == 0x00 {
                        self.pos += 2;
                    } else {
                        // A marker: libjpeg feeds zeros from here on.
                        self.hit_marker = true;
                        b = 0;
                    }
                } else {
                    self.pos += 1;
                }
            } else if !self.hit_marker {
                self.eof = true;
            }
            self.acc |= (b as u32) << (24 - self.n);
            self.n += 8;
        }
    }
    fn bit(&mut self) -> i32 {
        self.fill();
        let v = (self.acc >> 31) as i32;
        self.acc <<= 1;
        self.n -= 1;
        v
    }
    fn bits(&mut self, k: u32) -> i32 {
        if k == 0 {
            return 0;
        }
        self.fill();
        let v = (self.acc >> (32 - k)) as i32;
        self.acc <<= k;
        self.n -= k;
        v
    }
    fn decode(&mut self, h: &Huffman) -> Result<u8, String> {
        self.fill();
        let e = h
            .lut
            .get((self.acc >> (32 - LUT_BITS)) as usize)
            .copied()
            .unwrap_or(0);
        if e != 0 {
            let len = (e >> 8) as u32;
            self.acc <<= len;
            self.n -= len;
            return Ok(e as u8);
        }
        let mut code = self.bit();
        for l in 1..=16 {
            if h.maxcode[l] >= 0 && code <= h.maxcode[l] && code >= h.mincode[l] {
                let idx = (h.valoff[l] + code - h.mincode[l]) as usize;
                return h
                    .values
                    .get(idx)
                    .copied()
                    .ok_or_else(|| "bad Huffman code".to_string());
            }
            code = (code << 1) | self.bit();
        }
        Err("corrupt Huffman data".into())
    }
    /// Skips to the next RSTn marker and resets the bit buffer.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        self.hit_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
    }
}

fn extend(v: i32, t: u32) -> i32 {
    if t == 0 {
        0
    } else if v < (1 << (t - 1)) {
        v - (1 << t) + 1
    } else {
        v
    }
}

struct Comp {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Plane padded to whole blocks (MCU-aligned).
    stride: usize,
    rows: usize,
    plane: Vec<u8>,
    dc_pred: i32,
    td: usize,
    ta: usize,
}

/// libjpeg's post-IDCT range limit: `(x + 128)` clamped, with its 10-bit wrap for wild values.
#[inline]
fn range_limit(v: i32) -> u8 {
    let i = (v & 1023) as usize;
    match i {
        0..=127 => (i + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (i - 896) as u8,
    }
}

/// `jpeg_idct_islow` (libjpeg-turbo `jidctint.c`): coefficients in natural order, quantizer applied.
fn idct_islow(coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CB: i32 = 13;
    const P1: i32 = 2;
    const F0298: i64 = 2446;
    const F0390: i64 = 3196;
    const F0541: i64 = 4433;
    const F0765: i64 = 6270;
    const F0899: i64 = 7373;
    const F1175: i64 = 9633;
    const F1501: i64 = 12299;
    const F1847: i64 = 15137;
    const F1961: i64 = 16069;
    const F2053: i64 = 16819;
    const F2562: i64 = 20995;
    const F3072: i64 = 25172;
    let descale = |x: i64, n: i32| (x + (1i64 << (n - 1))) >> n;
    let mut ws = [0i64; 64];
    for c in 0..8 {
        let g = |r: usize| coef[r * 8 + c] as i64 * q[r * 8 + c] as i64;
        let (z2, z3) = (g(2), g(6));
        let z1 = (z2 + z3) * F0541;
        let tmp2 = z1 - z3 * F1847;
        let tmp3 = z1 + z2 * F0765;
        let (z2, z3) = (g(0), g(4));
        let tmp0 = (z2 + z3) << CB;
        let tmp1 = (z2 - z3) << CB;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (o0, o1, o2, o3) = odd(g(7), g(5), g(3), g(1));
        let d = CB - P1;
        ws[c] = descale(t10 + o3, d);
        ws[7 * 8 + c] = descale(t10 - o3, d);
        ws[8 + c] = descale(t11 + o2, d);
        ws[6 * 8 + c] = descale(t11 - o2, d);
        ws[2 * 8 + c] = descale(t12 + o1, d);
        ws[5 * 8 + c] = descale(t12 - o1, d);
        ws[3 * 8 + c] = descale(t13 + o0, d);
        ws[4 * 8 + c] = descale(t13 - o0, d);
    }
    fn odd(t0: i64, t1: i64, t2: i64, t3: i64) -> (i64, i64, i64, i64) {
        let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
        let z5 = (z3 + z4) * F1175;
        let (t0, t1, t2, t3) = (t0 * F0298, t1 * F2053, t2 * F3072, t3 * F1501);
        let (z1, z2) = (-z1 * F0899, -z2 * F2562);
        let z3 = -z3 * F1961 + z5;
        let z4 = -z4 * F0390 + z5;
        (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4)
    }
    for r in 0..8 {
        let w = &ws[r * 8..r * 8 + 8];
        let (z2, z3) = (w[2], w[6]);
        let z1 = (z2 + z3) * F0541;
        let tmp2 = z1 - z3 * F1847;
        let tmp3 = z1 + z2 * F0765;
        let tmp0 = (w[0] + w[4]) << CB;
        let tmp1 = (w[0] - w[4]) << CB;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (o0, o1, o2, o3) = odd(w[7], w[5], w[3], w[1]);
        let d = CB + P1 + 3;
        let o = &mut out[r * stride..r * stride + 8];
        o[0] = range_limit(descale(t10 + o3, d) as i32);
        o[7] = range_limit(descale(t10 - o3, d) as i32);
        o[1] = range_limit(descale(t11 + o2, d) as i32);
        o[6] = range_limit(descale(t11 - o2, d) as i32);
        o[2] = range_limit(descale(t12 + o1, d) as i32);
        o[5] = range_limit(descale(t12 - o1, d) as i32);
        o[3] = range_limit(descale(t13 + o0, d) as i32);
        o[4] = range_limit(descale(t13 - o0, d) as i32);
    }
}

fn be16(d: &[u8], p: usize) -> Result<usize, String> {
    d.get(p..p + 2)
        .map(|b| ((b[0] as usize) << 8) | b[1] as usize)
        .ok_or_else(|| "truncated JPEG header".into())
}

/// Decodes a baseline JPEG; `Ok(None)` when the file uses a feature this decoder leaves to the
/// `image` crate.
pub fn decode(data: &[u8]) -> Result<Option<Decoded>, String> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Ok(None);
    }
    let mut pos = 2;
    let mut qt = [[0u16; 64]; 4];
    let mut dc_tables: [Huffman; 4] = Default::default();
    let mut ac_tables: [Huffman; 4] = Default::default();
    let mut comps: Vec<Comp> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let (mut hmax, mut vmax) = (1usize, 1usize);
    let mut restart_interval = 0usize;
    let mut adobe_transform: Option<u8> = None;
    let mut frame_seen = false;
    let mut progressive = false;
    // Progressive: coefficients of every block (natural order), transformed after the last scan.
    let mut coefs: Vec<Vec<[i32; 64]>> = Vec::new();
    loop {
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= data.len() {
            if frame_seen {
                break;
            }
            return Err("JPEG ends before any image data".into());
        }
        let m = data[pos];
        pos += 1;
        match m {
            0xD8 | 0x01 | 0xD0..=0xD7 => continue,
            0xD9 => break,
            _ => {}
        }
        let len = be16(data, pos)?;
        let seg = data
            .get(pos + 2..pos + len)
            .ok_or("truncated JPEG segment")?;
        if seg.is_empty() && matches!(m, 0xC0..=0xC2 | 0xDA)
            || (matches!(m, 0xC0..=0xC2) && seg.len() < 6)
        {
            return Err("truncated JPEG header".into());
        }
        match m {
            0xC0..=0xC2 => {
                progressive = m == 0xC2;
                if seg[0] != 8 {
                    return Ok(None);
                }
                height = be16(seg, 1)?;
                width = be16(seg, 3)?;
                let n = seg[5] as usize;
                if width == 0 || height == 0 || !(n == 1 || n == 3) {
                    return Ok(None);
                }
                for i in 0..n {
                    let b = seg.get(6 + i * 3..9 + i * 3).ok_or("truncated SOF")?;
                    let (h, v) = ((b[1] >> 4) as usize, (b[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                        return Err("bad sampling factors".into());
                    }
                    comps.push(Comp {
                        id: b[0],
                        h,
                        v,
                        tq: (b[2] & 3) as usize,
                        stride: 0,
                        rows: 0,
                        plane: Vec::new(),
                        dc_pred: 0,
                        td: 0,
                        ta: 0,
                    });
                }
                hmax = comps.iter().map(|c| c.h).max().unwrap();
                vmax = comps.iter().map(|c| c.v).max().unwrap();
                let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                for c in comps.iter_mut() {
                    c.stride = mx * c.h * 8;
                    c.rows = my * c.v * 8;
                    c.plane = vec![0; c.stride * c.rows];
                }
                if progressive {
                    coefs = comps
                        .iter()
                        .map(|c| vec![[0i32; 64]; (c.stride / 8) * (c.rows / 8)])
                        .collect();
                }
                frame_seen = true;
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let mut p = 0;
                while p < seg.len() {
                    let (tc, th) = (seg[p] >> 4, (seg[p] & 3) as usize);
                    let counts: [u8; 16] = seg
                        .get(p + 1..p + 17)
                        .ok_or("truncated DHT")?
                        .try_into()
                        .unwrap();
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let vals = seg
                        .get(p + 17..p + 17 + total)
                        .ok_or("truncated DHT")?
                        .to_vec();
                    let h = Huffman::new(&counts, vals);
                    if tc == 0 {
                        dc_tables[th] = h
                    } else {
                        ac_tables[th] = h
                    }
                    p += 17 + total;
                }
            }
            0xDB => {
                let mut p = 0;
                while p < seg.len() {
                    let (pq, tq) = (seg[p] >> 4, (seg[p] & 3) as usize);
                    p += 1;
                    for k in 0..64 {
                        let v = if pq == 0 {
                            *seg.get(p + k).ok_or("truncated DQT")? as u16
                        } else {
                            be16(seg, p + 2 * k)? as u16
                        };
                        qt[tq][ZIGZAG[k]] = v;
                    }
                    p += if pq == 0 { 64 } else { 128 };
                }
            }
            0xDD => restart_interval = be16(seg, 0)?,
            0xEE if seg.len() >= 12 && &seg[..5] == b"Adobe" => adobe_transform = Some(seg[11]),
            0xDA => {
                if !frame_seen {
                    return Err("scan before frame header".into());
                }
                let ns = seg[0] as usize;
                let mut sel = Vec::with_capacity(ns);
                for i in 0..ns {
                    let b = seg.get(1 + i * 2..3 + i * 2).ok_or("truncated SOS")?;
                    let ci = comps
                        .iter()
                        .position(|c| c.id == b[0])
                        .ok_or("scan names an unknown component")?;
                    comps[ci].td = (b[1] >> 4) as usize & 3;
                    comps[ci].ta = (b[1] & 15) as usize & 3;
                    sel.push(ci);
                }
                pos += len;
                let mut bits = Bits {
                    data,
                    pos,
                    acc: 0,
                    n: 0,
                    hit_marker: false,
                    eof: false,
                };
                for c in comps.iter_mut() {
                    c.dc_pred = 0;
                }
                if progressive {
                    let p = 1 + 2 * ns;
                    let b = seg.get(p..p + 3).ok_or("truncated SOS")?;
                    let sp = Spectral {
                        ss: b[0] as usize,
                        se: b[1] as usize,
                        ah: (b[2] >> 4) as u32,
                        al: (b[2] & 15) as u32,
                    };
                    if sp.se > 63
                        || sp.ss > sp.se
                        || (sp.ss == 0 && sp.se != 0)
                        || (sp.ss > 0 && ns != 1)
                    {
                        return Err("bad progressive scan parameters".into());
                    }
                    let geom = Geom {
                        width,
                        height,
                        hmax,
                        vmax,
                        restart_interval,
                    };
                    decode_progressive_scan(
                        &mut bits, &mut comps, &mut coefs, &sel, sp, &dc_tables, &ac_tables, &geom,
                    )?;
                } else {
                    decode_scan(
                        &mut bits,
                        &mut comps,
                        &sel,
                        &qt,
                        &dc_tables,
                        &ac_tables,
                        width,
                        height,
                        hmax,
                        vmax,
                        restart_interval,
                    )?;
                }
                if bits.eof {
                    return Err("truncated JPEG: the file ends inside the image data".into());
                }
                pos = bits.pos;
                continue;
            }
            _ => {}
        }
        pos += len;
    }
    if !frame_seen {
        return Err("no frame header".into());
    }
    if progressive {
        for (c, blocks) in comps.iter_mut().zip(&coefs) {
            let bw = c.stride / 8;
            for (i, coef) in blocks.iter().enumerate() {
                let off = (i / bw) * 8 * c.stride + (i % bw) * 8;
                let stride = c.stride;
                idct_islow(coef, &qt[c.tq], &mut c.plane[off..], stride);
            }
        }
    }
    if comps.len() == 1 {
        let c = &comps[0];
        let mut out = Vec::with_capacity(width * height);
        for y in 0..height {
            out.extend_from_slice(&c.plane[y * c.stride..y * c.stride + width]);
        }
        return Ok(Some((width, height, 1, out)));
    }
    // 3 components: YCbCr unless an Adobe marker says otherwise (left to the fallback).
    if adobe_transform == Some(0) || adobe_transform == Some(2) {
        return Ok(None);
    }
    let planes: Vec<Vec<u8>> = comps
        .iter()
        .map(|c| upsample(c, width, height, hmax, vmax))
        .collect();
    Ok(Some((
        width,
        height,
        3,
        ycc_to_rgb(&planes[0], &planes[1], &planes[2]),
    )))
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    bits: &mut Bits,
    comps: &mut [Comp],
    sel: &[usize],
    qt: &[[u16; 64]; 4],
    dc: &[Huffman; 4],
    ac: &[Huffman; 4],
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    restart_interval: usize,
) -> Result<(), String> {
    let mut coef = [0i32; 64];
    let mut block = |bits: &mut Bits, c: &mut Comp, bx: usize, by: usize| -> Result<(), String> {
        coef.fill(0);
        let t = bits.decode(&dc[c.td])? as u32;
        if t > 16 {
            return Err("corrupt DC coefficient".into());
        }
        c.dc_pred = c.dc_pred.wrapping_add(extend(bits.bits(t), t));
        coef[0] = c.dc_pred;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(&ac[c.ta])?;
            let (r, s) = ((rs >> 4) as usize, (rs & 15) as u32);
            if s == 0 {
                if r == 15 {
                    k += 16;
                    continue;
                }
                break;
            }
            k += r;
            if k > 63 {
                return Err("corrupt AC coefficients".into());
            }
            coef[ZIGZAG[k]] = extend(bits.bits(s), s);
            k += 1;
        }
        if (by + 1) * 8 <= c.rows && (bx + 1) * 8 <= c.stride {
            let off = by * 8 * c.stride + bx * 8;
            let stride = c.stride;
            idct_islow(&coef, &qt[c.tq], &mut c.plane[off..], stride);
        }
        Ok(())
    };
    let mut count = 0usize;
    let restart = |bits: &mut Bits, comps: &mut [Comp], count: &mut usize| {
        if restart_interval > 0 && *count == restart_interval {
            bits.restart();
            for c in comps.iter_mut() {
                c.dc_pred = 0;
            }
            *count = 0;
        }
    };
    if sel.len() == 1 {
        let ci = sel[0];
        let (cw, ch) = (
            (width * comps[ci].h).div_ceil(hmax),
            (height * comps[ci].v).div_ceil(vmax),
        );
        for by in 0..ch.div_ceil(8) {
            for bx in 0..cw.div_ceil(8) {
                restart(bits, comps, &mut count);
                block(bits, &mut comps[ci], bx, by)?;
                count += 1;
            }
        }
    } else {
        let (mx, my) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
        for my_i in 0..my {
            for mx_i in 0..mx {
                restart(bits, comps, &mut count);
                for &ci in sel {
                    let (h, v) = (comps[ci].h, comps[ci].v);
                    for yy in 0..v {
                        for xx in 0..h {
                            block(bits, &mut comps[ci], mx_i * h + xx, my_i * v + yy)?;
                        }
                    }
                }
                count += 1;
            }
        }
    }
    Ok(())
}

/// Full-resolution plane of a component (`jdsample.c`: fancy h2v1, h2v2, h1v2; replication
/// otherwise), cropped to the image.
fn upsample(c: &Comp, width: usize, height: usize, hmax: usize, vmax: usize) -> Vec<u8> {
    let (fx, fy) = (hmax / c.h, vmax / c.v);
    let (dw, dh) = ((width * c.h).div_ceil(hmax), (height * c.v).div_ceil(vmax));
    let src = |x: usize, y: usize| c.plane[y * c.stride + x] as i32;
    let mut out = vec![0u8; width * height];
    let exact = hmax.is_multiple_of(c.h) && vmax.is_multiple_of(c.v);
    if exact && fx == 1 && fy == 1 {
        for y in 0..height {
            out[y * width..(y + 1) * width]
                .copy_from_slice(&c.plane[y * c.stride..y * c.stride + width]);
        }
    } else if exact && fx == 2 && fy == 1 && dw > 2 {
        let mut row = vec![0u8; dw * 2];
        for y in 0..height {
            h2v1_row(|x| src(x, y), dw, &mut row);
            out[y * width..(y + 1) * width].copy_from_slice(&row[..width]);
        }
    } else if exact && fx == 2 && fy == 2 && dw > 2 {
        let mut row = vec![0u8; dw * 2];
        for y in 0..height {
            let iy = y / 2;
            // Upper output row blends with the row above, lower with the row below (edges replicated).
            let other = if y % 2 == 0 {
                iy.saturating_sub(1)
            } else {
                (iy + 1).min(dh - 1)
            };
            let colsum = |x: usize| src(x, iy) * 3 + src(x, other);
            let mut this = colsum(0);
            let mut last;
            let mut next = colsum(1);
            row[0] = ((this * 4 + 8) >> 4) as u8;
            row[1] = ((this * 3 + next + 7) >> 4) as u8;
            for x in 1..dw - 1 {
                last = this;
                this = next;
                next = colsum(x + 1);
                row[2 * x] = ((this * 3 + last + 8) >> 4) as u8;
                row[2 * x + 1] = ((this * 3 + next + 7) >> 4) as u8;
            }
            last = this;
            this = next;
            row[2 * (dw - 1)] = ((this * 3 + last + 8) >> 4) as u8;
            row[2 * (dw - 1) + 1] = ((this * 4 + 7) >> 4) as u8;
            out[y * width..(y + 1) * width].copy_from_slice(&row[..width]);
        }
    } else if exact && fx == 1 && fy == 2 {
        for y in 0..height {
            let iy = y / 2;
            let (other, bias) = if y % 2 == 0 {
                (iy.saturating_sub(1), 1)
            } else {
                ((iy + 1).min(dh - 1), 2)
            };
            for x in 0..width {
                out[y * width + x] = ((src(x, iy) * 3 + src(x, other) + bias) >> 2) as u8;
            }
        }
    } else {
        for y in 0..height {
            for x in 0..width {
                out[y * width + x] = c.plane[(y * c.v / vmax) * c.stride + x * c.h / hmax];
            }
        }
    }
    out
}

fn h2v1_row(src: impl Fn(usize) -> i32, dw: usize, row: &mut [u8]) {
    let v0 = src(0);
    row[0] = v0 as u8;
    row[1] = ((v0 * 3 + src(1) + 2) >> 2) as u8;
    for x in 1..dw - 1 {
        let v = src(x) * 3;
        row[2 * x] = ((v + src(x - 1) + 1) >> 2) as u8;
        row[2 * x + 1] = ((v + src(x + 1) + 2) >> 2) as u8;
    }
    let v = src(dw - 1);
    row[2 * (dw - 1)] = ((v * 3 + src(dw - 2) + 1) >> 2) as u8;
    row[2 * (dw - 1) + 1] = v as u8;
}

/// `jdcolor.c` `ycc_rgb_convert` with its 16-bit fixed-point tables.
fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8]) -> Vec<u8> {
    const ONE_HALF: i64 = 1 << 15;
    let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
    let mut cr_r = [0i32; 256];
    let mut cb_b = [0i32; 256];
    let mut cr_g = [0i64; 256];
    let mut cb_g = [0i64; 256];
    for i in 0..256 {
        let x = i as i64 - 128;
        cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> 16) as i32;
        cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> 16) as i32;
        cr_g[i] = -fix(0.71414) * x;
        cb_g[i] = -fix(0.34414) * x + ONE_HALF;
    }
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    let mut out = Vec::with_capacity(y.len() * 3);
    for i in 0..y.len() {
        let (yy, b, r) = (y[i] as i32, cb[i] as usize, cr[i] as usize);
        out.push(clamp(yy + cr_r[r]));
        out.push(clamp(yy + ((cb_g[b] + cr_g[r]) >> 16) as i32));
        out.push(clamp(yy + cb_b[b]));
    }
    out
}

#[derive(Clone, Copy)]
struct Spectral {
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

struct Geom {
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    restart_interval: usize,
}

/// One scan of a progressive JPEG (ITU T.81 G.1.2; the refinement logic follows libjpeg's
/// `jdphuff.c`), accumulating into `coefs`.
#[allow(clippy::too_many_arguments)]
fn decode_progressive_scan(
    bits: &mut Bits,
    comps: &mut [Comp],
    coefs: &mut [Vec<[i32; 64]>],
    sel: &[usize],
    sp: Spectral,
    dc: &[Huffman; 4],
    ac: &[Huffman; 4],
    g: &Geom,
) -> Result<(), String> {
    let mut eobrun = 0u32;
    let mut count = 0usize;
    let block = |bits: &mut Bits,
                 c: &mut Comp,
                 coef: &mut [i32; 64],
                 eobrun: &mut u32|
     -> Result<(), String> {
        if sp.ss == 0 {
            if sp.ah == 0 {
                let t = bits.decode(&dc[c.td])? as u32;
                if t > 16 || sp.al > 13 {
                    return Err("corrupt DC coefficient".into());
                }
                c.dc_pred = c.dc_pred.wrapping_add(extend(bits.bits(t), t));
                coef[0] = c.dc_pred.wrapping_mul(1 << sp.al);
            } else if bits.bit() == 1 {
                coef[0] |= 1 << sp.al;
            }
            return Ok(());
        }
        let table = &ac[c.ta];
        let mut k = sp.ss;
        if sp.ah == 0 {
            if *eobrun > 0 {
                *eobrun -= 1;
                return Ok(());
            }
            while k <= sp.se {
                let rs = bits.decode(table)?;
                let (r, s) = ((rs >> 4) as u32, (rs & 15) as u32);
                if s != 0 {
                    k += r as usize;
                    if k > 63 {
                        return Err("corrupt AC coefficients".into());
                    }
                    coef[ZIGZAG[k]] = extend(bits.bits(s), s).wrapping_mul(1 << sp.al.min(15));
                    k += 1;
                } else if r == 15 {
                    k += 16;
                } else {
                    *eobrun = (1 << r) - 1;
                    if r > 0 {
                        *eobrun += bits.bits(r) as u32;
                    }
                    break;
                }
            }
            return Ok(());
        }
        let p1 = 1i32 << sp.al.min(15);
        let m1 = -1i32 << sp.al.min(15);
        let refine = |bits: &mut Bits, v: &mut i32| {
            if bits.bit() == 1 && (*v & p1) == 0 {
                *v += if *v >= 0 { p1 } else { m1 };
            }
        };
        if *eobrun == 0 {
            while k <= sp.se {
                let rs = bits.decode(table)?;
                let (mut r, s) = ((rs >> 4) as i32, (rs & 15) as i32);
                let mut val = 0;
                if s != 0 {
                    val = if bits.bit() == 1 { p1 } else { m1 };
                } else if r != 15 {
                    *eobrun = 1 << r;
                    if r > 0 {
                        *eobrun += bits.bits(r as u32) as u32;
                    }
                    break;
                }
                while k <= sp.se {
                    let z = ZIGZAG[k];
                    if coef[z] != 0 {
                        refine(bits, &mut coef[z]);
                    } else {
                        r -= 1;
                        if r < 0 {
                            break;
                        }
                    }
                    k += 1;
                }
                if val != 0 && k <= 63 {
                    coef[ZIGZAG[k]] = val;
                }
                k += 1;
            }
        }
        if *eobrun > 0 {
            while k <= sp.se {
                let z = ZIGZAG[k];
                if coef[z] != 0 {
                    refine(bits, &mut coef[z]);
                }
                k += 1;
            }
            *eobrun -= 1;
        }
        Ok(())
    };
    let restart = |bits: &mut Bits, comps: &mut [Comp], count: &mut usize, eobrun: &mut u32| {
        if g.restart_interval > 0 && *count == g.restart_interval {
            bits.restart();
            for c in comps.iter_mut() {
                c.dc_pred = 0;
            }
            *eobrun = 0;
            *count = 0;
        }
    };
    if sel.len() == 1 {
        let ci = sel[0];
        let (cw, ch) = (
            (g.width * comps[ci].h).div_ceil(g.hmax),
            (g.height * comps[ci].v).div_ceil(g.vmax),
        );
        let bw = comps[ci].stride / 8;
        for by in 0..ch.div_ceil(8) {
            for bx in 0..cw.div_ceil(8) {
                restart(bits, comps, &mut count, &mut eobrun);
                block(
                    bits,
                    &mut comps[ci],
                    &mut coefs[ci][by * bw + bx],
                    &mut eobrun,
                )?;
                count += 1;
            }
        }
    } else {
        let (mx, my) = (g.width.div_ceil(8 * g.hmax), g.height.div_ceil(8 * g.vmax));
        for my_i in 0..my {
            for mx_i in 0..mx {
                restart(bits, comps, &mut count, &mut eobrun);
                for &ci in sel {
                    let (h, v, bw) = (comps[ci].h, comps[ci].v, comps[ci].stride / 8);
                    for yy in 0..v {
                        for xx in 0..h {
                            let idx = (my_i * v + yy) * bw + mx_i * h + xx;
                            block(bits, &mut comps[ci], &mut coefs[ci][idx], &mut eobrun)?;
                        }
                    }
                }
                count += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(37, 29, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 9) as u8, ((x + y) * 5) as u8])
        });
        let mut buf = std::io::Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
            .encode_image(&img)
            .unwrap();
        buf.into_inner()
    }

    #[test]
    fn decodes_and_rejects_truncation() {
        let bytes = sample_jpeg();
        let (w, h, c, data) = decode(&bytes).unwrap().unwrap();
        assert_eq!((w, h, c, data.len()), (37, 29, 3, 37 * 29 * 3));
        let err = decode(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn corrupt_data_never_panics() {
        let bytes = sample_jpeg();
        let mut state = 0x1234_5678u64;
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (state >> 33) as usize % b.len();
                b[i] = (state >> 20) as u8;
            }
            let _ = decode(&b);
        }
    }
}
