//! Checkpoints: our format (safetensors, reference key names and layouts, config embedded) and
//! the reference code's `epoch_N.pth` (a dict of six module state dicts plus `epoch`).
//!
//! The model's tensors are listed once, in [`key_table`] (reference names, shapes, nn.Linear's
//! default init), which drives loading ([`from_named`]), saving ([`named_params`]), the
//! parameter count and the initial weights ([`AvaDino::try_new`]). Module fields map to the names by
//! [`reference_name`] (PyTorch names are kept everywhere; weights are `[out, in]` as in PyTorch):
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

use burn::nn::Initializer;
use burn::tensor::Device;

use super::adapter::Adapter;
use super::config::{MethodConfig, Variant};
use super::method::{AvaDino, ModelError};
use super::routing::Gate;
use crate::io::named::{LinearWeights, from_named as fill_named, to_named};
use crate::io::{
    HostTensor, Init, KeyProblem, KeyTable, PthError, PthValue, TensorFile, TensorFileError,
    read_pth, write_pth,
};
use crate::rng::SplitMix64;

/// The six module state dicts of the reference checkpoint, in its save order.
pub const REFERENCE_MODULES: [&str; 6] = [
    "cls_token_adapter_normal",
    "cls_token_adapter_anomaly",
    "patch_token_adapter_normal",
    "patch_token_adapter_anomaly",
    "prompt_adapter",
    "text_projection",
];

/// `(module field, reference name)` of the fields named otherwise.
const FIELD_NAMES: [(&str, &str); 7] = [
    ("cls_normal", "cls_token_adapter_normal"),
    ("cls_anomaly", "cls_token_adapter_anomaly"),
    ("patch_normal", "patch_token_adapter_normal"),
    ("patch_anomaly", "patch_token_adapter_anomaly"),
    ("prompt", "prompt_adapter"),
    ("gates", "routing_gate"),
    ("text_projection", "text_projection.weight"),
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
        "{path}: tensor `{name}` is not a float tensor; the file is not an AVA-DINO checkpoint"
    )]
    Dtype { path: PathBuf, name: String },
    #[error(
        "{path}: no embedded method config ({CONFIG_KEY}); load it with an explicit config instead: {reason}"
    )]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Every tensor of a model of `config`: reference name, PyTorch shape (`[out, in]`) and
/// nn.Linear's default init, in the order the model draws its initial weights.
pub fn key_table(config: &MethodConfig) -> KeyTable {
    let (d, b, e, l) = (
        config.dim,
        config.bottleneck,
        config.text_dim,
        config.n_taps(),
    );
    let torch = |fan_in: usize| Init::Torch { fan_in };
    let mut t = KeyTable::new();
    let branches: &[&str] = if config.variant.dual() {
        &["normal", "anomaly"]
    } else {
        &["normal"]
    };
    for kind in ["cls_token_adapter", "patch_token_adapter"] {
        for br in branches {
            for i in 0..l {
                t.push(
                    format!("{kind}_{br}.{i}.fc1.0.weight"),
                    vec![b, d],
                    torch(d),
                );
                t.push(
                    format!("{kind}_{br}.{i}.fc2.0.weight"),
                    vec![d, b],
                    torch(b),
                );
            }
        }
    }
    for i in 0..2 {
        t.push(
            format!("prompt_adapter.{i}.fc1.0.weight"),
            vec![e, e],
            torch(e),
        );
        t.push(
            format!("prompt_adapter.{i}.fc2.0.weight"),
            vec![e, e],
            torch(e),
        );
    }
    t.push("text_projection.weight", vec![d, e], torch(e));
    if config.variant == Variant::LearnableRouting {
        for i in 0..l {
            t.push(format!("routing_gate.{i}.weight"), vec![2, d], torch(d));
            t.push(format!("routing_gate.{i}.bias"), vec![2], torch(d));
        }
    }
    t
}

/// The reference name of an [`AvaDino`] parameter from its field path
/// (`cls_normal.0.fc1` -> `cls_token_adapter_normal.0.fc1.0.weight`).
pub fn reference_name(path: &str) -> String {
    let (field, rest) = path.split_once('.').unwrap_or((path, ""));
    let field = FIELD_NAMES
        .iter()
        .find(|(f, _)| *f == field)
        .map_or(field, |(_, r)| r);
    match rest.rsplit_once('.') {
        Some((i, leaf @ ("fc1" | "fc2"))) => format!("{field}.{i}.{leaf}.0.weight"),
        _ if rest.is_empty() => field.to_string(),
        _ => format!("{field}.{rest}"),
    }
}

/// The model of `config` with lazy (never materialized) parameters, to be filled by name.
fn skeleton(config: &MethodConfig, device: &Device) -> AvaDino {
    let (d, b, e, l) = (
        config.dim,
        config.bottleneck,
        config.text_dim,
        config.n_taps(),
    );
    let lazy = Initializer::Zeros;
    let adapters = |n: usize, c: usize, hidden: usize| -> Vec<Adapter> {
        (0..n)
            .map(|_| Adapter {
                fc1: lazy.init([hidden, c], device),
                fc2: lazy.init([c, hidden], device),
            })
            .collect()
    };
    let dual = if config.variant.dual() { l } else { 0 };
    let gates = if config.variant == Variant::LearnableRouting {
        l
    } else {
        0
    };
    AvaDino {
        cls_normal: adapters(l, d, b),
        cls_anomaly: adapters(dual, d, b),
        patch_normal: adapters(l, d, b),
        patch_anomaly: adapters(dual, d, b),
        prompt: adapters(2, e, e),
        text_projection: lazy.init([d, e], device),
        gates: (0..gates)
            .map(|_| Gate {
                weight: lazy.init([2, d], device),
                bias: lazy.init([2], device),
            })
            .collect(),
        config: config.clone(),
    }
}

