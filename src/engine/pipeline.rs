//! One job end to end: the training set's features, the (shared, resumable) training, one
//! streamed pass of every checkpoint over the target, and the [`RunMetrics`] record.
//!
//! Jobs with the same training key (variant, training set, seed) share one training directory:
//! Table 1's eight VisA-trained targets train once, and a job whose training is complete reads
//! no training image at all. Each epoch's checkpoint is written atomically and marked complete
//! last, so a killed run resumes from the last complete epoch with the exact optimizer state and
//! the same shuffling, and ends with the same numbers as an uninterrupted one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;

use super::EngineError;
use super::assets::{AssetSpec, Assets, shared_assets};
use super::budget::{available_at_start, peak_rss, reset_peak_rss};
use super::cache::ShardCache;
use super::checkpoints::{self, EpochFile, EpochSummary};
use super::evaluate::{EvalOptions, SetEvaluation, Spill, TargetSet, evaluate};
use super::extract::{Extractor, Shards};
use super::identity::{JobIdentity, Role, list, sample_list_hash};
use super::inference::Prompts;
use super::outcome;
use super::overlays::write_overlays;
use super::plan::{Facts, JobPlan, Sizes};
use super::progress::{self, Reporter};
use super::store::TrainSet;
use super::train::{self, TrainSpec};
use crate::data::{Sample, SkippedFile};
use crate::experiment::record::{
    EpochRecord, Evaluation, FINAL_SELECTION, LossRecord, REFERENCE_SELECTION, RoutingRow,
    SCHEMA_VERSION, UNTRAINED_SELECTION,
};
use crate::experiment::{
    EpochSelection, Experiment, Job, Provenance, RunDir, RunMetrics, TrainDir, WorkDir,
};
use crate::model::MethodConfig;
use crate::model::checkpoint::key_table;

/// Everything a job is run with.
pub struct JobContext<'a> {
    pub job: &'a Job,
    /// The job's configuration: [`Job::config`] with the caller's cache settings.
    pub exp: &'a Experiment,
    pub run: &'a RunDir,
    pub training: &'a TrainDir,
    /// Repository root: relative paths (twins, cache).
    pub repo_root: &'a Path,
    /// What the run's and the training's results depend on (worked out before any work).
    pub identity: &'a JobIdentity,
    /// The `--force` session making new directories, if any (recorded in the training's
    /// fingerprint: other tasks of the same session keep it).
    pub force: Option<&'a str>,
    /// Features other jobs of the sweep read too (seeds, variants with the same taps): the
    /// training's (`cache.train: auto` then keeps them on disk, extracted once for all) and the
    /// target's (written to shards by the first job, read back by the others).
    pub sharing: crate::experiment::Sharing,
    /// No progress bars (log lines only).
    pub quiet: bool,
}

fn log_skipped(run: &RunDir, skipped: &[SkippedFile]) -> Result<(), EngineError> {
    for s in skipped {
        run.log_line(&format!("skipped {}: {}", s.path.display(), s.reason))?;
    }
    Ok(())
}

/// Trains and evaluates one job (see the module docs): its plan ([`JobPlan`]) is decided once,
/// then run as phases - training (shared, resumable), one streamed evaluation of every planned
/// checkpoint, the reported epoch, the record.
pub fn run_job(cx: &JobContext) -> Result<RunMetrics, EngineError> {
    let started = Instant::now();
    let mut job = Running::start(cx)?;
    let train = job.listed(&cx.job.train, Role::Train)?;
    let target = job.listed(&cx.job.target, Role::Target)?;
    let plan = job.plan(&train, &target)?;
    job.train(&plan, &train)?;
    // Read the training's checkpoints under its shared lock: a `--force` of another session
    // waits until this evaluation is done before it moves the training aside.
    let _reading = cx
        .training
        .lock_shared(|| say_waiting("another process holds", cx.training))?;
    let evaluated = job.evaluate(&plan, target)?;
    job.provenance
        .timings
        .insert("total".into(), started.elapsed().as_secs_f64());
    job.record(evaluated)
}

