#!/usr/bin/env python3
"""Crafted image files for the decoder's regression tests (issue 13), written byte by byte.

Writes into tests/fixtures/decoder/corpus/crafted/ (so that gen_decoder_corpus.py records what
Pillow makes of each, and tests/decoder_corpus.rs compares); tests/decoder_crafted.rs also runs
each through the library and `ava-dino features --image` and bounds time and memory.

  issue13_dht_overfull.jpg   26 B: DHT declaring 3 codes of length 1 (made the decoder panic)
  issue13_two_sof0.jpg       30 B: two SOF0 segments of one component (made the decoder panic)
  issue13_huge_sof.jpg       23 B: 65535x65535x3 SOF0 then EOI, no scan (allocated and looped)
  dht_overfull_in_scan.jpg   the overfull table used by a scan (libjpeg: bad Huffman table)
  sof_twice_then_scan.jpg    two frame headers before a scan (libjpeg: duplicate SOF)
  huge_with_scan.jpg         65535x65535x3 with a scan: over Pillow's pixel limit
  over_memory.jpg            9000x9000x3 progressive: Pillow decodes, over our 512 MiB limit
  truncated_baseline.jpg     a baseline JPEG cut inside its entropy-coded data
  wild_dc.jpg                DC sums past the IDCT's 8-bit range (libjpeg-turbo's SIMD saturates)
  std_tables.jpg             no DHT at all: libjpeg's standard (motion-JPEG) tables
  bad_restart.jpg            restart markers out of order (libjpeg resynchronises)
  ycck.jpg                   4-component JPEG with an Adobe YCCK transform
  adobe_rgb.jpg              3-component JPEG stored as RGB (Adobe transform 0)
  padded_markers.jpg         FF fill bytes and junk between segments

Usage: gen_crafted_images.py [--out DIR]
"""
import argparse
import io
import os
import struct

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "fixtures", "decoder", "corpus", "crafted")

# ITU T.81 K.3 luminance DC codes (category -> bit string) and the AC end-of-block code.
DC_LUM = ["00", "010", "011", "100", "101", "110", "1110", "11110", "111110", "1111110",
          "11111110", "111111110"]
EOB = "1010"


