//! Evaluating checkpoint files from outside a sweep (`ava-dino evaluate`): the authors'
//! `epoch_N.pth` or our `adapters.safetensors`, each checked against the configured model before
//! any backbone work, then streamed through the target together in one pass of the engine's own
//! evaluation ([`evaluate`]) and recorded as a run's evaluations are.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::EngineError;
use super::assets::{AssetSpec, registry, shared_assets};
use super::budget::{Budget, available_at_start};
use super::cost;
use super::evaluate::{EvalOptions, Spill, TargetSet, evaluate};
use super::inference::Prompts;
use super::init::method_config_unloaded;
use super::overlays::write_overlays;
use super::pipeline::extractor;
use super::progress::Reporter;
use crate::data::{ListOptions, SkippedFile, check_categories, list_samples_with_skipped};
use crate::experiment::record::Evaluation;
use crate::experiment::{Experiment, Job, RunDir};
use crate::model::AvaDino;

/// What to evaluate.
pub struct CheckpointEval<'a> {
    /// The resolved configuration (its model, data, backbone, text tower and evaluation
    /// settings are used).
    pub exp: &'a Experiment,
    /// Variant and target (`train` and `seed` play no part).
    pub job: &'a Job,
    /// The checkpoint files, in the order given.
    pub files: &'a [PathBuf],
    /// Only these categories of the target (empty: all).
    pub categories: &'a [String],
    /// Where overlays are written (`<out>/<label>/maps/...`, a `/` of the label written `__`)
    /// and where maps may spill.
    pub out: &'a Path,
    pub repo_root: &'a Path,
    pub reporter: Reporter,
}

/// One checkpoint's evaluation.
pub struct CheckpointResult {
    pub file: PathBuf,
    /// The file's name: how tables and overlay folders call it.
    pub label: String,
    pub evaluation: Evaluation,
}

/// The label of a checkpoint file: its name, with its parent folder's for our
/// `epoch_NNN/adapters.safetensors` (whose name alone says nothing).
pub fn label_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    match path.parent().and_then(Path::file_name) {
        Some(parent) if name == "adapters.safetensors" => {
            format!("{}/{name}", parent.to_string_lossy())
        }
        _ => name,
    }
}

