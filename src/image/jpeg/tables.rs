//! Table segments: DHT (Huffman), DQT (quantization), DAC (arithmetic conditioning), with
//! libjpeg's checks (`get_dht`, `get_dqt`, `get_dac`), and the standard Huffman tables.

use super::Stop;
use super::bits::HuffSpec;
use super::scan::natural;

/// `get_dht`: one or more tables; classes 0 (DC) and 1 (AC), slots 0-3.
pub fn dht(
    mut s: &[u8],
    dc: &mut [Option<HuffSpec>; 4],
    ac: &mut [Option<HuffSpec>; 4],
) -> Result<(), Stop> {
    let bad = || Stop::corrupt("bad Huffman table (DHT) segment");
    while s.len() > 16 {
        let index = s[0];
        let counts: [u8; 16] = s[1..17].try_into().expect("16 bytes");
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 || total > s.len() - 17 {
            return Err(bad());
        }
        let spec = HuffSpec {
            counts,
            values: s[17..17 + total].to_vec(),
        };
        match index {
            0..=3 => dc[index as usize] = Some(spec),
            0x10..=0x13 => ac[(index - 0x10) as usize] = Some(spec),
            _ => return Err(Stop::corrupt("bad Huffman table index in DHT")),
        }
        s = &s[17 + total..];
    }
    if !s.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// `get_dqt`: 8- or 16-bit tables (any non-zero precision nibble is 16-bit), slots 0-3, stored
/// in natural order.
pub fn dqt(mut s: &[u8], qt: &mut [Option<[u16; 64]>; 4]) -> Result<(), Stop> {
    while !s.is_empty() {
        let (wide, n) = (s[0] >> 4 != 0, (s[0] & 15) as usize);
        if n >= 4 {
            return Err(Stop::corrupt("bad quantization table index in DQT"));
        }
        let len = if wide { 129 } else { 65 };
        let t = s
            .get(1..len)
            .ok_or_else(|| Stop::corrupt("bad DQT marker length"))?;
        let mut q = [0u16; 64];
        for k in 0..64 {
            q[natural(k)] = if wide {
                u16::from_be_bytes([t[2 * k], t[2 * k + 1]])
            } else {
                t[k] as u16
            };
        }
        qt[n] = Some(q);
        s = &s[len..];
    }
    Ok(())
}

/// `get_dac`: arithmetic-coding conditioning, validated though only arithmetic files use it.
pub fn dac(s: &[u8]) -> Result<(), Stop> {
    if !s.len().is_multiple_of(2) {
        return Err(Stop::corrupt("bad DAC marker length"));
    }
    for p in s.chunks_exact(2) {
        if p[0] >= 32 || (p[0] < 16 && (p[1] & 15) > (p[1] >> 4)) {
            return Err(Stop::corrupt("bad arithmetic conditioning (DAC) table"));
        }
    }
    Ok(())
}

/// The standard Huffman tables of ITU T.81 Annex K.3 (luminance, chrominance), DC or AC.
pub fn standard(dc: bool) -> [HuffSpec; 2] {
    let spec = |counts: [u8; 16], values: Vec<u8>| HuffSpec { counts, values };
    if dc {
        let values: Vec<u8> = (0..12).collect();
        return [
            spec(
                [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
                values.clone(),
            ),
            spec([0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], values),
        ];
    }
    [
        spec(
            [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d],
            hex(
                "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa",
            ),
        ),
        spec(
            [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77],
            hex(
                "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa",
            ),
        ),
    ]
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
