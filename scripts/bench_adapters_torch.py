#!/usr/bin/env python3
"""The adapter stages in PyTorch, at the full shapes, for the side-by-side of docs/scale.md.

Prints the same two lines as `cargo run --release --example bench_stages -- --only train,eval`:

  train step (B=2): X s/image        forward + losses + backward + AdamW, one batch of 2
  eval forward (B=2): X s/image/checkpoint

Shapes: D 1024, bottleneck 768, text 768, 4 taps, 32x32 patches, 512 px maps, batch 2, the
`full` variant with the reference protocol. The method is the one of `gen_train_step.py` (our
PyTorch version of the reference step, also the parity fixtures' generator), so both sides time
the same function. Median of `--reps` after one warm-up, as the Rust example.

Usage: scripts/bench_adapters_torch.py [--threads 2] [--reps 3]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_train_step as ts  # noqa: E402


def config():
    return {
        "dim": 1024,
        "bottleneck": 768,
        "text_dim": 768,
        "taps": 4,
        "grid": [32, 32],
        "map_size": 512,
        "tau": 0.1,
        "batch": 2,
        "variant": "full",
        "protocol": "reference",
        "loss_weights": {"aware": 0.25, "seg": 0.5, "global": 0.25, "route": 0.1},
    }


def timed(reps, f):
    f()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="train,eval")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = config()
    gen = torch.Generator().manual_seed(0)
    P = ts.init_params(c, gen)
    batch = ts.make_batch(c, gen, 0)
    # Bench_stages feeds zero masks and labels [0, 1]; the cost does not depend on either.
    batch["label"] = torch.tensor([0, 1])
    batch["mask"] = torch.zeros_like(batch["mask"])
    b = c["batch"]
    only = a.only.split(",")
    print(f"bench_adapters_torch: torch {torch.__version__}, {torch.get_num_threads()} threads, reps {a.reps}")
    if "train" in only:
        opt = torch.optim.AdamW(list(P.values()), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)

        def step():
            opt.zero_grad(set_to_none=True)
            out = ts.forward(P, c, batch)
            loss = ts.losses(out, c, batch["label"], batch["mask"])["total"]
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)

        s = timed(a.reps, step) / b
        print(f"train step (B={b}): {s:.3f} s/image")
    if "eval" in only:

        def fwd():
            with torch.no_grad():
                out = ts.forward(P, c, batch)
                out["maps"][:, 1].sum().item()

        s = timed(a.reps, fwd) / b
        print(f"eval forward (B={b}): {s:.3f} s/image/checkpoint")


if __name__ == "__main__":
    main()
