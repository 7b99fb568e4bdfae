"""Does the frozen backbone's CLS row carry the anomaly label? (diagnostic for Table 4)

AVA-DINO's routing sees only the L2-normalized CLS row of each tap: its anomaly weight is
`softmax([c.u_n, c.u_a] / 0.1)[1]` with unit vectors `u_n, u_a` (the projected text features), so
it is a bias-free linear read-out of `c` whose logit can move by at most `2 / 0.1` over the unit
sphere. This script asks, of feature shards written by a sweep with `cache.train: disk`, how much
such a read-out could ever achieve:

- per dataset and tap: mean pairwise cosine of the CLS rows, and the 5-fold cross-validated
  accuracy of a logistic regression predicting the image label (vs the majority-class rate);
- per dataset: how far an anomaly moves the CLS within its category (mean distance to the
  category's normal images) compared with how far categories lie apart;
- `--transfer SRC DST` (the zero-shot setting of Table 4: trained on SRC, read on DST): the AUROC on
  DST of a bias-free logistic read-out fitted on SRC, and of the direction of SRC's mean
  within-category anomaly shift.

    ava-dino sweep experiments/table4.yaml --profile smoke --all --set cache.train=disk \\
        --set cache.dir=/tmp/cache --set train.epochs=1 --runs /tmp/runs
    python scripts/cls_label_probe.py /tmp/cache --taps 1 7 --transfer VisA_20220922 MVTecAD
"""
import argparse
import glob

import numpy as np
from safetensors import safe_open
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score


def label_of(path: str) -> int:
    # MVTec-style layouts: anomalies outside test/good; VisA: under .../Anomaly/.
    return int("Anomaly" in path or ("/test/" in path and "/good/" not in path))


def load(cache: str, taps: list[int]):
    """Rows (dataset, category, label, {tap: unit CLS}) of every shard under `cache`."""
    shards = []
    for f in sorted(glob.glob(f"{cache}/*/*.safetensors")):
        with safe_open(f, "np") as s:
            key = next(iter(s.metadata().values()))
            stored = [int(t) for t in key.split("|taps=")[1].split("|")[0].split(",")]
            shards.append((f, key.split("image=file:")[1].split(":")[0], stored))
    if not shards:
        raise SystemExit(f"no feature shards under {cache} (run a sweep with --set cache.train=disk)")
    # The dataset is the first path component where the images' paths differ (its root folder);
    # the category is the next one.
    parts = [p.split("/") for _, p, _ in shards]
    depth = next(i for i in range(min(map(len, parts))) if len({q[i] for q in parts}) > 1)
    rows = []
    for (f, path, stored), comps in zip(shards, parts):
        cls = {}
        with safe_open(f, "np") as s:
            # `cls` is [T, D], one row per stored tap in the key's order.
            rows_cls = s.get_tensor("cls").astype(np.float64)
            for t in taps:
                c = rows_cls[stored.index(t)]
                cls[t] = c / np.linalg.norm(c)
        rows.append((comps[depth], comps[depth + 1], label_of(path), cls))
    return rows


def tap_mean(rows, taps):
    """The taps' unit CLS rows averaged: the routing averages its weights over taps, and this is
    the closest single vector to read."""
    x = np.array([np.mean([r[3][t] for t in taps], axis=0) for r in rows])
    return x, np.array([r[2] for r in rows])


def anomaly_shift(rows, taps):
    """Mean over categories of (mean anomalous CLS - mean normal CLS), and its typical size."""
    shifts = []
    for cat in sorted({r[1] for r in rows}):
        x, y = tap_mean([r for r in rows if r[1] == cat], taps)
        if 0 < y.sum() < len(y):
            shifts.append(x[y == 1].mean(0) - x[y == 0].mean(0))
    return np.mean(shifts, axis=0), np.mean([np.linalg.norm(s) for s in shifts]) if shifts else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--taps", type=int, nargs="+", default=[1, 7])
    ap.add_argument("--transfer", nargs=2, metavar=("SRC", "DST"))
    args = ap.parse_args()
    rows = load(args.cache, args.taps)
    datasets = sorted({r[0] for r in rows})
    for ds in datasets:
        sub = [r for r in rows if r[0] == ds]
        for t in args.taps:
            x, y = tap_mean(sub, [t])
            if len(set(y)) < 2:
                continue
            cos = (x @ x.T)[np.triu_indices(len(y), 1)]
            acc = cross_val_score(LogisticRegression(C=10, max_iter=2000), x, y, cv=5).mean()
            print(f"{ds} tap {t}: n={len(y)} mean cos {cos.mean():.4f} "
                  f"probe accuracy {acc:.2f} (majority {max(y.mean(), 1 - y.mean()):.2f})")
        x, y = tap_mean(sub, args.taps)
        if len(set(y)) < 2:
            continue
        _, shift = anomaly_shift(sub, args.taps)
        centre = {c: x[[r[1] == c for r in sub]].mean(0) for c in {r[1] for r in sub}}
        spread = np.mean([np.linalg.norm(a - b) for a in centre.values() for b in centre.values() if a is not b])
        print(f"{ds}: anomaly moves the CLS by {shift:.4f} within a category; categories lie {spread:.4f} apart")
    if args.transfer:
        src, dst = args.transfer
        missing = [d for d in (src, dst) if d not in datasets]
        if missing:
            raise SystemExit(f"--transfer: no dataset {missing}; the cache holds {datasets}")
        xs, ys = tap_mean([r for r in rows if r[0] == src], args.taps)
        xd, yd = tap_mean([r for r in rows if r[0] == dst], args.taps)
        direction, _ = anomaly_shift([r for r in rows if r[0] == src], args.taps)
        print(f"{src} -> {dst}: AUROC along {src}'s mean anomaly shift {roc_auc_score(yd, xd @ direction):.2f}")
        for c in (1e2, 1e4, 1e6):
            w = LogisticRegression(C=c, fit_intercept=False, max_iter=20000).fit(xs, ys).coef_[0]
            print(f"{src} -> {dst}: bias-free logistic read-out (C={c:g}) AUROC "
                  f"{roc_auc_score(ys, xs @ w):.2f} on {src}, {roc_auc_score(yd, xd @ w):.2f} on {dst}")


if __name__ == "__main__":
    main()
