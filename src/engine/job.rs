//! One job end to end: frozen features, the (shared, resumable) training, the evaluation of every
//! epoch's checkpoint on the target, and the [`RunMetrics`] record.
//!
//! Jobs with the same training key (variant, training set, seed) share one training under
//! `<experiment>/_train/<key>/`: Table 1's eight VisA-trained targets train once. Each epoch's
//! checkpoint is written atomically and marked complete last, so a killed run resumes from the
//! last complete epoch with the exact optimizer state and the same shuffling, and ends with the
//! same numbers as an uninterrupted one.

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;

use super::assets::{Assets, shared_assets};
use super::evaluate::{EvalOptions, SetEvaluation, evaluate, predict};
use super::extract::{DatasetFeatures, dataset_features};
use super::progress::Progress;
use super::train::{EpochSummary, epoch_order, run_epoch, steps_per_epoch};
use super::{EngineError, RunOptions};
use crate::experiment::record::{
    EpochRecord, Evaluation, FINAL_SELECTION, LossRecord, Provenance, REFERENCE_SELECTION,
    RoutingRow, RoutingSummary, RunMetrics, SCHEMA_VERSION, UNTRAINED_SELECTION,
};
use crate::experiment::schema::{EpochSelection, Experiment, Variant as JobVariant};
use crate::experiment::{Job, RunDir, sweep};
use crate::io::{HostTensor, write_atomic};
use crate::model::checkpoint::expected_shapes;
use crate::model::{AvaDino, LossWeights, MethodConfig, OptimConfig, Trainer, Variant};

/// The method variant a sweep variant trains (taps and loss weights come from `Variant::apply`).
fn method_variant(v: JobVariant) -> Variant {
    match v {
        JobVariant::Full | JobVariant::LastLayer => Variant::Full,
        JobVariant::SingleAdapter => Variant::SingleAdapter,
        JobVariant::LearnableRouting => Variant::LearnableRouting,
        JobVariant::TextRoutingNoLroute => Variant::NoRouteLoss,
    }
}

/// The method configuration of `exp` (already specialised to the job's variant).
pub fn method_config(exp: &Experiment, job: &Job, dim: usize, text_dim: usize) -> MethodConfig {
    MethodConfig {
        dim,
        bottleneck: exp.model.bottleneck,
        text_dim,
        taps: exp.backbone.taps.clone(),
        tau: exp.model.tau,
        map_size: exp.data.image_size,
        variant: method_variant(job.variant),
        protocol: exp.protocol,
        loss_weights: LossWeights {
            aware: exp.loss.aware,
            seg: exp.loss.seg,
            global: exp.loss.global,
            route: exp.loss.route,
        },
    }
}

/// Files of one epoch's checkpoint directory.
const ADAPTERS: &str = "adapters.safetensors";
const MODEL_STATE: &str = "trainer_model.bpk";
const OPTIM_STATE: &str = "trainer_optim.bpk";
const EPOCH_JSON: &str = "epoch.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct EpochFile {
    summary: EpochSummary,
    seconds: f64,
    steps_done: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn save_epoch(
    rd: &RunDir,
    epoch: usize,
    trainer: &Trainer,
    file: &EpochFile,
) -> Result<(), EngineError> {
    let dir = rd.checkpoint_dir(epoch);
    trainer.model.save(&dir.join(ADAPTERS))?;
    if epoch > 0
        && matches!(
            trainer.model.config.variant,
            Variant::Full | Variant::NoRouteLoss
        )
    {
        // The reference's own format (its `epoch_N.pth` counts from 0): its test.py can read it.
        // The ablations that change the module structure have no place in that format.
        trainer.model.save_reference_pth(
            &dir.join(format!("epoch_{}.pth", epoch - 1)),
            (epoch - 1) as i64,
        )?;
    }
    let (model, optim) = trainer.state_bytes()?;
    for (name, bytes) in [(MODEL_STATE, model), (OPTIM_STATE, optim)] {
        let p = dir.join(name);
        write_atomic(&p, &bytes).map_err(io_err(&p))?;
    }
    let p = dir.join(EPOCH_JSON);
    write_atomic(
        &p,
        &serde_json::to_vec_pretty(file).expect("epoch file serializes"),
    )
    .map_err(io_err(&p))?;
    rd.mark_checkpoint_complete(epoch)?;
    Ok(())
}

