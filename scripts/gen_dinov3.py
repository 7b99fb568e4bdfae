#!/usr/bin/env python3
"""Parity fixtures for the DINOv3 backbone (kind `dinov3`, docs/fixtures.md).

Builds transformers' DINOv3ViTModel with random non-trivial weights, overrides its RoPE inverse
frequencies with 1/bf16(periods) (what Meta's released checkpoints store; docs/backbone.md),
and writes one case directory:

  config.json + model.safetensors   HF model directory (save_pretrained)
  meta.safetensors, meta.pth        the same weights in Meta layout: fused qkv, bias_mask, periods,
                                    storage_tokens, ls*.gamma; the k third of qkv.bias is NONZERO
                                    and bias_mask zeroes it, as in Meta's LinearKMaskedBias
  io.safetensors                    pixel_values [B,3,H,W], taps [K], normed.{k}, patches.{k}, cls.{k}

Tap k = final norm of the output of block k (hidden_states[k+1]); patches = patch rows standardized
per sample and channel over patches (unbiased std + 1e-6); cls = row 0 (AVA-DINO extraction).

Example: python scripts/gen_dinov3.py --out tests/fixtures/dinov3/rect_b2 --seed 1 --head-dim 16 \
           --heads 2 --blocks 2 --patch 8 --height 24 --width 40 --batch 2 --registers 4
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import DINOv3ViTConfig, DINOv3ViTModel


def bf16_periods(head_dim: int, base: float) -> torch.Tensor:
    j = torch.arange(head_dim // 4, dtype=torch.float32)
    return (base ** (2 * j / (head_dim // 2))).to(torch.bfloat16).to(torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="case directory to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--registers", type=int, default=4)
    ap.add_argument("--taps", default="", help="comma-separated block indices (default: all blocks)")
    ap.add_argument("--no-pth", action="store_true", help="skip meta.pth")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    d = args.head_dim * args.heads
    cfg = DINOv3ViTConfig(
        hidden_size=d, intermediate_size=4 * d, num_hidden_layers=args.blocks,
        num_attention_heads=args.heads, patch_size=args.patch, num_register_tokens=args.registers,
        layer_norm_eps=1e-5, rope_theta=100.0, image_size=max(args.height, args.width),
    )
    model = DINOv3ViTModel(cfg).eval()

    # Non-trivial weights: everything random, LayerScale in [0.5, 1), biases nonzero.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lambda1" in name:
                p.uniform_(0.5, 1.0)
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.7, 1.3)
            elif name.endswith("bias"):
                p.uniform_(-0.2, 0.2)
            elif name.endswith("mask_token"):
                p.zero_()
            elif p.dim() >= 2 and "token" not in name:
                fan_in = p[0].numel()
                p.uniform_(-(fan_in ** -0.5) * 1.5, (fan_in ** -0.5) * 1.5)
            else:
                p.normal_(0.0, 1.0)
        periods = bf16_periods(args.head_dim, cfg.rope_theta)
        model.rope_embeddings.inv_freq.copy_(1.0 / periods)

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)

    # Meta layout.
    # transformers >= 5 names blocks `model.layer.N` in memory (save_pretrained writes `layer.N`).
    sd = {k.removeprefix("model."): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "cls_token": sd["embeddings.cls_token"],
        "storage_tokens": sd["embeddings.register_tokens"],
        "mask_token": sd["embeddings.mask_token"].reshape(1, d),
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.bias"],
        "rope_embed.periods": periods.to(torch.bfloat16),  # stored as bf16, like the release
        "norm.weight": sd["norm.weight"],
        "norm.bias": sd["norm.bias"],
    }
    g = torch.Generator().manual_seed(args.seed + 1000)
    for i in range(args.blocks):
        h, m = f"layer.{i}.", f"blocks.{i}."
        a = h + "attention."
        meta[m + "attn.qkv.weight"] = torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]])
        k_bias = torch.rand(d, generator=g) * 2 - 1  # nonzero: bias_mask must cancel it
        meta[m + "attn.qkv.bias"] = torch.cat([sd[a + "q_proj.bias"], k_bias, sd[a + "v_proj.bias"]])
        meta[m + "attn.qkv.bias_mask"] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
        meta[m + "attn.proj.weight"] = sd[a + "o_proj.weight"]
        meta[m + "attn.proj.bias"] = sd[a + "o_proj.bias"]
        for s in ("weight", "bias"):
            meta[m + f"norm1.{s}"] = sd[h + f"norm1.{s}"]
            meta[m + f"norm2.{s}"] = sd[h + f"norm2.{s}"]
            meta[m + f"mlp.fc1.{s}"] = sd[h + f"mlp.up_proj.{s}"]
            meta[m + f"mlp.fc2.{s}"] = sd[h + f"mlp.down_proj.{s}"]
        meta[m + "ls1.gamma"] = sd[h + "layer_scale1.lambda1"]
        meta[m + "ls2.gamma"] = sd[h + "layer_scale2.lambda1"]
    meta = {k: v.contiguous() for k, v in meta.items()}
    save_file(meta, os.path.join(args.out, "meta.safetensors"))
    if not args.no_pth:
        torch.save(meta, os.path.join(args.out, "meta.pth"))

    # Reference outputs.
    taps = [int(t) for t in args.taps.split(",")] if args.taps else list(range(args.blocks))
    x = torch.randn(args.batch, 3, args.height, args.width, generator=g)
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
        hs = out.hidden_states
        io = {"pixel_values": x.contiguous(), "taps": torch.tensor(taps, dtype=torch.int64)}
        prefix = 1 + args.registers
        for k in taps:
            normed = model.norm(hs[k + 1])
            p = normed[:, prefix:, :]
            patches = (p - p.mean(dim=1, keepdim=True)) / (p.std(dim=1, keepdim=True) + 1e-6)
            io[f"normed.{k}"] = normed.clone()
            io[f"patches.{k}"] = patches.contiguous()
            io[f"cls.{k}"] = normed[:, 0, :].clone()
        assert torch.allclose(io[f"normed.{args.blocks - 1}"], out.last_hidden_state, atol=1e-6) if (args.blocks - 1) in taps else True
    save_file(io, os.path.join(args.out, "io.safetensors"))
    with open(os.path.join(args.out, "gen_args.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    print(f"wrote {args.out}: D={d} heads={args.heads} blocks={args.blocks} patch={args.patch} "
          f"image={args.height}x{args.width} batch={args.batch} registers={args.registers} taps={taps}")


if __name__ == "__main__":
    main()
