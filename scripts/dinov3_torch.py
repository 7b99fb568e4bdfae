"""transformers' DINOv3ViTModel set up as the Rust backbone runs it (shared by the scripts that
compare against or time it): RoPE inv_freq = 1/bf16 periods, as the released checkpoints store
them, and the AVA-DINO tap features."""
import torch
from transformers import DINOv3ViTModel


def load_model(model_dir, threads):
    """The HF directory's model in eval mode, on `threads` intra-op threads."""
    torch.set_num_threads(threads)
    model = DINOv3ViTModel.from_pretrained(model_dir).eval()
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    j = torch.arange(head_dim // 4, dtype=torch.float32)
    periods = (model.config.rope_theta ** (2 * j / (head_dim // 2))).to(torch.bfloat16).float()
    model.rope_embeddings.inv_freq.copy_(1.0 / periods)
    return model


def tap_features(model, hidden_states, tap):
    """`normed`, `patches` and `cls` of block `tap` (0-based), as `DinoV3::forward_taps`:
    final norm, patch rows standardized per channel (unbiased std + 1e-6), CLS row."""
    prefix = 1 + model.config.num_register_tokens
    normed = model.norm(hidden_states[tap + 1])
    p = normed[:, prefix:]
    return {"normed": normed,
            "patches": (p - p.mean(1, keepdim=True)) / (p.std(1, keepdim=True) + 1e-6),
            "cls": normed[:, 0]}
