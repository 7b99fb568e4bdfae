//! Loading DINOv3 weights (HF directory or Meta `.pth` / `.safetensors`) and saving HF directories.
//!
//! The model's tensors are listed once, in [`key_table`]: canonical (Meta) names, PyTorch shapes,
//! seeded random init. A file is read by [`crate::io::read_weights`], its names mapped onto the
//! canonical ones ([`to_canonical`]: HF renames through [`GLOBAL_KEYS`] / [`BLOCK_KEYS`], HF's
//! separate q/k/v fused into `qkv`, Meta's `bias_mask` applied as `bias ⊙ bias_mask`, Meta's bf16
//! RoPE `periods` kept), checked against the table, and put into the module by name
//! ([`crate::io::named`], through [`canonical_name`]). Saving ([`DinoV3::to_weights`],
//! [`save_hf_dir`]) and random weights ([`DinoV3::random`]) use the same table and names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::nn::{Initializer, LayerNormConfig, LinearConfig};
use burn::tensor::Device;

use super::BackboneError;
use super::config::DinoV3Config;
use super::rope::bf16_periods;
use super::vit::{Attention, Block, DinoV3, Mlp};
use crate::io::named::{LinearWeights, from_named, to_named};
use crate::io::{HostData, HostTensor, Init, KeyProblem, KeyTable, TensorFile, read_weights};
use crate::rng::SplitMix64;

/// Weights by canonical (Meta-layout) name, PyTorch shapes (`Linear` weights `[out, in]`);
/// `blocks.i.attn.qkv.bias` is the effective bias (`bias ⊙ bias_mask`).
pub type Weights = BTreeMap<String, HostTensor>;

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

/// Every tensor of a DINOv3 model of `c`: canonical name, PyTorch shape, random init, in the
/// order random weights are drawn (uniform draws; LayerScale in [0.1, 0.5] so deep random stacks
/// stay well-conditioned).
pub fn key_table(c: &DinoV3Config) -> KeyTable {
    let (d, f, ch, p) = (
        c.hidden_size,
        c.intermediate_size,
        c.num_channels,
        c.patch_size,
    );
    let uni = |lo: f32, hi: f32| Init::Uniform { lo, hi };
    // ±1/sqrt(fan_in), in f32.
    let fan = |n: usize| {
        let b = 1.0 / (n as f32).sqrt();
        uni(-b, b)
    };
    let mut t = KeyTable::new();
    t.push(
        "patch_embed.proj.weight",
        vec![d, ch, p, p],
        fan(ch * p * p),
    );
    t.push("patch_embed.proj.bias", vec![d], uni(-0.1, 0.1));
    t.push("cls_token", vec![1, 1, d], uni(-1.0, 1.0));
    if c.num_register_tokens > 0 {
        t.push(
            "storage_tokens",
            vec![1, c.num_register_tokens, d],
            uni(-1.0, 1.0),
        );
    }
    t.push("norm.weight", vec![d], uni(0.8, 1.2));
    t.push("norm.bias", vec![d], uni(-0.1, 0.1));
    for i in 0..c.num_hidden_layers {
        let b = format!("blocks.{i}");
        for n in ["norm1", "norm2"] {
            t.push(format!("{b}.{n}.weight"), vec![d], uni(0.8, 1.2));
            t.push(format!("{b}.{n}.bias"), vec![d], uni(-0.1, 0.1));
        }
        t.push(format!("{b}.attn.qkv.weight"), vec![3 * d, d], fan(d));
        t.push(format!("{b}.attn.qkv.bias"), vec![3 * d], uni(-0.1, 0.1));
        t.push(format!("{b}.attn.proj.weight"), vec![d, d], fan(d));
        if c.proj_bias {
            t.push(format!("{b}.attn.proj.bias"), vec![d], uni(-0.1, 0.1));
        }
        t.push(format!("{b}.mlp.fc1.weight"), vec![f, d], fan(d));
        if c.mlp_bias {
            t.push(format!("{b}.mlp.fc1.bias"), vec![f], uni(-0.1, 0.1));
        }
        t.push(format!("{b}.mlp.fc2.weight"), vec![d, f], fan(f));
        if c.mlp_bias {
            t.push(format!("{b}.mlp.fc2.bias"), vec![d], uni(-0.1, 0.1));
        }
        t.push(format!("{b}.ls1.gamma"), vec![d], uni(0.1, 0.5));
        t.push(format!("{b}.ls2.gamma"), vec![d], uni(0.1, 0.5));
    }
    t
}

