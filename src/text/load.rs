//! Loading CLIP text weights: HF layout (`CLIPTextModelWithProjection` or full `CLIPModel`, vision
//! keys ignored) or OpenAI layout, from `.safetensors` or a plain PyTorch state dict (`.pt`/`.bin`),
//! both read by [`crate::io::read_weights`]. OpenAI's released `.pt` is a TorchScript archive: it
//! is detected and the error names the one-line conversion.
//!
//! OpenAI -> HF key map (everything is mapped onto HF names, the names of the model's key table,
//! [`super::model::key_table`]); [`OPENAI_GLOBAL`] and [`OPENAI_LAYER`] hold it, both ways:
//!
//! | OpenAI | HF | transform |
//! |---|---|---|
//! | `token_embedding.weight` | `text_model.embeddings.token_embedding.weight` | - |
//! | `positional_embedding` | `text_model.embeddings.position_embedding.weight` | - |
//! | `transformer.resblocks.i.attn.in_proj_{weight,bias}` | `...layers.i.self_attn.{q,k,v}_proj.*` | rows in thirds |
//! | `transformer.resblocks.i.attn.out_proj.*` | `...layers.i.self_attn.out_proj.*` | - |
//! | `transformer.resblocks.i.ln_{1,2}.*` | `...layers.i.layer_norm{1,2}.*` | - |
//! | `transformer.resblocks.i.mlp.c_fc.*` / `c_proj.*` | `...layers.i.mlp.fc1.*` / `fc2.*` | - |
//! | `ln_final.*` | `text_model.final_layer_norm.*` | - |
//! | `text_projection` [W, E] | `text_projection.weight` [E, W] | transpose |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::config::ClipTextConfig;
use super::model::ClipText;
use super::{Activation, TextError};
use crate::io::{HostTensor, PthError, TensorFile, WeightsError, read_weights, sha256_file_cached};

/// Weight files looked for, in order, when `path` is a directory.
const WEIGHT_NAMES: [&str; 5] = [
    "model.safetensors",
    "openai.safetensors",
    "pytorch_model.bin",
    "model.pt",
    "openai.pt",
];

/// `(OpenAI name, HF name)` outside the layers; `text_projection` is also transposed.
pub const OPENAI_GLOBAL: [(&str, &str); 5] = [
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
    ),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
    ("text_projection", "text_projection.weight"),
];

/// `(OpenAI prefix after "transformer.resblocks.{i}.", HF prefix after
/// "text_model.encoder.layers.{i}.")`, one to one; the fused `attn.in_proj_*` is split apart.
pub const OPENAI_LAYER: [(&str, &str); 5] = [
    ("attn.out_proj.", "self_attn.out_proj."),
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
];

/// The weights file and the `config.json` that [`load_text_encoder`] reads for `path` (a
/// directory or a weights file), without reading either.
pub fn weights_and_config(path: &Path) -> Result<(PathBuf, PathBuf), TextError> {
    if path.is_dir() {
        let w = WEIGHT_NAMES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| TextError::NoWeights {
                path: path.to_path_buf(),
            })?;
        Ok((w, path.join("config.json")))
    } else {
        let sibling = path.parent().unwrap_or(Path::new(".")).join("config.json");
        Ok((path.to_path_buf(), sibling))
    }
}

/// Loads a CLIP text encoder from a directory (an HF `config.json` + weights) or a weights file
/// (a `config.json` beside it is used when present, else the config is inferred from the tensor
/// shapes with 64-wide heads, as OpenAI's CLIP). `activation` overrides the config's `hidden_act`
/// (HF configs say `quick_gelu`; the reference runs erf GELU).
pub fn load_text_encoder(
    path: &Path,
    activation: Activation,
    device: &Device,
) -> Result<ClipText, TextError> {
    let (weights, config_path) = weights_and_config(path)?;
    let raw = read_weights(&weights).map_err(|e| match e {
        WeightsError::Pth(PthError::TorchScript { path }) => TextError::TorchScript { path },
        other => TextError::Weights(other),
    })?;
    let hash = sha256_file_cached(&weights).map_err(|source| TextError::Read {
        path: weights.clone(),
        source,
    })?;
    let tensors = to_hf_layout(raw.tensors, &weights)?;
    let config = if config_path.is_file() {
        ClipTextConfig::from_file(&config_path)?
    } else {
        infer_config(&tensors, &weights)?
    };
    ClipText::from_hf_tensors(config, activation, tensors, hash, &weights, device)
}

