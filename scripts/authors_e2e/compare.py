#!/usr/bin/env python3
"""Side-by-side tables of `scripts/authors-e2e.sh`: losses per step and metrics per category.

  compare.py losses AUTHORS_LOSSES.json HARNESS_TRAINING_DIR STEPS_PER_EPOCH   (first epoch, rel <= 1e-4)
  compare.py metrics TEST_PY_STDOUT EVALUATE_STDOUT                            (every cell, abs <= 1e-4)

Exits 1 when a value is outside its tolerance or missing on one side.
"""

import json
import math
import os
import re
import sys

ROW = re.compile(r"^\s+(\S+)\s+P-AUROC: (\S+)\s+I-AUROC: (\S+)\s+F1: (\S+)\s*$")


def losses(authors, training, steps):
    theirs = json.load(open(authors))[:steps]
    epoch = os.path.join(training, "checkpoints", "epoch_001", "epoch.json")
    ours = [s["total"] for s in json.load(open(epoch))["summary"]["step_losses"]][:steps]
    ok = len(theirs) == len(ours) == steps
    print(f"| step | train.py | harness | rel |\n|---|---|---|---|")
    for i, (t, o) in enumerate(zip(theirs, ours)):
        rel = abs(o - t) / max(abs(t), 1e-12)
        ok &= rel <= 1e-4
        print(f"| {i + 1} | {t:.7g} | {o:.7g} | {rel:.2e} |")
    print(f"first epoch: {len(theirs)} steps (train.py), {len(ours)} (harness); "
          f"{'within' if ok else 'NOT within'} 1e-4 relative")
    return ok


def tables(path):
    """{(checkpoint, category): (p, i, f1)} from a test.py or `ava-dino evaluate` stdout."""
    out, ckpt = {}, None
    for line in open(path, errors="replace"):
        m = re.search(r"(?:Epoch|Checkpoint): (\S+)", line)
        if line.startswith("Dataset:") and m:
            ckpt = m.group(1)
            ckpt = f"epoch_{ckpt}.pth" if ckpt.isdigit() else ckpt
            continue
        r = ROW.match(line)
        if r and ckpt is not None:
            out[(ckpt, r.group(1))] = tuple(float(x) for x in r.groups()[1:])
    return out


def metrics(test_py, evaluate):
    theirs, ours = tables(test_py), tables(evaluate)
    ok = bool(theirs) and theirs.keys() == ours.keys()
    print("| checkpoint | category | P-AUROC test.py / harness | I-AUROC | F1 | max abs |\n|---|---|---|---|---|---|")
    for key in sorted(theirs.keys() | ours.keys()):
        t, o = theirs.get(key), ours.get(key)
        if t is None or o is None:
            print(f"| {key[0]} | {key[1]} | missing on one side | | | |")
            ok = False
            continue
        diffs = [0.0 if math.isnan(a) and math.isnan(b) else abs(a - b) for a, b in zip(t, o)]
        worst = max(diffs)
        ok &= worst <= 1e-4
        cells = " | ".join(f"{a:.5f} / {b:.5f}" for a, b in zip(t, o))
        print(f"| {key[0]} | {key[1]} | {cells} | {worst:.1e} |")
    print(f"{len(theirs)} rows (test.py), {len(ours)} (harness); "
          f"{'within' if ok else 'NOT within'} 1e-4")
    return ok


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    good = losses(rest[0], rest[1], int(rest[2])) if kind == "losses" else metrics(*rest)
    sys.exit(0 if good else 1)
