//! Times each stage of a full-size job on this machine: the CPU rates [`super`] (the cost model)
//! turns FLOPs into seconds with. `ava-dino calibrate` runs the [`Protocol::quick`] protocol and
//! stores the result ([`super::calibration`]); `examples/bench_stages.rs` runs [`Protocol::thorough`], the
//! protocol of docs/scale.md.
//!
//! Rates only transfer to a real job when the shapes are the real ones, so every stage runs at
//! full size, on random weights: DINOv3 ViT-L/16 at 512 px, the CLIP ViT-L/14-336 text tower
//! over batches of [`TYPICAL_WORD`]'s prompts (rate from [`text_flops`] of the batches run), the
//! reference's adapters (D 1024, bottleneck 768, 4 taps, 32x32 patches, 512 px maps) for a
//! training step and an evaluation forward (at the engine's default micro-batch and evaluation
//! batch in the quick protocol, at batch 2 in the thorough one), and the metrics of a category
//! of 512 px maps. The quick protocol saves time in repetitions and in how many prompt batches
//! run.

use std::hint::black_box;
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::{Rates, TYPICAL_WORD, adapter_flops, text_flops};
use crate::backbone::{Backbone, Spec};
use crate::data::synth::{Counts, Resolution, SynthOptions, write_registry};
use crate::data::{Registry, load_image};
use crate::engine::EngineError;
use crate::engine::checkpoints::{self, EpochFile};
use crate::experiment::CheckpointDir;
use crate::experiment::schema::{EvalConfig, TrainConfig};
use crate::image::Normalize;
use crate::model::{AvaDino, Batch, MethodConfig, OptimConfig, Trainer};
use crate::text::prompts::{anomaly_sentences, ensemble, normal_sentences, run_shapes};
use crate::text::{ClipText, ClipTextConfig, Tokenizer};

/// The stages timed, in the order [`Stage::ALL`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Backbone,
    Text,
    Train,
    Eval,
    Metrics,
    Checkpoint,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Decode,
        Stage::Backbone,
        Stage::Text,
        Stage::Train,
        Stage::Eval,
        Stage::Metrics,
        Stage::Checkpoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Backbone => "backbone",
            Stage::Text => "text",
            Stage::Train => "train",
            Stage::Eval => "eval",
            Stage::Metrics => "metrics",
            Stage::Checkpoint => "checkpoint",
        }
    }

    /// The stage called `name` ([`Stage::name`]).
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How much of each stage is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Timed repetitions of the stages that take a second or less (a training step, an
    /// evaluation forward; decoding and metrics, which take milliseconds, run at least 5). Every
    /// stage runs once untimed first; the median of the timed runs is kept.
    pub reps: usize,
    /// Timed repetitions of the stages that take seconds: the backbone and the text tower.
    pub heavy_reps: usize,
    /// Batches of [`TYPICAL_WORD`]'s prompt ensemble through the text tower, in the order the
    /// ensemble runs them (4 batches of up to 128 prompts make the whole word).
    pub text_batches: usize,
    /// Images (512 px) of the category whose metrics are timed.
    pub metric_images: usize,
    /// Images per timed training step and per evaluation forward. Per-image costs depend on
    /// them (measured: a micro-batch of 8 costs more per image than a batch of 2), so the
    /// calibration times the batches the engine runs by default.
    pub train_batch: usize,
    pub eval_batch: usize,
    /// Where the checkpoint writes are timed: the disk a sweep's `--runs` lies on (a
    /// temporary directory may be memory).
    pub disk_dir: std::path::PathBuf,
}

impl Protocol {
    /// `ava-dino calibrate`: one timed backbone forward, one timed batch of 128 prompts, the
    /// median of 3 for the rest - about 30 s on 2 cores (docs/scale.md), well under 2 minutes.
    pub fn quick() -> Protocol {
        Protocol {
            reps: 3,
            heavy_reps: 1,
            text_batches: 1,
            metric_images: 8,
            train_batch: TrainConfig::default().micro_batch,
            eval_batch: EvalConfig::default().batch_size,
            disk_dir: "runs".into(),
        }
    }

