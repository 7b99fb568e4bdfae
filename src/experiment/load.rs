//! Loading an experiment: defaults < experiment file < profile file < `key.sub=value` overrides.
//!
//! Each YAML file is parsed twice: once into the typed schema (so unknown keys and wrong types
//! fail with file, line, column and the dotted key), and once into a plain value tree that says
//! which keys the file actually sets. The plain trees are merged over the serialized defaults and
//! the result is deserialized once more, so a later layer overrides only the keys it names.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::schema::{Experiment, Profile, SlurmConfig};

/// Everything that can go wrong while building an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read experiment file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: key `{key}`: {message}")]
    Yaml {
        path: PathBuf,
        line: u64,
        column: u64,
        key: String,
        message: String,
    },
    #[error("{path}: {message}")]
    YamlNoLocation { path: PathBuf, message: String },
    #[error("override `{text}`: expected `key.sub=value` (e.g. train.epochs=2)")]
    OverrideSyntax { text: String },
    #[error("override `{text}`: unknown key `{key}`; known keys here: {known}")]
    OverrideUnknownKey {
        text: String,
        key: String,
        known: String,
    },
    #[error("override `{text}`: {message}")]
    OverrideType { text: String, message: String },
    #[error(
        "profile file {path} not found; profiles live in <experiment dir>/profiles/<profile>.yaml"
    )]
    MissingProfile { path: PathBuf },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The experiment plus where it came from (kept in the run directories).
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    pub experiment: Experiment,
    /// The experiment file.
    pub path: PathBuf,
    /// The profile file layered over it, if any.
    pub profile_path: Option<PathBuf>,
    /// Command-line overrides, in order.
    pub overrides: Vec<String>,
}

/// Loads `path`, layers `<dir>/profiles/<profile>.yaml` (when `profile` is given, or when the
/// file names one), then `overrides`, and validates the result.
pub fn load_experiment(
    path: &Path,
    profile: Option<Profile>,
    overrides: &[String],
) -> Result<LoadedExperiment, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (file_typed, file_tree) = parse_layer(path, &text)?;
    let mut tree = serde_json::to_value(Experiment::default()).expect("the schema serializes");
    // The unset `slurm` section is left out of serialized YAML; list it so `--set slurm.x=` works.
    tree["slurm"] = serde_json::to_value(SlurmConfig::default()).expect("the schema serializes");
    // So is an unset `train.init`.
    tree["train"]["init"] = Value::Null;
    merge(&mut tree, file_tree);

    let profile = profile.unwrap_or(file_typed.profile);
    let profile_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join("profiles")
        .join(format!("{profile}.yaml"));
    let profile_path = if profile_path.exists() {
        let ptext =
            std::fs::read_to_string(&profile_path).map_err(|source| ExperimentError::Read {
                path: profile_path.clone(),
                source,
            })?;
        let (_, ptree) = parse_layer(&profile_path, &ptext)?;
        merge(&mut tree, ptree);
        Some(profile_path)
    } else if profile != Profile::Full {
        // Full is the default schema; the other profiles cannot run without their file.
        return Err(ExperimentError::MissingProfile { path: profile_path });
    } else {
        None
    };
    tree["profile"] = Value::String(profile.name().into());

    for text in overrides {
        apply_override(&mut tree, text)?;
    }
    let experiment: Experiment =
        serde_json::from_value(tree).map_err(|e| ExperimentError::Invalid {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
    validate(&experiment, &path.display().to_string())?;
    Ok(LoadedExperiment {
        experiment,
        path: path.to_path_buf(),
        profile_path,
        overrides: overrides.to_vec(),
    })
}

/// Parses one YAML layer: typed (for errors) and as a plain tree (for merging).
fn parse_layer(path: &Path, text: &str) -> Result<(Experiment, Value), ExperimentError> {
    let typed: Experiment = serde_saphyr::from_str(text).map_err(|e| yaml_error(path, text, &e))?;
    // An empty file parses to null: it sets nothing.
    let tree: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text).map_err(|e| yaml_error(path, text, &e))?
    };
    if !tree.is_object() && !tree.is_null() {
        return Err(ExperimentError::YamlNoLocation {
            path: path.to_path_buf(),
            message: "the top level must be a mapping of keys".into(),
        });
    }
    Ok((
        typed,
        if tree.is_null() {
            Value::Object(Default::default())
        } else {
            tree
        },
    ))
}

