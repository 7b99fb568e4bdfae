//! Loading DINOv3 weights (HF directory or Meta `.pth` / `.safetensors`) and saving HF directories.
//!
//! Every source is first read into host tensors by its own names, then mapped to the canonical
//! (Meta) names of [`Weights`] through [`GLOBAL_KEYS`] / [`BLOCK_KEYS`], with the two layout
//! differences handled explicitly: HF splits `qkv` into q/k/v and drops the k bias; Meta stores
//! `bias_mask` (applied here: `bias ⊙ bias_mask`) and the bf16 RoPE `periods`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{DType as PtDType, PytorchReader};
use burn::tensor::Device;

use super::BackboneError;
use super::config::DinoV3Config;
use super::rope::bf16_periods;
use super::vit::{DinoV3, Weights};
use crate::io::{HostData, HostTensor, TensorFile};

/// `(Meta name, HF name)` of the tensors outside the blocks that map one to one.
pub const GLOBAL_KEYS: &[(&str, &str)] = &[
    ("cls_token", "embeddings.cls_token"),
    ("storage_tokens", "embeddings.register_tokens"),
    (
        "patch_embed.proj.weight",
        "embeddings.patch_embeddings.weight",
    ),
    ("patch_embed.proj.bias", "embeddings.patch_embeddings.bias"),
    ("norm.weight", "norm.weight"),
    ("norm.bias", "norm.bias"),
];

/// `(Meta suffix after "blocks.{i}.", HF suffix after "layer.{i}.")`, one to one.
/// The fused `attn.qkv.*` ↔ `attention.{q,k,v}_proj.*` pair is handled separately.
pub const BLOCK_KEYS: &[(&str, &str)] = &[
    ("norm1.weight", "norm1.weight"),
    ("norm1.bias", "norm1.bias"),
    ("attn.proj.weight", "attention.o_proj.weight"),
    ("attn.proj.bias", "attention.o_proj.bias"),
    ("ls1.gamma", "layer_scale1.lambda1"),
    ("norm2.weight", "norm2.weight"),
    ("norm2.bias", "norm2.bias"),
    ("mlp.fc1.weight", "mlp.up_proj.weight"),
    ("mlp.fc1.bias", "mlp.up_proj.bias"),
    ("mlp.fc2.weight", "mlp.down_proj.weight"),
    ("mlp.fc2.bias", "mlp.down_proj.bias"),
    ("ls2.gamma", "layer_scale2.lambda1"),
];

/// Released Meta file name whose architecture is the [`DinoV3Config::vitl16`] preset.
pub const RELEASED_VITL16_PREFIX: &str = "dinov3_vitl16_pretrain_lvd1689m-";

/// Which naming a weights file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// HuggingFace `DINOv3ViTModel` (`embeddings.*`, `layer.N.*`).
    Hf,
    /// Meta `DinoVisionTransformer` (`blocks.N.*`, fused `qkv`, `bias_mask`, `rope_embed.periods`).
    Meta,
}

