#!/usr/bin/env python3
"""Relative error of the backbone features at bf16/f16 against f32 (docs/DEVIATIONS.md).

Runs `ava-dino features --dtype D` on
  - every dinov3 parity fixture (tiny models; reference: the PyTorch f32 tensors in io.safetensors),
  - optionally (--vitl16) the full-size ViT-L/16 at 512 px with seeded random weights and pixels
    (reference: our own f32 run), which is what error accumulation over 24 blocks looks like,
and prints one markdown row per (model, dtype, feature): the largest relative L2 error
||got - want|| / ||want|| over the taps, and the largest absolute error. With --torch (needs
--vitl16) the same for transformers' DINOv3ViTModel cast with `.to(dtype)` against its own f32
run on the CPU: the error PyTorch itself makes at that precision, for comparison.

  python3 scripts/device/precision_error.py --bin target/release/ava-dino --device cpu [--vitl16 [--torch]]
  (environment passes through: AVA_DINO_ALLOW_SOFTWARE_ADAPTER=1 with --device wgpu, ...)
"""
import argparse
import os
import subprocess
import tempfile
import time

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPS = ("normed", "patches", "cls")


def features(a, backbone, pixels, taps, dtype, out):
    cmd = [a.bin, "features", "--backbone", backbone, "--input", pixels, "--taps", ",".join(map(str, taps)),
           "--dtype", dtype, "--device", a.device, "--out", out]
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
    return load_file(out), f"{time.perf_counter() - start:.1f} s"


def errors(got, want, taps):
    rows = {}
    for g in GROUPS:
        rel, mx = 0.0, 0.0
        for t in taps:
            x, y = got[f"{g}.{t}"].astype(np.float64), want[f"{g}.{t}"].astype(np.float64)
            rel = max(rel, np.linalg.norm(x - y) / np.linalg.norm(y))
            mx = max(mx, np.abs(x - y).max())
        rows[g] = (rel, mx)
    return rows


def torch_features(model_dir, pixels, taps, dtype):
    """DINOv3ViTModel at `dtype` (cast like `.to(dtype)`), features made as ours are: final norm
    output cast to f32, then CLS row and per-channel standardized patch rows."""
    import torch
    from transformers import DINOv3ViTModel
    from transformers.utils import logging

    logging.disable_progress_bar()
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    model = DINOv3ViTModel.from_pretrained(model_dir).eval()
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    j = torch.arange(head_dim // 4, dtype=torch.float32)
    periods = (model.config.rope_theta ** (2 * j / (head_dim // 2))).to(torch.bfloat16).float()
    model.rope_embeddings.inv_freq.copy_(1.0 / periods)  # the released checkpoints' bf16 periods
    model = model.to(dt)
    prefix = 1 + model.config.num_register_tokens
    start = time.perf_counter()
    with torch.inference_mode():
        x = torch.from_numpy(load_file(pixels)["pixel_values"]).to(dt)
        hs = model(pixel_values=x, output_hidden_states=True).hidden_states
        out = {}
        for k in taps:
            normed = model.norm(hs[k + 1]).float()
            p = normed[:, prefix:]
            out[f"normed.{k}"] = normed.numpy()
            out[f"patches.{k}"] = ((p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + 1e-6)).numpy()
            out[f"cls.{k}"] = normed[:, 0].numpy()
    return out, f"{time.perf_counter() - start:.1f} s torch forward"


def report(label, dtypes, run_one):
    for dtype in dtypes:
        got, info = run_one(dtype)
        if got is None:
            print(f"| {label} | {dtype} | - | - | - | {info} |")
            continue
        for g, (rel, mx) in got.items():
            print(f"| {label} | {dtype} | {g} | {rel:.2e} | {mx:.2e} | {info} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16", "f16"])
    ap.add_argument("--vitl16", action="store_true", help="also the full-size random ViT-L/16 at 512 px")
    ap.add_argument("--torch", action="store_true", help="with --vitl16: PyTorch's own error at each dtype")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="precision-")
    print(f"device {a.device}\n")
    print("| model | dtype | features | rel L2 (worst tap) | max abs | run |\n|---|---|---|---|---|---|")
    fixtures = os.path.join(ROOT, "tests", "fixtures", "dinov3")
    for case in sorted(os.listdir(fixtures)):
        d = os.path.join(fixtures, case)
        io = os.path.join(d, "io.safetensors")
        want = load_file(io)
        taps = [int(t) for t in want["taps"]]

        def one(dtype, d=d, io=io, want=want, taps=taps, case=case):
            got, info = features(a, os.path.join(d, "model.safetensors"), io, taps, dtype,
                                 os.path.join(tmp, f"{case}-{dtype}.safetensors"))
            return (errors(got, want, taps), info) if got is not None else (None, info)

        report(f"fixture {case} (vs PyTorch f32)", a.dtypes, one)
    if a.vitl16:
        w = os.path.join(tmp, "vitl16")
        subprocess.run([a.bin, "random-backbone", "--preset", "vitl16", "--seed", "0", "--out", w], check=True,
                       capture_output=True)
        px = os.path.join(tmp, "px512.safetensors")
        rng = np.random.default_rng(0)
        save_file({"pixel_values": rng.standard_normal((1, 3, 512, 512)).astype(np.float32)}, px)
        taps = [5, 11, 17, 23]
        ref, info = features(a, w, px, taps, "f32", os.path.join(tmp, "vitl16-f32.safetensors"))
        if ref is None:
            print(f"| ViT-L/16 512 px | f32 | - | - | - | {info} |")
            return

        def one(dtype):
            if dtype == "f32":
                return {g: (0.0, 0.0) for g in GROUPS}, f"reference, {info}"
            got, run = features(a, w, px, taps, dtype, os.path.join(tmp, f"vitl16-{dtype}.safetensors"))
            return (errors(got, ref, taps), run) if got is not None else (None, run)

        report("ViT-L/16 512 px random (vs ours f32)", a.dtypes, one)
        if a.torch:
            tref, tinfo = torch_features(w, px, taps, "f32")
            print(f"| ViT-L/16 512 px random, ours f32 vs PyTorch f32 | f32 | all | "
                  f"{max(r for r, _ in errors(ref, tref, taps).values()):.2e} | "
                  f"{max(m for _, m in errors(ref, tref, taps).values()):.2e} | {tinfo} |")

            def theirs(dtype):
                if dtype == "f32":
                    return {g: (0.0, 0.0) for g in GROUPS}, f"reference, {tinfo}"
                got, run = torch_features(w, px, taps, dtype)
                return errors(got, tref, taps), run

            report("ViT-L/16 512 px random, PyTorch .to(dtype) (vs PyTorch f32)", a.dtypes, theirs)


if __name__ == "__main__":
    main()