/// The epoch a checkpoint's name gives (ours numbered from 1 = after one epoch): the authors'
/// `epoch_K.pth` is epoch K+1, our `epoch_NNN/adapters.safetensors` epoch NNN; 0 otherwise.
fn epoch_of(path: &Path) -> usize {
    let number = |s: &str| {
        s.strip_prefix("epoch_")
            .and_then(|n| n.parse::<usize>().ok())
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match name.as_deref() {
        Some(n) if n.ends_with(".pth") => number(n.trim_end_matches(".pth")).map_or(0, |k| k + 1),
        Some("adapters.safetensors") => path
            .parent()
            .and_then(Path::file_name)
            .and_then(|p| number(&p.to_string_lossy()))
            .unwrap_or(0),
        _ => 0,
    }
}

/// Checks the target's categories, then reads every checkpoint as a model of the configured
/// method; the first unknown category or wrong file is an error naming it and what is wrong.
/// Needs no backbone or text tower, only their shapes.
pub fn load_checkpoints(
    spec: &CheckpointEval,
    device: &Device,
) -> Result<Vec<AvaDino>, EngineError> {
    let method = method_config_unloaded(spec.job, spec.exp)?;
    // Only when categories were asked for: building the registry of embedded data writes the
    // twins, which otherwise waits until the checkpoints are known to be good.
    if !spec.categories.is_empty() {
        check_categories(
            &registry(&spec.exp.data, spec.repo_root)?,
            &spec.job.target,
            spec.categories,
        )?;
    }
    let mut labels = std::collections::BTreeSet::new();
    spec.files
        .iter()
        .map(|f| {
            if !labels.insert(label_of(f)) {
                return Err(EngineError::Config {
                    what: f.display().to_string(),
                    message: format!(
                        "another checkpoint has the same label `{}`; give each file once, or copy it under another name",
                        label_of(f)
                    ),
                });
            }
            Ok(AvaDino::load_checkpoint(&method, f, device)?)
        })
        .collect()
}

/// Evaluates `models` (read by [`load_checkpoints`] from `spec.files`) on the target in one
/// streamed pass, writes each one's overlays into `<out>/<label>/`, and returns their records
/// and the files left out under `data.skip_bad`.
pub fn evaluate_checkpoints(
    spec: &CheckpointEval,
    models: &[AvaDino],
    device: &Device,
) -> Result<(Vec<CheckpointResult>, Vec<SkippedFile>), EngineError> {
    let exp = spec.exp;
    let assets = shared_assets(&AssetSpec::of(exp), spec.repo_root, device)?;
    assets.check_input(exp)?;
    let opts = ListOptions {
        categories: spec.categories.to_vec(),
        skip_bad: exp.data.skip_bad,
        ..ListOptions::default()
    };
    let (samples, mut skipped) =
        list_samples_with_skipped(&assets.registry, &spec.job.target, exp.protocol, &opts)?;
    let target = TargetSet {
        prompts: Prompts::for_samples(&samples, &assets.text, &spec.reporter)?,
        samples,
    };
    let extractor = extractor(exp, &assets, device, None);
    let eval_opts = EvalOptions::of(exp);
    std::fs::create_dir_all(spec.out).map_err(|source| EngineError::Io {
        path: spec.out.to_path_buf(),
        source,
    })?;
    // The budget as a job's: the fixed costs come out of `auto`, one backbone batch's
    // activations out of the budget; the maps get the rest.
    let shape = assets.backbone.shape();
    let Some(method) = models.first().map(|m| &m.config) else {
        return Ok((Vec::new(), skipped));
    };
    let fixed = cost::fixed_memory(
        &shape,
        assets.backbone.packs_weights(device),
        assets.text.model().config(),
        method,
        models.len(),
    );
    let budget = Budget::resolve(exp.cache.memory_budget, available_at_start(), fixed);
    let activations = cost::activation_memory(&shape, method, exp.train.extract_batch_size, 0);
    let spill = Spill {
        dir: spec.out,
        budget: budget.bytes.saturating_sub(activations),
    };
    let label = format!("eval {} x{} checkpoints", spec.job.target, models.len());
    let mut progress = spec
        .reporter
        .stage(&label, "images", target.samples.len() as u64);
    let (evals, bad) = evaluate(
        &target,
        &extractor,
        models,
        &eval_opts,
        &spill,
        &mut progress,
    )?;
    progress.finish();
    skipped.extend(bad);
    let mut out = Vec::with_capacity(models.len());
    for ((file, model), ev) in spec.files.iter().zip(models).zip(evals) {
        let label = label_of(file);
        let evaluation = ev.record(epoch_of(file), &label, eval_opts.bootstrap.as_ref())?;
        let dir = RunDir::at(spec.out.join(label.replace('/', "__")));
        write_overlays(&dir, model, &target, &extractor, exp.eval.maps_per_category)?;
        out.push(CheckpointResult {
            file: file.clone(),
            label,
            evaluation,
        });
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_epochs_come_from_the_names() {
        let ours = Path::new("/r/_train/k/checkpoints/epoch_003/adapters.safetensors");
        assert_eq!(label_of(ours), "epoch_003/adapters.safetensors");
        assert_eq!(epoch_of(ours), 3);
        let theirs = Path::new("/results/mvtec/ckpt/epoch_2.pth");
        assert_eq!(label_of(theirs), "epoch_2.pth");
        assert_eq!(epoch_of(theirs), 3);
        assert_eq!(epoch_of(Path::new("init.pth")), 0);
    }
}