/// A job between its phases: what every phase reads, and the provenance they fill in.
struct Running<'a> {
    cx: &'a JobContext<'a>,
    device: Device,
    assets: Arc<Assets>,
    /// Memory available to the process before it loaded anything (the `auto` budget's base).
    available: Option<u64>,
    reporter: Reporter,
    shard_dir: PathBuf,
    method: MethodConfig,
    provenance: Provenance,
}

/// What the evaluation phase hands to the record.
struct Evaluated {
    untrained: Option<Evaluation>,
    all: Vec<Evaluation>,
    best: Evaluation,
    final_epoch: Evaluation,
    routing: Option<Vec<RoutingRow>>,
}

impl<'a> Running<'a> {
    /// Device, frozen assets and budget; the input shape checked against the backbone.
    fn start(cx: &'a JobContext<'a>) -> Result<Self, EngineError> {
        let exp = cx.exp;
        // Read before the weights load: the job's fixed costs come out of it.
        let available = available_at_start();
        let mut provenance = Provenance::capture(exp, cx.job);
        let device = crate::device::select(exp.device)?;
        provenance.device = crate::device::describe(&device);
        if let Some(path) = &exp.train.init {
            // A wrong file is one error before any backbone work.
            let method = super::init::method_config_unloaded(cx.job, exp)?;
            super::init::load(&method, path, &device)?;
            say(cx.run, &format!("training starts from {}", path.display()))?;
        }
        say(cx.run, &format!("loading assets ({})", exp.profile))?;
        let assets = shared_assets(&AssetSpec::of(exp), cx.repo_root, &device)?;
        assets.check_input(exp)?;
        provenance.kernels = assets.backbone.kernels_name(&device).into();
        provenance.embedded = assets.embedded;
        let weights = [("backbone", &assets.backbone_id), ("text", &assets.text_id)];
        for (k, v) in weights {
            provenance.weights.insert(k.into(), v.clone());
        }
        let shard_dir = cx.repo_root.join(&exp.cache.dir);
        // Temporaries of shard writers killed earlier; an hour is far longer than any shard
        // write, so a process writing now is never disturbed.
        crate::io::sweep_temps(&shard_dir, std::time::Duration::from_secs(3600)).map_err(
            |source| EngineError::Io {
                path: shard_dir.clone(),
                source,
            },
        )?;
        let dim = assets.backbone.shape().width;
        let text_dim = assets.text.model().config().projection_dim;
        Ok(Running {
            cx,
            method: cx.job.method_config(exp, dim, text_dim),
            reporter: Reporter {
                quiet: cx.quiet,
                interval: exp.train.log_interval(),
            },
            device,
            assets,
            available,
            shard_dir,
            provenance,
        })
    }

    /// The samples of dataset `key` read for `role`, checked against the identity's digest.
    fn listed(&mut self, key: &str, role: Role) -> Result<Vec<Sample>, EngineError> {
        let (part, what) = match role {
            Role::Train => ("samples.train", "train"),
            Role::Target => ("samples.target", "target"),
        };
        let recorded = self.cx.identity.samples(part);
        let (samples, skipped) = list(&self.assets.registry, self.cx.exp, key, role)?;
        let now = sample_list_hash(&samples);
        if let Some(before) = recorded.filter(|b| *b != now) {
            return Err(EngineError::Config {
                what: format!("dataset {key}"),
                message: format!(
                    "its image list changed while the sweep ran (digest {before} -> {now}); run the sweep again"
                ),
            });
        }
        log_skipped(self.cx.run, &skipped)?;
        self.provenance.samples.insert(what.into(), now);
        Ok(samples)
    }

