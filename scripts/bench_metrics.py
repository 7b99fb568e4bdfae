#!/usr/bin/env python3
"""Side-by-side benchmark: scikit-learn roc_auc_score + precision_recall_curve vs our one-pass
pixel_metrics, on the same file of realistic anomaly scores.

Data (`--make`, written once, then read by both): anomaly maps of N/512^2 images, each a random
32x32 field plus blobs over the defect masks, softmaxed, upsampled 32->512 bilinear with
align_corners=True in float32 and min-max normalised in float32 as the AVA-DINO reference does.
float32 rounding then ties many pixels (tens of millions of pixels, far fewer distinct values).

  python scripts/bench_metrics.py --make --pixels 50000000 --data /tmp/bench_metrics.safetensors
  CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --example bench_metrics
  python scripts/bench_metrics.py --data /tmp/bench_metrics.safetensors --rust target/debug/examples/bench_metrics
"""

import argparse
import json
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from sklearn.metrics import precision_recall_curve, roc_auc_score


def synthetic_maps(k, seed):
    """k anomaly maps f32 [k,512,512] and 0/1 masks u8 [k,512,512], reference-style (see above)."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(k, 1, 512, 512)
    for i in range(k // 2):  # half the images are anomalous, 1-3 defects each
        for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
            y, x = torch.randint(0, 400, (2,), generator=g).tolist()
            hh, ww = torch.randint(16, 110, (2,), generator=g).tolist()
            masks[i, 0, y : y + hh, x : x + ww] = 1
    low = F.adaptive_avg_pool2d(masks, 32)
    logits = torch.randn(k, 2, 32, 32, generator=g) * 1.5
    logits[:, 1:] += 4.0 * low
    probs = logits.softmax(1)[:, 1:]
    maps = F.interpolate(probs, size=512, mode="bilinear", align_corners=True).numpy().astype(np.float32)
    maps = (maps - maps.min()) / (maps.max() - maps.min() + 1e-8)
    return maps[:, 0], masks.numpy().astype(np.uint8)[:, 0]


def make(path, pixels, seed):
    k = max(1, -(-pixels // (512 * 512)))  # enough images, the last one cut to `pixels`
    maps, masks = synthetic_maps(k, seed)
    scores = np.ascontiguousarray(maps.reshape(-1)[:pixels])
    labels = np.ascontiguousarray(masks.reshape(-1)[:pixels])
    save_file({"scores": scores, "labels": labels}, path)
    print(f"wrote {path}: n={scores.size} distinct={np.unique(scores).size} positives={int(labels.sum())}")


def sklearn_metrics(scores, labels):
    t0 = time.perf_counter()
    auroc = roc_auc_score(labels, scores)
    t1 = time.perf_counter()
    prec, rec, ths = precision_recall_curve(labels, scores)
    t2 = time.perf_counter()
    ap = float(max(0.0, -np.sum(np.diff(rec) * prec[:-1])))
    f1s = 2 * prec * rec / (prec + rec + 1e-8)
    f1 = float(np.max(f1s[np.isfinite(f1s)]))
    thr = float(ths[int(np.argmax(np.where(np.isfinite(f1s), f1s, -np.inf)))])
    return {"seconds_roc_auc": t1 - t0, "seconds_pr_curve": t2 - t1, "seconds": t2 - t0,
            "auroc": float(auroc), "ap": ap, "f1_max": f1, "f1_threshold": thr}


def bench_aupro(args):
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gen_metrics import reference_aupro

    maps, masks = synthetic_maps(args.aupro_images, args.seed)
    path = args.data.replace(".safetensors", "_aupro.safetensors")
    save_file({"maps": np.ascontiguousarray(maps), "masks": np.ascontiguousarray(masks)}, path)
    t0 = time.perf_counter()
    ref = float(reference_aupro(masks, maps))
    t1 = time.perf_counter()
    out = subprocess.run([args.cli, "metrics", "--input", path], check=True, capture_output=True, text=True)
    t2 = time.perf_counter()
    ours = json.loads(out.stdout)["aupro"]
    print(f"aupro on {maps.size} pixels ({args.aupro_images} maps 512x512): reference {t1 - t0:.2f} s = {ref!r}; "
          f"ava-dino metrics (whole command, with file read and pixel metrics) {t2 - t1:.2f} s = {ours!r}; "
          f"|diff| = {abs(ours - ref):.2e}; speed-up {(t1 - t0) / (t2 - t1):.0f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/bench_metrics.safetensors")
    ap.add_argument("--make", action="store_true", help="write the data file and exit")
    ap.add_argument("--pixels", type=int, default=50_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rust", help="bench_metrics example binary to run on the same file")
    ap.add_argument("--repeats", type=int, default=5, help="Rust repeats (best and median reported)")
    ap.add_argument("--aupro-images", type=int, default=0,
                    help="instead: time the reference AUPRO against `--cli metrics` on this many 512x512 maps")
    ap.add_argument("--cli", help="ava-dino binary (for --aupro-images)")
    args = ap.parse_args()
    if args.aupro_images:
        bench_aupro(args)
        return
    if args.make:
        make(args.data, args.pixels, args.seed)
        return
    t = load_file(args.data)
    scores, labels = t["scores"], t["labels"]
    sk = sklearn_metrics(scores, labels)
    print("sklearn", json.dumps(sk))
    if args.rust:
        out = subprocess.run([args.rust, args.data, str(args.repeats)], check=True, capture_output=True, text=True)
        rs = json.loads(out.stdout.strip().splitlines()[-1])
        print("ours   ", json.dumps(rs))
        diff = {k: abs(rs[k] - sk[k]) for k in ("auroc", "ap", "f1_max", "f1_threshold")}
        print("max |ours - sklearn|:", json.dumps(diff), "agree to 1e-9:", all(v <= 1e-9 for v in diff.values()))
        print(f"speed-up: {sk['seconds'] / rs['seconds_best']:.1f}x (best), "
              f"{sk['seconds'] / rs['seconds_median']:.1f}x (median); n={rs['n']} threads={rs['threads']}")


if __name__ == "__main__":
    main()
