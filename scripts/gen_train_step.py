#!/usr/bin/env python3
"""Parity fixtures of kind `train_step`: the AVA-DINO training step, in PyTorch.

This is our own re-implementation of the reference training step (`train.py`,
`tools/utils.py::ava_dino_forward`, `tools/loss.py`, `CLIP/adapter.py` of aqeeelmirza/AVA-DINO)
on tap features and text features given as tensors, with every dimension configurable and the
ablation variants of docs/method.md. It writes, per case directory:

  config.json            dims, variant, protocol, loss weights, optimizer and schedule
  init.safetensors       parameters before training, reference checkpoint names (dots)
  batches.safetensors    step{s}.cls.{t}, step{s}.patches.{t}, step{s}.text, step{s}.label, step{s}.mask
  expected.safetensors   step{s}.loss.*, step{s}.w_normal|w_anomaly|anomaly_map|global, final.<name>
  init.pth               (with --pth) init params as the reference's epoch_N.pth dict, via torch.save

Usage:
  scripts/gen_train_step.py --committed                    # the committed cases
  scripts/gen_train_step.py --out /tmp/p --case big --seed 7 --dim 48 --grid 5 6 --steps 4
Then `AVA_DINO_PARITY_DIR=/tmp/p cargo test --test parity_train_step -- --nocapture`.
"""
import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

VARIANTS = ("full", "single_adapter", "learnable_routing", "no_route_loss")
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- parameters (reference names)
def param_shapes(c):
    D, b, E, L = c["dim"], c["bottleneck"], c["text_dim"], c["taps"]
    shapes = {}
    branches = ["normal"] if c["variant"] == "single_adapter" else ["normal", "anomaly"]
    for kind in ("cls_token_adapter", "patch_token_adapter"):
        for br in branches:
            for l in range(L):
                shapes[f"{kind}_{br}.{l}.fc1.0.weight"] = (b, D)
                shapes[f"{kind}_{br}.{l}.fc2.0.weight"] = (D, b)
    # The prompt adapters' hidden width must be the text width: their hidden output feeds
    # text_projection (E -> D). The reference uses 768 for both.
    for i in range(2):
        shapes[f"prompt_adapter.{i}.fc1.0.weight"] = (E, E)
        shapes[f"prompt_adapter.{i}.fc2.0.weight"] = (E, E)
    shapes["text_projection.weight"] = (D, E)
    if c["variant"] == "learnable_routing":
        for l in range(L):
            shapes[f"routing_gate.{l}.weight"] = (2, D)
            shapes[f"routing_gate.{l}.bias"] = (2,)
    return shapes


def init_params(c, gen):
    params = {}
    for name, shape in param_shapes(c).items():
        fan_in = shape[-1] if len(shape) == 2 else c["dim"]
        bound = 1.0 / fan_in ** 0.5  # nn.Linear's default init range
        t = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        params[name] = t.contiguous().requires_grad_(True)
    return params


# ---------------------------------------------------------------- the method
def adapter(P, prefix, x):
    h = F.leaky_relu(x @ P[f"{prefix}.fc1.0.weight"].T, 0.01)
    return h, F.leaky_relu(h @ P[f"{prefix}.fc2.0.weight"].T, 0.01)


