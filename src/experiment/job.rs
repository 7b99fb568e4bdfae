//! Jobs: one (variant, training set, target, seed) each, addressable by an index so Slurm job
//! arrays, GNU parallel or Kubernetes indexed jobs run them with no code of ours in between.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::schema::{Experiment, Variant};

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

/// `runs/<name>-<profile>/`: the directory holding every run of the experiment under `runs_root`.
pub fn experiment_dir(runs_root: &Path, exp: &Experiment) -> PathBuf {
    runs_root.join(format!("{}-{}", exp.name, exp.profile))
}

/// `runs/<name>-<profile>/<variant>__<train>__<target>__s<seed>/`.
pub fn run_dir(runs_root: &Path, exp: &Experiment, job: &Job) -> PathBuf {
    experiment_dir(runs_root, exp).join(job.dir_name())
}

/// `runs/<name>-<profile>/_train/<variant>__<train>__s<seed>/`: where the engine keeps the
/// checkpoints of a training shared by every job with the same [`Job::train_key`] (Table 1's
/// eight VisA-trained targets train once). Its `config.resolved.yaml` is
/// `sweep::train_yaml`, which leaves the target out.
pub fn train_dir(runs_root: &Path, exp: &Experiment, job: &Job) -> PathBuf {
    experiment_dir(runs_root, exp)
        .join("_train")
        .join(job.train_key())
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
}
