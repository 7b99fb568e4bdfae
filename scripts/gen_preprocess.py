#!/usr/bin/env python3
"""Parity fixtures for image/mask preprocessing (kind `preprocess`).

Each case directory holds a source image in some mode/format, an optional mask, `case.json`
(`size`, `mask_threshold`, `image`, `mask`) and `expected.safetensors` with
  pixel_values f32 [3,S,S]  torchvision: Resize((S,S)) on the PIL image (antialiased bilinear),
                            ToTensor, Normalize(ImageNet) - exactly the reference pipeline;
  pixels_u8    u8  [3,S,S]  the resized RGB pixels before scaling (exact comparison);
  mask         u8  [S,S]    Image.open(mask).convert('L') -> Resize -> ToTensor -> > threshold.

Usage: gen_preprocess.py [--out DIR] [--seed N] [--size S] [--src-scale K]
(default: tests/fixtures/preprocess, seed 0, sizes varied per case).
"""
import argparse
import json
import os
import struct
import zlib

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def png16_rgb(path, arr):
    """Writes a 16-bit RGB PNG by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def smooth_rgb(rng, w, h):
    """Random but spatially structured content (gradients + blobs + noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy = rng.uniform(0.02, 0.3, 2)
        img[..., c] = 127 + 100 * np.sin(x * fx + rng.uniform(0, 6)) * np.cos(y * fy + rng.uniform(0, 6))
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def mask_array(rng, w, h, values=(255,)):
    m = np.zeros((h, w), np.uint8)
    for v in values:
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        r = rng.uniform(0.08, 0.3) * min(w, h)
        y, x = np.mgrid[0:h, 0:w]
        m[(x - cx) ** 2 + ((y - cy) * 1.2) ** 2 <= r * r] = v
    # a thin line: survives or vanishes depending on the threshold
    m[h // 2, : w // 2] = values[0]
    return m


def expected(img_path, mask_path, size, threshold):
    resize = transforms.Resize((size, size))  # PIL bilinear with antialias, as the reference
    img = Image.open(img_path).convert("RGB")
    r = resize(img)
    pixels = torch.from_numpy(np.asarray(r, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    pv = transforms.Normalize(MEAN, STD)(transforms.ToTensor()(r)).contiguous()
    out = {"pixel_values": pv, "pixels_u8": pixels}
    if mask_path is not None:
        m = transforms.ToTensor()(resize(Image.open(mask_path).convert("L")))[0]
        out["mask"] = (m > threshold).to(torch.uint8).contiguous()
    else:
        out["mask"] = torch.zeros((size, size), dtype=torch.uint8)
    return out


def make_cases(rng, size_override):
    """(name, image writer, mask writer or None, size, threshold)."""

    def sz(s):
        return size_override or s

    cases = []

    def add(name, w, h, size, thr, write_img, write_mask):
        cases.append((name, w, h, sz(size), thr, write_img, write_mask))

    def rgb(fmt, **kw):
        return lambda p, w, h: Image.fromarray(smooth_rgb(rng, w, h)).save(p, fmt, **kw)

    def lmask(fmt, values=(255,)):
        return lambda p, w, h: Image.fromarray(mask_array(rng, w, h, values)).save(p, fmt)

    add("rgb_png_down", 97, 83, 48, 0.5, ("png", rgb("PNG")), ("png", lmask("PNG")))
    add("rgb_png_up", 23, 31, 64, 0.0, ("png", rgb("PNG")), ("png", lmask("PNG")))
    add("rgb_png_mixed", 130, 17, 57, 0.5, ("png", rgb("PNG")), None)
    add("gray_png", 61, 75, 40, 0.0,
        ("png", lambda p, w, h: Image.fromarray(smooth_rgb(rng, w, h)[..., 0]).save(p)), ("png", lmask("PNG")))
    add("rgba_png", 70, 52, 48, 0.5,
        ("png", lambda p, w, h: Image.fromarray(np.dstack([smooth_rgb(rng, w, h), rng.integers(0, 256, (h, w), np.uint8)]), "RGBA").save(p)),
        ("png", lmask("PNG")))
    add("gray16_png", 45, 66, 48, 0.0,
        ("png", lambda p, w, h: Image.fromarray((smooth_rgb(rng, w, h)[..., 1].astype(np.uint16) * 3)).save(p)),
        ("png", lmask("PNG")))
    add("rgb16_png", 53, 47, 40, 0.5,
        ("png", lambda p, w, h: png16_rgb(p, smooth_rgb(rng, w, h).astype(np.uint16) * 257 + rng.integers(0, 257, (h, w, 3)).astype(np.uint16))),
        ("png", lmask("PNG")))

    def palette(p, w, h):
        im = Image.fromarray(smooth_rgb(rng, w, h)).quantize(colors=37)
        im.save(p)

    def palette_mask(p, w, h):
        m = Image.fromarray(mask_array(rng, w, h, (1, 2)), "L").convert("P")
        m.putpalette([0, 0, 0, 250, 30, 30, 20, 200, 60] + [0] * (253 * 3))
        m.save(p)

    add("palette_png", 66, 58, 48, 0.0, ("png", palette), ("png", palette_mask))
    add("index_mask_png", 80, 64, 48, 0.0, ("png", rgb("PNG")), ("png", lmask("PNG", values=(1, 2, 3))))
    add("jpeg_rgb", 91, 77, 48, 0.0, ("jpg", rgb("JPEG", quality=90)), ("jpg", lmask("JPEG")))
    add("jpeg_444", 83, 67, 48, 0.0, ("jpg", rgb("JPEG", quality=95, subsampling=0)), ("jpg", lmask("JPEG")))
    add("jpeg_422_restart", 101, 45, 64, 0.0,
        ("jpg", rgb("JPEG", quality=80, subsampling=1, restart_marker_blocks=3)), None)
    add("jpeg_progressive", 77, 59, 48, 0.0, ("jpg", rgb("JPEG", quality=85, progressive=True)), None)
    add("jpeg_gray", 64, 48, 40, 0.5,
        ("jpg", lambda p, w, h: Image.fromarray(smooth_rgb(rng, w, h)[..., 2]).save(p, "JPEG", quality=85)), None)
    add("bmp_rgb", 59, 41, 48, 0.5, ("bmp", rgb("BMP")), ("bmp", lmask("BMP")))
    add("tiff_rgb", 73, 55, 40, 0.0, ("tif", rgb("TIFF")), ("tif", lmask("TIFF")))
    # Pillow 13 runs the vertical pass first when the height shrinks by > 2x the width's pixels.
    add("tall_vertical_first", 41, 139, 32, 0.0, ("png", rgb("PNG")), ("png", lmask("PNG")))
    add("wide_horizontal_first", 139, 41, 32, 0.0, ("png", rgb("PNG")), ("png", lmask("PNG")))
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "preprocess"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=0, help="output size for every case (0 = per-case sizes)")
    ap.add_argument("--src-scale", type=int, default=1, help="multiply every source image size (e.g. 12: ~1000 px sources)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for name, w, h, size, thr, (iext, wimg), m in make_cases(rng, a.size):
        w, h = w * a.src_scale, h * a.src_scale
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        ip = os.path.join(d, f"image.{iext}")
        wimg(ip, w, h)
        mp = None
        if m is not None:
            mext, wmask = m
            mp = os.path.join(d, f"mask.{mext}")
            wmask(mp, w, h)
        save_file(expected(ip, mp, size, thr), os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"size": size, "mask_threshold": thr, "image": os.path.basename(ip),
                       "mask": os.path.basename(mp) if mp else None,
                       "source_mode": Image.open(ip).mode, "source_size": [w, h]}, f, indent=1)
        print(name, Image.open(ip).mode, (w, h), "->", size)


if __name__ == "__main__":
    main()