def forward(P, c, batch):
    L, (gh, gw), S, tau = c["taps"], c["grid"], c["map_size"], c["tau"]
    text = batch["text"]  # [B,E,2], column 0 normal
    B, E, _ = text.shape
    t_n, t_a = text[:, :, 0], text[:, :, 1]
    Wp = P["text_projection.weight"]

    a0 = torch.stack([adapter(P, "prompt_adapter.0", text[i, :, 0])[0] for i in range(B)])
    a1 = torch.stack([adapter(P, "prompt_adapter.1", text[i, :, 1])[0] for i in range(B)])
    if c["protocol"] == "reference":
        adjusted = torch.cat([a0, a1], dim=1).view(B, E, 2)  # interleaves (reference quirk)
    else:
        adjusted = torch.stack([a0, a1], dim=2)
    tproj = (adjusted.permute(0, 2, 1) @ Wp.T).permute(0, 2, 1)  # [B,D,2]

    maps, aacms, globs, ws = [], [], [], []
    for l in range(L):
        cls, p = batch["cls"][l], batch["patches"][l]
        if c["variant"] == "single_adapter":
            w_n, w_a = torch.ones(B), torch.zeros(B)
            cls_f = F.normalize(adapter(P, f"cls_token_adapter_normal.{l}", cls)[1] + cls, dim=-1)
            p_f = F.normalize(adapter(P, f"patch_token_adapter_normal.{l}", p)[1] + p, dim=-1)
        else:
            if c["variant"] == "learnable_routing":
                logits = F.normalize(cls, dim=-1) @ P[f"routing_gate.{l}.weight"].T + P[f"routing_gate.{l}.bias"]
            else:
                tn = F.normalize(t_n @ Wp.T, dim=-1)
                ta = F.normalize(t_a @ Wp.T, dim=-1)
                f = F.normalize(cls, dim=-1)
                logits = torch.stack([(f * tn).sum(-1), (f * ta).sum(-1)], dim=1)
            w = F.softmax(logits / tau, dim=1)
            w_n, w_a = w[:, 0], w[:, 1]
            cn = adapter(P, f"cls_token_adapter_normal.{l}", cls)[1]
            ca = adapter(P, f"cls_token_adapter_anomaly.{l}", cls)[1]
            cls_f = F.normalize(w_n.view(-1, 1) * cn + w_a.view(-1, 1) * ca + cls, dim=-1)
            pn = adapter(P, f"patch_token_adapter_normal.{l}", p)[1]
            pa = adapter(P, f"patch_token_adapter_anomaly.{l}", p)[1]
            p_f = F.normalize(w_n.view(-1, 1, 1) * pn + w_a.view(-1, 1, 1) * pa + p, dim=-1)
        ws.append((w_n, w_a))

        cm = 100 * p_f @ tproj
        cm = F.interpolate(cm.permute(0, 2, 1).reshape(-1, 2, gh, gw), size=S, mode="bilinear", align_corners=True)
        maps.append(torch.softmax(cm, dim=1))
        ac = 10 * p_f @ cls_f.unsqueeze(-1)
        ac = F.interpolate(ac.permute(0, 2, 1).reshape(-1, 1, gh, gw), size=S, mode="bilinear", align_corners=True)
        ac = torch.sigmoid(ac)
        aacms.append(torch.cat([1 - ac, ac], dim=1))
        globs.append((100 * (cls_f.unsqueeze(1) @ tproj)).squeeze(1))

    return {
        "maps": torch.stack(maps).mean(0),
        "aacm": torch.stack(aacms).mean(0),
        "global": torch.stack(globs).mean(0),
        "w_normal": torch.stack([w[0] for w in ws]).mean(0),
        "w_anomaly": torch.stack([w[1] for w in ws]).mean(0),
    }


def focal(prob, target, gamma=2, smooth=1e-5):
    """tools/loss.py FocalLoss with alpha=None: on probabilities, clamped one-hot, pt + smooth."""
    C = prob.shape[1]
    logit = prob.view(prob.size(0), C, -1).permute(0, 2, 1).contiguous().view(-1, C)
    idx = target.reshape(-1, 1).long()
    one_hot = torch.zeros(idx.size(0), C).scatter_(1, idx, 1)
    one_hot = torch.clamp(one_hot, smooth / (C - 1), 1.0 - smooth)
    pt = (one_hot * logit).sum(1) + smooth
    return (-torch.pow(1 - pt, gamma) * pt.log()).mean()


