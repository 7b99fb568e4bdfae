#!/usr/bin/env python3
"""Parity fixtures for the CLIP text tower (kind `clip_text`).

Reference: transformers' CLIPTextModelWithProjection on a small random model. Each case directory:

- `config.json` + `model.safetensors` (HF layout, written by `save_pretrained`);
- `openai.safetensors` (OpenAI layout: fused `in_proj`, `text_projection` [W, E]), unless `--no-openai`;
- `model.pt` (plain `torch.save` state dict of the HF layout) when `--pt` is given;
- `io.safetensors`: `input_ids` i64 [B, 77] and `text_embeds` f32 [B, E] (projected, not normalized),
  plus with `--ensemble WORD...` (needs `--vocab 49408`) `ensemble.<word>.normal` / `.anomaly` f32 [E],
  the reference prompt ensemble (AVA-DINO `utils.py: encode_text_with_prompt_ensemble`) tokenized with
  open_clip's SimpleTokenizer.

`hidden_act` in `config.json` is the activation the outputs were made with. The projection size must
differ from the width so that a missing transpose of `text_projection` cannot pass.

Examples (the committed set is `--committed`):
    python scripts/gen_clip_text.py --out /tmp/p/clip_text/w24 --seed 7 --width 24 --heads 3 --layers 3 --proj 20 --act quick_gelu
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

SOT, EOT = 49406, 49407

# AVA-DINO utils.py: 7 normal states, 5 abnormal states, 35 templates (state-major order).
NORMAL = ['{}', 'flawless {}', 'perfect {}', 'unblemished {}', '{} without flaw', '{} without defect',
          '{} without damage']
ABNORMAL = ['damaged {}', 'broken {}', '{} with flaw', '{} with defect', '{} with damage']
TEMPLATES = [
    'a bad photo of a {}.', 'a low resolution photo of the {}.', 'a bad photo of the {}.',
    'a cropped photo of the {}.', 'a bright photo of a {}.', 'a dark photo of the {}.',
    'a photo of my {}.', 'a photo of the cool {}.', 'a close-up photo of a {}.',
    'a black and white photo of the {}.', 'a bright photo of the {}.', 'a cropped photo of a {}.',
    'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.', 'a photo of the {}.',
    'a good photo of the {}.', 'a photo of one {}.', 'a close-up photo of the {}.',
    'a photo of a {}.', 'a low resolution photo of a {}.', 'a photo of a large {}.',
    'a blurry photo of a {}.', 'a jpeg corrupted photo of the {}.', 'a good photo of a {}.',
    'a photo of the small {}.', 'a photo of the large {}.', 'a black and white photo of a {}.',
    'a dark photo of a {}.', 'a photo of a cool {}.', 'a photo of a small {}.',
    'there is a {} in the scene.', 'there is the {} in the scene.',
    'this is a {} in the scene.', 'this is the {} in the scene.', 'this is one {} in the scene.',
]


def ensemble_sentences(states, word):
    return [t.format(s.format(word)) for s in states for t in TEMPLATES]


def randomize(model, gen):
    """Non-trivial weights: LayerNorm gammas ~U(0.5, 1.5), biases ~N(0, 0.1), the rest ~N(0, 0.2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'layer_norm' in name and name.endswith('weight'):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith('bias'):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def openai_layout(sd, layers):
    """HF state dict -> OpenAI CLIP names (fused in_proj, text_projection transposed to [W, E])."""
    out = {
        'token_embedding.weight': sd['text_model.embeddings.token_embedding.weight'],
        'positional_embedding': sd['text_model.embeddings.position_embedding.weight'],
        'ln_final.weight': sd['text_model.final_layer_norm.weight'],
        'ln_final.bias': sd['text_model.final_layer_norm.bias'],
        'text_projection': sd['text_projection.weight'].t().contiguous(),
    }
    for i in range(layers):
        h, o = f'text_model.encoder.layers.{i}.', f'transformer.resblocks.{i}.'
        out[o + 'attn.in_proj_weight'] = torch.cat([sd[h + f'self_attn.{x}_proj.weight'] for x in 'qkv'])
        out[o + 'attn.in_proj_bias'] = torch.cat([sd[h + f'self_attn.{x}_proj.bias'] for x in 'qkv'])
        out[o + 'attn.out_proj.weight'] = sd[h + 'self_attn.out_proj.weight']
        out[o + 'attn.out_proj.bias'] = sd[h + 'self_attn.out_proj.bias']
        for a, b in [('ln_1', 'layer_norm1'), ('ln_2', 'layer_norm2'), ('mlp.c_fc', 'mlp.fc1'), ('mlp.c_proj', 'mlp.fc2')]:
            out[o + a + '.weight'] = sd[h + b + '.weight']
            out[o + a + '.bias'] = sd[h + b + '.bias']
    return {k: v.contiguous() for k, v in out.items()}


def random_ids(gen, batch, vocab, ctx):
    """Rows of SOT-less random ids ended by the largest id (EOT), zero padded; lengths vary, one full row."""
    eot = vocab - 1
    ids = torch.zeros(batch, ctx, dtype=torch.long)
    for b in range(batch):
        n = ctx if b == 0 else int(torch.randint(2, ctx, (1,), generator=gen))
        ids[b, : n - 1] = torch.randint(1, eot, (n - 1,), generator=gen)
        ids[b, n - 1] = eot
        if b == 1 and n + 2 < ctx:
            # An EOT in the padding after the first: pooling must take the first one.
            ids[b, n + 1] = eot
    return ids


def make_case(out, seed, width, heads, layers, inter, proj, vocab, act, batch, openai, pt, ensemble, half_embed):
    gen = torch.Generator().manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=inter, projection_dim=proj,
                         num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                         hidden_act=act, layer_norm_eps=1e-5, eos_token_id=vocab - 1,
                         bos_token_id=min(SOT, vocab - 2), pad_token_id=0)
    model = CLIPTextModelWithProjection(cfg).eval()
    randomize(model, gen)
    if half_embed:
        # Stored as f16 to keep the full-vocabulary file small: make the f32 values f16-exact.
        with torch.no_grad():
            e = model.text_model.embeddings.token_embedding.weight
            e.copy_(e.half().float())
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if 'position_ids' not in k}
    if half_embed:
        sd['text_model.embeddings.token_embedding.weight'] = sd['text_model.embeddings.token_embedding.weight'].half()
        save_file(sd, os.path.join(out, 'model.safetensors'), metadata={'format': 'pt'})
    if openai:
        save_file(openai_layout(sd, layers), os.path.join(out, 'openai.safetensors'))
    if pt:
        torch.save(sd, os.path.join(out, 'model.pt'))

    ids = random_ids(gen, batch, vocab, 77)
    io = {'input_ids': ids}
    with torch.no_grad():
        io['text_embeds'] = model(input_ids=ids).text_embeds.float().contiguous()
        if ensemble:
            assert vocab == 49408, '--ensemble needs --vocab 49408'
            from open_clip.tokenizer import SimpleTokenizer
            tok = SimpleTokenizer()
            for word in ensemble:
                for name, states in [('normal', NORMAL), ('anomaly', ABNORMAL)]:
                    rows = []
                    for s in ensemble_sentences(states, word):
                        t = [SOT] + tok.encode(s) + [EOT]
                        rows.append(t + [0] * (77 - len(t)))
                    emb = model(input_ids=torch.tensor(rows)).text_embeds
                    emb = emb / emb.norm(dim=-1, keepdim=True)
                    mean = emb.mean(dim=0)
                    io[f'ensemble.{word}.{name}'] = (mean / mean.norm()).contiguous()
    save_file(io, os.path.join(out, 'io.safetensors'))
    print(f'{out}: W={width} H={heads} L={layers} E={proj} vocab={vocab} act={act} seed={seed}')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', help='case directory to write')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--width', type=int, default=16)
    ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--inter', type=int, default=None, help='MLP width (default 4 x width)')
    ap.add_argument('--proj', type=int, default=12, help='projection size E (keep != width)')
    ap.add_argument('--vocab', type=int, default=512)
    ap.add_argument('--act', choices=['gelu', 'quick_gelu'], default='gelu')
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--no-openai', action='store_true')
    ap.add_argument('--pt', action='store_true', help='also write model.pt (plain state dict)')
    ap.add_argument('--ensemble', nargs='*', default=[], help='class words for ensemble outputs (vocab 49408)')
    ap.add_argument('--half-embed', action='store_true', help='store the token embedding as f16')
    ap.add_argument('--committed', metavar='ROOT', help='write the committed set under ROOT/clip_text/')
    a = ap.parse_args()
    if a.committed:
        root = os.path.join(a.committed, 'clip_text')
        make_case(os.path.join(root, 'gelu_w16'), 1, 16, 2, 2, 64, 12, 512, 'gelu', 4, True, True, [], False)
        make_case(os.path.join(root, 'quick_gelu_w16'), 2, 16, 4, 2, 40, 20, 512, 'quick_gelu', 3, True, False, [], False)
        make_case(os.path.join(root, 'vocab_full_w8'), 3, 8, 2, 1, 16, 6, 49408, 'gelu', 2, False, False,
                  ['bottle', 'metal_nut', 'Data'], True)
        return
    if not a.out:
        ap.error('--out or --committed is required')
    if a.proj == a.width:
        print('warning: --proj equals --width; a missing transpose would pass', file=sys.stderr)
    make_case(a.out, a.seed, a.width, a.heads, a.layers, a.inter or 4 * a.width, a.proj, a.vocab, a.act,
              a.batch, not a.no_openai, a.pt, a.ensemble, a.half_embed)


if __name__ == '__main__':
    main()