fn yaml_error(path: &Path, text: &str, err: &serde_saphyr::Error) -> ExperimentError {
    // The crate's Display renders a multi-line snippet; keep its first line's message only.
    let full = err.to_string();
    let first = full
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ");
    let message = match first.find(": ") {
        Some(i) if first.starts_with("line ") => first[i + 2..].to_string(),
        _ => first.to_string(),
    };
    match err.location() {
        Some(loc) => ExperimentError::Yaml {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            key: key_path_at(text, loc.line() as usize).unwrap_or_else(|| "<top level>".into()),
            message,
        },
        None => ExperimentError::YamlNoLocation {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// The dotted key path of the mapping entry on 1-based `line`, found from indentation: the key on
/// that line, then each less-indented key above it. Good for block-style YAML, which is what the
/// experiment files use.
pub fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line.checked_sub(1)?;
    // (indent of the key, indent of its list dash if the line starts a list item, key)
    let key_of = |l: &str| -> Option<(usize, Option<usize>, String)> {
        let trimmed = l.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            return None;
        }
        let indent = l.len() - trimmed.len();
        let (body, key_indent, dash) = match trimmed.strip_prefix("- ") {
            Some(rest) => (
                rest.trim_start(),
                indent + 2 + (rest.len() - rest.trim_start().len()),
                Some(indent),
            ),
            None => (trimmed, indent, None),
        };
        let colon = body.find(':')?;
        let key = body[..colon].trim().trim_matches(['"', '\'']);
        if key.is_empty() || key.contains(char::is_whitespace) || key.starts_with(['[', '{']) {
            return None;
        }
        Some((key_indent, dash, key.to_string()))
    };
    // The entry itself: the error line, or the nearest key line above (for items of a list).
    let mut i = idx.min(lines.len().saturating_sub(1));
    let (mut indent, dash, first) = loop {
        if let Some(k) = lines.get(i).and_then(|l| key_of(l)) {
            break k;
        }
        i = i.checked_sub(1)?;
    };
    // Inside a list item, the item's own keys are siblings; the parent is above the dash.
    if let Some(d) = dash {
        indent = d;
    }
    let mut path = vec![first];
    while indent > 0 && i > 0 {
        i -= 1;
        let Some((ind, dash, k)) = key_of(lines[i]) else {
            continue;
        };
        match dash {
            Some(d) if ind == indent => indent = d,
            _ if ind < indent => {
                path.push(k);
                indent = dash.unwrap_or(ind);
            }
            _ => {}
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// Recursively overlays `top` on `base`: mappings merge key by key, anything else replaces.
pub fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Sections whose keys are names of the user's choosing (dataset keys), not schema fields.
const OPEN_MAPS: [&str; 1] = ["data.synthetic.per_dataset"];

/// Applies one `key.sub=value` override; the value is parsed as YAML (`2`, `1e-4`, `[5,11]`,
/// `embedded`), the key must exist in the schema.
pub fn apply_override(tree: &mut Value, text: &str) -> Result<(), ExperimentError> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| ExperimentError::OverrideSyntax { text: text.into() })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ExperimentError::OverrideSyntax { text: text.into() });
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_saphyr::from_str(raw).map_err(|e| ExperimentError::OverrideType {
            text: text.into(),
            message: e.to_string().lines().next().unwrap_or("").to_string(),
        })?
    };
    let mut slot = &mut *tree;
    let mut path = String::new();
    for part in key.split('.') {
        let open_map = OPEN_MAPS.contains(&path.as_str());
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(part);
        let obj = match slot {
            Value::Object(o) => o,
            _ => {
                return Err(ExperimentError::OverrideUnknownKey {
                    text: text.into(),
                    key: key.into(),
                    known: "(not a section)".into(),
                });
            }
        };
        if open_map && !obj.contains_key(part) {
            obj.insert(part.to_string(), Value::Null);
        }
        if !obj.contains_key(part) {
            let known: Vec<_> = obj.keys().cloned().collect();
            return Err(ExperimentError::OverrideUnknownKey {
                text: text.into(),
                key: key.into(),
                known: known.join(", "),
            });
        }
        slot = obj.get_mut(part).expect("checked above");
    }
    // Numbers given to string fields (e.g. a path `2024`) stay strings.
    let unset = slot.is_null();
    let scalar = matches!(value, Value::Number(_) | Value::Bool(_));
    let value = match (&*slot, value) {
        (Value::String(_), Value::Number(_) | Value::Bool(_)) => {
            Value::String(raw.trim().to_string())
        }
        (_, v) => v,
    };
    *slot = value;
    // Type-check now so the error names this override, not the merged tree.
    if let Err(e) = serde_json::from_value::<Experiment>(tree.clone()) {
        // An unset optional text field (`slurm.account=0123`) takes the value as written.
        if unset && scalar {
            let mut slot = &mut *tree;
            for part in key.split('.') {
                slot = slot
                    .get_mut(part)
                    .expect("the path exists: it was just set");
            }
            *slot = Value::String(raw.trim().to_string());
            if serde_json::from_value::<Experiment>(tree.clone()).is_ok() {
                return Ok(());
            }
        }
        return Err(ExperimentError::OverrideType {
            text: text.into(),
            message: e.to_string(),
        });
    }
    Ok(())
}

