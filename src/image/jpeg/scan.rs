//! One scan's entropy-coded data: sequential (`jdhuff.c` `decode_mcu`) and progressive
//! (`jdphuff.c`: DC first/refine, AC first/refine) blocks, MCU order, restart markers and
//! libjpeg's resynchronisation when they are damaged.

use super::bits::{BitReader, Huffman, extend};
use super::idct::idct_block;
use super::{Frame, Stop, Store, next_marker};

/// Zigzag index -> natural position, padded with 63s as `jpeg_natural_order` is, so that a
/// damaged run length lands on coefficient 63 as in libjpeg instead of failing.
const NATURAL: [usize; 80] = {
    let zz: [usize; 64] = [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
        20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
        58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ];
    let mut t = [63usize; 80];
    let mut i = 0;
    while i < 64 {
        t[i] = zz[i];
        i += 1;
    }
    t
};

/// Zigzag order, for quantization tables.
pub fn natural(k: usize) -> usize {
    NATURAL[k]
}

/// What a SOS header asks for, with its Huffman tables derived.
pub struct Scan {
    /// Frame component indices, in scan order.
    pub comps: Vec<usize>,
    pub dc: Vec<Option<Huffman>>,
    pub ac: Vec<Option<Huffman>>,
    pub ss: usize,
    pub se: usize,
    pub ah: u32,
    pub al: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

struct State {
    dc_pred: [i32; 4],
    eobrun: u32,
    restarts_to_go: usize,
    next_rst: u8,
}

/// Decodes one scan into `store`. `single_pass`: blocks go straight through the IDCT into the
/// planes (a single-scan image); otherwise they accumulate in the coefficient arrays.
pub fn decode(
    r: &mut BitReader,
    frame: &Frame,
    store: &mut Store,
    scan: &Scan,
    restart_interval: usize,
) -> Result<(), Stop> {
    let kind = match (frame.progressive, scan.ss == 0, scan.ah == 0) {
        (false, _, _) => Kind::Sequential,
        (true, true, true) => Kind::DcFirst,
        (true, true, false) => Kind::DcRefine,
        (true, false, true) => Kind::AcFirst,
        (true, false, false) => Kind::AcRefine,
    };
    let mut st = State {
        dc_pred: [0; 4],
        eobrun: 0,
        restarts_to_go: restart_interval,
        next_rst: 0,
    };
    let single = scan.comps.len() == 1;
    let (mcus_x, mcus_y) = if single {
        let c = &frame.comps[scan.comps[0]];
        (c.bw, c.bh)
    } else {
        (frame.mcux, frame.mcuy)
    };
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if restart_interval > 0 && st.restarts_to_go == 0 {
                restart(r, &mut st, restart_interval)?;
            }
            // libjpeg leaves the whole MCU empty once a segment ran out of data.
            let skip = r.insufficient && kind != Kind::DcRefine;
            for (k, &ci) in scan.comps.iter().enumerate() {
                let c = &frame.comps[ci];
                let (nh, nv) = if single { (1, 1) } else { (c.h, c.v) };
                for yy in 0..nv {
                    for xx in 0..nh {
                        let (bx, by) = if single {
                            (mx, my)
                        } else {
                            (mx * c.h + xx, my * c.v + yy)
                        };
                        let bpr = frame.blocks_per_row(ci);
                        match store {
                            Store::Buffered { coefs, .. } => {
                                if !skip {
                                    block(
                                        r,
                                        kind,
                                        scan,
                                        k,
                                        &mut coefs[ci][by * bpr + bx],
                                        &mut st,
                                    )?;
                                }
                            }
                            Store::Direct { planes } => {
                                // One-pass mode: a zeroed block per MCU slot, transformed at once
                                // unless it only pads the MCU.
                                let mut coef = [0i16; 64];
                                if !skip {
                                    block(r, kind, scan, k, &mut coef, &mut st)?;
                                }
                                if bx < c.bw && by < c.bh {
                                    let stride = bpr * 8;
                                    let out = &mut planes[ci][by * 8 * stride + bx * 8..];
                                    if skip {
                                        // A skipped MCU is all zero coefficients: mid-grey.
                                        for row in 0..8 {
                                            out[row * stride..row * stride + 8].fill(128);
                                        }
                                    } else {
                                        let q = c.qt.as_ref().expect("latched before the scan");
                                        idct_block(&coef, q, out, stride);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if restart_interval > 0 {
                st.restarts_to_go -= 1;
            }
        }
    }
    Ok(())
}

fn block(
    r: &mut BitReader,
    kind: Kind,
    scan: &Scan,
    k: usize,
    coef: &mut [i16; 64],
    st: &mut State,
) -> Result<(), Stop> {
    let dc = || scan.dc[k].as_ref().expect("derived for the scan");
    let ac = || scan.ac[k].as_ref().expect("derived for the scan");
    match kind {
        Kind::Sequential => {
            let diff = dc_diff(r, dc())?;
            st.dc_pred[k] = st.dc_pred[k].wrapping_add(diff);
            coef[0] = st.dc_pred[k] as i16;
            let table = ac();
            let mut i = 1;
            while i < 64 {
                let rs = r.decode(table)?;
                let (run, s) = ((rs >> 4) as usize, (rs & 15) as i32);
                if s != 0 {
                    i += run;
                    let x = r.bits(s)?;
                    coef[NATURAL[i]] = extend(x, s) as i16;
                } else if run == 15 {
                    i += 15;
                } else {
                    break;
                }
                i += 1;
            }
        }
        Kind::DcFirst => {
            let diff = dc_diff(r, dc())?;
            st.dc_pred[k] = st.dc_pred[k]
                .checked_add(diff)
                .ok_or_else(|| Stop::corrupt("corrupt JPEG: DC coefficient overflow"))?;
            coef[0] = ((st.dc_pred[k] as u32) << scan.al) as i16;
        }
        Kind::DcRefine => {
            if r.bit()? {
                coef[0] |= (1i32 << scan.al) as i16;
            }
        }
        Kind::AcFirst => ac_first(r, ac(), coef, &mut st.eobrun, scan)?,
        Kind::AcRefine => ac_refine(r, ac(), coef, &mut st.eobrun, scan)?,
    }
    Ok(())
}

fn dc_diff(r: &mut BitReader, table: &Huffman) -> Result<i32, Stop> {
    let s = r.decode(table)? as i32;
    Ok(if s == 0 { 0 } else { extend(r.bits(s)?, s) })
}

fn ac_first(
    r: &mut BitReader,
    table: &Huffman,
    coef: &mut [i16; 64],
    eobrun: &mut u32,
    scan: &Scan,
) -> Result<(), Stop> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = r.decode(table)?;
        let (run, s) = ((rs >> 4) as u32, (rs & 15) as i32);
        if s != 0 {
            k += run as usize;
            let v = extend(r.bits(s)?, s);
            coef[NATURAL[k]] = ((v as u32) << scan.al) as i16;
        } else if run == 15 {
            k += 15;
        } else {
            *eobrun = eob_run(r, run)? - 1;
            break;
        }
        k += 1;
    }
    Ok(())
}

/// The length of an end-of-band run `EOBr`: `2^r` plus `r` appended bits.
fn eob_run(r: &mut BitReader, run: u32) -> Result<u32, Stop> {
    Ok((1u32 << run) + r.bits(run as i32)? as u32)
}

/// Successive-approximation refinement of one AC band (`decode_mcu_AC_refine`).
fn ac_refine(
    r: &mut BitReader,
    table: &Huffman,
    coef: &mut [i16; 64],
    eobrun: &mut u32,
    scan: &Scan,
) -> Result<(), Stop> {
    let p1 = 1i32 << scan.al;
    let m1 = -1i32 << scan.al;
    let refine = |r: &mut BitReader, c: &mut i16| -> Result<(), Stop> {
        if r.bit()? && (*c as i32 & p1) == 0 {
            *c = c.wrapping_add(if *c >= 0 { p1 } else { m1 } as i16);
        }
        Ok(())
    };
    let mut k = scan.ss;
    if *eobrun == 0 {
        while k <= scan.se {
            let rs = r.decode(table)?;
            let (mut run, s) = ((rs >> 4) as i32, rs & 15);
            let mut val = 0;
            if s != 0 {
                val = if r.bit()? { p1 } else { m1 };
            } else if run != 15 {
                *eobrun = eob_run(r, run as u32)?;
                break;
            }
            loop {
                let z = NATURAL[k];
                if coef[z] != 0 {
                    refine(r, &mut coef[z])?;
                } else {
                    run -= 1;
                    if run < 0 {
                        break;
                    }
                }
                k += 1;
                if k > scan.se {
                    break;
                }
            }
            if val != 0 {
                coef[NATURAL[k]] = val as i16;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= scan.se {
            let z = NATURAL[k];
            if coef[z] != 0 {
                refine(r, &mut coef[z])?;
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

/// `process_restart`: drop buffered bits, take the RSTn marker (or resynchronise), reset.
fn restart(r: &mut BitReader, st: &mut State, interval: usize) -> Result<(), Stop> {
    r.discard();
    if r.unread_marker.is_none() {
        r.unread_marker = Some(next_marker(r.data(), &mut r.pos)?);
    }
    if r.unread_marker == Some(0xD0 + st.next_rst) {
        r.unread_marker = None;
    } else {
        resync(r, st.next_rst)?;
    }
    st.next_rst = (st.next_rst + 1) & 7;
    st.dc_pred = [0; 4];
    st.eobrun = 0;
    st.restarts_to_go = interval;
    if r.unread_marker.is_none() {
        r.insufficient = false;
    }
    Ok(())
}

/// `jpeg_resync_to_restart`: the marker found is not the expected RSTn.
fn resync(r: &mut BitReader, desired: u8) -> Result<(), Stop> {
    let rst = |d: i32| 0xD0 + (d & 7);
    let d = desired as i32;
    loop {
        let m = r.unread_marker.expect("a marker to resync on") as i32;
        // 1: take it as the expected marker; 2: look further; 3: leave it for later (the
        // segment then decodes as empty). Not an RSTn, or one of the next two: 3.
        let action = if m < 0xC0 {
            2
        } else if !(0xD0..=0xD7).contains(&m) || m == rst(d + 1) || m == rst(d + 2) {
            3
        } else if m == rst(d - 1) || m == rst(d - 2) {
            2
        } else {
            1
        };
        match action {
            1 => {
                r.unread_marker = None;
                return Ok(());
            }
            2 => r.unread_marker = Some(next_marker(r.data(), &mut r.pos)?),
            _ => return Ok(()),
        }
    }
}

/// `start_pass_phuff_decoder`: validates a progressive scan, records the coefficient precision,
/// and says which tables it needs (DC first needs DC tables, AC scans AC tables).
pub fn progression(
    frame: &mut Frame,
    comps: &[usize],
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
) -> Result<(bool, bool), Stop> {
    let dc_band = ss == 0;
    let bad = if dc_band {
        se != 0
    } else {
        ss > se || se > 63 || comps.len() != 1
    } || (ah != 0 && al + 1 != ah)
        || al > 13;
    if bad {
        return Err(Stop::corrupt(format!(
            "corrupt JPEG: bad progressive scan (Ss={ss} Se={se} Ah={ah} Al={al})"
        )));
    }
    for &ci in comps {
        for k in ss..=se {
            frame.comps[ci].coef_bits[k] = al as i32;
        }
    }
    Ok((dc_band && ah == 0, !dc_band))
}
