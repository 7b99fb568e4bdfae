#!/usr/bin/env python3
"""Parity fixtures for kind `torch_order`: the order of `DataLoader(shuffle=True)` under a seed.

Each case directory `<root>/torch_order/n<N>_s<SEED>/` holds `orders.json`:
- `n`, `seed` (required): the dataset size and the `torch.manual_seed` argument;
- `epochs` (required): per epoch, the dataset indices in the order the loader yields them (its
  batches concatenated);
- `batch_size`, `base_seeds`, `sampler_seeds`, `torch_version` (optional): the loader's batch size,
  per epoch the `_base_seed` of the loader's iterator and the seed `RandomSampler` gave its own
  generator (read by drawing it from a copy of the
  default generator's state), and the torch that made it.

What is run is exactly what `train.shuffle: torch` reproduces: `torch.manual_seed(seed)`, then a
`DataLoader(list(range(n)), batch_size=B, shuffle=True)` (num_workers=0) iterated for several
epochs, nothing else drawing from the default generator in between.

Usage:
  python scripts/gen_torch_order.py --out tests/fixtures          # committed set
  python scripts/gen_torch_order.py --out /tmp/par --sizes 5000 --seeds 3 --epochs 4
"""

import argparse
import json
import os

import torch
from torch.utils.data import DataLoader


def peek_sampler_seed():
    """The seed `RandomSampler.__iter__` is about to draw: the same int64 `random_()` on a copy of
    the default generator's state, which is then put back untouched."""
    state = torch.get_rng_state()
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    torch.set_rng_state(state)
    return seed


def one_case(n, seed, batch_size, epochs):
    torch.manual_seed(seed)
    loader = DataLoader(list(range(n)), batch_size=batch_size, shuffle=True, num_workers=0)
    orders, base_seeds, sampler_seeds = [], [], []
    for _ in range(epochs):
        it = iter(loader)
        base_seeds.append(int(it._base_seed))
        sampler_seeds.append(peek_sampler_seed())
        orders.append([int(i) for batch in it for i in batch.tolist()])
    return {
        "n": n,
        "seed": seed,
        "batch_size": batch_size,
        "epochs": orders,
        "base_seeds": base_seeds,
        "sampler_seeds": sampler_seeds,
        "torch_version": torch.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="fixture root (cases go to OUT/torch_order/)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 7, 137, 1000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 42, (1 << 40) + 7])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()
    for n in args.sizes:
        for seed in args.seeds:
            case = one_case(n, seed, args.batch_size, args.epochs)
            d = os.path.join(args.out, "torch_order", f"n{n}_s{seed}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "orders.json"), "w") as f:
                json.dump(case, f, separators=(",", ":"))
                f.write("\n")
            print(d, "epoch 0 starts", case["epochs"][0][:8])


if __name__ == "__main__":
    main()