/// Every parameter with its reference name, in PyTorch layout, in [`key_table`] order.
pub fn named_params(model: &AvaDino) -> Vec<(String, HostTensor)> {
    let mut named = to_named(model, &reference_name);
    key_table(&model.config)
        .keys()
        .iter()
        .filter_map(|k| named.remove_entry(&k.name))
        .collect()
}

impl AvaDino {
    /// A freshly initialized model (nn.Linear's default init) on `device`, drawn from `seed`.
    ///
    /// # Panics
    /// If the configuration is invalid; use [`AvaDino::try_new`] to get an error instead.
    pub fn new(config: &MethodConfig, seed: u64, device: &Device) -> Self {
        Self::try_new(config, seed, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A freshly initialized model: nn.Linear's default init for every tensor of [`key_table`],
    /// drawn in table order from the crate's generator seeded with `seed`, on the host: a seed
    /// gives the same weights on every device.
    pub fn try_new(config: &MethodConfig, seed: u64, device: &Device) -> Result<Self, ModelError> {
        config.validate()?;
        let tensors = key_table(config).random(&mut SplitMix64(seed));
        Ok(
            from_named(config, &tensors, Path::new("<initial weights>"), device)
                .expect("the key table and the module skeleton list the same tensors"),
        )
    }
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
    let mut tensors: BTreeMap<String, HostTensor> = tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    // A diverged training saves NaN weights; they load, and the metrics say so.
    let problems = key_table(config).check(&tensors, false);
    let (variant, taps) = (config.variant.name(), config.n_taps());
    let names = |pick: fn(&KeyProblem) -> bool| -> Vec<String> {
        problems
            .iter()
            .filter(|p| pick(p))
            .map(|p| p.name().to_string())
            .collect()
    };
    let missing = names(|p| matches!(p, KeyProblem::Missing { .. }));
    if !missing.is_empty() {
        return Err(CheckpointError::Missing {
            path: path.into(),
            missing,
            variant,
            taps,
        });
    }
    let unexpected = names(|p| matches!(p, KeyProblem::Unexpected { .. }));
    if !unexpected.is_empty() {
        return Err(CheckpointError::Unexpected {
            path: path.into(),
            unexpected,
            variant,
            taps,
        });
    }
    if let Some(p) = problems.into_iter().next() {
        return Err(match p {
            KeyProblem::Shape {
                name,
                found,
                expected,
            } => CheckpointError::Shape {
                path: path.into(),
                name,
                found,
                expected,
            },
            other => CheckpointError::Dtype {
                path: path.into(),
                name: other.name().to_string(),
            },
        });
    }
    fill_named(
        skeleton(config, device),
        &mut tensors,
        &reference_name,
        LinearWeights::Contiguous,
        device,
    )
    .map_err(|problems| CheckpointError::Invalid {
        path: path.into(),
        reason: problems.join("; "),
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

    /// Reads a checkpoint in either format into a model of `config`: the reference's
    /// `epoch_N.pth` (a `torch.save` zip) or our safetensors (`adapters.safetensors`; its embedded
    /// config is not needed). The format is told by the file's first bytes, not its name; a file
    /// of neither, or with other keys or shapes than `config` has, is one error naming it.
    pub fn load_checkpoint(
        config: &MethodConfig,
        path: &Path,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        match CheckpointFormat::of(path)? {
            CheckpointFormat::Pth => Self::load_reference_pth(config, path, device),
            CheckpointFormat::Safetensors => Self::load_named(config, path, device),
        }
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

/// The two checkpoint formats [`AvaDino::load_checkpoint`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// `torch.save`'s zip archive (the reference's `epoch_N.pth`).
    Pth,
    /// safetensors: an 8-byte little-endian header length, then a JSON header.
    Safetensors,
}

impl CheckpointFormat {
    /// The format of `path`, from its first nine bytes.
    pub fn of(path: &Path) -> Result<Self, CheckpointError> {
        use std::io::Read;
        let invalid = |reason: String| CheckpointError::Invalid {
            path: path.into(),
            reason,
        };
        let mut head = Vec::with_capacity(9);
        std::fs::File::open(path)
            .and_then(|f| f.take(9).read_to_end(&mut head))
            .map_err(|e| invalid(format!("cannot read: {e}")))?;
        if head.starts_with(b"PK\x03\x04") {
            return Ok(CheckpointFormat::Pth);
        }
        if head.len() == 9 && head[8] == b'{' {
            return Ok(CheckpointFormat::Safetensors);
        }
        Err(invalid(
            "neither a PyTorch checkpoint (the authors' epoch_N.pth, a torch.save zip) nor a safetensors file (our adapters.safetensors)".into(),
        ))
    }
}
