#!/usr/bin/env python3
"""Random weights at the real shapes that both the authors' code and the harness load.

- DINOv3 ViT-L/16: Meta's own model code (`dinov3.hub.backbones.dinov3_vitl16(pretrained=False)`,
  its `init_weights`) under `torch.manual_seed(seed)`, saved as its `state_dict()`: the layout of
  Meta's released `dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth`, which the hub loads strictly.
- CLIP ViT-L/14-336: the authors' own CLIP class (`CLIP/model.py`, config
  `CLIP/model_configs/ViT-L-14-336.json`) under `torch.manual_seed(seed + 1)`, saved as its
  `state_dict()`: OpenAI's key layout, vision tower included, which `create_model(...,
  pretrained='openai')` rebuilds and loads with `strict=True`. Every float tensor is stored in
  fp16, as OpenAI's released checkpoint holds them: at `img_size=512` the authors' loader
  (`build_model_from_openai_state_dict`) converts the model to fp16 *before* loading, so fp32
  values would reach their text tower rounded to fp16 and the harness's unrounded (random fp32
  weights put the two sides' text features 5e-4 apart; fp16 values are exact on both).

Usage: make_weights.py --dinov3 DINOV3_CHECKOUT --authors AUTHORS_CHECKOUT --seed S \
           --dinov3-out FILE --clip-out FILE
"""

import argparse
import os
import sys

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dinov3", required=True)
    ap.add_argument("--authors", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dinov3-out", required=True)
    ap.add_argument("--clip-out", required=True)
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.dinov3))
    from dinov3.hub.backbones import dinov3_vitl16

    torch.manual_seed(args.seed)
    dino = dinov3_vitl16(pretrained=False)
    os.makedirs(os.path.dirname(os.path.abspath(args.dinov3_out)), exist_ok=True)
    torch.save(dino.state_dict(), args.dinov3_out)
    print(f"DINOv3 ViT-L/16: {sum(p.numel() for p in dino.parameters()):,} parameters -> {args.dinov3_out}")
    del dino

    sys.path.insert(0, os.path.abspath(args.authors))
    from CLIP.clip import get_model_config
    from CLIP.model import CLIP

    torch.manual_seed(args.seed + 1)
    clip = CLIP(**get_model_config("ViT-L-14-336"))
    os.makedirs(os.path.dirname(os.path.abspath(args.clip_out)), exist_ok=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in clip.state_dict().items()}
    torch.save(state, args.clip_out)
    print(f"CLIP ViT-L/14-336: {sum(p.numel() for p in clip.parameters()):,} parameters -> {args.clip_out}")


if __name__ == "__main__":
    main()