/// Detects the layout from the key names.
pub fn detect_layout(path: &Path, keys: &BTreeSet<String>) -> Result<Layout, BackboneError> {
    let any = |p: &str| keys.iter().any(|k| k.starts_with(p));
    match (
        any("embeddings.") || any("layer."),
        any("blocks.") || keys.contains("storage_tokens"),
    ) {
        (true, false) => Ok(Layout::Hf),
        (false, true) => Ok(Layout::Meta),
        _ => Err(BackboneError::Layout {
            path: path.into(),
            first_keys: keys.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Canonical names and PyTorch shapes the model needs for `c`.
pub fn expected_shapes(c: &DinoV3Config) -> BTreeMap<String, Vec<usize>> {
    let (d, f, p) = (c.hidden_size, c.intermediate_size, c.patch_size);
    let mut m = BTreeMap::new();
    m.insert("cls_token".to_string(), vec![1, 1, d]);
    if c.num_register_tokens > 0 {
        m.insert("storage_tokens".into(), vec![1, c.num_register_tokens, d]);
    }
    m.insert(
        "patch_embed.proj.weight".into(),
        vec![d, c.num_channels, p, p],
    );
    m.insert("patch_embed.proj.bias".into(), vec![d]);
    m.insert("norm.weight".into(), vec![d]);
    m.insert("norm.bias".into(), vec![d]);
    for i in 0..c.num_hidden_layers {
        let b = format!("blocks.{i}");
        for (k, s) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.qkv.bias", vec![3 * d]),
            ("attn.proj.weight", vec![d, d]),
            ("mlp.fc1.weight", vec![f, d]),
            ("mlp.fc2.weight", vec![d, f]),
            ("ls1.gamma", vec![d]),
            ("ls2.gamma", vec![d]),
        ] {
            m.insert(format!("{b}.{k}"), s);
        }
        if c.proj_bias {
            m.insert(format!("{b}.attn.proj.bias"), vec![d]);
        }
        if c.mlp_bias {
            m.insert(format!("{b}.mlp.fc1.bias"), vec![f]);
            m.insert(format!("{b}.mlp.fc2.bias"), vec![d]);
        }
    }
    m
}

/// Reads every tensor of a `.safetensors` or PyTorch (`.pth`, `.pt`, `.bin`) file as f32.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, BackboneError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !path.is_file() {
        return Err(BackboneError::NotFound { path: path.into() });
    }
    if ext == "safetensors" {
        let f = TensorFile::read(path).map_err(|e| BackboneError::Weights {
            path: path.into(),
            reason: e.to_string(),
        })?;
        return Ok(f.tensors.into_iter().map(|(k, t)| (k, as_f32(t))).collect());
    }
    if !matches!(ext.as_str(), "pth" | "pt" | "bin") {
        return Err(BackboneError::Weights {
            path: path.into(),
            reason: "unknown weights extension: expected .safetensors, .pth, .pt or .bin".into(),
        });
    }
    let reader = PytorchReader::new(path).map_err(|e| BackboneError::Weights {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t.read().map_err(|e| BackboneError::Weights {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let values = pt_to_f32(t.dtype(), &bytes).ok_or_else(|| BackboneError::Weights {
            path: path.into(),
            reason: format!("tensor `{name}` has unsupported dtype {:?}", t.dtype()),
        })?;
        out.insert(name, HostTensor::f32(t.shape().to_vec(), values));
    }
    Ok(out)
}

/// Widens any numeric host tensor to f32 (masks may be stored as bool or ints).
fn as_f32(t: HostTensor) -> HostTensor {
    match t.data {
        HostData::F32(_) => t,
        _ => HostTensor::f32(t.shape.clone(), t.to_f32_vec()),
    }
}

/// Native-endian PyTorch bytes to f32 (floats widened/narrowed, ints and bools converted).
fn pt_to_f32(dtype: PtDType, b: &[u8]) -> Option<Vec<f32>> {
    macro_rules! conv {
        ($n:expr, $f:expr) => {
            b.chunks_exact($n)
                .map(|c| $f(c.try_into().unwrap()))
                .collect()
        };
    }
    Some(match dtype {
        PtDType::F32 => conv!(4, f32::from_ne_bytes),
        PtDType::F64 => conv!(8, |c| f64::from_ne_bytes(c) as f32),
        PtDType::F16 => conv!(2, |c| half::f16::from_ne_bytes(c).to_f32()),
        PtDType::BF16 => conv!(2, |c| half::bf16::from_ne_bytes(c).to_f32()),
        PtDType::I64 => conv!(8, |c| i64::from_ne_bytes(c) as f32),
        PtDType::I32 => conv!(4, |c| i32::from_ne_bytes(c) as f32),
        PtDType::U8 | PtDType::Bool => b.iter().map(|&x| x as f32).collect(),
        PtDType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
        _ => return None,
    })
}

/// Maps source tensors to canonical weights, checking names, shapes and values.
///
/// Returns the weights and, for Meta files, the stored RoPE periods.
pub fn to_canonical(
    path: &Path,
    mut raw: BTreeMap<String, HostTensor>,
    c: &DinoV3Config,
) -> Result<(Weights, Option<Vec<f32>>), BackboneError> {
    let keys: BTreeSet<String> = raw.keys().cloned().collect();
    let layout = detect_layout(path, &keys)?;
    let expected = expected_shapes(c);
    let d = c.hidden_size;
    let mut w = Weights::new();
    let mut missing: Vec<String> = Vec::new();
    // Source names that carry nothing the forward uses, accepted and dropped.
    let ignored: Vec<String> = match layout {
        Layout::Hf => vec!["embeddings.mask_token".into()],
        Layout::Meta => vec!["mask_token".into()],
    };
    // Simple one-to-one renames first.
    let mut renames: Vec<(String, String)> = Vec::new(); // (source, canonical)
    for (meta, hf) in GLOBAL_KEYS {
        let src = if layout == Layout::Hf { hf } else { meta };
        renames.push((src.to_string(), meta.to_string()));
    }
    for i in 0..c.num_hidden_layers {
        for (meta, hf) in BLOCK_KEYS {
            let src = match layout {
                Layout::Hf => format!("layer.{i}.{hf}"),
                Layout::Meta => format!("blocks.{i}.{meta}"),
            };
            renames.push((src, format!("blocks.{i}.{meta}")));
        }
    }
    for (src, canon) in renames {
        if !expected.contains_key(&canon) {
            // Optional tensor the config does not use (registers with R = 0, biases switched off):
            // accept an empty or absent one, leave a real one to the "unexpected" check.
            if raw.get(&src).is_some_and(|t| t.numel() == 0) {
                raw.remove(&src);
            }
            continue;
        }
        match raw.remove(&src) {
            Some(t) => {
                w.insert(canon, t);
            }
            None => missing.push(src),
        }
    }
    // Fused qkv.
    let mut periods = None;
    for i in 0..c.num_hidden_layers {
        match layout {
            Layout::Meta => {
                let pre = format!("blocks.{i}.attn.qkv");
                let weight = raw.remove(&format!("{pre}.weight"));
                let bias = raw.remove(&format!("{pre}.bias"));
                let mask = raw.remove(&format!("{pre}.bias_mask"));
                match weight {
                    Some(t) => {
                        w.insert(format!("{pre}.weight"), t);
                    }
                    None => missing.push(format!("{pre}.weight")),
                }
                match bias {
                    Some(b) => {
                        let b = match mask {
                            Some(m) if m.shape == b.shape => {
                                let v: Vec<f32> = b
                                    .to_f32_vec()
                                    .iter()
                                    .zip(m.to_f32_vec())
                                    .map(|(x, m)| x * m)
                                    .collect();
                                HostTensor::f32(b.shape.clone(), v)
                            }
                            Some(m) => {
                                return Err(BackboneError::Shape {
                                    path: path.into(),
                                    key: format!("{pre}.bias_mask"),
                                    found: m.shape,
                                    expected: b.shape,
                                });
                            }
                            None => b,
                        };
                        w.insert(format!("{pre}.bias"), b);
                    }
                    // A Meta model without qkv bias: zeros are the same computation.
                    None => {
                        w.insert(
                            format!("{pre}.bias"),
                            HostTensor::f32(vec![3 * d], vec![0.0; 3 * d]),
                        );
                    }
                }
            }
            Layout::Hf => {
                let pre = format!("layer.{i}.attention");
                let mut ws = Vec::new();
                let mut bs = Vec::new();
                for (proj, has_bias) in [
                    ("q_proj", c.query_bias),
                    ("k_proj", c.key_bias),
                    ("v_proj", c.value_bias),
                ] {
                    match raw.remove(&format!("{pre}.{proj}.weight")) {
                        Some(t) => ws.push(t),
                        None => missing.push(format!("{pre}.{proj}.weight")),
                    }
                    let b = if has_bias {
                        raw.remove(&format!("{pre}.{proj}.bias")).or_else(|| {
                            missing.push(format!("{pre}.{proj}.bias"));
                            None
                        })
                    } else {
                        None
                    };
                    bs.push(b.unwrap_or_else(|| HostTensor::f32(vec![d], vec![0.0; d])));
                }
                if ws.len() == 3 {
                    for (k, t) in ["q_proj", "k_proj", "v_proj"].iter().zip(&ws) {
                        if t.shape != [d, d] {
                            return Err(shape_err(
                                path,
                                format!("{pre}.{k}.weight"),
                                &t.shape,
                                &[d, d],
                            ));
                        }
                    }
                    w.insert(format!("blocks.{i}.attn.qkv.weight"), concat_rows(&ws));
                }
                for (k, t) in ["q_proj", "k_proj", "v_proj"].iter().zip(&bs) {
                    if t.shape != [d] {
                        return Err(shape_err(path, format!("{pre}.{k}.bias"), &t.shape, &[d]));
                    }
                }
                w.insert(format!("blocks.{i}.attn.qkv.bias"), concat_rows(&bs));
            }
        }
    }
    if layout == Layout::Meta {
        match raw.remove("rope_embed.periods") {
            Some(p) => {
                let want = [c.head_dim() / 4];
                if p.shape != want {
                    return Err(shape_err(
                        path,
                        "rope_embed.periods".into(),
                        &p.shape,
                        &want,
                    ));
                }
                periods = Some(p.to_f32_vec());
            }
            None => missing.push("rope_embed.periods".into()),
        }
    }
    for k in &ignored {
        raw.remove(k);
    }
    if !missing.is_empty() {
        return Err(BackboneError::MissingKeys {
            path: path.into(),
            count: missing.len(),
            first: first_few(&missing),
        });
    }
    if !raw.is_empty() {
        let extra: Vec<String> = raw.keys().cloned().collect();
        return Err(BackboneError::UnexpectedKeys {
            path: path.into(),
            count: extra.len(),
            first: first_few(&extra),
        });
    }
    for (k, shape) in &expected {
        let t = &w[k];
        if &t.shape != shape {
            return Err(shape_err(path, source_name(layout, k), &t.shape, shape));
        }
    }
    for (k, t) in &w {
        if t.to_f32_vec().iter().any(|x| !x.is_finite()) {
            return Err(BackboneError::NonFinite {
                path: path.into(),
                key: source_name(layout, k),
            });
        }
    }
    if let Some(p) = &periods
        && p.iter().any(|x| !x.is_finite() || *x <= 0.0)
    {
        return Err(BackboneError::NonFinite {
            path: path.into(),
            key: "rope_embed.periods".into(),
        });
    }
    Ok((w, periods))
}

/// The name a canonical key has in the source layout (for messages).
fn source_name(layout: Layout, canon: &str) -> String {
    if layout == Layout::Meta {
        return canon.to_string();
    }
    if let Some((_, hf)) = GLOBAL_KEYS.iter().find(|(m, _)| *m == canon) {
        return hf.to_string();
    }
    if let Some(rest) = canon.strip_prefix("blocks.") {
        let (i, suffix) = rest.split_once('.').unwrap_or((rest, ""));
        if let Some((_, hf)) = BLOCK_KEYS.iter().find(|(m, _)| *m == suffix) {
            return format!("layer.{i}.{hf}");
        }
        if suffix.starts_with("attn.qkv") {
            return format!(
                "layer.{i}.attention.{{q,k,v}}_proj.{}",
                suffix.rsplit('.').next().unwrap_or("")
            );
        }
    }
    canon.to_string()
}

fn shape_err(path: &Path, key: String, found: &[usize], expected: &[usize]) -> BackboneError {
    BackboneError::Shape {
        path: path.into(),
        key,
        found: found.to_vec(),
        expected: expected.to_vec(),
    }
}

fn first_few(keys: &[String]) -> String {
    let mut s = keys.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if keys.len() > 5 {
        s.push_str(", ...");
    }
    s
}

/// Stacks same-width tensors along their first axis.
fn concat_rows(parts: &[HostTensor]) -> HostTensor {
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|p| p.shape[0]).sum();
    HostTensor::f32(shape, parts.iter().flat_map(|p| p.to_f32_vec()).collect())
}

/// Architecture for a weights file: `config.json` beside it, else the preset of a released name.
pub fn config_for(weights: &Path) -> Result<DinoV3Config, BackboneError> {
    let beside = weights
        .parent()
        .unwrap_or(Path::new("."))
        .join("config.json");
    if beside.is_file() {
        return DinoV3Config::from_json_file(&beside);
    }
    let name = weights.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with(RELEASED_VITL16_PREFIX) && name.ends_with(".pth") {
        return Ok(DinoV3Config::vitl16());
    }
    Err(BackboneError::NoConfig {
        path: weights.into(),
    })
}

/// The weights file of a model directory: `model.safetensors`, else its one `.pth`/`.safetensors`.
pub fn weights_in_dir(dir: &Path) -> Result<PathBuf, BackboneError> {
    let hf = dir.join("model.safetensors");
    if hf.is_file() {
        return Ok(hf);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| BackboneError::Io {
        path: dir.into(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("pth" | "safetensors")
                )
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BackboneError::NoWeights {
            path: dir.into(),
            reason: "no model.safetensors, .pth or .safetensors file".into(),
        }),
        _ => Err(BackboneError::NoWeights {
            path: dir.into(),
            reason: format!(
                "several candidate weight files ({}); pass one with --backbone <file>",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Loads a backbone from a model directory or a weights file (HF or Meta layout).
pub fn load_backbone(path: &Path, device: &Device) -> Result<DinoV3, BackboneError> {
    if !path.exists() {
        return Err(BackboneError::NotFound { path: path.into() });
    }
    let file = if path.is_dir() {
        weights_in_dir(path)?
    } else {
        path.to_path_buf()
    };
    let config = config_for(&file)?;
    let raw = read_tensors(&file)?;
    let (weights, stored) = to_canonical(&file, raw, &config)?;
    let periods = stored.unwrap_or_else(|| bf16_periods(config.head_dim(), config.rope_theta));
    Ok(DinoV3::from_weights(&config, periods, &weights, device))
}

/// HF-layout tensors (`save_pretrained` names) of a model.
pub fn hf_tensors(model: &DinoV3) -> Result<TensorFile, BackboneError> {
    let c = &model.config;
    let d = c.hidden_size;
    let mut canon = model.to_weights();
    let mut f = TensorFile::new("model.safetensors");
    for (meta, hf) in GLOBAL_KEYS {
        if let Some(t) = canon.remove(*meta) {
            f.insert(*hf, t);
        }
    }
    if c.num_register_tokens == 0 {
        f.insert(
            "embeddings.register_tokens",
            HostTensor::f32(vec![1, 0, d], vec![]),
        );
    }
    f.insert(
        "embeddings.mask_token",
        HostTensor::f32(vec![1, 1, d], vec![0.0; d]),
    );
    for i in 0..c.num_hidden_layers {
        for (meta, hf) in BLOCK_KEYS {
            if let Some(t) = canon.remove(&format!("blocks.{i}.{meta}")) {
                f.insert(format!("layer.{i}.{hf}"), t);
            }
        }
        let w = canon
            .remove(&format!("blocks.{i}.attn.qkv.weight"))
            .expect("model has qkv");
        let b = canon
            .remove(&format!("blocks.{i}.attn.qkv.bias"))
            .expect("model has qkv bias")
            .to_f32_vec();
        let wv = w.to_f32_vec();
        for (j, (proj, has_bias)) in [
            ("q_proj", c.query_bias),
            ("k_proj", c.key_bias),
            ("v_proj", c.value_bias),
        ]
        .into_iter()
        .enumerate()
        {
            let pre = format!("layer.{i}.attention.{proj}");
            f.insert(
                format!("{pre}.weight"),
                HostTensor::f32(vec![d, d], wv[j * d * d..(j + 1) * d * d].to_vec()),
            );
            let bias = &b[j * d..(j + 1) * d];
            if has_bias {
                f.insert(
                    format!("{pre}.bias"),
                    HostTensor::f32(vec![d], bias.to_vec()),
                );
            } else if bias.iter().any(|&x| x != 0.0) {
                return Err(BackboneError::Config {
                    path: PathBuf::from("config.json"),
                    reason: format!(
                        "block {i} has a nonzero {proj} bias but the config disables it; HF layout cannot store it"
                    ),
                });
            }
        }
    }
    debug_assert!(
        canon.is_empty(),
        "unsaved weights: {:?}",
        canon.keys().collect::<Vec<_>>()
    );
    Ok(f)
}

/// Writes `model` as an HF model directory (`config.json` + `model.safetensors`), atomically per file.
pub fn save_hf_dir(model: &DinoV3, dir: &Path) -> Result<(), BackboneError> {
    std::fs::create_dir_all(dir).map_err(|source| BackboneError::Io {
        path: dir.into(),
        source,
    })?;
    let cfg = dir.join("config.json");
    let text =
        serde_json::to_string_pretty(&model.config.to_json()).expect("json value serializes");
    crate::io::write_atomic(&cfg, text.as_bytes()).map_err(|source| BackboneError::Io {
        path: cfg.clone(),
        source,
    })?;
    let st = dir.join("model.safetensors");
    hf_tensors(model)?
        .write(&st)
        .map_err(|e| BackboneError::Weights {
            path: st,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    fn tiny() -> DinoV3Config {
        DinoV3Config::tiny(16, 2, 2, 4, 1)
    }

    fn hf_map(model: &DinoV3) -> BTreeMap<String, HostTensor> {
        hf_tensors(model).unwrap().tensors
    }

    fn err(raw: BTreeMap<String, HostTensor>) -> String {
        to_canonical(Path::new("w.safetensors"), raw, &tiny())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn hf_directory_round_trip_gives_identical_features() {
        let dev = Device::flex();
        let model = DinoV3::random(&tiny(), 7, &dev);
        let dir = tempfile::tempdir().unwrap();
        save_hf_dir(&model, dir.path()).unwrap();
        let back = load_backbone(dir.path(), &dev).unwrap();
        assert_eq!(back.config, model.config);
        let x = Tensor::<4>::random(
            [2, 3, 8, 12],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let a = model.forward_taps(x.clone(), &[1, 0]);
        let b = back.forward_taps(x, &[1, 0]);
        for (fa, fb) in a.into_iter().zip(b) {
            let (va, vb) = (
                HostTensor::from_tensor(fa.patches),
                HostTensor::from_tensor(fb.patches),
            );
            assert_eq!(va, vb);
        }
    }

    #[test]
    fn random_is_deterministic_and_seed_dependent() {
        let dev = Device::flex();
        let a = DinoV3::random(&tiny(), 1, &dev).to_weights();
        let b = DinoV3::random(&tiny(), 1, &dev).to_weights();
        let c = DinoV3::random(&tiny(), 2, &dev).to_weights();
        assert_eq!(a, b);
        assert_ne!(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"]);
    }

    #[test]
    fn wrong_files_name_the_first_bad_keys() {
        let model = DinoV3::random(&tiny(), 0, &Device::flex());
        let good = hf_map(&model);

        let mut m = good.clone();
        m.remove("layer.1.mlp.up_proj.weight");
        let e = err(m);
        assert!(
            e.contains("w.safetensors")
                && e.contains("missing")
                && e.contains("layer.1.mlp.up_proj.weight"),
            "{e}"
        );

        let mut m = good.clone();
        m.insert(
            "layer.2.norm1.weight".into(),
            HostTensor::f32(vec![16], vec![1.0; 16]),
        );
        let e = err(m);
        assert!(
            e.contains("unexpected") && e.contains("layer.2.norm1.weight"),
            "{e}"
        );

        let mut m = good.clone();
        m.insert(
            "layer.0.norm2.bias".into(),
            HostTensor::f32(vec![8], vec![0.0; 8]),
        );
        let e = err(m);
        assert!(
            e.contains("layer.0.norm2.bias") && e.contains("[8]") && e.contains("[16]"),
            "{e}"
        );

        let mut m = good.clone();
        let mut t = m["layer.1.layer_scale2.lambda1"].to_f32_vec();
        t[3] = f32::NAN;
        m.insert(
            "layer.1.layer_scale2.lambda1".into(),
            HostTensor::f32(vec![16], t),
        );
        let e = err(m);
        assert!(
            e.contains("NaN") && e.contains("layer.1.layer_scale2.lambda1"),
            "{e}"
        );

        let mut m = BTreeMap::new();
        m.insert(
            "text.weight".to_string(),
            HostTensor::f32(vec![1], vec![0.0]),
        );
        assert!(err(m).contains("not DINOv3 weights"));
    }

    #[test]
    fn meta_layout_applies_bias_mask_and_stored_periods() {
        let c = tiny();
        let dev = Device::flex();
        let model = DinoV3::random(&c, 4, &dev);
        let mut meta = model.to_weights();
        let d = c.hidden_size;
        for i in 0..c.num_hidden_layers {
            let key = format!("blocks.{i}.attn.qkv.bias");
            let mut b = meta[&key].to_f32_vec();
            b[d..2 * d].iter_mut().for_each(|x| *x = 5.0); // masked out below
            meta.insert(key, HostTensor::f32(vec![3 * d], b));
            let mask: Vec<f32> = (0..3 * d)
                .map(|j| if (d..2 * d).contains(&j) { 0.0 } else { 1.0 })
                .collect();
            meta.insert(
                format!("blocks.{i}.attn.qkv.bias_mask"),
                HostTensor::f32(vec![3 * d], mask),
            );
        }
        meta.insert(
            "rope_embed.periods".into(),
            HostTensor::f32(vec![2], vec![1.0, 10.0]),
        );
        meta.insert(
            "mask_token".into(),
            HostTensor::f32(vec![1, d], vec![0.0; d]),
        );
        let (w, periods) = to_canonical(Path::new("m.pth"), meta, &c).unwrap();
        assert_eq!(periods, Some(vec![1.0, 10.0]));
        assert_eq!(
            w["blocks.1.attn.qkv.bias"],
            model.to_weights()["blocks.1.attn.qkv.bias"]
        );
    }

    #[test]
    fn architecture_comes_from_config_or_released_name() {
        let dir = tempfile::tempdir().unwrap();
        let released = dir
            .path()
            .join("dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth");
        assert_eq!(config_for(&released).unwrap(), DinoV3Config::vitl16());
        let other = dir.path().join("weights.pth");
        assert!(
            config_for(&other)
                .unwrap_err()
                .to_string()
                .contains("config.json")
        );
        std::fs::write(dir.path().join("config.json"), tiny().to_json().to_string()).unwrap();
        assert_eq!(config_for(&other).unwrap(), tiny());
    }
}