def dice(pred, target):
    N = target.size(0)
    p, t = pred.reshape(N, -1), target.reshape(N, -1)
    d = (2 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return 1 - d.mean()


def losses(out, c, label, mask):
    mask = (mask > 0.5).float()  # ava_dino_forward's binarization
    y = label.float()
    aware = focal(out["aacm"], mask) + dice(out["aacm"][:, 1], mask)
    seg = focal(out["maps"], mask) + dice(out["maps"][:, 1], mask)
    glob = F.cross_entropy(out["global"], label)
    route = F.mse_loss(out["w_normal"], 1.0 - y) + F.mse_loss(out["w_anomaly"], y)
    w = c["loss_weights"]
    route_w = w["route"] if c["variant"] in ("full",) else 0.0
    total = w["aware"] * aware + w["seg"] * seg + w["global"] * glob + route_w * route
    return {"aware": aware, "seg": seg, "global": glob, "route": route, "total": total}


# ---------------------------------------------------------------- data
def make_batch(c, gen, step):
    B, D, E, L = c["batch"], c["dim"], c["text_dim"], c["taps"]
    gh, gw = c["grid"]
    S = c["map_size"]
    # Both labels in every batch: alternate, then shuffle with the generator.
    label = torch.tensor([(i + step) % 2 for i in range(B)], dtype=torch.long)
    label = label[torch.randperm(B, generator=gen)]
    cls = [torch.randn(B, D, generator=gen) * 2.0 for _ in range(L)]
    patches = []
    for _ in range(L):
        p = torch.randn(B, gh * gw, D, generator=gen)
        p = (p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + 1e-6)  # as the feature extractor
        patches.append(p)
    text = F.normalize(torch.randn(B, E, 2, generator=gen), dim=1)
    mask = torch.zeros(B, S, S)
    for i in range(B):
        if label[i] == 1:
            y0, x0 = torch.randint(0, S // 2, (2,), generator=gen).tolist()
            hh, ww = torch.randint(2, S // 2 + 1, (2,), generator=gen).tolist()
            mask[i, y0:y0 + hh, x0:x0 + ww] = 1.0
    return {"cls": cls, "patches": patches, "text": text, "label": label, "mask": mask}


# ---------------------------------------------------------------- one case
def run_case(out_dir, c, seed, write_pth=False):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    P = init_params(c, gen)
    init = {k: v.detach().clone() for k, v in P.items()}

    opt = torch.optim.AdamW(list(P.values()), lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"],
                            weight_decay=c["weight_decay"])
    warm = c["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda=lambda s: float(s) / max(1, warm) if s < warm else 1.0)

    batches, expected = {}, {}
    for s in range(c["steps"]):
        bt = make_batch(c, gen, s)
        for t in range(c["taps"]):
            batches[f"step{s}.cls.{t}"] = bt["cls"][t]
            batches[f"step{s}.patches.{t}"] = bt["patches"][t]
        batches[f"step{s}.text"] = bt["text"]
        batches[f"step{s}.label"] = bt["label"]
        batches[f"step{s}.mask"] = bt["mask"]

        out = forward(P, c, bt)
        ls = losses(out, c, bt["label"], bt["mask"])
        for k, v in ls.items():
            expected[f"step{s}.loss.{k}"] = v.detach().reshape(1)
        expected[f"step{s}.w_normal"] = out["w_normal"].detach()
        expected[f"step{s}.w_anomaly"] = out["w_anomaly"].detach()
        expected[f"step{s}.anomaly_map"] = out["maps"][:, 1].detach()
        expected[f"step{s}.global"] = out["global"].detach()

        opt.zero_grad()
        ls["total"].backward()
        opt.step()
        sched.step()
    for k, v in P.items():
        expected[f"final.{k}"] = v.detach().clone()

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = {k: c[k] for k in ("dim", "bottleneck", "text_dim", "taps", "grid", "map_size", "tau", "variant",
                             "protocol", "loss_weights", "lr", "weight_decay", "betas", "eps",
                             "warmup_steps", "steps", "batch")}
    cfg["seed"] = seed
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    cont = lambda d: {k: v.contiguous() for k, v in d.items()}
    save_file(cont(init), str(out_dir / "init.safetensors"))
    save_file(cont(batches), str(out_dir / "batches.safetensors"))
    save_file(cont(expected), str(out_dir / "expected.safetensors"))
    if write_pth:
        ckpt = {"epoch": 3}
        for module in ("cls_token_adapter_normal", "cls_token_adapter_anomaly", "patch_token_adapter_normal",
                       "patch_token_adapter_anomaly", "prompt_adapter", "text_projection"):
            sd = {k[len(module) + 1:]: v for k, v in init.items() if k.startswith(module + ".")}
            ckpt[module] = dict(sorted(sd.items()))
        torch.save(ckpt, out_dir / "init.pth")
    print(f"wrote {out_dir} ({c['variant']}, {c['protocol']}, steps={c['steps']})")


def base_config(a):
    return {
        "dim": a.dim, "bottleneck": a.bottleneck, "text_dim": a.text_dim, "taps": a.taps,
        "grid": list(a.grid), "map_size": a.map_size, "tau": a.tau, "variant": a.variant,
        "protocol": a.protocol,
        "loss_weights": {"aware": 0.25, "seg": 0.5, "global": 0.25, "route": 0.1},
        "lr": a.lr, "weight_decay": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8,
        "warmup_steps": a.warmup, "steps": a.steps, "batch": a.batch,
    }


COMMITTED = [
    # name, seed, overrides
    ("full_warmup", 1, dict(steps=5, warmup_steps=2), True),
    ("rect_grid", 2, dict(grid=[3, 5], map_size=12, steps=2, warmup_steps=0), False),
    ("corrected", 3, dict(protocol="corrected", steps=3, warmup_steps=1), False),
    ("single_adapter", 4, dict(variant="single_adapter", steps=2, warmup_steps=1), False),
    ("learnable_routing", 5, dict(variant="learnable_routing", steps=2, warmup_steps=1), False),
    ("no_route_loss_last_layer", 6, dict(variant="no_route_loss", taps=1, steps=2, warmup_steps=1), False),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--committed", action="store_true", help="write the committed cases into tests/fixtures")
    ap.add_argument("--out", type=Path, help="fixture root (cases go to OUT/train_step/CASE)")
    ap.add_argument("--case", default="case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--bottleneck", type=int, default=16)
    ap.add_argument("--text-dim", type=int, default=24)
    ap.add_argument("--taps", type=int, default=2)
    ap.add_argument("--grid", type=int, nargs=2, default=[4, 4])
    ap.add_argument("--map-size", type=int, default=16)
    ap.add_argument("--tau", type=float, default=0.1)
    ap.add_argument("--variant", choices=VARIANTS, default="full")
    ap.add_argument("--protocol", choices=("reference", "corrected"), default="reference")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pth", action="store_true", help="also write init.pth in the reference format")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.committed:
        root = ROOT / "tests" / "fixtures" / "train_step"
        for name, seed, over, pth in COMMITTED:
            c = base_config(ap.parse_args([]))
            c.update(over)
            run_case(root / name, c, seed, pth)
    else:
        if a.out is None:
            ap.error("--out or --committed is required")
        run_case(a.out / "train_step" / a.case, base_config(a), a.seed, a.pth)


if __name__ == "__main__":
    main()