/// The canonical name of a parameter of [`DinoV3`] from its (PyTorch-convention) field path:
/// the fields named otherwise than Meta's tensors.
pub fn canonical_name(path: &str) -> String {
    match path {
        "patch_weight" => "patch_embed.proj.weight".into(),
        "patch_bias" => "patch_embed.proj.bias".into(),
        "register_tokens" => "storage_tokens".into(),
        p if p.ends_with(".ls1") || p.ends_with(".ls2") => format!("{p}.gamma"),
        p => p.to_string(),
    }
}

/// The module of `c` with lazy (never materialized) parameters, to be filled by name.
fn skeleton(c: &DinoV3Config, periods: Vec<f32>, device: &Device) -> DinoV3 {
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let lazy = Initializer::Zeros;
    let linear = |i: usize, o: usize, bias: bool| {
        LinearConfig::new(i, o)
            .with_bias(bias)
            .with_initializer(lazy.clone())
            .init(device)
    };
    let norm = || {
        LayerNormConfig::new(d)
            .with_epsilon(c.layer_norm_eps)
            .init(device)
    };
    DinoV3 {
        patch_weight: lazy.init([d, c.num_channels, c.patch_size, c.patch_size], device),
        patch_bias: lazy.init([d], device),
        cls_token: lazy.init([1, 1, d], device),
        register_tokens: (c.num_register_tokens > 0)
            .then(|| lazy.init([1, c.num_register_tokens, d], device)),
        blocks: (0..c.num_hidden_layers)
            .map(|_| Block {
                norm1: norm(),
                attn: Attention {
                    qkv: linear(d, 3 * d, true),
                    proj: linear(d, d, c.proj_bias),
                    num_heads: c.num_attention_heads,
                },
                ls1: lazy.init([d], device),
                norm2: norm(),
                mlp: Mlp {
                    fc1: linear(d, f, c.mlp_bias),
                    fc2: linear(f, d, c.mlp_bias),
                },
                ls2: lazy.init([d], device),
            })
            .collect(),
        norm: norm(),
        periods,
        config: c.clone(),
        packed: Default::default(),
    }
}

impl DinoV3 {
    /// Builds the model from canonical weights checked against [`key_table`] (see
    /// [`to_canonical`]); `weights` move into the model.
    pub fn from_weights(
        config: &DinoV3Config,
        periods: Vec<f32>,
        mut weights: Weights,
        device: &Device,
    ) -> Result<Self, BackboneError> {
        from_named(
            skeleton(config, periods, device),
            &mut weights,
            &canonical_name,
            LinearWeights::Contiguous,
            device,
        )
        .map_err(|problems| BackboneError::Config {
            path: PathBuf::from("<weights>"),
            reason: format!("weights do not fit the model: {}", problems.join("; ")),
        })
    }

    /// The model's weights back in canonical form (PyTorch shapes).
    pub fn to_weights(&self) -> Weights {
        to_named(self, &canonical_name)
    }

    /// A model with seeded, deterministic, non-trivial weights drawn from [`key_table`]. The k
    /// third of the qkv bias is zero unless the config has a k bias, as Meta masks it.
    pub fn random(config: &DinoV3Config, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64(seed ^ 0x5EED_D1A0_0003);
        let mut w = key_table(config).random(&mut rng);
        let d = config.hidden_size;
        if !config.key_bias {
            for i in 0..config.num_hidden_layers {
                if let Some(HostData::F32(v)) = w
                    .get_mut(&format!("blocks.{i}.attn.qkv.bias"))
                    .map(|t| &mut t.data)
                {
                    v[d..2 * d].iter_mut().for_each(|x| *x = 0.0);
                }
            }
        }
        let periods = bf16_periods(config.head_dim(), config.rope_theta);
        Self::from_weights(config, periods, w, device)
            .expect("the key table and the module skeleton list the same tensors")
    }
}

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

