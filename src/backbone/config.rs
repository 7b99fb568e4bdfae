//! DINOv3 ViT architecture: read from / written as a HuggingFace `config.json`, plus presets.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::BackboneError;

/// Architecture of a DINOv3 ViT (MLP variant, no SwiGLU), in HF `DINOv3ViTConfig` terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DinoV3Config {
    /// Token width D.
    pub hidden_size: usize,
    /// MLP hidden width (4·D for the released models).
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of attention heads; head dim = D / heads, must be a multiple of 4 (2-D RoPE).
    pub num_attention_heads: usize,
    /// Square patch side p.
    pub patch_size: usize,
    /// Input channels (3).
    pub num_channels: usize,
    /// Register ("storage") tokens after the CLS token.
    pub num_register_tokens: usize,
    /// LayerNorm epsilon of every norm.
    pub layer_norm_eps: f64,
    /// RoPE base (100 for the released models).
    pub rope_theta: f64,
    pub query_bias: bool,
    /// HF `key_bias`; Meta checkpoints store a k bias but mask it out (`bias_mask`).
    pub key_bias: bool,
    pub value_bias: bool,
    pub proj_bias: bool,
    pub mlp_bias: bool,
}

impl DinoV3Config {
    /// ViT-L/16 as released (`dinov3_vitl16_pretrain_lvd1689m`), the AVA-DINO backbone.
    pub fn vitl16() -> Self {
        Self::like_vitl16(1024, 24, 16, 16, 4)
    }

    /// The released ViT-L/16's design (its biases, LayerNorm epsilon, RoPE base, MLP ratio 4)
    /// at any size: `vitl16()` is `like_vitl16(1024, 24, 16, 16, 4)`; small sizes make the
    /// embedded random backbones and the test models.
    pub fn like_vitl16(
        hidden_size: usize,
        layers: usize,
        heads: usize,
        patch_size: usize,
        registers: usize,
    ) -> Self {
        Self {
            hidden_size,
            intermediate_size: 4 * hidden_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            patch_size,
            num_channels: 3,
            num_register_tokens: registers,
            layer_norm_eps: 1e-5,
            rope_theta: 100.0,
            query_bias: true,
            key_bias: false,
            value_bias: true,
            proj_bias: true,
            mlp_bias: true,
        }
    }

