#!/usr/bin/env python3
"""PyTorch side of the backbone throughput table (scripts/device/h200.sh).

transformers' DINOv3ViTModel loaded from the same HF directory as `ava-dino bench-backbone`
(made by `ava-dino random-backbone --preset vitl16`), random pixels, images per second for each
mode (eager, compile), dtype (f32, bf16) and batch size. Timing: warm-up forwards (the first
one compiles under torch.compile), then `--iters` forwards queued back to back and one
`cuda.synchronize()`, as `ava-dino bench-backbone` does. f32 matrix products are plain f32
(`torch.backends.cuda.matmul.allow_tf32` left at its default, False). One JSON line per result
is appended to `--json`; a configuration that would start after `--budget` seconds is skipped and
recorded as such, so the caller's time limit holds.

  python3 scripts/device/bench_torch.py --model DIR --batch 1 32 --dtype f32 bf16 \
      --mode eager compile --device cuda --json out.jsonl --budget 240
"""
import argparse
import json
import time

import torch
from transformers import DINOv3ViTModel

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def forwards(model, x, n, device):
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            model(pixel_values=x)
    sync(device)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--dtype", nargs="+", default=["f32", "bf16"], choices=sorted(DTYPES))
    ap.add_argument("--mode", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=1e9, help="seconds; later configurations are skipped")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    started = time.perf_counter()
    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    for mode in a.mode:
        for dt in a.dtype:
            model = DINOv3ViTModel.from_pretrained(a.model, dtype=DTYPES[dt]).to(a.device).eval()
            run = torch.compile(model) if mode == "compile" else model
            for b in a.batch:
                rec = {"impl": f"torch-{mode}", "device": a.device, "adapter": name, "dtype": dt,
                       "batch": b, "size": a.size, "iters": a.iters,
                       "torch": torch.__version__, "attn": model.config._attn_implementation}
                if time.perf_counter() - started > a.budget:
                    rec["skipped"] = f"over the {a.budget:.0f} s budget"
                else:
                    x = torch.randn(b, 3, a.size, a.size, device=a.device, dtype=DTYPES[dt])
                    try:
                        first = forwards(run, x, 1, a.device)
                        forwards(run, x, max(a.warmup - 1, 0), a.device)
                        secs = forwards(run, x, a.iters, a.device) / a.iters
                        rec.update(first_forward_s=first, seconds_per_forward=secs, images_per_s=b / secs)
                    except Exception as e:  # a compile failure is a result, not a crash
                        rec["error"] = f"{type(e).__name__}: {e}"[:300]
                print(json.dumps(rec), flush=True)
                with open(a.json, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            del model, run
            if a.device.startswith("cuda"):
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