    /// The job's plan, from what exists on disk now.
    fn plan(&mut self, train: &[Sample], target: &[Sample]) -> Result<JobPlan, EngineError> {
        let exp = self.cx.exp;
        let extractor = self.extractor(None);
        let train_shards = match train.first() {
            Some(s) => ShardCache::new(&self.shard_dir)
                .get(&extractor.key(s)?)?
                .is_some(),
            None => false,
        };
        let facts = Facts {
            training_complete: train::is_complete(self.cx.training, exp.train.epochs),
            train_shards,
            target_shards: self.shard_dir.is_dir(),
        };
        let largest = target
            .iter()
            .fold(BTreeMap::<&str, usize>::new(), |mut m, s| {
                *m.entry(&s.category).or_default() += 1;
                m
            });
        let shape = self.assets.backbone.shape();
        let sizes = Sizes {
            backbone: &shape,
            backbone_packed: self.assets.backbone.packs_weights(&self.device),
            text: self.assets.text.model().config(),
            method: &self.method,
            train_images: train.len(),
            target_images: target.len(),
            largest_category: largest.values().copied().max().unwrap_or(0),
        };
        let plan = JobPlan::new(exp, &sizes, self.available, self.cx.sharing, facts);
        self.provenance.memory_budget = plan.budget.bytes;
        self.provenance.expected_peak = plan.memory.peak();
        say(self.cx.run, &plan.budget.describe())?;
        if let Some(w) = plan.budget_warning() {
            say(self.cx.run, &format!("warning: {w}"))?;
        }
        Ok(plan)
    }