/// Every tensor of a `.safetensors` or PyTorch (`.pth`, `.pt`, `.bin`) file as f32 (masks may
/// be stored as bool or ints).
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, BackboneError> {
    Ok(read_weights(path)?
        .tensors
        .into_iter()
        .map(|(k, t)| match t.data {
            HostData::F32(_) => (k, t),
            _ => (k, HostTensor::f32(t.shape.clone(), t.to_f32_vec())),
        })
        .collect())
}

/// Maps source tensors to canonical weights, checking them against [`key_table`]: names,
/// shapes, finite values.
///
/// Returns the weights and, for Meta files, the stored RoPE periods.
pub fn to_canonical(
    path: &Path,
    mut raw: BTreeMap<String, HostTensor>,
    c: &DinoV3Config,
) -> Result<(Weights, Option<Vec<f32>>), BackboneError> {
    let keys: BTreeSet<String> = raw.keys().cloned().collect();
    let layout = detect_layout(path, &keys)?;
    let table = key_table(c);
    let d = c.hidden_size;
    let mut w = Weights::new();
    // Source names the conversion needed and did not find (the rest is the table's to find).
    let mut missing: Vec<String> = Vec::new();
    // Source names that carry nothing the forward uses, accepted and dropped.
    let ignored = match layout {
        Layout::Hf => "embeddings.mask_token",
        Layout::Meta => "mask_token",
    };
    raw.remove(ignored);
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
        if table.get(&canon).is_none() {
            // Optional tensor the config does not use (registers with R = 0, biases switched off):
            // accept an empty or absent one, leave a real one to the "unexpected" check.
            if raw.get(&src).is_some_and(|t| t.numel() == 0) {
                raw.remove(&src);
            }
            continue;
        }
        if let Some(t) = raw.remove(&src) {
            w.insert(canon, t);
        }
    }
    // Fused qkv.
    let mut periods = None;
    for i in 0..c.num_hidden_layers {
        match layout {
            Layout::Meta => {
                let pre = format!("blocks.{i}.attn.qkv");
                if let Some(t) = raw.remove(&format!("{pre}.weight")) {
                    w.insert(format!("{pre}.weight"), t);
                }
                let bias = raw.remove(&format!("{pre}.bias"));
                let mask = raw.remove(&format!("{pre}.bias_mask"));
                let b = match (bias, mask) {
                    (Some(b), Some(m)) if m.shape == b.shape => {
                        let v: Vec<f32> = b
                            .to_f32_vec()
                            .iter()
                            .zip(m.to_f32_vec())
                            .map(|(x, m)| x * m)
                            .collect();
                        HostTensor::f32(b.shape.clone(), v)
                    }
                    (Some(b), Some(m)) => {
                        return Err(shape_err(
                            path,
                            format!("{pre}.bias_mask"),
                            &m.shape,
                            &b.shape,
                        ));
                    }
                    (Some(b), None) => b,
                    // A Meta model without qkv bias: zeros are the same computation.
                    (None, _) => HostTensor::f32(vec![3 * d], vec![0.0; 3 * d]),
                };
                w.insert(format!("{pre}.bias"), b);
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
    let problems = table.check(&w, true);
    // Missing first (the conversion's, then the table's), then unexpected, shapes, values.
    missing.extend(problems.iter().filter_map(|p| match p {
        // A fused qkv whose parts are missing is already named by its parts.
        KeyProblem::Missing { name, .. }
            if !(layout == Layout::Hf && name.contains(".attn.qkv.")) =>
        {
            Some(source_name(layout, name))
        }
        _ => None,
    }));
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
    for p in &problems {
        let key = source_name(layout, p.name());
        match p {
            KeyProblem::Shape {
                found, expected, ..
            } => return Err(shape_err(path, key, found, expected)),
            KeyProblem::NonFinite { .. } => {
                return Err(BackboneError::NonFinite {
                    path: path.into(),
                    key,
                });
            }
            _ => {}
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
    DinoV3::from_weights(&config, periods, weights, device)
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
        DinoV3Config::like_vitl16(16, 2, 2, 4, 1)
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
