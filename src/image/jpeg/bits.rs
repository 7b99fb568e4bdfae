//! Entropy-coded data: libjpeg's bit reader and Huffman decoding (`jdhuff.c`), including what it
//! does with damaged data, because Pillow decodes damaged files and we must agree with it:
//!
//! * the reader refills greedily to 57 bits, so reaching the end of the file (no marker) while
//!   refilling is a *suspension*, which Pillow reports as a truncated file;
//! * a marker inside the data ends it; bits needed past it read as zeros and the rest of the
//!   restart segment decodes as empty blocks (`insufficient_data`);
//! * `FF FF .. 00` is one `FF` data byte, `FF FF .. xx` a marker;
//! * an undecodable Huffman code reads as symbol 0 after 17 bits.

use super::Stop;

/// Bits the reader tries to hold after a refill (`MIN_GET_BITS` for a 64-bit buffer).
const MIN_GET_BITS: i32 = 57;
/// Bits looked up at once (`HUFF_LOOKAHEAD`); refills happen below this, as in libjpeg.
const LOOKAHEAD: i32 = 8;
/// A wider table used when that many bits are already buffered: the same codes, found without
/// the bit-by-bit path and without changing when refills happen.
const FAST_BITS: i32 = 11;

/// A DHT table as defined in the file: code counts per length 1..=16 and the symbols.
#[derive(Clone, Debug)]
pub struct HuffSpec {
    pub counts: [u8; 16],
    pub values: Vec<u8>,
}

/// `jpeg_make_d_derived_tbl`: the decoding tables of one Huffman table.
pub struct Huffman {
    /// Largest code of each length (-1: none); `maxcode[17]` is a sentinel.
    maxcode: [i64; 18],
    /// Index of a code's symbol = code + valoffset[length].
    valoffset: [i64; 18],
    /// For every 8-bit prefix: `(length << 8) | symbol`, or `9 << 8` for longer codes.
    lookup: [u16; 256],
    /// For every 11-bit prefix: `(length << 8) | symbol` of a code of up to 11 bits, else 0.
    fast: Vec<u16>,
    values: [u8; 256],
}

impl Huffman {
    /// Derives the tables, rejecting what libjpeg rejects (`JERR_BAD_HUFF_TABLE`): more codes
    /// than fit their length, and DC symbols above 15.
    pub fn derive(spec: &HuffSpec, is_dc: bool) -> Result<Self, Stop> {
        let bad = || Stop::corrupt("bad Huffman table (more codes than its code lengths allow)");
        let total: usize = spec.counts.iter().map(|&c| c as usize).sum();
        if total > 256 || spec.values.len() < total {
            return Err(bad());
        }
        let mut h = Huffman {
            maxcode: [-1; 18],
            valoffset: [0; 18],
            lookup: [((LOOKAHEAD as u16) + 1) << 8; 256],
            fast: vec![0; 1 << FAST_BITS],
            values: [0; 256],
        };
        h.values[..total].copy_from_slice(&spec.values[..total]);
        // Canonical codes in symbol order (Figure C.2), validated as libjpeg does.
        let mut codes = Vec::with_capacity(total);
        let mut code: u32 = 0;
        for len in 1..=16u32 {
            for _ in 0..spec.counts[len as usize - 1] {
                codes.push((len, code));
                code += 1;
            }
            if code >= 1 << len && spec.counts[len as usize - 1] > 0 {
                return Err(bad());
            }
            code <<= 1;
        }
        let mut p = 0usize;
        for len in 1..=16usize {
            let n = spec.counts[len - 1] as usize;
            if n > 0 {
                h.valoffset[len] = p as i64 - codes[p].1 as i64;
                p += n;
                h.maxcode[len] = codes[p - 1].1 as i64;
            }
        }
        h.maxcode[17] = 0xFFFFF;
        for (i, &(len, code)) in codes.iter().enumerate() {
            let entry = ((len as u16) << 8) | h.values[i] as u16;
            if len as i32 <= LOOKAHEAD {
                let shift = LOOKAHEAD as u32 - len;
                for fill in 0..1u32 << shift {
                    h.lookup[((code << shift) | fill) as usize] = entry;
                }
            }
            if len as i32 <= FAST_BITS {
                let shift = FAST_BITS as u32 - len;
                for fill in 0..1u32 << shift {
                    h.fast[((code << shift) | fill) as usize] = entry;
                }
            }
        }
        if is_dc && h.values[..total].iter().any(|&s| s > 15) {
            return Err(bad());
        }
        Ok(h)
    }
}

