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
from transformers import DINOv3ViTModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--pixels", required=True)
    ap.add_argument("--taps", default="5,11,17,23")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = DINOv3ViTModel.from_pretrained(a.model).eval()
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    j = torch.arange(head_dim // 4, dtype=torch.float32)
    periods = (model.config.rope_theta ** (2 * j / (head_dim // 2))).to(torch.bfloat16).float()
    model.rope_embeddings.inv_freq.copy_(1.0 / periods)
    x = load_file(a.pixels)["pixel_values"]
    taps = [int(t) for t in a.taps.split(",")]
    prefix = 1 + model.config.num_register_tokens

    def forward():
        with torch.inference_mode():
            hs = model(pixel_values=x, output_hidden_states=True).hidden_states
            out = {}
            for k in taps:
                normed = model.norm(hs[k + 1])
                p = normed[:, prefix:]
                out[f"normed.{k}"] = normed
                out[f"patches.{k}"] = (p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + 1e-6)
                out[f"cls.{k}"] = normed[:, 0]
            return out

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
