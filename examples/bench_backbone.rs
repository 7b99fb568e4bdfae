//! Full-size backbone forward, ours vs PyTorch's, side by side on the same cores.
//!
//! ```sh
//! ava-dino random-backbone --preset vitl16 --seed 0 --out /tmp/dv3_vitl16
//! cargo run --release --example bench_backbone -- --model /tmp/dv3_vitl16 [--reps 5] [--burn]
//! ```
//!
//! Both sides load the same HF directory and one seeded 512 px pixel tensor. PyTorch runs in a
//! child process (`scripts/bench_backbone_torch.py`, transformers `DINOv3ViTModel`, eager,
//! `torch.set_num_threads(T)`), ours on a rayon pool of T threads; the runs are interleaved
//! (order alternating each round) after one warm-up each, and each side idles while the other
//! runs. Printed: every time, the median per image, ours / PyTorch, GFLOP/s against the FMA
//! peak measured here (T threads of independent 16-lane FMAs), the load average, and the
//! largest feature difference between the two outputs (same tolerance as the parity tests).
//! `--burn` also times the blocks through burn's ops (the implementation before our kernels).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ava_dino::backbone::{DinoV3, Isa, Kernels, load_backbone};
use ava_dino::io::{HostTensor, TensorFile};
use ava_dino::rng::SplitMix64;
use burn::tensor::{Device, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// HF model directory (`ava-dino random-backbone --preset vitl16`).
    #[arg(long)]
    model: PathBuf,
    /// Timed rounds (each side runs once per round).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Image side in pixels (a multiple of the patch size).
    #[arg(long, default_value_t = 512)]
    size: usize,
    #[arg(long, default_value = "5,11,17,23", value_delimiter = ',')]
    taps: Vec<usize>,
    /// Python with torch + transformers.
    #[arg(long, default_value = "/work/venv/bin/python")]
    python: PathBuf,
    /// Also time burn's ops for the blocks (the path before the CPU kernels).
    #[arg(long)]
    burn: bool,
}

/// The PyTorch child process (line protocol of `scripts/bench_backbone_torch.py`).
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    fn start(a: &Args, pixels: &Path) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_backbone_torch.py");
        let taps: Vec<String> = a.taps.iter().map(|t| t.to_string()).collect();
        let mut child = Command::new(&a.python)
            .arg(&script)
            .args(["--model".as_ref(), a.model.as_os_str()])
            .args(["--pixels".as_ref(), pixels.as_os_str()])
            .args([
                "--taps",
                &taps.join(","),
                "--threads",
                &a.threads.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{}: cannot start (set --python)", a.python.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut t = Self {
            child,
            stdin,
            stdout,
        };
        let ready = t.line()?;
        if !ready.starts_with("ready") {
            bail!("{}: expected `ready`, got `{ready}`", script.display());
        }
        eprintln!("pytorch: {ready}");
        Ok(t)
    }

    fn line(&mut self) -> Result<String> {
        let mut s = String::new();
        if self.stdout.read_line(&mut s)? == 0 {
            bail!("the PyTorch process exited (see its error above)");
        }
        Ok(s.trim().to_string())
    }

    fn ask(&mut self, cmd: &str) -> Result<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.line()
    }

    /// Seconds of one forward, as timed inside the Python process.
    fn run(&mut self) -> Result<f64> {
        let r = self.ask("run")?;
        r.strip_prefix("seconds ")
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("unexpected answer `{r}`"))
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

