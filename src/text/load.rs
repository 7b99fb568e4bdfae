//! Loading CLIP text weights: HF layout (`CLIPTextModelWithProjection` or full `CLIPModel`, vision
//! keys ignored) or OpenAI layout, from `.safetensors` or a plain PyTorch state dict (`.pt`/`.bin`,
//! read with burn-store's PyTorch reader). OpenAI's released `.pt` is a TorchScript archive: it is
//! detected and the error names the one-line conversion.
//!
//! OpenAI -> HF key map (everything is mapped onto HF names, the one table the model reads):
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
use sha2::{Digest, Sha256};

use super::config::ClipTextConfig;
use super::model::ClipText;
use super::{Activation, TextError};
use crate::io::{HostData, HostTensor, TensorFile};

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Weight files looked for, in order, when `path` is a directory.
const WEIGHT_NAMES: [&str; 5] = [
    "model.safetensors",
    "openai.safetensors",
    "pytorch_model.bin",
    "model.pt",
    "openai.pt",
];

/// Loads a CLIP text encoder from a directory (an HF `config.json` + weights) or a weights file
/// (a `config.json` beside it is used when present, else the config is inferred from the tensor
/// shapes with 64-wide heads, as OpenAI's CLIP). `activation` overrides the config's `hidden_act`
/// (HF configs say `quick_gelu`; the reference runs erf GELU).
pub fn load_text_encoder(
    path: &Path,
    activation: Activation,
    device: &Device,
) -> Result<ClipText, TextError> {
    let (weights, config_path) = if path.is_dir() {
        let w = WEIGHT_NAMES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| TextError::NoWeights {
                path: path.to_path_buf(),
            })?;
        (w, path.join("config.json"))
    } else {
        let sibling = path.parent().unwrap_or(Path::new(".")).join("config.json");
        (path.to_path_buf(), sibling)
    };
    let (raw, hash) = read_tensors(&weights)?;
    let tensors = to_hf_layout(raw, &weights)?;
    let config = if config_path.is_file() {
        ClipTextConfig::from_file(&config_path)?
    } else {
        infer_config(&tensors, &weights)?
    };
    ClipText::from_hf_tensors(config, activation, &tensors, hash, &weights, device)
}

/// Every tensor of a weights file and the SHA-256 of its bytes.
pub fn read_tensors(path: &Path) -> Result<(BTreeMap<String, HostTensor>, String), TextError> {
    let bytes = std::fs::read(path).map_err(|source| TextError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let hash = sha256_hex(&bytes);
    let is_zip = bytes.starts_with(b"PK\x03\x04");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensors = if ext == "safetensors" || (!is_zip && looks_like_safetensors(&bytes)) {
        TensorFile::from_bytes(path, &bytes)?.tensors
    } else {
        if is_zip && is_torchscript(&bytes) {
            return Err(TextError::TorchScript {
                path: path.to_path_buf(),
            });
        }
        drop(bytes);
        read_pytorch(path)?
    };
    Ok((tensors, hash))
}

/// A safetensors file starts with a little-endian u64 header length and a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes[8] == b'{'
}

/// TorchScript archives carry `constants.pkl` and a `code/` folder; plain `torch.save` zips do not.
fn is_torchscript(bytes: &[u8]) -> bool {
    let Ok(archive) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else {
        return false;
    };
    archive
        .file_names()
        .any(|n| n.ends_with("/constants.pkl") || n.contains("/code/__torch__"))
}

