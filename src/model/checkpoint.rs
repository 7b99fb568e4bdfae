//! Checkpoints: our format (safetensors, reference key names and layouts, config embedded) and
//! the reference code's `epoch_N.pth` (a dict of six module state dicts plus `epoch`).
//!
//! Key map (PyTorch names are kept everywhere; weights are `[out, in]` as in PyTorch):
//!
//! | module field            | key                                              |
//! |-------------------------|--------------------------------------------------|
//! | `cls_normal[l]`         | `cls_token_adapter_normal.{l}.fc{1,2}.0.weight`   |
//! | `cls_anomaly[l]`        | `cls_token_adapter_anomaly.{l}.fc{1,2}.0.weight`  |
//! | `patch_normal[l]`       | `patch_token_adapter_normal.{l}.fc{1,2}.0.weight` |
//! | `patch_anomaly[l]`      | `patch_token_adapter_anomaly.{l}.fc{1,2}.0.weight`|
//! | `prompt[i]`             | `prompt_adapter.{i}.fc{1,2}.0.weight`             |
//! | `text_projection`       | `text_projection.weight`                          |
//! | `gates[l]` (ours)       | `routing_gate.{l}.weight`, `routing_gate.{l}.bias`|

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor};

use super::adapter::Adapter;
use super::config::MethodConfig;
use super::method::AvaDino;
use super::routing::Gate;
use crate::io::{HostTensor, PthError, PthValue, TensorFile, TensorFileError, read_pth, write_pth};

/// The six module state dicts of the reference checkpoint, in its save order.
pub const REFERENCE_MODULES: [&str; 6] = [
    "cls_token_adapter_normal",
    "cls_token_adapter_anomaly",
    "patch_token_adapter_normal",
    "patch_token_adapter_anomaly",
    "prompt_adapter",
    "text_projection",
];

/// Name of the u8 tensor holding the method config as JSON in our checkpoints.
pub const CONFIG_KEY: &str = "__method_config__";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] TensorFileError),
    #[error(transparent)]
    Pth(#[from] PthError),
    #[error(
        "{path}: missing tensors {missing:?} for a {variant} model with {taps} taps; was it saved with another variant or tap set?"
    )]
    Missing {
        path: PathBuf,
        missing: Vec<String>,
        variant: &'static str,
        taps: usize,
    },
    #[error(
        "{path}: unexpected tensors {unexpected:?} for a {variant} model with {taps} taps; pass the config it was trained with"
    )]
    Unexpected {
        path: PathBuf,
        unexpected: Vec<String>,
        variant: &'static str,
        taps: usize,
    },
    #[error(
        "{path}: tensor `{name}` has shape {found:?}, the config expects {expected:?} (check dim/bottleneck/text_dim)"
    )]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "{path}: no embedded method config ({CONFIG_KEY}); load it with an explicit config instead: {reason}"
    )]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
    HostTensor::from_tensor(t)
}

/// Every parameter with its reference name, in PyTorch layout.
pub fn named_params(model: &AvaDino) -> Vec<(String, HostTensor)> {
    let mut out = Vec::new();
    let mut adapters = |prefix: &str, list: &[Adapter]| {
        for (i, a) in list.iter().enumerate() {
            out.push((format!("{prefix}.{i}.fc1.0.weight"), host(a.fc1.val())));
            out.push((format!("{prefix}.{i}.fc2.0.weight"), host(a.fc2.val())));
        }
    };
    adapters("cls_token_adapter_normal", &model.cls_normal);
    adapters("cls_token_adapter_anomaly", &model.cls_anomaly);
    adapters("patch_token_adapter_normal", &model.patch_normal);
    adapters("patch_token_adapter_anomaly", &model.patch_anomaly);
    adapters("prompt_adapter", &model.prompt);
    out.push((
        "text_projection.weight".into(),
        host(model.text_projection.val()),
    ));
    for (l, g) in model.gates.iter().enumerate() {
        out.push((format!("routing_gate.{l}.weight"), host(g.weight.val())));
        out.push((format!("routing_gate.{l}.bias"), host(g.bias.val())));
    }
    out
}

/// Names and shapes a model of `config` has.
pub fn expected_shapes(config: &MethodConfig) -> Vec<(String, Vec<usize>)> {
    let (d, b, e, l) = (
        config.dim,
        config.bottleneck,
        config.text_dim,
        config.n_taps(),
    );
    let mut out = Vec::new();
    let branches: &[&str] = if config.variant.dual() {
        &["normal", "anomaly"]
    } else {
        &["normal"]
    };
    for kind in ["cls_token_adapter", "patch_token_adapter"] {
        for br in branches {
            for i in 0..l {
                out.push((format!("{kind}_{br}.{i}.fc1.0.weight"), vec![b, d]));
                out.push((format!("{kind}_{br}.{i}.fc2.0.weight"), vec![d, b]));
            }
        }
    }
    for i in 0..2 {
        out.push((format!("prompt_adapter.{i}.fc1.0.weight"), vec![e, e]));
        out.push((format!("prompt_adapter.{i}.fc2.0.weight"), vec![e, e]));
    }
    out.push(("text_projection.weight".into(), vec![d, e]));
    if config.variant == super::config::Variant::LearnableRouting {
        for i in 0..l {
            out.push((format!("routing_gate.{i}.weight"), vec![2, d]));
            out.push((format!("routing_gate.{i}.bias"), vec![2]));
        }
    }
    out
}

