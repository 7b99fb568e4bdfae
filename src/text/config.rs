//! CLIP text-tower hyper-parameters, from an HF `config.json` or a preset.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Activation, TextError};

/// Shape of a CLIP text transformer (HF `CLIPTextConfig` names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    /// Width W of the residual stream.
    pub hidden_size: usize,
    /// MLP hidden size (4 W in CLIP).
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Context length (77).
    pub max_position_embeddings: usize,
    /// Output size E of `text_projection`.
    pub projection_dim: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// The activation the config names. Loading takes the activation as an explicit argument
    /// because HF's CLIP configs say `quick_gelu` while the reference runs erf GELU.
    #[serde(default)]
    pub hidden_act: Activation,
}

fn default_eps() -> f64 {
    1e-5
}

/// The keys of a full HF `CLIPConfig` that matter here.
#[derive(Deserialize)]
struct FullConfig {
    text_config: serde_json::Value,
    projection_dim: Option<usize>,
}

impl ClipTextConfig {
    /// OpenAI CLIP ViT-L/14-336 text tower: W 768, 12 layers, 12 heads, E 768, vocab 49408.
    pub fn vitl14_336() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            projection_dim: 768,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::QuickGelu,
        }
    }

    /// HF `CLIPTextConfig()` defaults (the ViT-B/32 text tower), used for keys a config leaves out,
    /// as transformers does.
    pub fn hf_defaults() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            projection_dim: 512,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::QuickGelu,
        }
    }

    /// Parses a `CLIPTextConfig` or a full `CLIPConfig` (`text_config` plus top-level
    /// `projection_dim`, which wins). Keys left out take HF's defaults, as in transformers.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, TextError> {
        let err = |reason: String| TextError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let (mut text_cfg, outer_proj) = if value.get("text_config").is_some() {
            let full: FullConfig = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
            (full.text_config, full.projection_dim)
        } else {
            (value, None)
        };
        let obj = text_cfg
            .as_object_mut()
            .ok_or_else(|| err("text config is not a JSON object".into()))?;
        let preset = serde_json::to_value(Self::hf_defaults()).expect("serializable defaults");
        if let Some(p) = outer_proj {
            // In a full CLIPConfig the top-level value is the one the projection is built with.
            obj.insert("projection_dim".into(), p.into());
        }
        for (k, v) in preset.as_object().unwrap() {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let cfg: Self = serde_json::from_value(text_cfg).map_err(|e| err(e.to_string()))?;
        cfg.validate().map_err(err)?;
        Ok(cfg)
    }

    /// Reads and parses `path`.
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let text = std::fs::read_to_string(path).map_err(|source| TextError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// The HF `config.json` of a `CLIPTextModelWithProjection` with this shape.
    pub fn to_hf_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("serializable config");
        let o = v.as_object_mut().unwrap();
        o.insert(
            "architectures".into(),
            serde_json::json!(["CLIPTextModelWithProjection"]),
        );
        o.insert("model_type".into(), "clip_text_model".into());
        o.insert("eos_token_id".into(), (self.vocab_size - 1).into());
        serde_json::to_string_pretty(&v).expect("serializable config")
    }

    /// Per-head size.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the sizes fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("projection_dim", self.projection_dim),
        ] {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_config_and_full_config_parse() {
        let p = Path::new("config.json");
        let text = r#"{"vocab_size": 512, "hidden_size": 16, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 77, "projection_dim": 12, "hidden_act": "gelu"}"#;
        let c = ClipTextConfig::from_json(text, p).unwrap();
        assert_eq!(
            (c.hidden_size, c.projection_dim, c.hidden_act),
            (16, 12, Activation::Gelu)
        );
        // The shape of openai/clip-vit-large-patch14-336's config.json (a full CLIPConfig).
        let full = r#"{"projection_dim": 768, "text_config": {"hidden_act": "quick_gelu", "hidden_size": 768,
            "intermediate_size": 3072, "num_attention_heads": 12, "projection_dim": 768}, "vision_config": {}}"#;
        let c = ClipTextConfig::from_json(full, p).unwrap();
        assert_eq!(c, ClipTextConfig::vitl14_336());
        let bare =
            ClipTextConfig::from_json(r#"{"text_config": {}, "projection_dim": 256}"#, p).unwrap();
        assert_eq!(
            bare,
            ClipTextConfig {
                projection_dim: 256,
                ..ClipTextConfig::hf_defaults()
            }
        );
        let back = ClipTextConfig::from_json(&c.to_hf_json(), p).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let p = Path::new("cfg.json");
        let msg = ClipTextConfig::from_json(r#"{"hidden_size": "wide"}"#, p)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cfg.json") && msg.contains("invalid type"),
            "{msg}"
        );
        let msg = ClipTextConfig::from_json(
            r#"{"hidden_size": 10, "num_attention_heads": 3, "projection_dim": 4}"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("divisible"), "{msg}");
        let msg = ClipTextConfig::from_json(r#"{"projection_dim": 4, "hidden_act": "relu"}"#, p)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("relu"), "{msg}");
    }
}
