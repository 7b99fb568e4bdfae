//! One job end to end: the training set's features, the (shared, resumable) training, one
//! streamed pass of every checkpoint over the target, and the [`RunMetrics`] record.
//!
//! Jobs with the same training key (variant, training set, seed) share one training directory:
//! Table 1's eight VisA-trained targets train once, and a job whose training is complete reads
//! no training image at all. Each epoch's checkpoint is written atomically and marked complete
//! last, so a killed run resumes from the last complete epoch with the exact optimizer state and
//! the same shuffling, and ends with the same numbers as an uninterrupted one.

use std::path::Path;
use std::time::Instant;

use super::EngineError;
use super::assets::{AssetSpec, Assets, shared_assets};
use super::budget::{Budget, peak_rss, reset_peak_rss};
use super::cache::ShardCache;
use super::checkpoints::{self, EpochFile, EpochSummary};
use super::evaluate::{EvalOptions, SetEvaluation, Spill, TargetSet, evaluate};
use super::extract::{Extractor, Shards};
use super::identity::{JobIdentity, list, sample_list_hash};
use super::inference::Prompts;
use super::outcome;
use super::overlays::write_overlays;
use super::progress::Reporter;
use super::store::{TrainSet, choose_store, memory_per_image};
use super::train::{self, TrainSpec};
use crate::data::{Sample, SkippedFile};
use crate::experiment::record::{
    EpochRecord, Evaluation, FINAL_SELECTION, LossRecord, REFERENCE_SELECTION, RoutingRow,
    SCHEMA_VERSION, UNTRAINED_SELECTION,
};
use crate::experiment::{
    EpochSelection, Experiment, Job, Provenance, RunDir, RunMetrics, TrainDir, WorkDir,
};
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
    /// Other trainings of the sweep read the same training features (seeds, variants with the
    /// same taps): `cache.train: auto` then keeps them on disk, extracted once for all.
    pub shared_features: bool,
    /// No progress bars (log lines only).
    pub quiet: bool,
}

/// The samples of `key`, checked against the digest the job's identity recorded before any
/// work: a dataset that changed since then is an error, not a silently different result.
fn list_checked(
    assets: &Assets,
    exp: &Experiment,
    key: &str,
    recorded: Option<&str>,
) -> Result<(Vec<Sample>, Vec<SkippedFile>), EngineError> {
    let (samples, skipped) = list(&assets.registry, exp, key)?;
    let now = sample_list_hash(&samples);
    if let Some(before) = recorded.filter(|b| *b != now) {
        return Err(EngineError::Config {
            what: format!("dataset {key}"),
            message: format!(
                "its image list changed while the sweep ran (digest {before} -> {now}); run the sweep again"
            ),
        });
    }
    Ok((samples, skipped))
}

fn log_skipped(run: &RunDir, skipped: &[SkippedFile]) -> Result<(), EngineError> {
    for s in skipped {
        run.log_line(&format!("skipped {}: {}", s.path.display(), s.reason))?;
    }
    Ok(())
}