    /// An extractor over the job's backbone, taps and size.
    fn extractor(&self, shards: Option<Shards>) -> Extractor<'_> {
        extractor(self.cx.exp, &self.assets, &self.device, shards)
    }

    /// The training phase, under the training's lock: nothing when it is complete (another job
    /// may have finished it while this one waited), else its features and its epochs.
    fn train(&mut self, plan: &JobPlan, samples: &[Sample]) -> Result<(), EngineError> {
        let (cx, exp) = (self.cx, self.cx.exp);
        let training = cx.training;
        let _lock = training.lock(|| say_waiting("another process is running", training))?;
        training.prepare(&cx.identity.training, cx.force)?;
        if !plan.trains || train::is_complete(training, exp.train.epochs) {
            self.provenance.feature_store = "none (training complete)".into();
            return Ok(());
        }
        let store = store_name(plan.store);
        self.provenance.feature_store = store.into();
        let line = format!(
            "training features of {} ({} images) kept: {store}",
            cx.job.train,
            samples.len()
        );
        say(cx.run, &line)?;
        let t = phase_start(&self.assets);
        let shards = plan.write_train_shards.then(|| Shards {
            cache: ShardCache::new(&self.shard_dir),
            write: true,
        });
        let extractor = extractor(exp, &self.assets, &self.device, shards);
        let prompts = Prompts::for_samples(samples, &self.assets.text, &self.reporter)?;
        let label = format!("features {}", cx.job.train);
        let mut progress = self.reporter.stage(&label, "images", samples.len() as u64);
        let set = TrainSet::build(samples, plan.store, &extractor, prompts, &mut progress)?;
        progress.finish();
        log_skipped(cx.run, &set.skipped)?;
        let t = phase_end(&mut self.provenance, &self.assets, "extract", t);
        let spec = TrainSpec {
            method: &self.method,
            optim: &exp.optim,
            train: &exp.train,
            init_seed: exp.model.init_seed,
            seed: cx.job.seed,
            init: exp.train.init.as_deref(),
            label: cx.job.train_key(),
            reporter: self.reporter,
        };
        train::train(&spec, &set, training, &self.device)?;
        phase_end(&mut self.provenance, &self.assets, "train", t);
        Ok(())
    }

    /// One streamed pass of every planned checkpoint over the target; the records of the
    /// untrained, every trained, the best and the final epoch; the reported checkpoint's
    /// routing weights and overlay maps.
    fn evaluate(&mut self, plan: &JobPlan, samples: Vec<Sample>) -> Result<Evaluated, EngineError> {
        let (cx, exp) = (self.cx, self.cx.exp);
        let t = phase_start(&self.assets);
        let target = TargetSet {
            prompts: Prompts::for_samples(&samples, &self.assets.text, &self.reporter)?,
            samples,
        };
        let models = plan
            .checkpoints
            .iter()
            .map(|&e| checkpoints::load_adapters(&cx.training.epoch(e), &self.device))
            .collect::<Result<Vec<_>, _>>()?;
        let opts = EvalOptions::of(exp);
        // Shards written by a training on this set or by another job evaluating it are read
        // back (exact in f32); written when other jobs of the sweep evaluate this target too.
        let shards = (plan.target_from_shards || plan.write_target_shards).then(|| Shards {
            cache: ShardCache::new(&self.shard_dir),
            write: plan.write_target_shards,
        });
        let extractor = self.extractor(shards);
        let label = format!("eval {} x{} checkpoints", cx.job.target, models.len());
        let mut progress = self
            .reporter
            .stage(&label, "images", target.samples.len() as u64);
        let spill = Spill {
            dir: &cx.run.path,
            budget: plan.data_budget,
        };
        let (evals, skipped) =
            evaluate(&target, &extractor, &models, &opts, &spill, &mut progress)?;
        progress.finish();
        log_skipped(cx.run, &skipped)?;
        let out = select(
            exp,
            plan,
            evals,
            opts.bootstrap.as_ref(),
            &target,
            cx.job.variant.dual(),
        )?;
        if let Some(rows) = &out.1 {
            cx.run.write_routing(rows)?;
        }
        let reported = &models[out.2];
        write_overlays(
            cx.run,
            reported,
            &target,
            &extractor,
            exp.eval.maps_per_category,
        )?;
        phase_end(&mut self.provenance, &self.assets, "eval", t);
        Ok(out.0)
    }

    /// The run's record.
    fn record(self, ev: Evaluated) -> Result<RunMetrics, EngineError> {
        let (cx, exp) = (self.cx, self.cx.exp);
        let epochs: Vec<EpochFile> = (0..=exp.train.epochs)
            .map(|e| checkpoints::read_epoch(&cx.training.epoch(e)))
            .collect::<Result<_, _>>()?;
        let records: Vec<EpochRecord> = epochs
            .iter()
            .enumerate()
            .skip(1)
            .map(|(e, file)| EpochRecord {
                epoch: e,
                loss: loss_record(&file.summary),
                mean: ev.all.iter().find(|x| x.epoch == e).map(|x| x.mean.clone()),
                seconds: file.seconds,
            })
            .collect();
        let target_domain = self
            .assets
            .registry
            .get(&cx.job.target)
            .map(|s| s.domain.to_string())
            .unwrap_or_default();
        // Derived from the configuration: no need to read a checkpoint back to count them.
        let trainable = key_table(&self.method).numel() as u64;
        Ok(RunMetrics {
            schema_version: SCHEMA_VERSION,
            experiment: exp.name.clone(),
            job: cx.job.clone(),
            target_domain,
            selection: exp.eval.selection,
            final_epoch: ev.final_epoch,
            best_epoch: ev.best,
            untrained: ev.untrained,
            epochs: records,
            routing: ev.routing.as_deref().map(outcome::routing_summary),
            provenance: self.provenance,
            trainable_parameters: Some(trainable),
        })
    }
}