    /// docs/scale.md's protocol (`examples/bench_stages.rs`): a warm-up, then the median of
    /// `reps` runs; the text tower over a whole class word; the adapter stages at batch 2, the
    /// shapes of the side-by-side with PyTorch (`scripts/bench_adapters_torch.py`).
    pub fn thorough(reps: usize) -> Protocol {
        Protocol {
            reps: reps.max(1),
            heavy_reps: reps.max(1),
            text_batches: usize::MAX,
            metric_images: 8,
            train_batch: 2,
            eval_batch: 2,
            disk_dir: "runs".into(),
        }
    }
}

/// One stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub stage: Stage,
    /// The figure [`Rates`] holds for the stage (GFLOP/s, s/Mpix or ns/pixel).
    pub value: f64,
    /// What was run and how long it took, one line per case.
    pub lines: Vec<String>,
}

impl Measurement {
    /// Writes the figure into its field of `rates`.
    pub fn apply(&self, rates: &mut Rates) {
        let field = match self.stage {
            Stage::Decode => &mut rates.decode_s_per_mpix,
            Stage::Backbone => &mut rates.backbone_gflops,
            Stage::Text => &mut rates.text_gflops,
            Stage::Train => &mut rates.train_gflops,
            Stage::Eval => &mut rates.eval_gflops,
            Stage::Metrics => &mut rates.metric_ns_per_pixel,
            Stage::Checkpoint => &mut rates.checkpoint_mb_per_s,
        };
        *field = self.value;
    }