/// Trains and evaluates one job (see the module docs).
pub fn run_job(cx: &JobContext) -> Result<RunMetrics, EngineError> {
    let (job, exp, run) = (cx.job, cx.exp, cx.run);
    let started = Instant::now();
    let mut provenance = Provenance::capture(exp, job);
    let device = crate::device::select(exp.device)?;
    provenance.device =
        crate::device::adapter_name(&device).unwrap_or_else(|| format!("{device:?}"));
    say(run, &format!("loading assets ({})", exp.profile))?;
    let assets = shared_assets(&AssetSpec::of(exp), cx.repo_root, &device)?;
    let size = exp.data.image_size;
    assets
        .backbone
        .check_input([1, 3, size, size], &exp.backbone.taps)
        .map_err(|message| EngineError::Config {
            what: "backbone.taps / data.image_size".into(),
            message,
        })?;
    provenance.kernels = assets.backbone.kernels_name(&device).into();
    provenance.embedded = assets.embedded;
    provenance
        .weights
        .insert("backbone".into(), assets.backbone_id.clone());
    provenance
        .weights
        .insert("text".into(), assets.text_id.clone());
    let reporter = Reporter {
        quiet: cx.quiet,
        interval: exp.train.log_interval(),
    };
    let budget = Budget::resolve(exp.cache.memory_budget);
    provenance.memory_budget = budget.bytes;
    say(run, &budget.describe())?;
    let shard_dir = cx.repo_root.join(&exp.cache.dir);
    // Temporaries of shard writers killed earlier; an hour is far longer than any shard write,
    // so a process writing now is never disturbed.
    crate::io::sweep_temps(&shard_dir, std::time::Duration::from_secs(3600)).map_err(|source| {
        EngineError::Io {
            path: shard_dir.clone(),
            source,
        }
    })?;
    let extractor = |batch_size: usize, shards: Option<Shards>| Extractor {
        assets: &assets,
        taps: exp.backbone.taps.clone(),
        size,
        dtype: exp.cache.dtype,
        batch_size,
        skip_bad: exp.data.skip_bad,
        shards,
        device: device.clone(),
    };

    // Training (shared by every job of the same training key; skipped when complete).
    let (train_samples, listing_skipped) = list_checked(
        &assets,
        exp,
        &job.train,
        cx.identity.samples("samples.train"),
    )?;
    log_skipped(run, &listing_skipped)?;
    provenance
        .samples
        .insert("train".into(), sample_list_hash(&train_samples));
    let dim = assets.backbone.config.hidden_size;
    let train_ex = extractor(exp.train.extract_batch_size, None);
    let store = choose_store(
        exp.cache.train,
        train_samples.len(),
        memory_per_image(&train_ex),
        budget.bytes,
        cx.shared_features,
    );
    let train_ex = Extractor {
        shards: (store == crate::experiment::TrainStore::Disk).then(|| Shards {
            cache: ShardCache::new(&shard_dir),
            write: true,
        }),
        ..train_ex
    };
    let text_dim = assets.text.model().config().projection_dim;
    let method = job.method_config(exp, dim, text_dim);
    {
        let training = cx.training;
        let _lock = training.lock(|| {
            eprintln!(
                "waiting for training {} (another process is running it)",
                training.path.display()
            )
        })?;
        training.prepare(&cx.identity.training, cx.force)?;
        if train::is_complete(training, exp.train.epochs) {
            provenance.feature_store = "none (training complete)".into();
        } else {
            provenance.feature_store = store_name(store).into();
            say(
                run,
                &format!(
                    "training features of {} ({} images) kept: {}",
                    job.train,
                    train_samples.len(),
                    store_name(store)
                ),
            )?;
            let t = Instant::now();
            reset_peak_rss();
            let passes = backbone_images(&assets);
            let prompts = Prompts::for_samples(&train_samples, &assets.text, &reporter)?;
            let mut progress = reporter.stage(
                &format!("features {}", job.train),
                "images",
                train_samples.len() as u64,
            );
            let set = TrainSet::build(&train_samples, store, &train_ex, prompts, &mut progress)?;
            progress.finish();
            log_skipped(run, &set.skipped)?;
            provenance
                .timings
                .insert("extract".into(), t.elapsed().as_secs_f64());
            provenance
                .peak_rss
                .extend(peak_rss().map(|b| ("extract".into(), b)));
            let passes = record_passes(&mut provenance, "extract", &assets, passes);
            let t = Instant::now();
            reset_peak_rss();
            let spec = TrainSpec {
                method: &method,
                optim: &exp.optim,
                train: &exp.train,
                init_seed: exp.model.init_seed,
                seed: job.seed,
                label: job.train_key(),
                reporter,
            };
            train::train(&spec, &set, training, &device)?;
            provenance
                .timings
                .insert("train".into(), t.elapsed().as_secs_f64());
            provenance
                .peak_rss
                .extend(peak_rss().map(|b| ("train".into(), b)));
            record_passes(&mut provenance, "train", &assets, passes);
        }
    }
    // Read the training's checkpoints under its shared lock: a `--force` of another session
    // waits until this evaluation is done before it moves the training aside.
    let _reading = cx.training.lock_shared(|| {
        eprintln!(
            "waiting for training {} (another process holds it)",
            cx.training.path.display()
        )
    })?;
    let epochs: Vec<EpochFile> = (0..=exp.train.epochs)
        .map(|e| checkpoints::read_epoch(&cx.training.epoch(e)))
        .collect::<Result<_, _>>()?;

    // One streamed pass of every checkpoint to evaluate over the target.
    let t = Instant::now();
    reset_peak_rss();
    let passes = backbone_images(&assets);
    let (target_samples, listing_skipped) = list_checked(
        &assets,
        exp,
        &job.target,
        cx.identity.samples("samples.target"),
    )?;
    log_skipped(run, &listing_skipped)?;
    provenance
        .samples
        .insert("target".into(), sample_list_hash(&target_samples));
    let target = TargetSet {
        prompts: Prompts::for_samples(&target_samples, &assets.text, &reporter)?,
        samples: target_samples,
    };
    let last = exp.train.epochs;
    let mut to_eval: Vec<usize> = if exp.eval.every_epoch {
        (1..=last).collect()
    } else {
        vec![last]
    };
    if exp.eval.untrained_baseline {
        to_eval.insert(0, 0);
    }
    let models = to_eval
        .iter()
        .map(|&e| checkpoints::load_adapters(&cx.training.epoch(e), &device))
        .collect::<Result<Vec<_>, _>>()?;
    let eval_opts = EvalOptions {
        batch_size: exp.eval.batch_size,
        protocol: exp.protocol,
        aupro: exp.eval.aupro.then_some(exp.eval.aupro_fpr_limit),
        bootstrap: bootstrap_spec(exp),
    };
    // Shards written by a training on this set are read back (exact in f32); none are written.
    let eval_ex = extractor(
        exp.train.extract_batch_size,
        shard_dir.is_dir().then(|| Shards {
            cache: ShardCache::new(&shard_dir),
            write: false,
        }),
    );
    let mut progress = reporter.stage(
        &format!("eval {} x{} checkpoints", job.target, models.len()),
        "images",
        target.samples.len() as u64,
    );
    let spill = Spill {
        dir: &run.path,
        budget: budget.bytes,
    };
    let (evals, skipped) = evaluate(
        &target,
        &eval_ex,
        &models,
        &eval_opts,
        &spill,
        &mut progress,
    )?;
    progress.finish();
    log_skipped(run, &skipped)?;
    let mut evaluated: Vec<(usize, SetEvaluation)> = to_eval.into_iter().zip(evals).collect();
    let spec = eval_opts.bootstrap.as_ref();
    let as_record = |label: &str, (e, ev): &(usize, SetEvaluation)| ev.record(*e, label, spec);
    let untrained = (exp.eval.untrained_baseline)
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
    let final_epoch = as_record(
        FINAL_SELECTION,
        evaluated.last().expect("at least the final epoch"),
    )?;
    let reported_epoch = match exp.eval.selection {
        EpochSelection::ReferenceBest => best.epoch,
        EpochSelection::Final => final_epoch.epoch,
    };
    let reported_index = evaluated
        .iter()
        .position(|(e, _)| *e == reported_epoch)
        .expect("reported epoch evaluated");
    let reported = &evaluated[reported_index].1;

    // Routing weights of the reported checkpoint, per image (Table 4 and the histograms).
    let routing = job.variant.dual().then(|| {
        reported
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
    if let Some(rows) = &routing {
        run.write_routing(rows)?;
    }
    let reported_model = &models[reported_index + usize::from(untrained.is_some())];
    write_overlays(
        run,
        reported_model,
        &target,
        &eval_ex,
        exp.eval.maps_per_category,
    )?;
    provenance
        .timings
        .insert("eval".into(), t.elapsed().as_secs_f64());
    provenance
        .peak_rss
        .extend(peak_rss().map(|b| ("eval".into(), b)));
    record_passes(&mut provenance, "eval", &assets, passes);
    provenance
        .timings
        .insert("total".into(), started.elapsed().as_secs_f64());

    let records: Vec<EpochRecord> = epochs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(e, file)| EpochRecord {
            epoch: e,
            loss: loss_record(&file.summary),
            mean: all.iter().find(|x| x.epoch == e).map(|x| x.mean.clone()),
            seconds: file.seconds,
        })
        .collect();
    let target_domain = assets
        .registry
        .get(&job.target)
        .map(|s| s.domain.to_string())
        .unwrap_or_default();
    // Derived from the configuration: no need to read a checkpoint back to count parameters.
    let trainable = key_table(&method).numel() as u64;
    Ok(RunMetrics {
        schema_version: SCHEMA_VERSION,
        experiment: exp.name.clone(),
        job: job.clone(),
        target_domain,
        selection: exp.eval.selection,
        final_epoch,
        best_epoch: best,
        untrained,
        epochs: records,
        routing: routing.as_deref().map(outcome::routing_summary),
        provenance,
        trainable_parameters: Some(trainable),
    })
}

/// Images through the backbone so far in this process.
fn backbone_images(assets: &Assets) -> u64 {
    assets
        .backbone_images
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Records the images that went through the backbone in `phase` (since `before`); returns the
/// count now, the start of the next phase.
fn record_passes(provenance: &mut Provenance, phase: &str, assets: &Assets, before: u64) -> u64 {
    let now = backbone_images(assets);
    provenance
        .backbone_images
        .insert(phase.into(), now.saturating_sub(before));
    now
}

/// The bootstrap of `eval.bootstrap` (`None` with 0 replicates).
fn bootstrap_spec(exp: &Experiment) -> Option<crate::metrics::BootstrapSpec> {
    let b = &exp.eval.bootstrap;
    (b.replicates > 0).then_some(crate::metrics::BootstrapSpec {
        replicates: b.replicates,
        seed: b.seed,
        level: b.level,
        bins: b.bins,
    })
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
    eprintln!("{line}");
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
