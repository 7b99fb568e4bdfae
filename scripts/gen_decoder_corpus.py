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

Usage:
  gen_decoder_corpus.py [--corpus tests/fixtures/decoder/corpus]
                        [--out tests/fixtures/decoder/expected.jsonl] [--size 32]
  gen_decoder_corpus.py --dump pillow/hopper.jpg > /tmp/hopper.ppm
"""
import argparse
import hashlib
import json
import os
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


def corpus_files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            if n.lower().endswith(EXTENSIONS):
                out.append(os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"))
    return sorted(out)


def main():
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
            f.write(json.dumps(row) + "\n")
    ok = sum(1 for rel in files)
    print(f"{a.out}: {ok} files, Pillow {Image.__version__}, size {a.size}", file=sys.stderr)


if __name__ == "__main__":
    main()