/// The configuration [`load_text_encoder`] would use for `path`: its `config.json`, or (without
/// one) the one inferred from the weights, which are then read.
pub fn config_of(path: &Path) -> Result<ClipTextConfig, TextError> {
    let (weights, config_path) = weights_and_config(path)?;
    if config_path.is_file() {
        return ClipTextConfig::from_file(&config_path);
    }
    let raw = read_weights(&weights).map_err(|e| match e {
        WeightsError::Pth(PthError::TorchScript { path }) => TextError::TorchScript { path },
        other => TextError::Weights(other),
    })?;
    infer_config(&to_hf_layout(raw.tensors, &weights)?, &weights)
}

/// Keys that belong to other parts of a CLIP checkpoint (vision tower, logit scale, JIT extras).
fn ignored(key: &str) -> bool {
    key.starts_with("vision_model.")
        || key.starts_with("visual.")
        || key.starts_with("visual_projection.")
        || key.ends_with("position_ids")
        || matches!(
            key,
            "logit_scale" | "input_resolution" | "context_length" | "vocab_size"
        )
}

/// Maps HF or OpenAI names onto HF `CLIPTextModelWithProjection` names (see the module table).
pub fn to_hf_layout(
    raw: BTreeMap<String, HostTensor>,
    path: &Path,
) -> Result<BTreeMap<String, HostTensor>, TextError> {
    let raw: BTreeMap<String, HostTensor> = raw.into_iter().filter(|(k, _)| !ignored(k)).collect();
    if raw.keys().any(|k| k.starts_with("text_model.")) {
        return Ok(raw);
    }
    if !raw.contains_key("token_embedding.weight") {
        let found: Vec<&str> = raw.keys().map(String::as_str).take(8).collect();
        return Err(TextError::UnknownLayout {
            path: path.to_path_buf(),
            found: found.join(", "),
        });
    }
    let keys_err = |problems: String| TextError::Keys {
        path: path.to_path_buf(),
        problems,
    };
    let mut out = BTreeMap::new();
    for (k, t) in raw {
        if k == "text_projection" {
            if t.shape.len() != 2 {
                return Err(keys_err(format!(
                    "`text_projection` has shape {:?}, expected [W, E]",
                    t.shape
                )));
            }
            out.insert("text_projection.weight".to_string(), t.transposed());
            continue;
        }
        if let Some((_, hf)) = OPENAI_GLOBAL.iter().find(|(oa, _)| *oa == k) {
            out.insert(hf.to_string(), t);
            continue;
        }
        let layer = k
            .strip_prefix("transformer.resblocks.")
            .and_then(|r| r.split_once('.'))
            .filter(|(i, _)| i.parse::<usize>().is_ok());
        let Some((i, rest)) = layer else {
            // Reported by name as unexpected when the model checks its keys.
            out.insert(format!("<openai>{k}"), t);
            continue;
        };
        let p = format!("text_model.encoder.layers.{i}.");
        if let Some(kind) = rest.strip_prefix("attn.in_proj_") {
            let parts = split_rows(&t, 3).map_err(|e| keys_err(format!("`{k}` {e}")))?;
            for (x, part) in ["q", "k", "v"].iter().zip(parts) {
                out.insert(format!("{p}self_attn.{x}_proj.{kind}"), part);
            }
            continue;
        }
        let hf = OPENAI_LAYER
            .iter()
            .find_map(|(from, to)| rest.strip_prefix(from).map(|tail| format!("{p}{to}{tail}")))
            .unwrap_or_else(|| format!("<openai>{k}"));
        out.insert(hf, t);
    }
    Ok(out)
}

