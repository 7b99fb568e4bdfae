#!/usr/bin/env python3
"""Compare `ava-dino features` output with transformers on the same HF model directory.

  python scripts/compare_dinov3_features.py --model DIR --image IMG --pixels OUT_px.safetensors
      writes pixel_values (PIL bilinear resize to 512, ImageNet mean/std) for `--input`, then
  python scripts/compare_dinov3_features.py --model DIR --pixels px.safetensors --rust feats.safetensors
      runs DINOv3ViTModel (inv_freq = 1/bf16 periods), times the forward and prints
      max_abs / rel L2 per tensor against the Rust dump.
"""
import argparse
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dinov3_torch import load_model, tap_features


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--pixels", required=True)
    ap.add_argument("--image")
    ap.add_argument("--rust")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.image:
        from PIL import Image
        img = Image.open(a.image).convert("RGB").resize((512, 512), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        save_file({"pixel_values": ((x - mean) / std)[None].contiguous()}, a.pixels)
        print(f"wrote {a.pixels}")
        return
    model = load_model(a.model, a.threads)
    x = load_file(a.pixels)["pixel_values"]
    rust = load_file(a.rust)
    taps = rust["taps"].tolist()
    with torch.inference_mode():
        t0 = time.time()
        hs = model(pixel_values=x, output_hidden_states=True).hidden_states
        print(f"torch forward ({a.threads} threads, all {len(hs) - 1} blocks): {time.time() - t0:.2f} s")
        for k in taps:
            for name, want in tap_features(model, hs, k).items():
                got = rust[f"{name}.{k}"]
                d = (got.double() - want.double())
                print(f"{name}.{k} max_abs={d.abs().max().item():.3e} rel={(d.norm() / want.double().norm()).item():.3e}")


if __name__ == "__main__":
    main()
