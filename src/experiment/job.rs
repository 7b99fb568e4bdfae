//! Jobs: one (variant, training set, target, seed) each, addressable by an index so Slurm job
//! arrays, GNU parallel or Kubernetes indexed jobs run them with no code of ours in between.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::schema::{CacheConfig, Experiment, RunSpec, SweepConfig, TrainConfig, Variant};
use crate::model::MethodConfig;

/// One independent unit of a sweep: a pure value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Job {
    pub variant: Variant,
    /// Dataset key trained on (its test split, as the reference does).
    pub train: String,
    /// Dataset key evaluated zero-shot.
    pub target: String,
    pub seed: u64,
}

impl Job {
    /// `<variant>__<train>__<target>__s<seed>`: the run directory's name.
    pub fn dir_name(&self) -> String {
        format!(
            "{}__{}__{}__s{}",
            self.variant.name(),
            self.train,
            self.target,
            self.seed
        )
    }

    /// `<variant>__<train>__s<seed>`: jobs with the same key train the same adapters and differ
    /// only in their target, so the engine may share one training between them.
    pub fn train_key(&self) -> String {
        format!("{}__{}__s{}", self.variant.name(), self.train, self.seed)
    }

    /// The configuration that identifies this job's results: the variant applied (its taps, its
    /// routing-loss weight), the grid replaced by this job alone, and every field that cannot
    /// change a number reset (description, tables, where and how features are cached, cluster
    /// settings). Experiments that share a name therefore share the run directory of a job they
    /// both list. `cache.dtype` stays: f16 features change results.
    pub fn config(&self, exp: &Experiment) -> Experiment {
        let mut e = exp.clone();
        e.backbone.taps = self.variant.taps(&exp.backbone.taps);
        if !self.variant.uses_route_loss() {
            e.loss.route = 0.0;
        }
        e.description = String::new();
        e.tables = Vec::new();
        e.slurm = Default::default();
        e.train.log_interval_s = TrainConfig::default().log_interval_s;
        e.cache = CacheConfig {
            dtype: exp.cache.dtype,
            ..Default::default()
        };
        e.sweep = SweepConfig {
            variants: vec![self.variant],
            runs: vec![RunSpec {
                train: self.train.clone(),
                targets: vec![self.target.clone()],
            }],
            seeds: vec![self.seed],
        };
        e
    }

    /// The configuration the job runs with: [`Job::config`] plus the caller's cache settings
    /// (where features live and the memory budget change no number, so they are not part of
    /// the identity, but they decide what the job holds).
    pub fn run_config(&self, exp: &Experiment) -> Experiment {
        let mut e = self.config(exp);
        e.cache = exp.cache.clone();
        e
    }

    /// [`Job::config`] with the target and evaluation settings removed: what identifies the
    /// training, which every target trained from the same (variant, training set, seed) shares.
    pub fn train_config(&self, exp: &Experiment) -> Experiment {
        let mut e = self.config(exp);
        e.sweep.runs[0].targets.clear();
        e.eval = Default::default();
        e
    }

    /// The method as this job trains it, for a backbone of width `dim` and text features of
    /// width `text_dim` (the one place the YAML sections become the model's configuration).
    pub fn method_config(&self, exp: &Experiment, dim: usize, text_dim: usize) -> MethodConfig {
        let e = self.config(exp);
        MethodConfig {
            dim,
            bottleneck: e.model.bottleneck,
            text_dim,
            taps: e.backbone.taps,
            tau: e.model.tau,
            map_size: e.data.image_size,
            variant: self.variant,
            protocol: e.protocol,
            loss_weights: e.loss,
        }
    }