/// Builds a model of `config` from named tensors; every expected tensor must be present with its
/// shape and nothing else may be (keys starting with `__` are metadata and skipped).
pub fn from_named(
    config: &MethodConfig,
    tensors: &BTreeMap<String, HostTensor>,
    path: &Path,
    device: &Device,
) -> Result<AvaDino, CheckpointError> {
    config.validate().map_err(|e| CheckpointError::Invalid {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let expected = expected_shapes(config);
    let (variant, taps) = (config.variant.name(), config.n_taps());
    let missing: Vec<String> = expected
        .iter()
        .filter(|(n, _)| !tensors.contains_key(n))
        .map(|(n, _)| n.clone())
        .collect();
    if !missing.is_empty() {
        return Err(CheckpointError::Missing {
            path: path.into(),
            missing,
            variant,
            taps,
        });
    }
    let unexpected: Vec<String> = tensors
        .keys()
        .filter(|k| !k.starts_with("__") && !expected.iter().any(|(n, _)| n == *k))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        return Err(CheckpointError::Unexpected {
            path: path.into(),
            unexpected,
            variant,
            taps,
        });
    }
    for (name, shape) in &expected {
        let t = &tensors[name];
        if &t.shape != shape || t.as_f32().is_none() {
            return Err(CheckpointError::Shape {
                path: path.into(),
                name: name.clone(),
                found: t.shape.clone(),
                expected: shape.clone(),
            });
        }
    }
    let t2 = |n: String| -> Tensor<2> { tensors[&n].to_tensor::<2>(device) };
    let adapters = |prefix: &str, n: usize| -> Vec<Adapter> {
        (0..n)
            .map(|i| {
                Adapter::from_weights(
                    t2(format!("{prefix}.{i}.fc1.0.weight")),
                    t2(format!("{prefix}.{i}.fc2.0.weight")),
                )
            })
            .collect()
    };
    let dual_n = if config.variant.dual() { taps } else { 0 };
    let gates = if config.variant == super::config::Variant::LearnableRouting {
        (0..taps)
            .map(|i| Gate {
                weight: Param::from_tensor(t2(format!("routing_gate.{i}.weight"))),
                bias: Param::from_tensor(
                    tensors[&format!("routing_gate.{i}.bias")].to_tensor::<1>(device),
                ),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(AvaDino {
        cls_normal: adapters("cls_token_adapter_normal", taps),
        cls_anomaly: adapters("cls_token_adapter_anomaly", dual_n),
        patch_normal: adapters("patch_token_adapter_normal", taps),
        patch_anomaly: adapters("patch_token_adapter_anomaly", dual_n),
        prompt: adapters("prompt_adapter", 2),
        text_projection: Param::from_tensor(t2("text_projection.weight".into())),
        gates,
        config: config.clone(),
    })
}

impl AvaDino {
    /// Saves our checkpoint: safetensors with the reference names, the config embedded as JSON.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut file = TensorFile::new(path);
        for (n, t) in named_params(self) {
            file.insert(n, t);
        }
        let json = serde_json::to_vec(&self.config).expect("MethodConfig always serializes");
        file.insert(CONFIG_KEY, HostTensor::u8(vec![json.len()], json));
        Ok(file.write(path)?)
    }

    /// Loads our checkpoint with the config it embeds.
    pub fn load(path: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let file = TensorFile::read(path)?;
        let cfg_err = |reason: String| CheckpointError::Config {
            path: path.into(),
            reason,
        };
        let raw = file.u8(CONFIG_KEY, 1).map_err(|e| cfg_err(e.to_string()))?;
        let config: MethodConfig = serde_json::from_slice(raw.as_u8().unwrap_or_default())
            .map_err(|e| cfg_err(e.to_string()))?;
        from_named(&config, &file.tensors, path, device)
    }

    /// Loads parameters from a safetensors file with reference names (no embedded config needed).
    pub fn load_named(
        config: &MethodConfig,
        path: &Path,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let file = TensorFile::read(path)?;
        from_named(config, &file.tensors, path, device)
    }

    /// Writes the reference's `epoch_N.pth`: `{'epoch': N, <six module>: state_dict, ...}`.
    /// Only the dual-branch, text-routed variants have that layout.
    pub fn save_reference_pth(&self, path: &Path, epoch: i64) -> Result<(), CheckpointError> {
        if !self.config.variant.dual() || !self.gates.is_empty() {
            return Err(CheckpointError::Invalid {
                path: path.into(),
                reason: format!(
                    "the reference checkpoint format has no place for the `{}` variant",
                    self.config.variant.name()
                ),
            });
        }
        let named = named_params(self);
        let mut entries = vec![("epoch".to_string(), PthValue::Int(epoch))];
        for module in REFERENCE_MODULES {
            let prefix = format!("{module}.");
            let sd = named
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(&prefix)
                        .map(|k| (k.to_string(), PthValue::Tensor(t.clone())))
                })
                .collect();
            entries.push((
                module.to_string(),
                PthValue::Dict {
                    entries: sd,
                    ordered: true,
                },
            ));
        }
        Ok(write_pth(
            path,
            &PthValue::Dict {
                entries,
                ordered: false,
            },
        )?)
    }

    /// Reads a reference `epoch_N.pth` into a model of `config` (which fixes tap count and dims).
    pub fn load_reference_pth(
        config: &MethodConfig,
        path: &Path,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let tensors = read_pth(path)?;
        from_named(config, &tensors, path, device)
    }
}