    /// A stage measured in GFLOP/s: `gflop` of work in `seconds`, reported as `what` (what ran
    /// and its time) followed by the rate.
    fn rate(stage: Stage, gflop: f64, seconds: f64, what: String) -> Self {
        let value = gflop / seconds;
        Measurement {
            stage,
            value,
            lines: vec![format!("{what}, {value:.0} GFLOP/s")],
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `f` once untimed when `warmup`, then `reps` times; the median seconds.
fn time(
    warmup: bool,
    reps: usize,
    mut f: impl FnMut() -> Result<(), EngineError>,
) -> Result<f64, EngineError> {
    if warmup {
        f()?;
    }
    let mut v = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

/// Times `stage` on `device` under `protocol`.
pub fn measure(
    stage: Stage,
    protocol: &Protocol,
    device: &Device,
) -> Result<Measurement, EngineError> {
    match stage {
        Stage::Decode => decode(protocol),
        Stage::Backbone => backbone(protocol, device),
        Stage::Text => text(protocol, device),
        Stage::Train => train(protocol, device),
        Stage::Eval => eval(protocol, device),
        Stage::Metrics => metrics(protocol),
        Stage::Checkpoint => checkpoint(protocol, device),
    }
}

/// Decoding and resizing to 512 px of twins at their real sizes: an MVTec-AD bottle (900x900
/// PNG) and a VisA candle (1500x1000 JPEG). The rate is the slower of the two per megapixel,
/// as [`super::BUILD_CPU`] takes it.
fn decode(protocol: &Protocol) -> Result<Measurement, EngineError> {
    let dir = scratch_dir()?;
    let mut registry = Registry::embedded()?;
    registry.datasets.retain(|k, _| k == "mvtec" || k == "visa");
    for (key, cat) in [("mvtec", "bottle"), ("visa", "candle")] {
        if let Some(spec) = registry.datasets.get_mut(key) {
            spec.categories.retain(|c| c.name == cat);
        }
    }
    let opts = SynthOptions {
        seed: 0,
        counts: Counts::PerCategory(2),
        resolution: Resolution::Real,
        ..SynthOptions::default()
    };
    write_registry(&registry, dir.path(), &opts)?;
    let mut lines = Vec::new();
    let mut worst: f64 = 0.0;
    for (what, rel, mpix) in [
        ("PNG 900x900", "MVTecAD/bottle/test/good/000.png", 0.81),
        (
            "JPEG 1500x1000",
            "VisA_20220922/candle/Data/Images/Normal/0000.JPG",
            1.5,
        ),
    ] {
        let p = dir.path().join(rel);
        let s = time(true, protocol.reps.max(5), || {
            black_box(load_image(&p, 512, &Normalize::IMAGENET)?);
            Ok(())
        })?;
        lines.push(format!(
            "decode+resize {what}: {:.1} ms/image, {:.3} s/Mpix",
            s * 1e3,
            s / mpix
        ));
        worst = worst.max(s / mpix);
    }
    Ok(Measurement {
        stage: Stage::Decode,
        value: worst,
        lines,
    })
}

/// A scratch directory removed when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir() -> Result<ScratchDir, EngineError> {
    scratch_dir_in(&std::env::temp_dir())
}

impl Protocol {
    /// That the checkpoint stage can write where it is timed: a scratch folder made in
    /// `disk_dir` (created when missing) and removed again. `calibrate` asks before it measures
    /// anything, the checkpoint stage running last.
    pub fn check_disk_dir(&self) -> Result<(), EngineError> {
        scratch_dir_in(&self.disk_dir).map(drop)
    }
}

/// The name scratch folders are made from (`create_temp` hides it and adds its mark).
const SCRATCH: &str = "ava-dino-calibrate";

/// A fresh directory under `base` (created when missing), after removing the scratch folders
/// a killed calibration left there (up to an epoch's 557 MB of checkpoint each).
fn scratch_dir_in(base: &std::path::Path) -> Result<ScratchDir, EngineError> {
    let io = |source| EngineError::Io {
        path: base.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(base).map_err(io)?;
    remove_stale_scratch(base, std::time::Duration::from_secs(3600));
    let (path, _) = crate::io::atomic::create_temp(&base.join(SCRATCH)).map_err(io)?;
    // The exclusive temporary name, turned into a directory of that name.
    std::fs::remove_file(&path)
        .and_then(|()| std::fs::create_dir(&path))
        .map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(ScratchDir(path))
}

/// Removes the scratch folders in `base` older than `min_age` (a calibration runs for about a
/// minute, so an hour-old one belongs to a killed process). Best effort: what cannot be
/// removed stays for the next calibration.
fn remove_stale_scratch(base: &std::path::Path, min_age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let prefix = format!(".{SCRATCH}");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = e
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if stale && name.starts_with(&prefix) && crate::io::atomic::is_temp_name(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One forward of a random DINOv3 ViT-L/16 at 512 px through the last tap (block 23).
fn backbone(protocol: &Protocol, device: &Device) -> Result<Measurement, EngineError> {
    let spec = Spec::paper();
    let model = Backbone::random(&spec, 0, device);
    let x = Tensor::<4>::random([1, 3, 512, 512], Distribution::Normal(0.0, 1.0), device);
    let s = time(true, protocol.heavy_reps, || {
        let taps = model.forward_taps(x.clone(), &[5, 11, 17, 23]);
        black_box(taps[3].patches.clone().sum().into_scalar::<f32>());
        Ok(())
    })?;
    let gf = spec.shape().flops(512, 23) / 1e9;
    Ok(Measurement::rate(
        Stage::Backbone,
        gf,
        s,
        format!("backbone ViT-L/16 512px: {s:.2} s/image"),
    ))
}

/// The first `protocol.text_batches` batches of [`TYPICAL_WORD`]'s prompt ensemble, run as
/// [`ensemble`] runs them (normal prompts, then anomalous ones, in batches).
fn text(protocol: &Protocol, device: &Device) -> Result<Measurement, EngineError> {
    let cfg = ClipTextConfig::vitl14_336();
    let model = ClipText::random(cfg.clone(), 1, device)?;
    let tokenizer = Tokenizer::new();
    let shapes = run_shapes(&tokenizer, TYPICAL_WORD)?;
    let take = protocol.text_batches.clamp(1, shapes.len());
    // `run_shapes` lists the normal set's batches, then the anomalous set's: how many prompts
    // of each set those first `take` batches hold.
    let sets = [
        normal_sentences(TYPICAL_WORD),
        anomaly_sentences(TYPICAL_WORD),
    ];
    let (mut rows, mut set, mut filled) = ([0usize; 2], 0, 0);
    for &[r, _] in &shapes[..take] {
        if filled == sets[set].len() {
            set += 1;
            filled = 0;
        }
        rows[set] += r;
        filled += r;
    }
    let run = |n: [usize; 2]| -> Result<(), EngineError> {
        for (texts, n) in sets.iter().zip(n) {
            if n > 0 {
                black_box(ensemble(&model, &tokenizer, &texts[..n])?);
            }
        }
        Ok(())
    };
    // Warm-up on a few prompts (a whole word would double the stage's time).
    run([8.min(rows[0]), 0])?;
    let s = time(false, protocol.heavy_reps, || run(rows))?;
    let gf = text_flops(&cfg, &shapes[..take]) / 1e9;
    let prompts = rows[0] + rows[1];
    Ok(Measurement::rate(
        Stage::Text,
        gf,
        s,
        format!("text ViT-L/14-336, {prompts} of a class word's 420 prompts: {s:.1} s"),
    ))
}

/// A batch of `b` images' random features at the reference's shapes (4 taps, 1,024 patches of
/// width D, 512 px masks).
fn adapter_batch(m: &MethodConfig, b: usize, device: &Device) -> Batch {
    let (n, d, e) = (1024usize, m.dim, m.text_dim);
    Batch {
        cls: (0..4)
            .map(|_| Tensor::random([b, d], Distribution::Normal(0.0, 1.0), device))
            .collect(),
        patches: (0..4)
            .map(|_| Tensor::random([b, n, d], Distribution::Normal(0.0, 1.0), device))
            .collect(),
        grid: [32, 32],
        text: Tensor::random([b, e, 2], Distribution::Normal(0.0, 0.05), device),
        labels: Tensor::from_data(
            TensorData::new((0..b as i64).map(|i| i % 2).collect(), [b]),
            device,
        ),
        masks: Tensor::zeros([b, 512, 512], device),
    }
}

/// One training step (forward, backward, AdamW) of the reference's adapters.
fn train(protocol: &Protocol, device: &Device) -> Result<Measurement, EngineError> {
    let m = MethodConfig::default();
    let ad = device.clone().autodiff();
    let b = protocol.train_batch.max(1);
    let batch = adapter_batch(&m, b, &ad);
    let mut trainer = Trainer::new(AvaDino::new(&m, 0, &ad), OptimConfig::default(), 0);
    let s = time(true, protocol.reps, || {
        black_box(trainer.step(&batch).values());
        Ok(())
    })? / b as f64;
    let gf = 3.0 * adapter_flops(&m, 1024) / 1e9;
    Ok(Measurement::rate(
        Stage::Train,
        gf,
        s,
        format!("train step (B={b}): {s:.3} s/image"),
    ))
}

/// One evaluation forward of the reference's adapters.
fn eval(protocol: &Protocol, device: &Device) -> Result<Measurement, EngineError> {
    let m = MethodConfig::default();
    let b = protocol.eval_batch.max(1);
    let batch = adapter_batch(&m, b, device);
    let model = AvaDino::new(&m, 0, device);
    let s = time(true, protocol.reps, || {
        let out = model.forward(&batch.cls, &batch.patches, [32, 32], batch.text.clone());
        black_box(out.anomaly_map.sum().into_scalar::<f32>());
        Ok(())
    })? / b as f64;
    let gf = adapter_flops(&m, 1024) / 1e9;
    Ok(Measurement::rate(
        Stage::Eval,
        gf,
        s,
        format!("eval forward (B={b}): {s:.3} s/image/checkpoint"),
    ))
}

/// One epoch's checkpoint of the reference's adapters after a step (so that the AdamW moments
/// exist), written as a training writes it ([`checkpoints::save`]: both adapter formats and the
/// trainer state, each file `fsync`ed) under `protocol.disk_dir`; the rate in MB/s of the bytes
/// written, the median of `protocol.heavy_reps` epochs.
fn checkpoint(protocol: &Protocol, device: &Device) -> Result<Measurement, EngineError> {
    let m = MethodConfig::default();
    let ad = device.clone().autodiff();
    let mut trainer = Trainer::new(AvaDino::new(&m, 0, &ad), OptimConfig::default(), 0);
    black_box(trainer.step(&adapter_batch(&m, 1, &ad)).values());
    let dir = scratch_dir_in(&protocol.disk_dir)?;
    let (mut epoch, mut bytes) = (0, 0u64);
    let s = time(false, protocol.heavy_reps, || {
        epoch += 1;
        let ckpt = CheckpointDir {
            epoch,
            path: dir.path().join(format!("epoch_{epoch:03}")),
        };
        checkpoints::save(&ckpt, &trainer, &EpochFile::default())?;
        bytes = dir_bytes(&ckpt.path)?;
        Ok(())
    })?;
    let mb = bytes as f64 / 1e6;
    let value = mb / s;
    Ok(Measurement {
        stage: Stage::Checkpoint,
        value,
        lines: vec![format!(
            "checkpoint (one epoch, {mb:.0} MB) in {}: {s:.1} s, {value:.0} MB/s",
            protocol.disk_dir.display()
        )],
    })
}

/// The bytes of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> Result<u64, EngineError> {
    let io = |source| EngineError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(io)? {
        total += e.and_then(|e| e.metadata()).map_err(io)?.len();
    }
    Ok(total)
}

/// AUROC, AP, F1-max and AUPRO of a category of `protocol.metric_images` 512 px maps.
fn metrics(protocol: &Protocol) -> Result<Measurement, EngineError> {
    let k = protocol.metric_images.max(1);
    let px = k * 512 * 512;
    let mut rng = crate::rng::SplitMix64(3);
    let scores: Vec<f32> = (0..px)
        .map(|_| (rng.next_u64() % 100_000) as f32 / 1e5)
        .collect();
    let masks: Vec<u8> = (0..px)
        .map(|i| u8::from((i / 512) % 512 > 400 && i % 512 > 300))
        .collect();
    let s = time(true, protocol.reps.max(5), || {
        black_box(crate::metrics::pixel_metrics(&scores, &masks)?);
        black_box(crate::metrics::aupro(&scores, &masks, k, 512, 512, 0.3)?);
        Ok(())
    })?;
    let ns = s / px as f64 * 1e9;
    Ok(Measurement {
        stage: Stage::Metrics,
        value: ns,
        lines: vec![format!("metrics ({k} images at 512 px): {ns:.1} ns/pixel")],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cost::BUILD_CPU;

    #[test]
    fn stages_parse_and_fill_their_own_field() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.name()), Some(s));
            let mut r = BUILD_CPU;
            Measurement {
                stage: s,
                value: -1.0,
                lines: Vec::new(),
            }
            .apply(&mut r);
            let fields = [
                r.decode_s_per_mpix,
                r.backbone_gflops,
                r.text_gflops,
                r.train_gflops,
                r.eval_gflops,
                r.metric_ns_per_pixel,
                r.checkpoint_mb_per_s,
            ];
            // Exactly one field changed, the stage's own (ALL lists them in this order).
            let changed: Vec<usize> = (0..7).filter(|&i| fields[i] == -1.0).collect();
            assert_eq!(changed, [Stage::ALL.iter().position(|x| *x == s).unwrap()]);
        }
        assert_eq!(Stage::parse("nope"), None);
    }

    #[test]
    fn the_quick_protocol_runs_less_of_the_same_shapes() {
        let (q, t) = (Protocol::quick(), Protocol::thorough(3));
        assert!(q.heavy_reps <= t.heavy_reps && q.text_batches < t.text_batches);
        assert_eq!(q.metric_images, t.metric_images);
        // The calibration times the adapters at the engine's default batches; the benchmark at
        // the side-by-side's batch 2.
        assert_eq!((q.train_batch, q.eval_batch), (8, 16));
        assert_eq!((t.train_batch, t.eval_batch), (2, 2));
        // One batch of the typical word is its first 128 normal prompts.
        let shapes = run_shapes(&Tokenizer::new(), TYPICAL_WORD).unwrap();
        assert_eq!(shapes.len(), 4);
        assert_eq!(shapes[0][0], 128);
    }

    /// What a training's checkpoints write (the untrained one, then one epoch) is what the
    /// estimate prices, the AdamW state being the upper bound of two moments per parameter.
    #[test]
    fn checkpoint_bytes_bound_what_a_training_writes() {
        let m = MethodConfig {
            dim: 64,
            bottleneck: 32,
            text_dim: 48,
            ..MethodConfig::default()
        };
        let ad = Device::flex().autodiff();
        let mut trainer = Trainer::new(AvaDino::new(&m, 0, &ad), OptimConfig::default(), 0);
        let dir = tempfile::tempdir().unwrap();
        let mut written = 0;
        for epoch in 0..2 {
            if epoch > 0 {
                trainer.step(&adapter_batch(&m, 1, &ad));
            }
            let ckpt = CheckpointDir {
                epoch,
                path: dir.path().join(format!("epoch_{epoch:03}")),
            };
            checkpoints::save(&ckpt, &trainer, &EpochFile::default()).unwrap();
            written += dir_bytes(&ckpt.path).unwrap();
        }
        let priced = crate::engine::cost::checkpoint_bytes(&m, 1);
        let written = written as f64;
        assert!(
            written <= priced && written > 0.9 * priced,
            "written {written} B, priced {priced} B"
        );
    }

    /// A scratch folder a killed calibration left (an hour old) is removed by the next; a
    /// fresh one (another calibration running now) and other folders stay.
    #[test]
    fn a_killed_calibrations_scratch_folder_is_removed_by_the_next() {
        let base = tempfile::tempdir().unwrap();
        let old = scratch_dir_in(base.path()).unwrap();
        let old_path = old.path().to_path_buf();
        std::mem::forget(old); // as a kill -9 leaves it
        std::fs::write(old_path.join("adapters.safetensors"), b"x").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::open(&old_path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let fresh = scratch_dir_in(base.path()).unwrap();
        let fresh_path = fresh.path().to_path_buf();
        std::mem::forget(fresh);
        let other = base.path().join("paper-smoke");
        std::fs::create_dir(&other).unwrap();
        std::fs::File::open(&other)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let now = scratch_dir_in(base.path()).unwrap();
        assert!(!old_path.exists(), "the stale scratch folder stays");
        assert!(fresh_path.is_dir() && other.is_dir() && now.path().is_dir());
    }

    #[test]
    fn decoding_is_timed_on_real_size_twins() {
        // The cheapest stage runs for real: the twins it writes exist where it reads them.
        let m = measure(Stage::Decode, &Protocol::quick(), &Device::flex()).unwrap();
        assert_eq!(m.lines.len(), 2, "{:?}", m.lines);
        assert!(m.value.is_finite() && m.value > 0.0, "{m:?}");
    }
}
