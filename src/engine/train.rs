//! Training the adapters on a [`TrainSet`]: seeded shuffling, batches, AdamW steps, a complete
//! checkpoint after every epoch, and resume from the last complete one.
//!
//! Mirrors the reference `train.py`: a DataLoader with `shuffle=True` and `drop_last=False` over
//! the auxiliary dataset, one optimizer update per batch, the LR schedule stepped after each
//! update. The reference sets no seed; we shuffle with a seeded generator so runs repeat exactly
//! (and a resumed run continues with the order it would have had): our own (`train.shuffle:
//! seeded`) or PyTorch's, reproduced (`torch`, the order of `train.py` run under
//! `torch.manual_seed(seed)`; docs/fidelity.md).

use std::time::Instant;

use burn::tensor::Device;

use super::EngineError;
use super::checkpoints::{self, EpochFile, EpochSummary};
use super::progress::Reporter;
use super::store::TrainSet;
use crate::data::torch_order;
use crate::experiment::TrainDir;
use crate::experiment::WorkDir;
use crate::experiment::schema::{Shuffle, TrainConfig};
use crate::model::{AvaDino, LossValues, MethodConfig, OptimConfig, Trainer};
use crate::rng::SplitMix64;

/// The shuffled order of `n` images for `epoch` of a run seeded with `seed` (Fisher-Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

/// The order of epoch `epoch` (0-based) under `train.shuffle`.
pub fn order_of(
    shuffle: Shuffle,
    n: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, EngineError> {
    Ok(match shuffle {
        Shuffle::None => (0..n).collect(),
        Shuffle::Seeded => epoch_order(n, seed, epoch),
        Shuffle::Torch => {
            torch_order::epoch_order(n, seed, epoch).map_err(|e| EngineError::Config {
                what: "train.shuffle".into(),
                message: e.to_string(),
            })?
        }
    })
}

/// Updates per epoch with `drop_last=False`.
pub fn steps_per_epoch(n: usize, batch_size: usize) -> usize {
    n.div_ceil(batch_size.max(1))
}

/// Runs one epoch: batches in `order`, one update each; `on_step(losses)` after each update.
pub fn run_epoch(
    trainer: &mut Trainer,
    data: &TrainSet<'_>,
    epoch: usize,
    order: &[usize],
    (batch_size, micro_batch): (usize, usize),
    device: &Device,
    on_step: &mut dyn FnMut(&LossValues),
) -> Result<EpochSummary, EngineError> {
    let mut summary = EpochSummary {
        epoch,
        ..Default::default()
    };
    let (mut sums, mut counts) = ([0f64; 2], [0usize; 2]);
    for chunk in order.chunks(batch_size.max(1)) {
        // One micro-batch's tensors and activations at a time (`train.micro_batch`).
        let micro = chunk
            .chunks(micro_batch.clamp(1, chunk.len()))
            .map(|m| data.batch(m, device));
        let (values, w) = trainer.step_micro(chunk.len(), micro)?;
        for (&i, &wa) in chunk.iter().zip(&w) {
            let k = usize::from(data.label(i) != 0);
            sums[k] += wa as f64;
            counts[k] += 1;
        }
        on_step(&values);
        summary.step_losses.push(values);
        summary.steps += 1;
    }
    let mean = |k: usize| (counts[k] > 0).then(|| sums[k] / counts[k] as f64);
    summary.w_anomaly_normal = mean(0);
    summary.w_anomaly_anomalous = mean(1);
    Ok(summary)
}

/// What a training needs besides its data.
pub struct TrainSpec<'a> {
    pub method: &'a MethodConfig,
    pub optim: &'a OptimConfig,
    pub train: &'a TrainConfig,
    /// Seed of the adapter initialization (`model.init_seed`).
    pub init_seed: u64,
    /// The job's seed (initialization and shuffling).
    pub seed: u64,
    /// `train.init`: the adapters to start from instead of seeded random ones.
    pub init: Option<&'a std::path::Path>,
    /// Shown in progress lines.
    pub label: String,
    pub reporter: Reporter,
}

/// Whether `dir` already holds every epoch of the training (nothing to compute).
pub fn is_complete(dir: &TrainDir, epochs: usize) -> bool {
    dir.latest_complete().is_some_and(|e| e >= epochs)
}

/// Trains (or resumes) into `dir` until every epoch 0..=epochs is complete. Call with the
/// directory's lock held.
pub fn train(
    spec: &TrainSpec,
    data: &TrainSet<'_>,
    dir: &TrainDir,
    device: &Device,
) -> Result<(), EngineError> {
    let epochs = spec.train.epochs;
    let n = data.len();
    let steps = steps_per_epoch(n, spec.train.batch_size);
    let warmup_steps = spec.optim.warmup_steps(steps * epochs);
    let ad = device.clone().autodiff();
    let latest = dir.latest_complete();
    let mut trainer = match latest {
        None => {
            let model = match spec.init {
                Some(path) => super::init::load(spec.method, path, &ad)?,
                None => {
                    let seed = spec.init_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ spec.seed;
                    AvaDino::try_new(spec.method, seed, &ad)?
                }
            };
            let trainer = Trainer::new(model, spec.optim.clone(), warmup_steps);
            checkpoints::save(&dir.epoch(0), &trainer, &EpochFile::default())?;
            trainer
        }
        Some(k) => {
            if k < epochs {
                dir.log_line(&format!("resuming training after epoch {k} of {epochs}"))?;
            }
            // Only its structure matters: every value is read from the checkpoint.
            let template = AvaDino::try_new(spec.method, 0, &ad)?;
            checkpoints::resume(&dir.epoch(k), template, spec.optim.clone(), warmup_steps)?
        }
    };
    let start = latest.unwrap_or(0) + 1;
    if start > epochs {
        return Ok(());
    }
    dir.log_line(&format!(
        "{} | {n} images, {steps} steps/epoch, warmup {warmup_steps} steps",
        trainer.model.describe()
    ))?;
    let mut progress = spec.reporter.stage(
        &format!("train {}", spec.label),
        "steps",
        ((epochs + 1 - start) * steps) as u64,
    );
    for epoch in start..=epochs {
        let t = Instant::now();
        let order = order_of(spec.train.shuffle, n, spec.seed, epoch - 1)?;
        let summary = run_epoch(
            &mut trainer,
            data,
            epoch,
            &order,
            (spec.train.batch_size, spec.train.micro_batch),
            &ad,
            &mut |l| progress.inc_with(1, &format!("epoch {epoch} loss {:.4}", l.total)),
        )?;
        let file = EpochFile {
            summary,
            seconds: t.elapsed().as_secs_f64(),
            steps_done: trainer.steps_done(),
        };
        checkpoints::save(&dir.epoch(epoch), &trainer, &file)?;
        if epoch >= 2 {
            checkpoints::drop_trainer_state(&dir.epoch(epoch - 2))?;
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 7, 0);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 7, 0), "same seed and epoch, same order");
        assert_ne!(a, epoch_order(50, 7, 1), "epochs differ");
        assert_ne!(a, epoch_order(50, 8, 0), "seeds differ");
        assert_eq!(steps_per_epoch(10, 4), 3);
    }
}