def seg(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def dqt(value=1):
    return seg(0xDB, bytes([0]) + bytes([value] * 64))


def sof(marker, w, h, comps):
    body = struct.pack(">BHHB", 8, h, w, len(comps))
    for cid, hv, tq in comps:
        body += bytes([cid, hv, tq])
    return seg(marker, body)


def sos(comps, ss=0, se=63, ahal=0):
    body = bytes([len(comps)])
    for cid, tables in comps:
        body += bytes([cid, tables])
    return seg(0xDA, body + bytes([ss, se, ahal]))


def dc_bits(diff):
    """Huffman code and magnitude bits of one DC difference (standard luminance table)."""
    cat = abs(diff).bit_length()
    mag = diff if diff >= 0 else diff + (1 << cat) - 1
    return DC_LUM[cat] + (format(mag, f"0{cat}b") if cat else "")


def entropy(bits):
    bits += "1" * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        b = int(bits[i:i + 8], 2)
        out.append(b)
        if b == 0xFF:
            out.append(0)
    return bytes(out)


def grey_dc_jpeg(w, h, diffs, dri=0, rst_order=None):
    """Baseline greyscale JPEG of DC-only blocks with standard tables (no DHT segment)."""
    out = b"\xFF\xD8" + dqt() + sof(0xC0, w, h, [(1, 0x11, 0)])
    if dri:
        out += seg(0xDD, struct.pack(">H", dri))
    out += sos([(1, 0x00)])
    if not dri:
        return out + entropy("".join(dc_bits(d) + EOB for d in diffs)) + b"\xFF\xD9"
    for i in range(0, len(diffs), dri):
        if i:
            n = rst_order[i // dri - 1] if rst_order else (i // dri - 1) % 8
            out += bytes([0xFF, 0xD0 + n])
        out += entropy("".join(dc_bits(d) + EOB for d in diffs[i:i + dri]))
    return out + b"\xFF\xD9"


def pillow_jpeg(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def texture(w, h, channels, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    planes = [127 + 90 * np.sin(x * rng.uniform(0.05, 0.3) + y * rng.uniform(0.05, 0.3)) for _ in range(channels)]
    a = np.stack(planes, -1) + rng.normal(0, 12, (h, w, channels))
    return np.clip(a, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT)
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    files = {}

    # The three files of issue 13, byte for byte.
    files["issue13_dht_overfull.jpg"] = b"\xFF\xD8" + seg(0xC4, bytes([0x00, 3] + [0] * 15 + [0, 1, 2]))
    one = sof(0xC0, 1, 1, [(1, 0x11, 0)])
    files["issue13_two_sof0.jpg"] = b"\xFF\xD8" + one + one + b"\xFF\xD9"
    files["issue13_huge_sof.jpg"] = (
        b"\xFF\xD8" + sof(0xC0, 65535, 65535, [(1, 0x11, 0), (2, 0x11, 0), (3, 0x11, 0)]) + b"\xFF\xD9"
    )

    # The same defects where a scan makes libjpeg (not Pillow's header parser) meet them.
    grey = grey_dc_jpeg(8, 8, [0])
    body = grey[2:]
    files["dht_overfull_in_scan.jpg"] = b"\xFF\xD8" + seg(0xC4, bytes([0x00, 3] + [0] * 15 + [0, 1, 2])) + body
    files["sof_twice_then_scan.jpg"] = b"\xFF\xD8" + sof(0xC0, 8, 8, [(1, 0x11, 0)]) + body
    files["huge_with_scan.jpg"] = (
        b"\xFF\xD8" + dqt() + sof(0xC0, 65535, 65535, [(1, 0x11, 0), (2, 0x11, 0), (3, 0x11, 0)])
        + sos([(1, 0), (2, 0), (3, 0)]) + b"\x00" * 8 + b"\xFF\xD9"
    )
    # Progressive 9000x9000: a DC scan whose data stops after a few blocks (libjpeg fills the rest
    # with zeros). Pillow decodes it; buffered coefficients, planes and output need ~950 MiB here.
    comps3 = [(1, 0x11, 0), (2, 0x11, 0), (3, 0x11, 0)]
    dc_table = seg(0xC4, bytes([0x00, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]) + bytes(range(12)))
    files["over_memory.jpg"] = (
        b"\xFF\xD8" + dqt() + sof(0xC2, 9000, 9000, comps3) + dc_table
        + sos([(1, 0), (2, 0), (3, 0)], 0, 0, 0) + entropy("00" * 32) + b"\xFF\xD9"
    )

    photo = Image.fromarray(texture(61, 37, 3, 1))
    full = pillow_jpeg(photo, quality=90)
    sos_at = full.index(b"\xFF\xDA")
    files["truncated_baseline.jpg"] = full[: sos_at + (len(full) - sos_at) // 2]

    # Block 1 DC 2047, block 2 DC 4094: 4094 * 8 / 64 = 512 above mid-grey; libjpeg's C range
    # limit would wrap to 0, its SIMD IDCT saturates to 255.
    files["wild_dc.jpg"] = grey_dc_jpeg(16, 8, [2047, 2047])
    files["std_tables.jpg"] = grey_dc_jpeg(24, 16, [100, -30, 5, 0, 70, -200])
    # Restart every 2 MCUs; the RSTn after the first interval is RST3 instead of RST0.
    files["bad_restart.jpg"] = grey_dc_jpeg(48, 8, [50, 10, -40, 30, 0, 90], dri=2, rst_order=[3, 1])

    cmyk = Image.fromarray(texture(40, 24, 4, 2), "CMYK")
    data = bytearray(pillow_jpeg(cmyk, quality=92))
    adobe = data.index(b"Adobe")
    data[adobe + 11] = 2  # declare the samples YCCK: libjpeg then converts them to CMYK
    files["ycck.jpg"] = bytes(data)
    files["adobe_rgb.jpg"] = pillow_jpeg(Image.fromarray(texture(33, 21, 3, 3)), quality=85, keep_rgb=True)

    small = pillow_jpeg(Image.fromarray(texture(16, 16, 3, 4)), quality=80)
    dqt_at = small.index(b"\xFF\xDB")
    files["padded_markers.jpg"] = small[:dqt_at] + b"junk\xFF\xFF\xFF" + small[dqt_at:]

    for name, b in sorted(files.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(b)
        print(f"{name}: {len(b)} bytes")


if __name__ == "__main__":
    main()