    /// Width of one head.
    /// Why `pixel_values` of shape `dims` (`[B, C, H, W]`) cannot go through a model of this
    /// configuration with `taps`, if so.
    pub fn check_input(&self, dims: [usize; 4], taps: &[usize]) -> Result<(), String> {
        let [b, ch, h, w] = dims;
        if b == 0 {
            return Err("empty batch".into());
        }
        if ch != self.num_channels {
            return Err(format!(
                "pixel_values has {ch} channels, the backbone expects {}",
                self.num_channels
            ));
        }
        if h == 0
            || w == 0
            || !h.is_multiple_of(self.patch_size)
            || !w.is_multiple_of(self.patch_size)
        {
            return Err(format!(
                "image size {h}x{w} is not a positive multiple of the patch size {}",
                self.patch_size
            ));
        }
        if taps.is_empty() {
            return Err("no taps requested".into());
        }
        if let Some(&t) = taps.iter().find(|&&t| t >= self.num_hidden_layers) {
            return Err(format!(
                "tap {t} is out of range: the backbone has blocks 0..{}",
                self.num_hidden_layers - 1
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// CLS + register tokens in front of the patch tokens.
    pub fn prefix_tokens(&self) -> usize {
        1 + self.num_register_tokens
    }

    /// Checks the sizes the forward relies on; `source` names the file in the message.
    pub fn validate(&self, source: &str) -> Result<(), BackboneError> {
        let bad = |reason: String| {
            Err(BackboneError::Config {
                path: source.into(),
                reason,
            })
        };
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.patch_size == 0
            || self.num_hidden_layers == 0
        {
            return bad("hidden_size, num_attention_heads, num_hidden_layers and patch_size must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(4) {
            return bad(format!(
                "head dim {} must be a multiple of 4 for the 2-D RoPE",
                self.head_dim()
            ));
        }
        if self.num_channels == 0 || self.intermediate_size == 0 {
            return bad("num_channels and intermediate_size must be positive".into());
        }
        // Written so that NaN fails too.
        if self.layer_norm_eps.is_nan()
            || self.layer_norm_eps <= 0.0
            || self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
        {
            return bad("layer_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }

    /// Reads an HF `config.json` (missing fields take HF's `DINOv3ViTConfig` defaults).
    pub fn from_json_file(path: &Path) -> Result<Self, BackboneError> {
        let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
            path: path.into(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| BackboneError::Config {
            path: path.into(),
            reason: format!("not valid JSON: {e}"),
        })?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Parses an HF config object; `source` names it in errors.
    pub fn from_json(v: &Value, source: &str) -> Result<Self, BackboneError> {
        let err = |reason: String| BackboneError::Config {
            path: source.into(),
            reason,
        };
        if let Some(t) = v.get("model_type").and_then(Value::as_str)
            && t != "dinov3_vit"
        {
            return Err(err(format!("model_type is `{t}`, expected `dinov3_vit`")));
        }
        let usize_of = |key: &str, default: usize| -> Result<usize, BackboneError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| err(format!("`{key}` must be a non-negative integer, got {x}"))),
            }
        };
        let f64_of = |key: &str, default: f64| -> Result<f64, BackboneError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_f64()
                    .ok_or_else(|| err(format!("`{key}` must be a number, got {x}"))),
            }
        };
        let bool_of = |key: &str, default: bool| -> Result<bool, BackboneError> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| err(format!("`{key}` must be true or false, got {x}"))),
            }
        };
        // HF allows a [ph, pw] patch size; the model here supports square patches only.
        let patch_size = match v.get("patch_size") {
            Some(Value::Array(a)) => {
                let sides: Vec<u64> = a.iter().filter_map(Value::as_u64).collect();
                if sides.len() != 2 || sides[0] != sides[1] {
                    return Err(err(format!(
                        "patch_size {a:?}: only square patches are supported"
                    )));
                }
                sides[0] as usize
            }
            _ => usize_of("patch_size", 16)?,
        };
        if bool_of("use_gated_mlp", false)? {
            return Err(err(
                "use_gated_mlp = true (SwiGLU, the `plus`/7b variants) is not supported".into(),
            ));
        }
        if let Some(act) = v.get("hidden_act").and_then(Value::as_str)
            && act != "gelu"
        {
            return Err(err(format!(
                "hidden_act `{act}` is not supported (only exact `gelu`)"
            )));
        }
        let hidden_size = usize_of("hidden_size", 384)?;
        let cfg = Self {
            hidden_size,
            intermediate_size: usize_of("intermediate_size", 1536)?,
            num_hidden_layers: usize_of("num_hidden_layers", 12)?,
            num_attention_heads: usize_of("num_attention_heads", 6)?,
            patch_size,
            num_channels: usize_of("num_channels", 3)?,
            num_register_tokens: usize_of("num_register_tokens", 0)?,
            layer_norm_eps: f64_of("layer_norm_eps", 1e-5)?,
            rope_theta: f64_of("rope_theta", 100.0)?,
            query_bias: bool_of("query_bias", true)?,
            key_bias: bool_of("key_bias", false)?,
            value_bias: bool_of("value_bias", true)?,
            proj_bias: bool_of("proj_bias", true)?,
            mlp_bias: bool_of("mlp_bias", true)?,
        };
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// The HF `config.json` object for this architecture (loadable by transformers' `DINOv3ViTModel`).
    pub fn to_json(&self) -> Value {
        json!({
            "architectures": ["DINOv3ViTModel"],
            "model_type": "dinov3_vit",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "patch_size": self.patch_size,
            "num_channels": self.num_channels,
            "num_register_tokens": self.num_register_tokens,
            "layer_norm_eps": self.layer_norm_eps,
            "rope_theta": self.rope_theta,
            "query_bias": self.query_bias,
            "key_bias": self.key_bias,
            "value_bias": self.value_bias,
            "proj_bias": self.proj_bias,
            "mlp_bias": self.mlp_bias,
            "hidden_act": "gelu",
            "use_gated_mlp": false,
            "layerscale_value": 1.0,
            "image_size": 224,
            "pos_embed_rescale": 2.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_defaults() {
        let c = DinoV3Config::vitl16();
        assert_eq!(DinoV3Config::from_json(&c.to_json(), "x").unwrap(), c);
        let d = DinoV3Config::from_json(&json!({"model_type": "dinov3_vit"}), "x").unwrap();
        assert_eq!(
            (d.hidden_size, d.num_hidden_layers, d.num_register_tokens),
            (384, 12, 0)
        );
    }

    #[test]
    fn rejects_unsupported_configs() {
        let e = DinoV3Config::from_json(&json!({"use_gated_mlp": true}), "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cfg.json") && e.contains("use_gated_mlp"), "{e}");
        let e = DinoV3Config::from_json(&json!({"hidden_size": 48, "num_attention_heads": 8}), "c")
            .unwrap_err();
        assert!(e.to_string().contains("multiple of 4"), "{e}");
        assert!(DinoV3Config::from_json(&json!({"model_type": "clip"}), "c").is_err());
    }
}
