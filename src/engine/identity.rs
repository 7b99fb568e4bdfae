//! What a job's results depend on, worked out before any work: the resolved configuration, the
//! computing code, the weights and the sample lists. The runner compares it with what earlier
//! work recorded (and refuses to reuse work made differently); the engine records it.
//!
//! Nothing here loads a model or decodes an image: weights are identified by the hash of their
//! file (computed once per process), samples by the digest of their list.

use std::collections::BTreeMap;
use std::path::Path;

use super::EngineError;
use super::assets::{backbone_id, registry, text_id};
use crate::cpu::Kernels;
use crate::data::{
    ListOptions, Registry, Sample, SampleOrder, SkippedFile, list_samples_with_skipped,
};
use crate::device::Backend;
use crate::experiment::schema::Shuffle;
use crate::experiment::{Experiment, Identity, Job, short_hash};

/// The identities of a job's run directory and of the training directory it shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    pub run: Identity,
    pub training: Identity,
}

impl JobIdentity {
    /// The sample-list digest recorded under `part` (`samples.train`, `samples.target`).
    pub fn samples(&self, part: &str) -> Option<&str> {
        self.run.parts.get(part).map(String::as_str)
    }
}

/// A digest of a sample list (what is read, not how): relative path, label, mask, category and
/// class word of every image, in order.
pub fn sample_list_hash(samples: &[Sample]) -> String {
    let mut text = String::new();
    for s in samples {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            s.image_rel,
            s.label,
            s.mask_rel.as_deref().unwrap_or(""),
            s.category,
            s.class_word
        ));
    }
    short_hash(text.as_bytes())
}

/// What a job reads a dataset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Train,
    Target,
}

impl Role {
    /// The order `exp` lists the dataset in for this role: the training set of
    /// `train.shuffle: torch` comes in the reference's own order (the list a torch permutation
    /// indexes), everything else sorted.
    pub fn order(self, exp: &Experiment) -> SampleOrder {
        match (self, exp.train.shuffle) {
            (Role::Train, Shuffle::Torch) => SampleOrder::Layout,
            _ => SampleOrder::Sorted,
        }
    }
}

/// The samples of dataset `key` as `exp` reads them for `role` (bad files left out under
/// `data.skip_bad`), and the files left out.
pub fn list(
    registry: &Registry,
    exp: &Experiment,
    key: &str,
    role: Role,
) -> Result<(Vec<Sample>, Vec<SkippedFile>), EngineError> {
    let opts = ListOptions {
        skip_bad: exp.data.skip_bad,
        order: role.order(exp),
        ..ListOptions::default()
    };
    let (samples, skipped) = list_samples_with_skipped(registry, key, exp.protocol, &opts)?;
    if samples.is_empty() {
        return Err(EngineError::Asset {
            what: format!("dataset {key}"),
            message: "no images found".into(),
        });
    }
    Ok((samples, skipped))
}

/// Which implementation computes a run on `device`: on the CPU, `cpu` (the crate's kernels, any
/// instruction set: they give the same bits) or `burn` (`AVA_DINO_CPU_KERNELS=burn`). The two
/// compute the same function but not the same bits (features differ in their last bits, and
/// training amplifies that), so a run made on one is never reused for the other. Other devices
/// always run burn's ops and are told apart by the configuration's `device`.
pub fn kernels_part(device: Backend, kernels: Kernels) -> Option<&'static str> {
    (device == Backend::Cpu).then_some(match kernels.resolved() {
        Kernels::Burn => "burn",
        _ => "cpu",
    })
}

/// The identity of `job` of the sweep `exp` (the sweep's configuration: [`Job::config`] is
/// applied here). Writes the synthetic twins first when the data is embedded and they are
/// missing (they are listed like real data).
pub fn job_identity(
    job: &Job,
    exp: &Experiment,
    repo_root: &Path,
) -> Result<JobIdentity, EngineError> {
    let config = job.config(exp);
    let registry = registry(&config.data, repo_root)?;
    let digest = |key: &str, role: Role| -> Result<String, EngineError> {
        Ok(sample_list_hash(&list(&registry, &config, key, role)?.0))
    };
    let train_samples = digest(&job.train, Role::Train)?;
    let same_list =
        job.target == job.train && Role::Target.order(&config) == Role::Train.order(&config);
    let target_samples = if same_list {
        train_samples.clone()
    } else {
        digest(&job.target, Role::Target)?
    };
    let mut parts = BTreeMap::from([
        ("code".to_string(), crate::build_info::CODE.to_string()),
        (
            "weights.backbone".to_string(),
            backbone_id(&config.backbone)?,
        ),
        ("weights.text".to_string(), text_id(&config.text)?),
        ("samples.train".to_string(), train_samples),
    ]);
    if let Some(path) = &config.train.init {
        parts.insert("weights.init".to_string(), super::init::init_id(path)?);
    }
    if let Some(family) = kernels_part(config.device, Kernels::configured()) {
        parts.insert("kernels".to_string(), family.to_string());
    }
    let yaml = |e: &Experiment| serde_saphyr::to_string(e).expect("the schema serializes to YAML");
    let training = Identity {
        config: yaml(&job.train_config(exp)),
        parts: parts.clone(),
    };
    parts.insert("samples.target".into(), target_samples);
    Ok(JobIdentity {
        run: Identity {
            config: yaml(&config),
            parts,
        },
        training,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Isa;

    #[test]
    fn cpu_runs_name_their_kernels_and_gpu_runs_do_not() {
        for kernels in [Kernels::Auto, Kernels::Cpu(Isa::Portable)] {
            assert_eq!(kernels_part(Backend::Cpu, kernels), Some("cpu"));
        }
        assert_eq!(kernels_part(Backend::Cpu, Kernels::Burn), Some("burn"));
        for device in [Backend::Wgpu, Backend::Vulkan, Backend::Cuda] {
            assert_eq!(kernels_part(device, Kernels::Auto), None);
            assert_eq!(kernels_part(device, Kernels::Burn), None);
        }
    }
}