/// Checks that go beyond types.
pub fn validate(e: &Experiment, origin: &str) -> Result<(), ExperimentError> {
    let bad = |message: String| {
        Err(ExperimentError::Invalid {
            origin: origin.into(),
            message,
        })
    };
    if e.name.is_empty()
        || !e
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return bad(format!(
            "name `{}` must be non-empty ASCII letters, digits, `_` or `-` (it names a directory)",
            e.name
        ));
    }
    if e.data.image_size == 0 || !e.data.image_size.is_multiple_of(16) {
        return bad(format!(
            "data.image_size {} must be a positive multiple of the patch size 16",
            e.data.image_size
        ));
    }
    if e.backbone.taps.is_empty() {
        return bad("backbone.taps is empty; the reference uses [5, 11, 17, 23]".into());
    }
    let too_deep = e
        .backbone
        .taps
        .iter()
        .find(|&&t| t >= e.backbone.embedded.depth);
    if let (true, Some(&t)) = (e.backbone.weights.is_embedded(), too_deep) {
        return bad(format!(
            "backbone.taps has block {t} but the embedded backbone has depth {}",
            e.backbone.embedded.depth
        ));
    }
    if e.train.batch_size == 0 || e.train.epochs == 0 || e.train.micro_batch == 0 {
        return bad(
            "train.batch_size, train.micro_batch and train.epochs must be at least 1".into(),
        );
    }
    // Written so that NaN fails too.
    if e.model.tau.is_nan() || e.model.tau <= 0.0 {
        return bad(format!("model.tau {} must be positive", e.model.tau));
    }
    for (k, w) in [
        ("aware", e.loss.aware),
        ("seg", e.loss.seg),
        ("global", e.loss.global),
        ("route", e.loss.route),
    ] {
        if w.is_nan() || w < 0.0 {
            return bad(format!("loss.{k} {w} must be >= 0"));
        }
    }
    let b = &e.eval.bootstrap;
    // Written so that NaN fails too.
    if !(b.level > 0.0 && b.level < 1.0) {
        return bad(format!(
            "eval.bootstrap.level {} must be in (0, 1), e.g. 0.95",
            b.level
        ));
    }
    if b.replicates > 0 && b.bins < 2 {
        return bad(format!(
            "eval.bootstrap.bins {} must be at least 2 (1024 keeps the binning error below 1e-3)",
            b.bins
        ));
    }
    if !(0.0..1.0).contains(&e.optim.warmup) {
        return bad(format!(
            "optim.warmup {} must be in [0, 1) (a fraction of the total steps)",
            e.optim.warmup
        ));
    }
    if e.sweep.variants.is_empty() || e.sweep.seeds.is_empty() || e.sweep.runs.is_empty() {
        return bad(
            "sweep needs at least one variant, one seed and one run {train, targets}".into(),
        );
    }
    for r in &e.sweep.runs {
        for key in std::iter::once(&r.train).chain(&r.targets) {
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return bad(format!(
                    "dataset key `{key}` must be lower-case letters, digits or `_` as in datasets.toml"
                ));
            }
        }
        if r.targets.is_empty() {
            return bad(format!("sweep run with train `{}` has no targets", r.train));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_follows_indentation() {
        let text = "name: a\ntrain:\n  epochs: x\nsweep:\n  runs:\n    - train: visa\n      targets: [1]\n";
        assert_eq!(key_path_at(text, 3).as_deref(), Some("train.epochs"));
        assert_eq!(key_path_at(text, 7).as_deref(), Some("sweep.runs.targets"));
        assert_eq!(key_path_at(text, 1).as_deref(), Some("name"));
    }

    #[test]
    fn merge_overrides_only_named_keys() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge(&mut base, serde_json::json!({"a": {"c": 5}}));
        assert_eq!(base, serde_json::json!({"a": {"b": 1, "c": 5}, "d": 3}));
    }

    #[test]
    fn shuffle_and_init_overrides() {
        use crate::experiment::schema::Shuffle;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.yaml");
        let text = "name: t\nsweep:\n  variants: [full]\n  runs:\n    - train: visa\n      targets: [mvtec]\n  seeds: [0]\n";
        std::fs::write(&file, text).unwrap();
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            load_experiment(&file, None, &sets).map(|l| l.experiment.train)
        };
        for (v, want) in [
            ("torch", Shuffle::Torch),
            ("seeded", Shuffle::Seeded),
            ("true", Shuffle::Seeded),
            ("false", Shuffle::None),
        ] {
            let t = load(&[&format!("train.shuffle={v}")]).unwrap();
            assert_eq!(t.shuffle, want, "{v}");
        }
        let err = load(&["train.shuffle=random"]).unwrap_err().to_string();
        assert!(err.contains("seeded (or true), torch or false"), "{err}");
        let t = load(&["train.init=/x/epoch_0.pth"]).unwrap();
        assert_eq!(t.init, Some(PathBuf::from("/x/epoch_0.pth")));
        // The values that existed before `torch` serialize as before: old runs keep their identity.
        let yaml = serde_saphyr::to_string(&load(&[]).unwrap()).unwrap();
        assert!(
            yaml.contains("shuffle: true") && !yaml.contains("init"),
            "{yaml}"
        );
    }
}