fn read_epoch(rd: &RunDir, epoch: usize) -> Result<EpochFile, EngineError> {
    let p = rd.checkpoint_dir(epoch).join(EPOCH_JSON);
    let text = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&text).map_err(|e| EngineError::Asset {
        what: p.display().to_string(),
        message: e.to_string(),
    })
}

/// Trains (or resumes, or reuses) the adapters of `job` and returns the epoch files 0..=epochs.
fn train_shared(
    exp: &Experiment,
    job: &Job,
    cfg: &MethodConfig,
    data: &DatasetFeatures,
    rd: &RunDir,
    device: &Device,
    opts: &RunOptions,
) -> Result<Vec<EpochFile>, EngineError> {
    rd.prepare(&sweep::train_yaml(exp, job), &[])?;
    let n = data.labels.len();
    let steps = steps_per_epoch(n, exp.train.batch_size);
    let total = steps * exp.train.epochs;
    let optim = OptimConfig {
        lr: exp.optim.lr,
        betas: exp.optim.betas,
        eps: exp.optim.eps,
        weight_decay: exp.optim.weight_decay,
        warmup_steps: (exp.optim.warmup * total as f64) as usize,
    };
    let ad = device.clone().autodiff();
    let latest = rd.latest_complete_checkpoint().map(|(e, _)| e);
    let mut trainer = match latest {
        None => {
            ad.seed(exp.model.init_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ job.seed);
            let trainer = Trainer::new(AvaDino::try_new(cfg, &ad)?, optim.clone());
            let file = EpochFile {
                summary: EpochSummary::default(),
                seconds: 0.0,
                steps_done: 0,
            };
            save_epoch(rd, 0, &trainer, &file)?;
            trainer
        }
        Some(k) => {
            let dir = rd.checkpoint_dir(k);
            let read = |name: &str| {
                let p = dir.join(name);
                std::fs::read(&p).map_err(io_err(&p))
            };
            let file = read_epoch(rd, k)?;
            let template = AvaDino::try_new(cfg, &ad)?;
            if k < exp.train.epochs {
                let _ = rd.log_line(&format!(
                    "resuming training after epoch {k} of {}",
                    exp.train.epochs
                ));
            }
            Trainer::resume(
                template,
                optim.clone(),
                read(MODEL_STATE)?,
                read(OPTIM_STATE)?,
                file.steps_done,
            )?
        }
    };
    let start = latest.unwrap_or(0) + 1;
    if start <= exp.train.epochs {
        let _ = rd.log_line(&format!(
            "{} | {steps} steps/epoch, warmup {} steps",
            trainer.model.describe(),
            optim.warmup_steps
        ));
        let mut progress = Progress::new(
            &format!("train {}", job.train_key()),
            ((exp.train.epochs + 1 - start) * steps) as u64,
            opts.quiet,
            exp.train.log_every as u64,
        );
        for epoch in start..=exp.train.epochs {
            let t = Instant::now();
            let order: Vec<usize> = if exp.train.shuffle {
                epoch_order(n, job.seed, epoch - 1)
            } else {
                (0..n).collect()
            };
            let set = data.set();
            let summary = run_epoch(
                &mut trainer,
                &set,
                epoch,
                &order,
                exp.train.batch_size,
                &ad,
                &mut |_, l| progress.inc(1, &format!("epoch {epoch} loss {:.4}", l.total)),
            );
            let file = EpochFile {
                summary,
                seconds: t.elapsed().as_secs_f64(),
                steps_done: trainer.steps_done(),
            };
            save_epoch(rd, epoch, &trainer, &file)?;
        }
        progress.finish();
    }
    (0..=exp.train.epochs).map(|e| read_epoch(rd, e)).collect()
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

fn evaluate_epoch(
    rd: &RunDir,
    epoch: usize,
    data: &DatasetFeatures,
    opts: &EvalOptions,
    device: &Device,
) -> Result<SetEvaluation, EngineError> {
    let model = AvaDino::load(&rd.checkpoint_dir(epoch).join(ADAPTERS), device)?;
    Ok(evaluate(
        &model,
        &data.set(),
        &data.categories,
        opts,
        device,
    )?)
}

/// Trains and evaluates one job (see the module docs).
pub fn run_job(
    job: &Job,
    exp: &Experiment,
    run_dir: &Path,
    opts: &RunOptions,
) -> Result<RunMetrics, EngineError> {
    let started = Instant::now();
    let rd = RunDir::new(run_dir);
    let mut provenance = Provenance::capture(&opts.repo_root);
    RunMetrics::settings_from(exp, job, &mut provenance);
    let device = crate::device::select(exp.device)?;
    provenance.device = format!("{:?}", device);
    let assets: std::sync::Arc<Assets> = shared_assets(exp, &opts.repo_root, &device)?;
    provenance.embedded = assets.embedded;
    provenance
        .weights
        .insert("backbone".into(), assets.backbone_id.clone());
    provenance
        .weights
        .insert("text".into(), assets.text_id.clone());

    let t = Instant::now();
    let train = dataset_features(
        &assets,
        exp,
        &job.train,
        &opts.repo_root,
        &device,
        opts.quiet,
    )?;
    let target = dataset_features(
        &assets,
        exp,
        &job.target,
        &opts.repo_root,
        &device,
        opts.quiet,
    )?;
    provenance
        .timings
        .insert("extract".into(), t.elapsed().as_secs_f64());
    for s in train.skipped.iter().chain(&target.skipped) {
        rd.log_line(&format!("skipped {}: {}", s.path.display(), s.reason))?;
    }

    let text_dim = train.prompts.first().map_or(0, |p| p.normal.len());
    let cfg = method_config(exp, job, train.table.dim, text_dim);
    let train_rd = RunDir::new(
        run_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("_train")
            .join(job.train_key()),
    );
    let t = Instant::now();
    let epochs = train_shared(exp, job, &cfg, &train, &train_rd, &device, opts)?;
    provenance
        .timings
        .insert("train".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let eval_opts = EvalOptions {
        batch_size: exp.eval.batch_size,
        protocol: exp.protocol,
        aupro: exp.eval.aupro.then_some(exp.eval.aupro_fpr_limit),
    };
    let last = exp.train.epochs;
    let mut evaluated: Vec<(usize, SetEvaluation)> = Vec::new();
    let to_eval: Vec<usize> = if exp.eval.every_epoch {
        (1..=last).collect()
    } else {
        vec![last]
    };
    let mut progress = Progress::new(
        &format!("eval {}", job.target),
        to_eval.len() as u64 + 1,
        opts.quiet,
        1,
    );
    let untrained = if exp.eval.untrained_baseline {
        let e = evaluate_epoch(&train_rd, 0, &target, &eval_opts, &device)?;
        Some(Evaluation::new(0, UNTRAINED_SELECTION, e.categories))
    } else {
        None
    };
    progress.inc(1, "untrained");
    for &e in &to_eval {
        let ev = evaluate_epoch(&train_rd, e, &target, &eval_opts, &device)?;
        evaluated.push((e, ev));
        progress.inc(1, &format!("epoch {e}"));
    }
    progress.finish();
    let as_record = |label: &str, (e, ev): &(usize, SetEvaluation)| {
        Evaluation::new(*e, label, ev.categories.clone())
    };
    let all: Vec<Evaluation> = evaluated
        .iter()
        .map(|x| as_record(REFERENCE_SELECTION, x))
        .collect();
    let best = RunMetrics::best_by_pixel_auroc(&all)
        .cloned()
        .unwrap_or_else(|| all[all.len() - 1].clone());
    let final_epoch = as_record(
        FINAL_SELECTION,
        evaluated.last().expect("at least the final epoch"),
    );
    let reported_epoch = match exp.eval.selection {
        EpochSelection::ReferenceBest => best.epoch,
        EpochSelection::Final => final_epoch.epoch,
    };
    let reported = &evaluated
        .iter()
        .find(|(e, _)| *e == reported_epoch)
        .expect("reported epoch evaluated")
        .1;

    // Routing weights of the reported checkpoint, per image (Table 4 and the histograms).
    let routing = (job.variant != JobVariant::SingleAdapter).then(|| {
        reported
            .images
            .iter()
            .map(|p| RoutingRow {
                category: target.categories[p.index].clone(),
                image: target.samples[p.index].image_rel.clone(),
                label: p.label,
                w_normal: p.w_normal as f64,
                w_anomaly: p.w_anomaly as f64,
            })
            .collect::<Vec<_>>()
    });
    if let Some(rows) = &routing {
        rd.write_routing(rows)?;
    }
    write_overlays(
        &rd,
        exp,
        &train_rd,
        reported_epoch,
        &target,
        &eval_opts,
        &device,
    )?;
    provenance
        .timings
        .insert("eval".into(), t.elapsed().as_secs_f64());
    provenance
        .timings
        .insert("total".into(), started.elapsed().as_secs_f64());

    let mut records: Vec<EpochRecord> = Vec::new();
    for (e, file) in epochs.iter().enumerate().skip(1) {
        let mean = evaluated
            .iter()
            .find(|(k, _)| *k == e)
            .map(|x| as_record("", x).mean);
        records.push(EpochRecord {
            epoch: e,
            loss: loss_record(&file.summary),
            mean,
            seconds: file.seconds,
        });
    }
    let target_domain = assets
        .registry
        .get(&job.target)
        .map(|s| s.domain.to_string())
        .unwrap_or_default();
    // Derived from the configuration: no need to read a checkpoint back to count parameters.
    let trainable: u64 = expected_shapes(&cfg)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum();
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
        routing: routing.as_deref().map(RoutingSummary::from_rows),
        provenance,
        trainable_parameters: Some(trainable),
    })
}

