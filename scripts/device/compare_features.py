#!/usr/bin/env python3
"""Backbone features on the GPU against the CPU's (scripts/device/h200.sh, stage `features`).

  compare_features.py pixels --out px.safetensors --batch 2 --size 512
      writes `pixel_values` f32 [B, 3, S, S]: deterministic synthetic images (smooth gradients,
      stripes and seeded noise, in the range of ImageNet-normalized pixels), the same bytes on
      every machine, for `ava-dino features --input`.
  compare_features.py compare --dir D --pair gpu-f32:cpu-f32 ... --json out.jsonl
      reads D/<name>.safetensors as `ava-dino features` writes them (taps, normed.K, patches.K,
      cls.K) and, for each pair `got:want`, prints per tensor kind (worst over the taps) the max
      absolute difference, the relative L2 error ||got - want|| / ||want||, the cosine of the
      whole tensors and the smallest cosine of one token's row; one JSON line per pair, kind and
      tap goes to --json. A file that is missing (its stage failed or was cut) is reported as
      such, not as an error.

numpy where it is installed (the GPU machine); plain Python otherwise (a dry run here, tiny
model), same formulas. Exit 0 whenever it could compare what exists; the numbers are the result.
"""
import argparse
import json
import math
import os
import struct
import sys
from array import array

try:
    import numpy as np
except ImportError:  # the dry run on a machine without numpy
    np = None

KINDS = ("normed", "patches", "cls")


