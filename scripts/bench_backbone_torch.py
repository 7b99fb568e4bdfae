#!/usr/bin/env python3
"""PyTorch side of `cargo run --release --example bench_backbone` (a line protocol on stdio).

  python scripts/bench_backbone_torch.py --model DIR --pixels px.safetensors --taps 5,11,17,23

Loads transformers' DINOv3ViTModel from the HF directory written by `ava-dino random-backbone`
(RoPE inv_freq = 1/bf16 periods, as the released checkpoints), prints `ready`, then answers
one command per line on stdin:

  run          time one eager forward (all blocks + the tap features) -> `seconds <float>`
  dump PATH    write the tap features (normed.K, patches.K, cls.K) to PATH -> `dumped`
  quit         exit

The forward is what `DinoV3::forward_taps` computes: every block's hidden state, then for each
tap the final norm, the CLS row and the patch rows standardized per channel (std + 1e-6).
"""
import argparse
import sys
import time

import torch
from safetensors.torch import load_file, save_file

from dinov3_torch import load_model, tap_features


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--pixels", required=True)
    ap.add_argument("--taps", default="5,11,17,23")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    model = load_model(a.model, a.threads)
    x = load_file(a.pixels)["pixel_values"]
    taps = [int(t) for t in a.taps.split(",")]

    def forward():
        with torch.inference_mode():
            hs = model(pixel_values=x, output_hidden_states=True).hidden_states
            return {f"{name}.{k}": v for k in taps for name, v in tap_features(model, hs, k).items()}

    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "run":
            t0 = time.perf_counter()
            forward()
            print(f"seconds {time.perf_counter() - t0:.6f}", flush=True)
        elif cmd[0] == "dump":
            save_file({k: v.contiguous().clone() for k, v in forward().items()}, cmd[1])
            print("dumped", flush=True)
        elif cmd[0] == "quit":
            return
        else:
            print(f"error: unknown command {cmd[0]!r}", flush=True)


if __name__ == "__main__":
    main()