/// Seconds of one forward of ours (features read back to the host, as PyTorch's are there).
fn ours(model: &DinoV3, px: &Tensor<4>, taps: &[usize], k: Kernels) -> (f64, Vec<HostTensor>) {
    let t = Instant::now();
    let host = model
        .forward_taps_with(px.clone(), taps, k)
        .into_iter()
        .flat_map(|f| [f.normed, f.patches, f.cls.unsqueeze::<3>()])
        .map(HostTensor::from_tensor)
        .collect();
    (t.elapsed().as_secs_f64(), host)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Multiply-adds x 2 of one image through the blocks up to the deepest tap (+ patch embedding).
fn flops(model: &DinoV3, size: usize, last: usize) -> f64 {
    let c = &model.config;
    let hw = (size / c.patch_size).pow(2);
    let n = (c.prefix_tokens() + hw) as f64;
    let (d, f) = (c.hidden_size as f64, c.intermediate_size as f64);
    let embed = 2.0 * hw as f64 * d * (c.num_channels * c.patch_size * c.patch_size) as f64;
    let linear = 2.0 * n * d * (3.0 * d + d + 2.0 * f);
    let attention = 2.0 * 2.0 * n * n * d;
    embed + (last + 1) as f64 * (linear + attention)
}

/// FMA throughput of `threads` threads, each running 12 independent chains of 16-lane f32 FMAs
/// for ~0.3 s (AVX-512; AVX2 8-lane otherwise). Returns (GFLOP/s, lanes).
fn fma_peak(threads: usize) -> (f64, usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let per_thread: Vec<(f64, usize)> = pool.broadcast(|_| fma_loop());
    (per_thread.iter().map(|p| p.0).sum(), per_thread[0].1)
}

#[cfg(target_arch = "x86_64")]
fn fma_loop() -> (f64, usize) {
    use std::arch::x86_64::*;
    const CHAINS: usize = 12;
    const ITERS: u64 = 1 << 21;
    #[target_feature(enable = "avx512f")]
    fn zmm(iters: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        let (m, a) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }
    #[target_feature(enable = "avx2,fma")]
    fn ymm(iters: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        let (m, a) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        let mut total = 0.0;
        for v in acc {
            let mut s = [0f32; 8];
            // SAFETY: s holds 8 floats.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) };
            total += s.iter().sum::<f32>();
        }
        total
    }
    let (run, lanes): (&dyn Fn(u64) -> f32, usize) = if Isa::detect() == Isa::Avx512 {
        // SAFETY: AVX-512F present (Isa::detect).
        (&|i| unsafe { zmm(i) }, 16)
    } else if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 + FMA present.
        (&|i| unsafe { ymm(i) }, 8)
    } else {
        return (f64::NAN, 0);
    };
    std::hint::black_box(run(ITERS / 16));
    let t = Instant::now();
    std::hint::black_box(run(ITERS));
    let s = t.elapsed().as_secs_f64();
    (
        (ITERS as usize * CHAINS * lanes * 2) as f64 / s / 1e9,
        lanes,
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_loop() -> (f64, usize) {
    (f64::NAN, 0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() -> Result<()> {
    let a = Args::parse();
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .context("rayon pool")?;
    let device = Device::flex();
    let model = load_backbone(&a.model, &device).map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = &model.config;
    model
        .check_input([1, c.num_channels, a.size, a.size], &a.taps)
        .map_err(|e| anyhow::anyhow!("--size/--taps: {e}"))?;
    let last = *a.taps.iter().max().expect("checked non-empty");
    // Standard-normal pixels: the range of ImageNet-normalized images.
    let mut rng = SplitMix64(0xBE_7C4);
    let numel = c.num_channels * a.size * a.size;
    let px = HostTensor::f32(
        vec![1, c.num_channels, a.size, a.size],
        (0..numel).map(|_| rng.normal() as f32).collect(),
    );
    let dir = tempfile::tempdir()?;
    let px_path = dir.path().join("pixels.safetensors");
    let mut f = TensorFile::new(&px_path);
    f.insert("pixel_values", px.clone());
    f.write(&px_path)?;
    let px = px.to_tensor::<4>(&device);
    let mut torch = Torch::start(&a, &px_path)?;

    println!(
        "machine: {} threads of {}; load average at start {}",
        a.threads,
        cpu_name(),
        loadavg()
    );
    println!("kernels: {:?}", Isa::detect());
    // Warm-up and output check.
    let (_, ours_feats) = ours(&model, &px, &a.taps, Kernels::Auto);
    let dump = dir.path().join("torch.safetensors");
    let r = torch.ask(&format!("dump {}", dump.display()))?;
    if r != "dumped" {
        bail!("PyTorch dump: `{r}`");
    }
    let theirs = TensorFile::read(&dump)?;
    let names = a.taps.iter().flat_map(|k| {
        [
            format!("normed.{k}"),
            format!("patches.{k}"),
            format!("cls.{k}"),
        ]
    });
    // Worst max |diff| and worst relative L2 error ||ours - theirs|| / ||theirs|| over the taps.
    let (mut worst, mut worst_rel) = ((0f64, String::new()), (0f64, String::new()));
    for (name, got) in names.zip(&ours_feats) {
        let want = theirs.get(&name)?.to_f32_vec();
        let got = got.as_f32().expect("f32");
        if got.len() != want.len() {
            bail!("{name}: {} values vs PyTorch's {}", got.len(), want.len());
        }
        let (mut max, mut err2, mut ref2) = (0f64, 0f64, 0f64);
        for (g, w) in got.iter().zip(&want) {
            let d = (*g as f64 - *w as f64).abs();
            (max, err2, ref2) = (max.max(d), err2 + d * d, ref2 + (*w as f64).powi(2));
        }
        let rel = (err2 / ref2).sqrt();
        if max > worst.0 || worst.1.is_empty() {
            worst = (max, name.clone());
        }
        if rel > worst_rel.0 || worst_rel.1.is_empty() {
            worst_rel = (rel, name);
        }
    }
    println!(
        "features vs PyTorch: max |diff| {:.2e} ({}), relative L2 error {:.2e} ({}); parity \
         tolerance 1e-4 abs + 1e-5 rel",
        worst.0, worst.1, worst_rel.0, worst_rel.1
    );
    torch.run()?;
    if a.burn {
        ours(&model, &px, &a.taps, Kernels::Burn);
    }

    let settle = || std::thread::sleep(Duration::from_millis(300));
    let (mut t_ours, mut t_torch, mut t_burn) = (vec![], vec![], vec![]);
    let (mut peak, mut lanes) = fma_peak(a.threads);
    for rep in 0..a.reps {
        let mut order = vec!["ours", "torch"];
        if a.burn {
            order.push("burn");
        }
        let len = order.len();
        order.rotate_left(rep % len);
        for who in order {
            settle();
            match who {
                "ours" => t_ours.push(ours(&model, &px, &a.taps, Kernels::Auto).0),
                "torch" => t_torch.push(torch.run()?),
                _ => t_burn.push(ours(&model, &px, &a.taps, Kernels::Burn).0),
            }
        }
        let (p, _) = fma_peak(a.threads);
        peak = peak.max(p);
        eprintln!("round {}/{}: load {}", rep + 1, a.reps, loadavg());
    }

    let gflop = flops(&model, a.size, last) / 1e9;
    for _ in 0..3 {
        let (p, l) = fma_peak(a.threads);
        (peak, lanes) = (peak.max(p), l);
    }
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "model: {} blocks run of {}, {} tokens, {gflop:.1} GFLOP per image",
        last + 1,
        c.num_hidden_layers,
        c.prefix_tokens() + (a.size / c.patch_size).pow(2)
    );
    println!(
        "FMA peak measured: {peak:.0} GFLOP/s (best of {} tries: {} threads x 12 chains of {lanes}-lane FMA, 2 flop/lane)",
        a.reps + 4,
        a.threads
    );
    let row = |name: &str, v: &[f64]| {
        let m = median(v);
        println!(
            "{name:<26} median {m:.3} s  {:.0} GFLOP/s = {:.0}% of peak  [{}]",
            gflop / m,
            100.0 * gflop / m / peak,
            fmt(v)
        );
    };
    row("ours (CPU kernels)", &t_ours);
    if a.burn {
        row("ours (burn ops)", &t_burn);
    }
    row("pytorch eager", &t_torch);
    println!(
        "ours / pytorch = {:.3} (median of {} interleaved runs each); load average at end {}",
        median(&t_ours) / median(&t_torch),
        a.reps,
        loadavg()
    );
    Ok(())
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
