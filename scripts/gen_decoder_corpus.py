#!/usr/bin/env python3
"""Decoder conformance corpus: what Pillow makes of every file (`tests/decoder_corpus.rs`).

For every image file under CORPUS (by extension: png, jpg, jpeg, tif, tiff, bmp; sorted by
relative path) this writes one JSON object per line to OUT:

  {"file": "<rel path>", "pillow": "ok", "size": [w, h],
   "rgb": sha256(Image.open(p).convert("RGB") bytes),
   "l": sha256(Image.open(p).convert("L") bytes),
   "resized": sha256(Resize((S, S))(Image.open(p).convert("RGB")) bytes)}

or, when Pillow cannot open/convert it (either conversion),

  {"file": "<rel path>", "pillow": "error", "error": "<exception type: message>"}

`convert("RGB")` is what the reference does to images, `convert("L")` what it does to masks, and
`Resize((S, S))` is torchvision's on a PIL image (Pillow's antialiased bilinear), S = --size.
Hashes instead of pixels keep the expectations small; `--dump FILE` writes Pillow's RGB pixels
of one corpus file as a binary PPM for diagnosing a mismatch.

The corpus itself is assembled from checkouts of the suites' repositories (commits and
licences in tests/fixtures/decoder/README.md): every image file up to --max-bytes, plus the
larger files the issue-13 findings need (ALWAYS), copied to corpus/<suite>/<path>, with a
MANIFEST.tsv of sizes and SHA-256s.

Usage:
  gen_decoder_corpus.py assemble --source pillow=<Pillow>/Tests/images \
      --source pngsuite=<image-png>/tests/pngsuite --source libjpeg-turbo=<libjpeg-turbo>/testimages \
      --source libtiff=<libtiff>/test/images [--corpus DIR] [--max-bytes 24576]
  gen_decoder_corpus.py [--corpus tests/fixtures/decoder/corpus]
                        [--out tests/fixtures/decoder/expected.jsonl] [--size 32]
  gen_decoder_corpus.py --dump pillow/hopper.jpg > /tmp/hopper.ppm
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import warnings

from PIL import Image
from torchvision import transforms

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(HERE, "..", "tests", "fixtures", "decoder", "corpus")
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "fixtures", "decoder", "expected.jsonl")


def sha(img):
    return hashlib.sha256(img.tobytes()).hexdigest()


def converted(path, mode):
    with Image.open(path) as im:
        return im.convert(mode)


def expect(path, size):
    # libtiff reports on the C stderr; keep the generator's output readable.
    saved = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    try:
        return _expect(path, size)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _expect(path, size):
    try:
        rgb = converted(path, "RGB")
        luma = converted(path, "L")
    except Exception as e:  # noqa: BLE001 - any refusal is an expected refusal
        msg = str(e).splitlines()[0] if str(e) else ""
        return {"pillow": "error", "error": f"{type(e).__name__}: {msg}"}
    resized = transforms.Resize((size, size))(rgb)
    return {
        "pillow": "ok",
        "size": list(rgb.size),
        "rgb": sha(rgb),
        "l": sha(luma),
        "resized": sha(resized),
    }


# Larger than --max-bytes, kept because an issue-13 finding is about them.
ALWAYS = [
    "pillow/hopper_bad_exif.jpg",  # damaged JPEG Pillow decodes
    "pillow/pil_sample_cmyk.jpg",  # CMYK JPEG
    "pillow/tiff_tiled_planar_raw.tif",  # tiled planar TIFFs made the tiff crate panic
    "pillow/tiff_tiled_planar_lzw.tiff",
    "pillow/tiff_tiled_planar_16bit_RGB.tiff",
    "pillow/tiff_tiled_planar_16bit_RGBa.tiff",
    "pillow/tiff_16bit_RGBa.tiff",  # 16-bit associated alpha
    "pillow/tiff_strip_planar_16bit_RGBa.tiff",
    "pillow/tiff_strip_cmyk_jpeg.tif",  # CMYK JPEG-in-TIFF
    "pillow/tiff_tiled_cmyk_jpeg.tif",
    "pillow/tiff_strip_cmyk_16l_jpeg.tif",
]


def assemble(sources, corpus, max_bytes):
    os.makedirs(corpus, exist_ok=True)
    rows = []
    for spec in sources:
        suite, root = spec.split("=", 1)
        for rel in corpus_files(root):
            src = os.path.join(root, rel)
            name = f"{suite}/{rel}"
            if os.path.getsize(src) > max_bytes and name not in ALWAYS:
                continue
            dst = os.path.join(corpus, name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            with open(dst, "rb") as f:
                rows.append((name, os.path.getsize(dst), hashlib.sha256(f.read()).hexdigest()))
    with open(os.path.join(corpus, "MANIFEST.tsv"), "w") as f:
        f.write("file\tbytes\tsha256\n")
        for r in sorted(rows):
            f.write("%s\t%d\t%s\n" % r)
    total = sum(r[1] for r in rows)
    print(f"{corpus}: {len(rows)} files, {total} bytes", file=sys.stderr)


def corpus_files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith(EXTENSIONS):
                out.append(os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"))
    return sorted(out)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "assemble":
        ap = argparse.ArgumentParser(description="assemble the corpus")
        ap.add_argument("--source", action="append", required=True, help="suite=directory")
        ap.add_argument("--corpus", default=DEFAULT_CORPUS)
        ap.add_argument("--max-bytes", type=int, default=24576)
        a = ap.parse_args(sys.argv[2:])
        assemble(a.source, a.corpus, a.max_bytes)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=DEFAULT_CORPUS)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--dump", help="write Pillow's RGB pixels of this corpus file as PPM to stdout")
    a = ap.parse_args()
    if a.dump:
        rgb = converted(os.path.join(a.corpus, a.dump), "RGB")
        sys.stdout.buffer.write(b"P6\n%d %d\n255\n" % rgb.size + rgb.tobytes())
        return
    warnings.simplefilter("ignore")
    files = corpus_files(a.corpus)
    with open(a.out, "w") as f:
        for rel in files:
            row = {"file": rel, **expect(os.path.join(a.corpus, rel), a.size)}
            if "error" in row:  # no machine-specific paths in the committed file
                row["error"] = row["error"].replace(os.path.join(a.corpus, rel), rel)
            f.write(json.dumps(row) + "\n")
    print(f"{a.out}: {len(files)} files, Pillow {Image.__version__}, size {a.size}", file=sys.stderr)


if __name__ == "__main__":
    main()
