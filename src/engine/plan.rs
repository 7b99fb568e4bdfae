//! One job's plan, decided once: where the training features live, whether the training runs,
//! which images go through the backbone, which checkpoints are evaluated, and the memory each
//! phase holds. [`crate::engine::run_job`] executes it; the runner's estimate prices it. Neither
//! decides any of this again.
//!
//! A plan depends on what exists when the job starts ([`Facts`]): the engine reads those from
//! disk, the estimate from what the earlier jobs of the sweep will have left.

use crate::backbone::Shape;
use crate::engine::budget::Budget;
use crate::engine::cache::SHARD_HEADER_BYTES;
use crate::engine::cost::{self, Memory};
use crate::engine::evaluate::{in_memory_bytes, spilled_bytes};
use crate::engine::features::bytes_per_image;
use crate::experiment::schema::format_bytes;
use crate::experiment::{Experiment, Sharing, TrainStore};
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
    /// The backbone runs the CPU kernels, which hold a packed copy of its linear weights
    /// (`Backbone::packs_weights`, or `cost::runs_cpu_kernels` before it is loaded).
    pub backbone_packed: bool,
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
    /// Target features computed here are written to shards: other jobs of the sweep evaluate
    /// the same target with the same taps (seeds, variants) and read them back.
    pub write_target_shards: bool,
    /// Bytes one training image's features take in memory (all taps, CLS and patches, mask).
    pub per_image: u64,
    /// `cache.memory_budget`, resolved.
    pub budget: Budget,
    /// What the budget leaves for the data (training features, a category's maps) after one
    /// batch's activations.
    pub data_budget: u64,
    /// Memory the job holds at its peak.
    pub memory: Memory,
    /// Disk the largest category's maps take while they are scored, when they do not fit
    /// `data_budget` and are spilled to the run directory (0 when they fit); removed after.
    pub spilled: u64,
    /// Disk the feature shards this job writes take under `cache.dir`: per image its values
    /// and [`SHARD_HEADER_BYTES`].
    pub shards_written: u64,
}

impl JobPlan {
    /// The plan of a job of configuration `exp` (`Job::config` with the caller's cache
    /// settings), its budget resolved against the memory `available` to the process
    /// ([`crate::engine::budget::available_at_start`]); `shared`: other trainings of the sweep
    /// read the same training features, or evaluate the same target (`sharing`).
    pub fn new(
        exp: &Experiment,
        sizes: &Sizes,
        available: Option<u64>,
        sharing: Sharing,
        facts: Facts,
    ) -> Self {
        let (backbone, method) = (sizes.backbone, sizes.method);
        let trains = !facts.training_complete;
        let epochs = exp.train.epochs;
        let mut checkpoints: Vec<usize> = if exp.eval.every_epoch {
            (1..=epochs).collect()
        } else {
            vec![epochs]
        };
        if exp.eval.untrained_baseline {
            checkpoints.insert(0, 0);
        }
        let fixed = cost::fixed_memory(
            backbone,
            sizes.backbone_packed,
            sizes.text,
            method,
            checkpoints.len(),
        );
        let budget = Budget::resolve(exp.cache.memory_budget, available, fixed);
        let activations = cost::activation_memory(
            backbone,
            method,
            exp.train.extract_batch_size,
            // A training step holds one micro-batch's activations.
            exp.train
                .batch_size
                .min(exp.train.micro_batch)
                .min(sizes.train_images.max(1)),
        );
        // The data gets what one batch's activations leave of the budget.
        let data_budget = budget.bytes.saturating_sub(activations);
        let features = bytes_per_image(
            method.n_taps(),
            backbone.width,
            backbone.patches(exp.data.image_size),
            exp.cache.dtype,
        );
        let per_image = features + (exp.data.image_size * exp.data.image_size).div_ceil(8) as u64;
        let store = choose_store(
            exp.cache.train,
            sizes.train_images,
            per_image,
            data_budget,
            sharing.training,
        );
        let train_passes = match (trains, store) {
            (false, _) => 0,
            (true, TrainStore::Recompute) => epochs,
            (true, TrainStore::Disk) if facts.train_shards => 0,
            (true, _) => 1,
        };
        let store_bytes = if trains && store == TrainStore::Memory {
            per_image * sizes.train_images as u64
        } else {
            0
        };
        // Shard sets written here: the training set's when stored on disk and extracted by this
        // job, the shared target's when its shards are not there yet.
        let shard_images = if store == TrainStore::Disk && train_passes > 0 {
            sizes.train_images
        } else {
            0
        } + if sharing.target && !facts.target_shards {
            sizes.target_images
        } else {
            0
        };
        let pixels = (sizes.largest_category * exp.data.image_size * exp.data.image_size) as u64;
        let maps = in_memory_bytes(pixels, checkpoints.len());
        let spilled = if maps > data_budget {
            spilled_bytes(pixels, checkpoints.len())
        } else {
            0
        };
        JobPlan {
            store,
            trains,
            train_passes,
            write_train_shards: store == TrainStore::Disk,
            checkpoints,
            target_from_shards: facts.target_shards,
            write_target_shards: sharing.target,
            per_image,
            budget,
            data_budget,
            memory: Memory {
                fixed,
                activations,
                data: store_bytes.max(maps.min(data_budget)),
            },
            spilled,
            shards_written: shard_images as u64 * (features + SHARD_HEADER_BYTES),
        }
    }