/// libjpeg's bit reader over the whole file, starting after a SOS header.
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next unread byte of the file.
    pub pos: usize,
    buf: u64,
    bits_left: i32,
    /// A marker met inside the data (its code; the reader is past it), not yet processed.
    pub unread_marker: Option<u8>,
    /// Bits were needed past a marker: the rest of the segment is decoded as empty blocks.
    pub insufficient: bool,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            buf: 0,
            bits_left: 0,
            unread_marker: None,
            insufficient: false,
        }
    }

    /// The whole file.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let b = *self.data.get(self.pos).ok_or(Stop::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// `jpeg_fill_bit_buffer`: loads bytes until 57 bits are held or a marker stops it; stuffs
    /// zeros if `nbits` are still not there.
    fn fill(&mut self, nbits: i32) -> Result<(), Stop> {
        if self.unread_marker.is_none() {
            while self.bits_left < MIN_GET_BITS {
                let mut c = self.byte()?;
                if c == 0xFF {
                    loop {
                        c = self.byte()?;
                        if c != 0xFF {
                            break;
                        }
                    }
                    if c == 0 {
                        c = 0xFF;
                    } else {
                        self.unread_marker = Some(c);
                        break;
                    }
                }
                self.buf = (self.buf << 8) | c as u64;
                self.bits_left += 8;
            }
            if self.unread_marker.is_none() {
                return Ok(());
            }
        }
        if nbits > self.bits_left {
            self.insufficient = true;
            self.buf <<= MIN_GET_BITS - self.bits_left;
            self.bits_left = MIN_GET_BITS;
        }
        Ok(())
    }

    #[inline]
    fn ensure(&mut self, n: i32) -> Result<(), Stop> {
        if self.bits_left < n {
            self.fill(n)?;
        }
        Ok(())
    }

    /// `GET_BITS(n)` after `CHECK_BIT_BUFFER(n)`, `n <= 16`.
    #[inline]
    pub fn bits(&mut self, n: i32) -> Result<i32, Stop> {
        if n == 0 {
            return Ok(0);
        }
        self.ensure(n)?;
        self.bits_left -= n;
        Ok(((self.buf >> self.bits_left) & ((1u64 << n) - 1)) as i32)
    }

    #[inline]
    pub fn bit(&mut self) -> Result<bool, Stop> {
        Ok(self.bits(1)? == 1)
    }

    /// `HUFF_DECODE`: one symbol.
    #[inline]
    pub fn decode(&mut self, h: &Huffman) -> Result<u8, Stop> {
        let mut nb = LOOKAHEAD + 1;
        if self.bits_left < LOOKAHEAD {
            self.fill(0)?;
            if self.bits_left < LOOKAHEAD {
                nb = 1;
            }
        }
        if nb > 1 {
            if self.bits_left >= FAST_BITS {
                let look =
                    (self.buf >> (self.bits_left - FAST_BITS)) as usize & ((1 << FAST_BITS) - 1);
                let e = h.fast[look];
                if e != 0 {
                    self.bits_left -= (e >> 8) as i32;
                    return Ok(e as u8);
                }
            } else {
                let look = ((self.buf >> (self.bits_left - LOOKAHEAD)) & 0xFF) as usize;
                let e = h.lookup[look];
                let len = (e >> 8) as i32;
                if len <= LOOKAHEAD {
                    self.bits_left -= len;
                    return Ok(e as u8);
                }
            }
        }
        // `jpeg_huff_decode`: the code is at least `nb` bits long.
        let mut l = nb as usize;
        let mut code = self.bits(nb)? as i64;
        while code > h.maxcode[l] {
            code = (code << 1) | self.bits(1)? as i64;
            l += 1;
        }
        if l > 16 {
            return Ok(0);
        }
        Ok(h.values[((code + h.valoffset[l]) & 0xFF) as usize])
    }

    /// Drops the buffered bits at a restart marker (`process_restart`).
    pub fn discard(&mut self) {
        self.bits_left = 0;
    }
}

/// `HUFF_EXTEND`: the signed value of `s` magnitude bits `x`.
#[inline]
pub fn extend(x: i32, s: i32) -> i32 {
    if s == 0 {
        0
    } else if x < 1 << (s - 1) {
        x + (-1i32 << s) + 1
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(counts: &[u8], values: &[u8]) -> HuffSpec {
        let mut c = [0u8; 16];
        c[..counts.len()].copy_from_slice(counts);
        HuffSpec {
            counts: c,
            values: values.to_vec(),
        }
    }

    #[test]
    fn overfull_table_is_an_error_not_a_panic() {
        // Three codes of length 1 (the crafted DHT of issue 13).
        let err = Huffman::derive(&spec(&[3], &[0, 1, 2]), false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad Huffman table"), "{err}");
        // DC symbols above 15 are refused; AC symbols may be anything.
        assert!(Huffman::derive(&spec(&[0, 1], &[16]), true).is_err());
        assert!(Huffman::derive(&spec(&[0, 1], &[16]), false).is_ok());
    }

    #[test]
    fn reads_codes_stuffing_and_markers() {
        // Codes: 00 -> 5, 01 -> 6, 100 -> 7.
        let h = Huffman::derive(&spec(&[0, 2, 1], &[5, 6, 7]), false).unwrap();
        // 01 100 00 1 | 1111 1111 (FF 00 stuffing) | then a marker (FF D9).
        let data = [0b0110_0001, 0xFF, 0x00, 0xFF, 0xD9];
        let mut r = BitReader::new(&data, 0);
        assert_eq!(r.decode(&h).unwrap(), 6);
        assert_eq!(r.decode(&h).unwrap(), 7);
        assert_eq!(r.decode(&h).unwrap(), 5);
        assert_eq!(r.bits(1).unwrap(), 1);
        assert_eq!(r.bits(8).unwrap(), 0xFF);
        assert!(!r.insufficient);
        assert_eq!(r.unread_marker, Some(0xD9));
        // Past the marker: zeros, and the segment is marked short.
        assert_eq!(r.bits(4).unwrap(), 0);
        assert!(r.insufficient);
    }

    #[test]
    fn end_of_file_while_refilling_is_a_suspension() {
        let h = Huffman::derive(&spec(&[0, 2], &[1, 2]), false).unwrap();
        let data = [0b0101_0101];
        let mut r = BitReader::new(&data, 0);
        assert!(matches!(r.decode(&h), Err(Stop::Truncated)));
    }

    #[test]
    fn extends_signs() {
        assert_eq!(extend(0, 1), -1);
        assert_eq!(extend(1, 1), 1);
        assert_eq!(extend(2, 3), -5);
        assert_eq!(extend(5, 3), 5);
        assert_eq!(extend(0, 0), 0);
    }
}
