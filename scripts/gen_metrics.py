#!/usr/bin/env python3
"""Parity fixtures for kind `metrics`: scikit-learn / scikit-image expected values.

Each case directory holds `case.safetensors` (`scores` f32 [N], `labels` u8 [N]; AUPRO cases also
`maps` f32 [K,H,W], `masks` u8 [K,H,W]) and `expected.json` with `auroc`, `ap`, `f1_max`,
`f1_threshold`, `aupro` (null where undefined or not applicable).

Definitions (the references the Rust code must equal):
- auroc: sklearn.metrics.roc_auc_score (NaN -> null when one class only);
- ap: sklearn.metrics.average_precision_score; null without positives (sklearn returns 0.0 with a
  warning there; the reference never calls it then);
- f1_max: the AVA-DINO test.py formula on precision_recall_curve, max over finite values; null
  without positives (test.py sets NaN); f1_threshold = thresholds[argmax] (first maximum);
- aupro: AnomalyCLIP/APRIL-GAN cal_pro_score (200 steps, expect_fpr=0.3); null where it raises
  or returns NaN.

Usage:
  python scripts/gen_metrics.py --out tests/fixtures/metrics            # committed set
  python scripts/gen_metrics.py --out /tmp/par/metrics --seed 7 --scale 4
  python scripts/gen_metrics.py --check-arange                          # threshold emulation check
"""

import argparse
import json
import math
import os
import warnings

import numpy as np
from safetensors.numpy import save_file
from skimage import measure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score


def reference_aupro(masks, amaps, max_step=200, expect_fpr=0.3):
    """The AnomalyCLIP/APRIL-GAN definition, written out: loop over thresholds and regions."""
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / max_step
    regions = [measure.regionprops(measure.label(m)) for m in masks]
    inverse = 1 - masks
    pros, fprs = [], []
    for th in np.arange(min_th, max_th, delta):
        binary = amaps > th
        pro = [binary[i][r.coords[:, 0], r.coords[:, 1]].sum() / r.area for i, rs in enumerate(regions) for r in rs]
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.array(pro).mean())
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < expect_fpr
    fprs = fprs[keep]
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    return auc(fprs, pros[keep])