fn read_pytorch(path: &Path) -> Result<BTreeMap<String, HostTensor>, TextError> {
    use burn::store::pytorch_reader::{DType, PytorchReader};
    let err = |reason: String| TextError::Pytorch {
        path: path.to_path_buf(),
        reason,
    };
    let reader = PytorchReader::new(path).map_err(|e| err(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t.read().map_err(|e| err(e.to_string()))?;
        let shape = t.shape().to_vec();
        let c = |n: usize| bytes.chunks_exact(n);
        let data = match t.dtype() {
            DType::F32 => HostData::F32(
                c(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            ),
            DType::F64 => HostData::F32(
                c(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
            ),
            DType::F16 => HostData::F32(
                c(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                    .collect(),
            ),
            DType::BF16 => HostData::F32(
                c(2).map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32())
                    .collect(),
            ),
            DType::I64 => HostData::I64(
                c(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            ),
            DType::I32 => HostData::I64(
                c(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                    .collect(),
            ),
            // Other integer/bool buffers are never CLIP weights; keep them as bytes so that an
            // unexpected one is reported by name rather than silently dropped.
            _ => HostData::U8(bytes.clone()),
        };
        let t = HostTensor { shape, data };
        out.insert(name, t);
    }
    for (name, t) in &out {
        let n = match &t.data {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
            HostData::U8(_) => t.numel(),
        };
        if n != t.numel() {
            return Err(err(format!(
                "tensor `{name}` holds {n} values for shape {:?}",
                t.shape
            )));
        }
    }
    Ok(out)
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
        let hf = match k.as_str() {
            "token_embedding.weight" => "text_model.embeddings.token_embedding.weight".to_string(),
            "positional_embedding" => "text_model.embeddings.position_embedding.weight".to_string(),
            "ln_final.weight" => "text_model.final_layer_norm.weight".to_string(),
            "ln_final.bias" => "text_model.final_layer_norm.bias".to_string(),
            "text_projection" => {
                if t.shape.len() != 2 {
                    return Err(keys_err(format!(
                        "`text_projection` has shape {:?}, expected [W, E]",
                        t.shape
                    )));
                }
                out.insert("text_projection.weight".to_string(), t.transposed());
                continue;
            }
            other => match other
                .strip_prefix("transformer.resblocks.")
                .and_then(|r| r.split_once('.'))
            {
                Some((i, rest)) if i.parse::<usize>().is_ok() => {
                    let p = format!("text_model.encoder.layers.{i}.");
                    if let Some(kind) = rest.strip_prefix("attn.in_proj_") {
                        for (j, part) in split_rows(&t, 3)
                            .map_err(|e| keys_err(format!("`{other}` {e}")))?
                            .into_iter()
                            .enumerate()
                        {
                            out.insert(
                                format!("{p}self_attn.{}_proj.{kind}", ["q", "k", "v"][j]),
                                part,
                            );
                        }
                        continue;
                    }
                    let mapped = [
                        ("attn.out_proj.", "self_attn.out_proj."),
                        ("ln_1.", "layer_norm1."),
                        ("ln_2.", "layer_norm2."),
                        ("mlp.c_fc.", "mlp.fc1."),
                        ("mlp.c_proj.", "mlp.fc2."),
                    ]
                    .iter()
                    .find_map(|(from, to)| {
                        rest.strip_prefix(from).map(|tail| format!("{p}{to}{tail}"))
                    });
                    mapped.unwrap_or_else(|| format!("<openai>{other}"))
                }
                _ => format!("<openai>{other}"),
            },
        };
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
    let width = emb[1];
    if width % 64 != 0 {
        return Err(err(format!(
            "width {width} is not a multiple of the 64-wide heads OpenAI uses"
        )));
    }
    Ok(ClipTextConfig {
        vocab_size: emb[0],
        hidden_size: width,
        intermediate_size: fc1[0],
        num_hidden_layers: layers,
        num_attention_heads: width / 64,
        max_position_embeddings: pos[0],
        projection_dim: proj[0],
        layer_norm_eps: 1e-5,
        hidden_act: Activation::QuickGelu,
    })
}

/// Writes `tensors` (HF names) in OpenAI layout: the inverse of [`to_hf_layout`].
pub fn to_openai_layout(hf: &BTreeMap<String, HostTensor>, layers: usize) -> TensorFile {
    let mut f = TensorFile::new(PathBuf::from("openai.safetensors"));
    let get = |k: &str| hf[k].clone();
    f.insert(
        "token_embedding.weight",
        get("text_model.embeddings.token_embedding.weight"),
    );
    f.insert(
        "positional_embedding",
        get("text_model.embeddings.position_embedding.weight"),
    );
    f.insert("ln_final.weight", get("text_model.final_layer_norm.weight"));
    f.insert("ln_final.bias", get("text_model.final_layer_norm.bias"));
    f.insert(
        "text_projection",
        get("text_projection.weight").transposed(),
    );
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
            for (from, to) in [
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ] {
                f.insert(format!("{o}{to}.{kind}"), get(&format!("{h}{from}.{kind}")));
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
