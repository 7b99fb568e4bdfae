//! Each stage of a full-size job, timed on this machine: the rates of `engine::cost` and
//! docs/scale.md come from here.
//!
//! `cargo run --release --example bench_stages -- [--reps N] [--only a,b]` with stages
//! `decode backbone text train eval metrics`; prints one line per stage (median of N after one
//! warm-up) and the `Rates` to paste. Shapes: DINOv3 ViT-L/16 at 512 px (random weights), the
//! CLIP ViT-L/14-336 text tower (random) over one class word's 420 prompts, the adapters of the
//! reference (D 1024, bottleneck 768, 4 taps, 32x32 patches, 512 px maps), the metrics of a
//! category of 8 images at 512 px.

use std::time::Instant;

use ava_dino::backbone::{Backbone, Spec};
use ava_dino::data::load_image;
use ava_dino::data::synth::{Counts, Resolution, SynthOptions, write_with};
use ava_dino::engine::cost::{adapter_flops, text_flops};
use ava_dino::model::{AvaDino, Batch, MethodConfig, OptimConfig, Trainer};
use ava_dino::text::prompts::run_shapes;
use ava_dino::text::{ClipText, ClipTextConfig, TextFeatureCache, Tokenizer};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `f` once to warm up, then `reps` times; the median seconds.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let reps: usize = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(3);
    let only: Vec<String> = arg("--only")
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default();
    let run = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let device = Device::flex();
    let m = MethodConfig::default();
    let mut rates: Vec<(&str, f64)> = Vec::new();
    println!(
        "bench_stages: {} threads, reps {reps}",
        rayon::current_num_threads()
    );

    if run("decode") {
        // Twins at their real sizes: MVTec-AD bottle 900x900 PNG, VisA 1500x1000 JPEG.
        let dir = tempfile::tempdir().unwrap();
        let opts = SynthOptions {
            seed: 0,
            counts: Counts::PerCategory(2),
            resolution: Resolution::Real,
            ..SynthOptions::default()
        };
        write_with(dir.path(), &opts).unwrap();
        for (what, rel, mpix) in [
            (
                "decode+resize PNG 900x900",
                "MVTecAD/bottle/test/good/000.png",
                0.81,
            ),
            (
                "decode+resize JPEG 1500x1000",
                "VisA_20220922/candle/Data/Images/Normal/0000.JPG",
                1.5,
            ),
        ] {
            let p = dir.path().join(rel);
            let s = time(reps.max(5), || {
                load_image(&p, 512, &ava_dino::image::Normalize::IMAGENET).unwrap();
            });
            println!("{what}: {:.1} ms/image, {:.3} s/Mpix", s * 1e3, s / mpix);
            rates.push(("decode_s_per_mpix", s / mpix));
        }
    }

    if run("backbone") {
        let spec = Spec::paper();
        let model = Backbone::random(&spec, 0, &device);
        let x = Tensor::<4>::random([1, 3, 512, 512], Distribution::Normal(0.0, 1.0), &device);
        let s = time(reps, || {
            let taps = model.forward_taps(x.clone(), &[5, 11, 17, 23]);
            let _ = taps[3].patches.clone().sum().into_scalar::<f32>();
        });
        let gf = spec.shape().flops(512, 23) / 1e9;
        println!(
            "backbone ViT-L/16 512px: {s:.2} s/image, {:.0} GFLOP/s",
            gf / s
        );
        rates.push(("backbone_gflops", gf / s));
    }

    if run("text") {
        let cfg = ClipTextConfig::vitl14_336();
        let model = ClipText::random(cfg.clone(), 1, &device).unwrap();
        let cache = TextFeatureCache::new(model, None);
        let mut k = 0;
        // A new word each time (the cache must not answer), all of the same token length.
        let s = time(1, || {
            k += 1;
            cache.get_or_compute(&format!("object{k}")).unwrap();
        });
        let shapes = run_shapes(&Tokenizer::new(), "object1").unwrap();
        let gf = text_flops(&cfg, &shapes) / 1e9;
        println!(
            "text ViT-L/14-336, 420 prompts: {s:.1} s/word, {:.0} GFLOP/s",
            gf / s
        );
        rates.push(("text_gflops", gf / s));
    }

    let (b, n, d, e) = (2usize, 1024usize, m.dim, m.text_dim);
    let batch = |device: &Device| Batch {
        cls: (0..4)
            .map(|_| Tensor::random([b, d], Distribution::Normal(0.0, 1.0), device))
            .collect(),
        patches: (0..4)
            .map(|_| Tensor::random([b, n, d], Distribution::Normal(0.0, 1.0), device))
            .collect(),
        grid: [32, 32],
        text: Tensor::random([b, e, 2], Distribution::Normal(0.0, 0.05), device),
        labels: Tensor::from_data(TensorData::new(vec![0i64, 1], [b]), device),
        masks: Tensor::zeros([b, 512, 512], device),
    };
    let gf = adapter_flops(&m, n) / 1e9;
    if run("train") {
        let ad = device.clone().autodiff();
        let bt = batch(&ad);
        let mut trainer = Trainer::new(AvaDino::new(&m, 0, &ad), OptimConfig::default(), 0);
        let s = time(reps, || {
            let l = trainer.step(&bt).values();
            assert!(l.total.is_finite());
        }) / b as f64;
        println!(
            "train step (B={b}): {s:.2} s/image, {:.0} GFLOP/s",
            3.0 * gf / s
        );
        rates.push(("train_gflops", 3.0 * gf / s));
    }

    if run("eval") {
        let bt = batch(&device);
        let model = AvaDino::new(&m, 0, &device);
        let s = time(reps, || {
            let out = model.forward(&bt.cls, &bt.patches, [32, 32], bt.text.clone());
            let _ = out.anomaly_map.sum().into_scalar::<f32>();
        }) / b as f64;
        println!(
            "eval forward (B={b}): {s:.2} s/image/checkpoint, {:.0} GFLOP/s",
            gf / s
        );
        rates.push(("eval_gflops", gf / s));
    }

    if run("metrics") {
        let k = 8;
        let px = k * 512 * 512;
        let mut rng = ava_dino::rng::SplitMix64(3);
        let scores: Vec<f32> = (0..px)
            .map(|_| (rng.next_u64() % 100_000) as f32 / 1e5)
            .collect();
        let masks: Vec<u8> = (0..px)
            .map(|i| u8::from((i / 512) % 512 > 400 && i % 512 > 300))
            .collect();
        let s = time(reps, || {
            ava_dino::metrics::pixel_metrics(&scores, &masks).unwrap();
            ava_dino::metrics::aupro(&scores, &masks, k, 512, 512, 0.3).unwrap();
        });
        println!(
            "metrics ({k} images at 512 px): {:.1} ns/pixel",
            s / px as f64 * 1e9
        );
        rates.push(("metric_ns_per_pixel", s / px as f64 * 1e9));
    }
    println!("rates: {rates:?}");
}
