#!/usr/bin/env python3
"""Runs the authors' `train.py` as it is, with three additions that change no computation:

1. `torch.manual_seed(seed)` before anything (their code sets no seed);
2. once the training loader is built (after every model is constructed, before the first epoch),
   the untrained adapters are saved as `--init-out` (the six module state dicts of `train.py`'s
   epoch files, `epoch: -1`) and the default generator is seeded again with `seed`: the state
   `train.shuffle: torch` assumes at the first epoch (docs/fidelity.md);
3. every scalar `backward()` (one per step: the total loss) records its value into
   `--losses-out` (JSON list, in step order).

Run from the authors' checkout: train_wrapper.py --seed S --init-out F --losses-out F -- <train.py args>
"""

import argparse
import json
import os
import sys

import torch

MODULES = [
    "cls_token_adapter_normal",
    "cls_token_adapter_anomaly",
    "patch_token_adapter_normal",
    "patch_token_adapter_anomaly",
    "prompt_adapter",
    "text_projection",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--init-out", required=True)
    ap.add_argument("--losses-out", required=True)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    torch.manual_seed(args.seed)
    sys.path.insert(0, os.getcwd())
    import CLIP.adapter as adapter
    import train

    made = []
    original_init = adapter.AVADino.__init__

    def recording_init(self, *a, **k):
        original_init(self, *a, **k)
        made.append(self)

    adapter.AVADino.__init__ = recording_init

    original_loader = train.prepare_train_loader

    def seeded_loader(dataset_name, targs):
        loader = original_loader(dataset_name, targs)
        model = made[-1]
        state = {"epoch": -1}
        for name in MODULES:
            state[name] = {k: v.detach().cpu() for k, v in getattr(model, name).state_dict().items()}
        torch.save(state, args.init_out)
        torch.manual_seed(args.seed)
        return loader

    train.prepare_train_loader = seeded_loader

    losses = []
    original_backward = torch.Tensor.backward

    def recording_backward(self, *a, **k):
        if self.dim() == 0:
            losses.append(float(self.detach().item()))
        return original_backward(self, *a, **k)

    torch.Tensor.backward = recording_backward

    sys.argv = ["train.py"] + rest
    try:
        train.main()
    finally:
        with open(args.losses_out, "w") as f:
            json.dump(losses, f)


if __name__ == "__main__":
    main()