/// The records of the evaluated checkpoints (`plan.checkpoints`, in order), the epoch the run
/// reports (`eval.selection`), its per-image routing weights (dual variants) and the index of
/// its model among the evaluated ones.
fn select(
    exp: &Experiment,
    plan: &JobPlan,
    evals: Vec<SetEvaluation>,
    spec: Option<&crate::metrics::BootstrapSpec>,
    target: &TargetSet,
    dual: bool,
) -> Result<(Evaluated, Option<Vec<RoutingRow>>, usize), EngineError> {
    let mut evaluated: Vec<(usize, SetEvaluation)> =
        plan.checkpoints.iter().copied().zip(evals).collect();
    let as_record = |label: &str, (e, ev): &(usize, SetEvaluation)| ev.record(*e, label, spec);
    let untrained = (evaluated.first().map(|x| x.0) == Some(0))
        .then(|| evaluated.remove(0))
        .map(|x| as_record(UNTRAINED_SELECTION, &x))
        .transpose()?;
    let all: Vec<Evaluation> = evaluated
        .iter()
        .map(|x| as_record(REFERENCE_SELECTION, x))
        .collect::<Result<_, _>>()?;
    let best = outcome::best_by_pixel_auroc(&all)
        .cloned()
        .unwrap_or_else(|| all[all.len() - 1].clone());
    let last = evaluated.last().expect("at least the final epoch");
    let final_epoch = as_record(FINAL_SELECTION, last)?;
    let reported_epoch = match exp.eval.selection {
        EpochSelection::ReferenceBest => best.epoch,
        EpochSelection::Final => final_epoch.epoch,
    };
    let index = evaluated
        .iter()
        .position(|(e, _)| *e == reported_epoch)
        .expect("reported epoch evaluated");
    // Routing weights of the reported checkpoint, per image (Table 4 and the histograms).
    let routing = dual.then(|| {
        evaluated[index]
            .1
            .images
            .iter()
            .map(|p| RoutingRow {
                category: target.samples[p.index].category.clone(),
                image: target.samples[p.index].image_rel.clone(),
                label: p.label,
                w_normal: p.w_normal as f64,
                w_anomaly: p.w_anomaly as f64,
            })
            .collect::<Vec<_>>()
    });
    let model_index = index + usize::from(untrained.is_some());
    let out = Evaluated {
        untrained,
        all,
        best,
        final_epoch,
        routing: routing.clone(),
    };
    Ok((out, routing, model_index))
}

/// An extractor over the job's backbone (`assets`), taps and size.
pub(super) fn extractor<'b>(
    exp: &Experiment,
    assets: &'b Assets,
    device: &Device,
    shards: Option<Shards>,
) -> Extractor<'b> {
    Extractor {
        assets,
        taps: exp.backbone.taps.clone(),
        size: exp.data.image_size,
        dtype: exp.cache.dtype,
        batch_size: exp.train.extract_batch_size,
        skip_bad: exp.data.skip_bad,
        shards,
        device: device.clone(),
    }
}

/// Starts timing a phase: its clock and the backbone count at its start.
fn phase_start(assets: &Assets) -> (Instant, u64) {
    reset_peak_rss();
    (Instant::now(), backbone_images(assets))
}

/// Records a phase's time, peak memory and backbone passes; returns the next phase's start.
fn phase_end(
    p: &mut Provenance,
    assets: &Assets,
    phase: &str,
    (t, passes): (Instant, u64),
) -> (Instant, u64) {
    p.timings.insert(phase.into(), t.elapsed().as_secs_f64());
    p.peak_rss.extend(peak_rss().map(|b| (phase.into(), b)));
    let now = backbone_images(assets);
    p.backbone_images
        .insert(phase.into(), now.saturating_sub(passes));
    phase_start(assets)
}

/// Waiting for another process's lock on `training`, said once.
fn say_waiting(what: &str, training: &TrainDir) {
    progress::say(&format!(
        "waiting for training {} ({what} it)",
        training.path.display()
    ));
}

/// Images through the backbone so far in this process.
fn backbone_images(assets: &Assets) -> u64 {
    assets
        .backbone_images
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn store_name(store: crate::experiment::TrainStore) -> &'static str {
    match store {
        crate::experiment::TrainStore::Memory => "memory",
        crate::experiment::TrainStore::Disk => "disk",
        crate::experiment::TrainStore::Recompute => "recompute",
        crate::experiment::TrainStore::Auto => "auto",
    }
}

/// A milestone: on stderr and in the run's log.
fn say(run: &RunDir, line: &str) -> Result<(), EngineError> {
    progress::say(line);
    Ok(run.log_line(line)?)
}

fn loss_record(summary: &EpochSummary) -> LossRecord {
    let n = summary.step_losses.len().max(1) as f64;
    let mean = |f: fn(&crate::model::LossValues) -> f32| {
        summary.step_losses.iter().map(|l| f(l) as f64).sum::<f64>() / n
    };
    LossRecord {
        total: mean(|l| l.total),
        aware: mean(|l| l.aware),
        seg: mean(|l| l.seg),
        global: mean(|l| l.global),
        route: mean(|l| l.route),
    }
}
