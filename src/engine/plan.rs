//! One job's plan, decided once: where the training features live, whether the training runs,
//! which images go through the backbone, which checkpoints are evaluated, and the memory each
//! phase holds. [`crate::engine::run_job`] executes it; the runner's estimate prices it. Neither
//! decides any of this again.
//!
//! A plan depends on what exists when the job starts ([`Facts`]): the engine reads those from
//! disk, the estimate from what the earlier jobs of the sweep will have left.

use crate::backbone::Shape;
use crate::engine::cost::{self, Memory};
use crate::engine::features::bytes_per_image;
use crate::experiment::{Experiment, TrainStore};
use crate::model::MethodConfig;
use crate::text::ClipTextConfig;

/// What exists when a job starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Every epoch of the job's training is complete: nothing is trained or read for it.
    pub training_complete: bool,
    /// Feature shards of the training set exist (a disk-stored training wrote them).
    pub train_shards: bool,
    /// Feature shards of the target exist (a disk-stored training on it wrote them).
    pub target_shards: bool,
}

/// The sizes a plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct Sizes<'a> {
    pub backbone: &'a Shape,
    pub text: &'a ClipTextConfig,
    /// The method the job trains (`Job::method_config`).
    pub method: &'a MethodConfig,
    pub train_images: usize,
    pub target_images: usize,
    /// Images of the target's largest category (the maps held for its metrics).
    pub largest_category: usize,
}

/// The plan of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// Where training features live (resolved: never `auto`).
    pub store: TrainStore,
    /// The training runs (it is not complete yet).
    pub trains: bool,
    /// Training images through the backbone: once, every epoch (`recompute`), or none (read
    /// back from shards, or the training is complete).
    pub train_passes: usize,
    /// Disk-stored training features are written to shards (later trainings read them back).
    pub write_train_shards: bool,
    /// Epochs whose checkpoints are evaluated, in order (0 = the adapters at initialization).
    pub checkpoints: Vec<usize>,
    /// Target features are read back from shards where present (else computed).
    pub target_from_shards: bool,
    /// Bytes one training image's features take in memory (all taps, CLS and patches, mask).
    pub per_image: u64,
    /// Memory the job holds at its peak.
    pub memory: Memory,
}

impl JobPlan {
    /// The plan of a job of configuration `exp` (`Job::config` with the caller's cache
    /// settings) under a budget of `budget` bytes; `shared`: other trainings of the sweep read
    /// the same training features.
    pub fn new(exp: &Experiment, sizes: &Sizes, budget: u64, shared: bool, facts: Facts) -> Self {
        let (backbone, method) = (sizes.backbone, sizes.method);
        let per_image = bytes_per_image(
            method.n_taps(),
            backbone.width,
            backbone.patches(exp.data.image_size),
            exp.cache.dtype,
        ) + (exp.data.image_size * exp.data.image_size).div_ceil(8) as u64;
        let store = choose_store(
            exp.cache.train,
            sizes.train_images,
            per_image,
            budget,
            shared,
        );
        let trains = !facts.training_complete;
        let epochs = exp.train.epochs;
        let train_passes = match (trains, store) {
            (false, _) => 0,
            (true, TrainStore::Recompute) => epochs,
            (true, TrainStore::Disk) if facts.train_shards => 0,
            (true, _) => 1,
        };
        let mut checkpoints: Vec<usize> = if exp.eval.every_epoch {
            (1..=epochs).collect()
        } else {
            vec![epochs]
        };
        if exp.eval.untrained_baseline {
            checkpoints.insert(0, 0);
        }
        let s2 = (exp.data.image_size * exp.data.image_size) as f64;
        let store_bytes = if trains && store == TrainStore::Memory {
            per_image * sizes.train_images as u64
        } else {
            0
        };
        let memory = cost::memory(
            backbone,
            sizes.text,
            method,
            exp.train.extract_batch_size,
            // A training step holds one micro-batch's activations.
            exp.train
                .batch_size
                .min(exp.train.micro_batch)
                .min(sizes.train_images.max(1)),
            checkpoints.len(),
            store_bytes,
            sizes.largest_category as f64 * s2,
            budget,
        );
        JobPlan {
            store,
            trains,
            train_passes,
            write_train_shards: store == TrainStore::Disk,
            checkpoints,
            target_from_shards: facts.target_shards,
            per_image,
            memory,
        }
    }
}

/// The store `cache.train` asks for, resolved against the budget: `auto` keeps features in
/// memory when `n` images of `per_image` bytes fit in `budget` and no other training of the
/// sweep reads the same features (`shared`), else on disk: shards written by the first training
/// are read back by the others (seeds, variants with the same taps), so the backbone runs once.
pub fn choose_store(
    kind: TrainStore,
    n: usize,
    per_image: u64,
    budget: u64,
    shared: bool,
) -> TrainStore {
    match kind {
        TrainStore::Auto if shared => TrainStore::Disk,
        TrainStore::Auto if (n as u64).saturating_mul(per_image) <= budget => TrainStore::Memory,
        TrainStore::Auto => TrainStore::Disk,
        k => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_store_follows_the_budget() {
        assert_eq!(
            choose_store(TrainStore::Auto, 10, 100, 1000, false),
            TrainStore::Memory
        );
        assert_eq!(
            choose_store(TrainStore::Auto, 11, 100, 1000, false),
            TrainStore::Disk
        );
        // Features other trainings read too go to disk once, even when they would fit.
        assert_eq!(
            choose_store(TrainStore::Auto, 10, 100, 1000, true),
            TrainStore::Disk
        );
        for k in [TrainStore::Memory, TrainStore::Disk, TrainStore::Recompute] {
            for shared in [false, true] {
                assert_eq!(
                    choose_store(k, usize::MAX, u64::MAX, 0, shared),
                    k,
                    "explicit choices stand"
                );
            }
        }
    }

    #[test]
    fn the_plan_follows_what_exists() {
        let exp = Experiment {
            profile: crate::experiment::Profile::Smoke,
            ..Default::default()
        };
        let backbone = crate::backbone::Spec::embedded(64, 8, 4, 16).shape();
        let text = ClipTextConfig::vitl14_336();
        let method = MethodConfig {
            dim: 64,
            ..MethodConfig::default()
        };
        let sizes = Sizes {
            backbone: &backbone,
            text: &text,
            method: &method,
            train_images: 100,
            target_images: 50,
            largest_category: 10,
        };
        let fresh = JobPlan::new(&exp, &sizes, 1 << 40, false, Facts::default());
        assert_eq!(fresh.store, TrainStore::Memory);
        assert!(fresh.trains && !fresh.write_train_shards);
        assert_eq!(fresh.train_passes, 1);
        assert_eq!(
            fresh.checkpoints,
            (0..=exp.train.epochs).collect::<Vec<_>>()
        );
        // Shared features go to disk; with shards already there, nothing is extracted.
        let shared = JobPlan::new(
            &exp,
            &sizes,
            1 << 40,
            true,
            Facts {
                train_shards: true,
                ..Facts::default()
            },
        );
        assert_eq!((shared.store, shared.train_passes), (TrainStore::Disk, 0));
        // A complete training reads nothing; it holds no training features.
        let done = JobPlan::new(
            &exp,
            &sizes,
            1 << 40,
            false,
            Facts {
                training_complete: true,
                target_shards: true,
                ..Facts::default()
            },
        );
        assert!(!done.trains && done.target_from_shards);
        assert_eq!(done.train_passes, 0);
        assert!(done.memory.data <= fresh.memory.data);
    }
}