def defined(fn):
    """Run a reference metric; NaN, inf or a raised error (sklearn/numpy refusing) -> None."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            v = float(fn())
    except (ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) else None


def expected(scores, labels, maps=None, masks=None):
    pos = int(labels.sum())
    out = {
        "auroc": defined(lambda: roc_auc_score(labels, scores)),
        "ap": defined(lambda: average_precision_score(labels, scores)) if pos > 0 else None,
        "f1_max": None,
        "f1_threshold": None,
        "aupro": None,
    }
    if pos > 0:
        prec, rec, ths = precision_recall_curve(labels, scores)
        f1s = 2 * prec * rec / (prec + rec + 1e-8)
        finite = np.where(np.isfinite(f1s), f1s, -np.inf)
        out["f1_max"] = float(np.max(f1s[np.isfinite(f1s)]))
        i = int(np.argmax(finite))
        out["f1_threshold"] = float(ths[i]) if i < len(ths) else None
    if maps is not None:
        out["aupro"] = defined(lambda: reference_aupro(masks, maps))
    return out


def write_case(root, name, scores, labels, maps=None, masks=None):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    tensors = {"scores": scores, "labels": labels}
    if maps is not None:
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        masks = np.ascontiguousarray(masks, dtype=np.uint8)
        tensors.update(maps=maps, masks=masks)
    save_file(tensors, os.path.join(d, "case.safetensors"))
    exp = expected(scores, labels, maps, masks)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
    print(f"{name}: n={scores.size} positives={int(labels.sum())} {exp}")


def blur(x, passes=3):
    """Cheap separable box blur so maps are smooth like upsampled anomaly maps."""
    for _ in range(passes):
        x = (np.roll(x, 1, -1) + x + np.roll(x, -1, -1)) / 3
        x = (np.roll(x, 1, -2) + x + np.roll(x, -1, -2)) / 3
    return x


def region_masks(rng, k, h, w, touching):
    masks = np.zeros((k, h, w), np.uint8)
    for i in range(k):
        for _ in range(rng.integers(2, 5)):  # several regions per mask
            y, x = rng.integers(0, h - 6), rng.integers(0, w - 6)
            masks[i, y : y + rng.integers(2, 6), x : x + rng.integers(2, 6)] = 1
        if touching:
            # Two blocks meeting only at a corner (one 8-connected region) and an L of two bars.
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            masks[i, y : y + 3, x : x + 3] = 1
            masks[i, y + 3 : y + 6, x + 3 : x + 6] = 1
            masks[i, -3:, :4] = 1
            masks[i, -6:, :1] = 1
    if k > 1:
        masks[-1] = 0  # one normal image
    return masks


def aupro_case(rng, k, h, w, touching, levels=None):
    masks = region_masks(rng, k, h, w, touching)
    maps = blur(rng.random((k, h, w)) + 1.5 * blur(masks.astype(np.float64), 1)).astype(np.float32)
    if levels:
        maps = (np.round(maps * levels) / levels).astype(np.float32)
    return maps, masks


def generate(root, seed, scale):
    rng = np.random.default_rng(seed)
    s = lambda n: max(2, int(n * scale))

    n = s(5000)
    labels = rng.random(n) < 0.2
    scores = np.round(np.clip(rng.normal(0.4 + 0.3 * labels, 0.2), 0, 1) * 20) / 20  # 21 levels
    write_case(root, "heavy_ties", scores, labels)

    n = s(1000)
    write_case(root, "all_equal", np.full(n, 0.5), rng.random(n) < 0.3)
    write_case(root, "one_class_negative", rng.random(s(300)), np.zeros(s(300)))
    write_case(root, "one_class_positive", rng.random(s(300)), np.ones(s(300)))

    n = s(40000)
    labels = np.zeros(n, bool)
    labels[rng.choice(n, max(1, n // 1000), replace=False)] = True  # 0.1% positives
    write_case(root, "imbalanced", rng.random(n).astype(np.float32) ** 2 + 0.3 * labels, labels)

    write_case(root, "tiny", np.array([0.2, 0.7]), np.array([0, 1]))
    write_case(root, "tiny_tied", np.array([0.5, 0.5]), np.array([1, 0]))

    n = s(8000)
    labels = rng.random(n) < 0.1
    logits = rng.normal(2.0 * labels - 1.0, 1.5).astype(np.float32)  # negative scores, zeros
    logits[rng.random(n) < 0.05] = 0.0
    logits[rng.random(n) < 0.05] = -0.0
    write_case(root, "logits_signed_zero", logits, labels)

    # One radix bucket (same sign, exponent and top 7 mantissa bits) holding > 8192 scores: the
    # Rust histogram path, which smaller cases never reach.
    n = max(s(12000), 9000)
    labels = rng.random(n) < 0.25
    scores = np.float32(0.5) + (rng.random(n) * 0.5 + 0.4 * labels).astype(np.float32) * np.float32(0.0039 / 0.9)
    write_case(root, "dense_bucket", scores, labels)

    k, h = max(2, int(3 * scale)), 32
    maps, masks = aupro_case(rng, k, h, h, touching=False)
    write_case(root, "regions_several", maps.ravel(), masks.ravel(), maps, masks)
    maps, masks = aupro_case(rng, k, h, h + 8, touching=True)
    write_case(root, "regions_touching", maps.ravel(), masks.ravel(), maps, masks)
    maps, masks = aupro_case(rng, k, h, h, touching=True, levels=16)
    write_case(root, "regions_tied_levels", maps.ravel(), masks.ravel(), maps, masks)
    masks = region_masks(rng, k, h, h, touching=True)
    maps = (blur(rng.random((k, h, h)), 1) + 0.15 * masks).astype(np.float32)  # FPR limit bites
    write_case(root, "regions_weak_signal", maps.ravel(), masks.ravel(), maps, masks)
    maps = np.full((2, 8, 8), 0.25, np.float32)
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 2:4, 2:5] = 1
    write_case(root, "regions_flat_map", maps.ravel(), masks.ravel(), maps, masks)


def check_arange(trials=20000):
    """The Rust thresholds() emulation of np.arange(float32 min, float32 max, float32 delta)."""
    rng = np.random.default_rng(0)
    bad = 0
    for t in range(trials):
        a = (rng.standard_normal(2) * 10.0 ** rng.integers(-3, 3)).astype(np.float32)
        if t % 3 == 0:
            a = np.array([0, rng.random()], np.float32)
        lo, hi = a.min(), a.max()
        if lo == hi:
            continue
        delta = (hi - lo) / 200
        ref = np.arange(lo, hi, delta)
        n = math.ceil(float(np.float32(hi - lo) / delta))
        step = float(np.float32(lo + delta)) - float(lo)
        ours = np.array([float(lo) + i * step for i in range(n)])
        bad += ref.dtype != np.float64 or not np.array_equal(ours, ref)
    print(f"arange emulation: {bad} mismatches in {trials} ranges")
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/metrics", help="output directory (kind dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every case size")
    ap.add_argument("--check-arange", action="store_true", help="only verify the threshold emulation")
    args = ap.parse_args()
    if args.check_arange:
        raise SystemExit(0 if check_arange() else 1)
    generate(args.out, args.seed, args.scale)


if __name__ == "__main__":
    main()
