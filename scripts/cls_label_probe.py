"""Does the frozen backbone's CLS row carry the anomaly label? (diagnostic for the smoke run)

Reads feature shards written with `--set cache.disk=true --set cache.dir=DIR`, L2-normalizes the
CLS row of each tap, and reports the mean pairwise cosine and the 5-fold cross-validated accuracy
of a logistic regression predicting the image label (vs the majority-class rate). The routing of
AVA-DINO sees only this row, so if the probe is at chance, no routing can separate the images.

    ava-dino sweep experiments/table4.yaml --profile smoke --all --set cache.disk=true \
        --set cache.dir=/tmp/cache --set train.epochs=1 --runs /tmp/runs
    python scripts/cls_label_probe.py /tmp/cache --taps 1 7
"""
import argparse
import glob

import numpy as np
from safetensors import safe_open
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score


def label_of(path: str) -> int:
    # Synthetic twins: VisA anomalies live under .../Anomaly/, MVTec-like ones outside test/good.
    return int("Anomaly" in path or ("/test/" in path and "/good/" not in path))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("--taps", type=int, nargs="+", default=[1, 7])
    args = ap.parse_args()
    shards = []
    for f in sorted(glob.glob(f"{args.cache}/*/*.safetensors")):
        with safe_open(f, "np") as s:
            key = next(iter(s.metadata().values()))
            shards.append((f, key.split("image=file:")[1].split(":")[0]))
    # The dataset is the first path component where the images' paths differ (its root folder).
    parts = [p.split("/") for _, p in shards]
    depth = next(i for i in range(min(map(len, parts))) if len({q[i] for q in parts}) > 1)
    rows: dict = {}
    for (f, path), comps in zip(shards, parts):
        dataset = comps[depth]
        with safe_open(f, "np") as s:
            for t in args.taps:
                c = s.get_tensor(f"cls.{t}").astype(np.float64)
                rows.setdefault((dataset, t), ([], []))
                rows[(dataset, t)][0].append(c / np.linalg.norm(c))
                rows[(dataset, t)][1].append(label_of(path))
    for (dataset, t), (x, y) in sorted(rows.items()):
        x, y = np.array(x), np.array(y)
        if len(set(y)) < 2:
            continue
        cos = (x @ x.T)[np.triu_indices(len(y), 1)]
        acc = cross_val_score(LogisticRegression(C=10, max_iter=2000), x, y, cv=5).mean()
        print(f"{dataset} tap {t}: n={len(y)} mean cos {cos.mean():.4f} "
              f"probe accuracy {acc:.2f} (majority {max(y.mean(), 1 - y.mean()):.2f})")


if __name__ == "__main__":
    main()