    /// Why the budget cannot hold what it promises, if it cannot: one batch's activations
    /// already exceed it.
    pub fn budget_warning(&self) -> Option<String> {
        (self.memory.activations > self.budget.bytes).then(|| {
            format!(
                "one batch's activations (about {}) exceed the memory budget ({}): the job will \
                 hold more than the budget; lower train.micro_batch or train.extract_batch_size, \
                 or raise cache.memory_budget",
                format_bytes(self.memory.activations),
                format_bytes(self.budget.bytes)
            )
        })
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
            backbone_packed: true,
            text: &text,
            method: &method,
            train_images: 100,
            target_images: 50,
            largest_category: 10,
        };
        let fresh = JobPlan::new(
            &exp,
            &sizes,
            Some(1 << 40),
            Sharing::default(),
            Facts::default(),
        );
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
            Some(1 << 40),
            Sharing {
                training: true,
                target: false,
            },
            Facts {
                train_shards: true,
                ..Facts::default()
            },
        );
        assert_eq!((shared.store, shared.train_passes), (TrainStore::Disk, 0));
        assert_eq!(shared.shards_written, 0, "the shards are there");
        let first = JobPlan::new(
            &exp,
            &sizes,
            Some(1 << 40),
            Sharing {
                training: true,
                target: true,
            },
            Facts::default(),
        );
        let features = first.per_image - (exp.data.image_size.pow(2) as u64).div_ceil(8);
        assert_eq!(
            first.shards_written,
            (100 + 50) * (features + SHARD_HEADER_BYTES),
            "training and target shards written by the first job"
        );
        assert_eq!(fresh.shards_written, 0, "memory store, target not shared");
        // A complete training reads nothing; it holds no training features.
        let done = JobPlan::new(
            &exp,
            &sizes,
            Some(1 << 40),
            Sharing::default(),
            Facts {
                training_complete: true,
                target_shards: true,
                ..Facts::default()
            },
        );
        assert!(!done.trains && done.target_from_shards);
        assert_eq!(done.train_passes, 0);
        assert!(done.memory.data <= fresh.memory.data);
        // The budget holds one batch's activations first; the data gets what they leave.
        assert_eq!(fresh.budget_warning(), None);
        assert_eq!(
            fresh.data_budget,
            fresh.budget.bytes - fresh.memory.activations
        );
        let tight = Experiment {
            cache: crate::experiment::schema::CacheConfig {
                memory_budget: crate::experiment::MemoryBudget::Bytes(1024),
                ..Default::default()
            },
            ..exp.clone()
        };
        let plan = JobPlan::new(&tight, &sizes, None, Sharing::default(), Facts::default());
        assert_eq!((plan.data_budget, plan.memory.data), (0, 0));
        assert_eq!(plan.store, TrainStore::Disk);
        // Maps that fit stay in memory; those that do not go to the run directory meanwhile.
        assert_eq!(fresh.spilled, 0);
        let s = exp.data.image_size;
        assert_eq!(
            plan.spilled,
            spilled_bytes((10 * s * s) as u64, plan.checkpoints.len())
        );
        let w = plan
            .budget_warning()
            .expect("activations above the budget are said");
        assert!(w.contains("train.micro_batch"), "{w}");
    }
}