    /// Parses a run directory's name back into a job.
    pub fn from_dir_name(name: &str) -> Option<Job> {
        let parts: Vec<&str> = name.split("__").collect();
        let [variant, train, target, seed] = parts.as_slice() else {
            return None;
        };
        Some(Job {
            variant: variant.parse().ok()?,
            train: train.to_string(),
            target: target.to_string(),
            seed: seed.strip_prefix('s')?.parse().ok()?,
        })
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// The sweep's jobs in a fixed order: variant, then run (training set), then target, then seed
/// (all in file order). The same file always gives the same indices. Duplicates are dropped.
pub fn jobs(exp: &Experiment) -> Vec<Job> {
    let mut out: Vec<Job> = Vec::new();
    for &variant in &exp.sweep.variants {
        for run in &exp.sweep.runs {
            for target in &run.targets {
                for &seed in &exp.sweep.seeds {
                    let job = Job {
                        variant,
                        train: run.train.clone(),
                        target: target.clone(),
                        seed,
                    };
                    if !out.contains(&job) {
                        out.push(job);
                    }
                }
            }
        }
    }
    out
}

/// Whether another training of the sweep `jobs` (of experiment `exp`) reads the same training
/// features as `job`'s training: another training key on the same training set with the same
/// taps (other seeds, other variants). Their features are then extracted once, to disk, and
/// read back by each (`engine::store::choose_store`).
pub fn shares_training_features(jobs: &[Job], exp: &Experiment, job: &Job) -> bool {
    let taps = job.variant.taps(&exp.backbone.taps);
    jobs.iter().any(|j| {
        j.train == job.train
            && j.train_key() != job.train_key()
            && j.variant.taps(&exp.backbone.taps) == taps
    })
}

/// What a job shares with the other jobs of its sweep: features the backbone computes once and
/// every job reads back from shards on disk (the backbone is frozen; features are a function of
/// the image, the backbone, the taps and the precision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sharing {
    /// Another training reads the same training features ([`shares_training_features`]).
    pub training: bool,
    /// Another job evaluates the same target with the same taps (other seeds, other variants):
    /// the target's features are written to shards by the first and read by the others.
    pub target: bool,
}

impl Sharing {
    /// `job`'s sharing within the sweep `jobs` of experiment `exp`.
    pub fn of(jobs: &[Job], exp: &Experiment, job: &Job) -> Sharing {
        let taps = job.variant.taps(&exp.backbone.taps);
        Sharing {
            training: shares_training_features(jobs, exp, job),
            target: jobs.iter().any(|j| {
                j.target == job.target && j != job && j.variant.taps(&exp.backbone.taps) == taps
            }),
        }
    }
}

/// The task index of this process: `--task-index`, else `SLURM_ARRAY_TASK_ID`, else
/// `JOB_COMPLETION_INDEX` (Kubernetes indexed jobs).
pub fn task_index_from_env() -> Option<Result<usize, String>> {
    ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"]
        .iter()
        .find_map(|var| {
            std::env::var(var).ok().map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{var}={v} is not a task index"))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::schema::RunSpec;

    #[test]
    fn job_order_and_names_round_trip() {
        let mut e = Experiment::default();
        e.sweep.variants = vec![Variant::SingleAdapter, Variant::Full];
        e.sweep.runs = vec![RunSpec {
            train: "visa".into(),
            targets: vec!["mvtec".into(), "btad".into()],
        }];
        e.sweep.seeds = vec![0, 1];
        let js = jobs(&e);
        assert_eq!(js.len(), 2 * 2 * 2);
        assert_eq!(js[0].dir_name(), "single_adapter__visa__mvtec__s0");
        assert_eq!(js[1].dir_name(), "single_adapter__visa__mvtec__s1");
        assert_eq!(js[7].dir_name(), "full__visa__btad__s1");
        for j in &js {
            assert_eq!(Job::from_dir_name(&j.dir_name()).as_ref(), Some(j));
        }
        assert_eq!(Job::from_dir_name("nonsense"), None);
    }

    #[test]
    fn seeds_and_variants_with_the_same_taps_share_training_features() {
        let mut e = Experiment::default();
        e.sweep.variants = vec![Variant::Full, Variant::LastLayer];
        e.sweep.runs = vec![RunSpec {
            train: "visa".into(),
            targets: vec!["mvtec".into(), "btad".into()],
        }];
        let one_seed = jobs(&e);
        // Full and last-layer tap different blocks; two targets share one training.
        assert!(
            one_seed
                .iter()
                .all(|j| !shares_training_features(&one_seed, &e, j))
        );
        e.sweep.seeds = vec![0, 1];
        let js = jobs(&e);
        assert!(js.iter().all(|j| shares_training_features(&js, &e, j)));
        e.sweep.variants = vec![Variant::Full, Variant::SingleAdapter];
        e.sweep.seeds = vec![0];
        let js = jobs(&e);
        assert!(js.iter().all(|j| shares_training_features(&js, &e, j)));
    }
}