/// Splits the first axis of a float tensor in `n` equal parts.
fn split_rows(t: &HostTensor, n: usize) -> Result<Vec<HostTensor>, String> {
    let v = t.as_f32().ok_or("is not a float tensor")?;
    if t.shape.is_empty() || !t.shape[0].is_multiple_of(n) {
        return Err(format!(
            "has shape {:?}, not divisible in {n} along rows",
            t.shape
        ));
    }
    let rows = t.shape[0] / n;
    let chunk = v.len() / n;
    Ok((0..n)
        .map(|i| {
            let mut shape = t.shape.clone();
            shape[0] = rows;
            HostTensor::f32(shape, v[i * chunk..(i + 1) * chunk].to_vec())
        })
        .collect())
}

/// Config from HF-named tensor shapes, with OpenAI's 64-wide heads.
fn infer_config(
    t: &BTreeMap<String, HostTensor>,
    path: &Path,
) -> Result<ClipTextConfig, TextError> {
    let err = |reason: String| TextError::Infer {
        path: path.to_path_buf(),
        reason,
    };
    let shape = |k: &str| {
        t.get(k)
            .map(|x| x.shape.clone())
            .ok_or_else(|| err(format!("`{k}` is missing")))
    };
    let emb = shape("text_model.embeddings.token_embedding.weight")?;
    let pos = shape("text_model.embeddings.position_embedding.weight")?;
    let proj = shape("text_projection.weight")?;
    let fc1 = shape("text_model.encoder.layers.0.mlp.fc1.weight")?;
    let layers = (0..)
        .take_while(|i| t.contains_key(&format!("text_model.encoder.layers.{i}.mlp.fc1.weight")))
        .count();
    let (Some(&vocab), Some(&width), Some(&context), Some(&e), Some(&m)) = (
        emb.first(),
        emb.get(1),
        pos.first(),
        proj.first(),
        fc1.first(),
    ) else {
        return Err(err("an embedding or projection is not a matrix".into()));
    };
    if width % 64 != 0 {
        return Err(err(format!(
            "width {width} is not a multiple of the 64-wide heads OpenAI uses"
        )));
    }
    Ok(ClipTextConfig {
        vocab_size: vocab,
        hidden_size: width,
        intermediate_size: m,
        num_hidden_layers: layers,
        num_attention_heads: width / 64,
        max_position_embeddings: context,
        projection_dim: e,
        layer_norm_eps: 1e-5,
        hidden_act: Activation::QuickGelu,
    })
}