/// Saves `eval.maps_per_category` anomaly maps per category (anomalous images first) for the
/// overlay charts: the resized input, its ground truth and the map of the reported checkpoint.
fn write_overlays(
    rd: &RunDir,
    exp: &Experiment,
    train_rd: &RunDir,
    epoch: usize,
    data: &DatasetFeatures,
    opts: &EvalOptions,
    device: &Device,
) -> Result<(), EngineError> {
    let k = exp.eval.maps_per_category;
    if k == 0 {
        return Ok(());
    }
    let model = AvaDino::load(&train_rd.checkpoint_dir(epoch).join(ADAPTERS), device)?;
    let mut cats: Vec<&String> = data.categories.iter().collect();
    cats.sort();
    cats.dedup();
    let s = exp.data.image_size;
    for cat in cats {
        let mut idx: Vec<usize> = (0..data.labels.len())
            .filter(|&i| &data.categories[i] == cat)
            .collect();
        idx.sort_by_key(|&i| (data.labels[i] == 0, i));
        idx.truncate(k);
        let (preds, maps) = predict(&model, &data.set(), &idx, opts.batch_size, device, true);
        for (p, map) in preds.iter().zip(maps) {
            let sample = &data.samples[p.index];
            let chw = crate::data::load_image_u8(&sample.image, s)?;
            let chw = chw.as_u8().expect("u8 image");
            let hwc: Vec<u8> = (0..s * s)
                .flat_map(|i| (0..3).map(move |c| chw[c * s * s + i]))
                .collect();
            let name = Path::new(&sample.image_rel)
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            rd.write_map(
                cat,
                &format!("{:04}_{name}", p.index),
                HostTensor::u8(vec![s, s, 3], hwc),
                HostTensor::u8(vec![s, s], data.masks.get(p.index).to_vec()),
                HostTensor::f32(vec![s, s], map),
            )?;
        }
    }
    Ok(())
}