# ---------------------------------------------------------------- safetensors (f32 and i64 only)
def read_safetensors(path):
    """{name: (shape, flat values)}; values a numpy array or an array('f'/'q')."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        raw = data[start:end]
        code = {"F32": "f", "I64": "q"}.get(meta["dtype"])
        if code is None:
            continue
        if np is not None:
            values = np.frombuffer(raw, dtype="<f4" if code == "f" else "<i8")
        else:
            values = array(code)
            values.frombytes(raw)
            if sys.byteorder != "little":
                values.byteswap()
        out[name] = (list(meta["shape"]), values)
    return out


def write_safetensors(path, name, shape, values):
    """One f32 tensor `name` of `shape` from `values` (an array('f'))."""
    if sys.byteorder != "little":
        values = array("f", values)
        values.byteswap()
    raw = values.tobytes()
    header = json.dumps({name: {"dtype": "F32", "shape": shape, "data_offsets": [0, len(raw)]}})
    header += " " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header.encode())
        f.write(raw)


# ---------------------------------------------------------------- synthetic pixels
def pixels(batch, size):
    """[batch, 3, size, size] in [-2.2, 2.7], the range of ImageNet-normalized pixels: per image
    and channel a gradient, stripes at an image-dependent frequency and xorshift noise."""
    out = array("f")
    state = 0x9E3779B9
    for b in range(batch):
        for c in range(3):
            fx, fy = 2 + b + c, 3 + 2 * b
            for y in range(size):
                v = y / size
                row = []
                for x in range(size):
                    u = x / size
                    state ^= (state << 13) & 0xFFFFFFFF
                    state ^= state >> 17
                    state ^= (state << 5) & 0xFFFFFFFF
                    noise = state / 0xFFFFFFFF - 0.5
                    s = 0.8 * (u - v) + 0.9 * math.sin(2 * math.pi * (fx * u + fy * v)) + 0.6 * noise
                    row.append(max(-2.2, min(2.7, s + 0.1 * c)))
                out.extend(row)
    return out


# ---------------------------------------------------------------- statistics
def stats(got, want, width):
    """max |got - want|, ||got - want|| / ||want||, cosine, smallest row cosine (rows of `width`)."""
    if np is not None:
        g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        d = g - w
        gn, wn = np.linalg.norm(g), np.linalg.norm(w)
        g2, w2 = g.reshape(-1, width), w.reshape(-1, width)
        rows = (g2 * w2).sum(1) / np.maximum(np.linalg.norm(g2, axis=1) * np.linalg.norm(w2, axis=1), 1e-300)
        return {
            "max_abs": float(np.abs(d).max()) if d.size else 0.0,
            "rel_l2": float(np.linalg.norm(d) / wn) if wn > 0 else float("nan"),
            "cosine": float(g @ w / (gn * wn)) if gn > 0 and wn > 0 else float("nan"),
            "min_row_cosine": float(rows.min()) if rows.size else float("nan"),
            "nonfinite": int((~np.isfinite(g)).sum()),
        }
    max_abs = dd = gg = ww = gw = 0.0
    min_row = float("inf")
    nonfinite = 0
    for r in range(0, len(want), width):
        rg = rw = rgw = 0.0
        for a, b in zip(got[r:r + width], want[r:r + width]):
            if not math.isfinite(a):
                nonfinite += 1
            d = a - b
            max_abs = max(max_abs, abs(d))
            dd += d * d
            rg += a * a
            rw += b * b
            rgw += a * b
        gg, ww, gw = gg + rg, ww + rw, gw + rgw
        min_row = min(min_row, rgw / max(math.sqrt(rg * rw), 1e-300))
    return {
        "max_abs": max_abs,
        "rel_l2": math.sqrt(dd / ww) if ww > 0 else float("nan"),
        "cosine": gw / math.sqrt(gg * ww) if gg > 0 and ww > 0 else float("nan"),
        "min_row_cosine": min_row if min_row != float("inf") else float("nan"),
        "nonfinite": nonfinite,
    }


def compare(a):
    lines = []
    print("| got vs want | kind | taps | worst max_abs | worst rel L2 | lowest cosine | lowest row cosine |")
    print("|---|---|---|---|---|---|---|")
    files = {}

    def load(name):
        if name not in files:
            path = os.path.join(a.dir, f"{name}.safetensors")
            files[name] = read_safetensors(path) if os.path.exists(path) else None
        return files[name]

    for pair in a.pair:
        got_name, want_name = pair.split(":")
        got, want = load(got_name), load(want_name)
        missing = [n for n, f in ((got_name, got), (want_name, want)) if f is None]
        if missing:
            print(f"| {got_name} vs {want_name} | - | - | missing: {', '.join(missing)} | | | |")
            lines.append({"got": got_name, "want": want_name, "missing": missing})
            continue
        taps = [int(t) for t in want["taps"][1]]
        for kind in KINDS:
            rows = []
            for t in taps:
                key = f"{kind}.{t}"
                if key not in got or key not in want or got[key][0] != want[key][0]:
                    rows.append({"tap": t, "error": f"{key}: absent or shapes differ"})
                    continue
                shape, values = want[key]
                rows.append({"tap": t, "shape": shape, **stats(got[key][1], values, shape[-1])})
            for r in rows:
                lines.append({"got": got_name, "want": want_name, "kind": kind, **r})
            ok = [r for r in rows if "error" not in r]
            if not ok:
                print(f"| {got_name} vs {want_name} | {kind} | - | {rows[0]['error']} | | | |")
                continue
            nonfinite = sum(r["nonfinite"] for r in ok)
            note = f" ({nonfinite} non-finite)" if nonfinite else ""
            print(
                f"| {got_name} vs {want_name} | {kind} | {','.join(str(r['tap']) for r in ok)} "
                f"| {max(r['max_abs'] for r in ok):.3e}{note} | {max(r['rel_l2'] for r in ok):.3e} "
                f"| {min(r['cosine'] for r in ok):.7f} | {min(r['min_row_cosine'] for r in ok):.7f} |"
            )
    if a.json:
        with open(a.json, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pixels")
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=512)
    c = sub.add_parser("compare")
    c.add_argument("--dir", required=True)
    c.add_argument("--pair", nargs="+", required=True, help="got:want file stems in --dir")
    c.add_argument("--json")
    a = ap.parse_args()
    if a.cmd == "pixels":
        write_safetensors(a.out, "pixel_values", [a.batch, 3, a.size, a.size], pixels(a.batch, a.size))
        print(f"wrote {a.out}: pixel_values [{a.batch}, 3, {a.size}, {a.size}]")
    else:
        compare(a)


if __name__ == "__main__":
    main()