/// Writes `tensors` (HF names) in OpenAI layout: the inverse of [`to_hf_layout`].
pub fn to_openai_layout(hf: &BTreeMap<String, HostTensor>, layers: usize) -> TensorFile {
    let mut f = TensorFile::new(PathBuf::from("openai.safetensors"));
    let get = |k: &str| hf[k].clone();
    for (oa, name) in OPENAI_GLOBAL {
        let t = get(name);
        f.insert(
            oa,
            if oa == "text_projection" {
                t.transposed()
            } else {
                t
            },
        );
    }
    for i in 0..layers {
        let (h, o) = (
            format!("text_model.encoder.layers.{i}."),
            format!("transformer.resblocks.{i}."),
        );
        for kind in ["weight", "bias"] {
            let parts: Vec<HostTensor> = ["q", "k", "v"]
                .iter()
                .map(|x| get(&format!("{h}self_attn.{x}_proj.{kind}")))
                .collect();
            let mut shape = parts[0].shape.clone();
            shape[0] *= 3;
            let values = parts.iter().flat_map(|p| p.to_f32_vec()).collect();
            f.insert(
                format!("{o}attn.in_proj_{kind}"),
                HostTensor::f32(shape, values),
            );
            for (from, to) in OPENAI_LAYER {
                f.insert(format!("{o}{from}{kind}"), get(&format!("{h}{to}{kind}")));
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::HostTensor;

    fn config(width: usize, heads: usize) -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 50,
            hidden_size: width,
            intermediate_size: 2 * width,
            num_hidden_layers: 2,
            num_attention_heads: heads,
            max_position_embeddings: 77,
            projection_dim: 24,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::Gelu,
        }
    }

    fn features(m: &ClipText) -> Vec<f32> {
        let mut ids = vec![0i64; 2 * 77];
        ids[..3].copy_from_slice(&[3, 7, 49]);
        ids[77..82].copy_from_slice(&[1, 2, 3, 4, 49]);
        HostTensor::from_tensor(m.encode_host(&ids, 2, 77).unwrap())
            .as_f32()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn saved_hf_dir_and_full_clip_file_and_openai_without_config_load_the_same_model() {
        let dev = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let model = ClipText::random(config(64, 1), 4, &dev).unwrap();
        let want = features(&model);

        model.save_hf(dir.path()).unwrap();
        let back = load_text_encoder(dir.path(), Activation::Gelu, &dev).unwrap();
        assert_eq!(features(&back), want);

        // A full CLIPModel file: vision keys, logit_scale and position_ids are ignored.
        let mut full = model.to_hf_tensors();
        full.insert(
            "vision_model.embeddings.patch_embedding.weight",
            HostTensor::f32(vec![2, 2], vec![0.0; 4]),
        );
        full.insert(
            "visual_projection.weight",
            HostTensor::f32(vec![2], vec![0.0; 2]),
        );
        full.insert("logit_scale", HostTensor::f32(vec![], vec![4.6]));
        full.insert(
            "text_model.embeddings.position_ids",
            HostTensor::i64(vec![1, 77], (0..77).collect()),
        );
        let sub = dir.path().join("full");
        full.write(sub.join("clip.safetensors")).unwrap();
        std::fs::copy(dir.path().join("config.json"), sub.join("config.json")).unwrap();
        let m = load_text_encoder(&sub.join("clip.safetensors"), Activation::Gelu, &dev).unwrap();
        assert_eq!(features(&m), want);

        // OpenAI layout without a config.json: the config is inferred (64-wide heads).
        let oa = dir.path().join("oa");
        let mut f = to_openai_layout(&model.to_hf_tensors().tensors, 2);
        f.insert("logit_scale", HostTensor::f32(vec![], vec![4.6]));
        f.write(oa.join("ViT-L-14-336px.safetensors")).unwrap();
        let m = load_text_encoder(
            &oa.join("ViT-L-14-336px.safetensors"),
            Activation::Gelu,
            &dev,
        )
        .unwrap();
        assert_eq!(
            m.config(),
            &ClipTextConfig {
                hidden_act: Activation::QuickGelu,
                ..config(64, 1)
            }
        );
        let got = features(&m);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{got:?} {want:?}"
        );
        // What the loader would use, without building the model: from config.json or inferred.
        assert_eq!(
            &config_of(&oa.join("ViT-L-14-336px.safetensors")).unwrap(),
            m.config()
        );
        assert_eq!(
            config_of(&sub.join("clip.safetensors")).unwrap(),
            ClipTextConfig::from_file(&sub.join("config.json")).unwrap()
        );
    }

    #[test]
    fn torchscript_unknown_layout_and_missing_weights_are_clear_errors() {
        let dev = Device::flex();
        let ts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torchscript_linear.pt");
        let msg = load_text_encoder(&ts, Activation::Gelu, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("TorchScript")
                && msg.contains("torch.jit.load")
                && msg.contains("save_file"),
            "{msg}"
        );

        let dir = tempfile::tempdir().unwrap();
        let msg = load_text_encoder(dir.path(), Activation::Gelu, &dev)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no CLIP text weights"), "{msg}");

        let mut f = TensorFile::new("x");
        f.insert(
            "encoder.layer.0.weight",
            HostTensor::f32(vec![1], vec![0.0]),
        );
        f.write(dir.path().join("model.safetensors")).unwrap();
        let msg = load_text_encoder(dir.path(), Activation::Gelu, &dev)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("neither HF") && msg.contains("encoder.layer.0.weight"),
            "{msg}"
        );

        // OpenAI weights whose width cannot tell the head count need a config.json.
        let model = ClipText::random(config(16, 2), 1, &dev).unwrap();
        to_openai_layout(&model.to_hf_tensors().tensors, 2)
            .write(dir.path().join("openai.safetensors"))
            .unwrap();
        let msg = load_text_encoder(
            &dir.path().join("openai.safetensors"),
            Activation::Gelu,
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("config.json") && msg.contains("64"), "{msg}");
    }
}
