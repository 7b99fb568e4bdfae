//! Where one ViT-L/16 block's time goes on the CPU kernels: each stage at full size.
//!
//! ```sh
//! cargo run --release --example bench_cpu_stages -- [--threads 2] [--reps 5]
//! ```
//!
//! Times the four products of a block (qkv, attention projection, fc1, fc2, with their fused
//! epilogues), attention (16 heads of 64 over 1,029 tokens, RoPE excluded) and one LayerNorm,
//! on synthetic data of the shapes of one 512 px image. Printed per stage: the best wall time
//! of `--reps` and the best CPU time of the process over the same runs (all threads, from
//! `/proc/self/task/*/schedstat`), each with its GFLOP/s. CPU time is what the stage costs
//! whatever else runs on the machine; wall / CPU shows how well it uses the threads.

use std::time::Instant;

use ava_dino::backbone::Isa;
use ava_dino::backbone::cpu::attention::{self, Dims};
use ava_dino::backbone::cpu::gemm::gemm;
use ava_dino::backbone::cpu::kernel::Epilogue;
use ava_dino::backbone::cpu::norm;
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Runs per stage (the best is kept: a run can only lose time to other processes).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Instruction set of the kernels: avx512, avx2 or portable (default: the fastest this CPU
    /// runs).
    #[arg(long)]
    isa: Option<String>,
}

/// Seconds of CPU this process has used, all threads (0 where schedstat is unavailable).
fn cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        * 1e-9
}

/// (best wall, best CPU) seconds of `f` over `reps` runs, after one warm-up.
fn best(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    (0..reps).fold((f64::MAX, f64::MAX), |(w, c), _| {
        let (t, c0) = (Instant::now(), cpu_seconds());
        f();
        (w.min(t.elapsed().as_secs_f64()), c.min(cpu_seconds() - c0))
    })
}

/// Deterministic values in [-0.5, 0.5).
fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32) * 1e-3 - 0.5)
        .collect()
}

fn main() {
    let a = Args::parse();
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .expect("rayon pool");
    let isa = match a.isa.as_deref() {
        None => Isa::detect(),
        Some("avx512") => Isa::Avx512,
        Some("avx2") => Isa::Avx2,
        Some("portable") => Isa::Portable,
        Some(other) => {
            eprintln!("--isa {other}: use one of avx512, avx2, portable");
            std::process::exit(2);
        }
    };
    if !Isa::available().contains(&isa) {
        eprintln!("--isa {isa:?}: this CPU cannot run it");
        std::process::exit(2);
    }
    let (m, d, f, heads) = (1029, 1024, 4096, 16);
    println!(
        "kernels {isa:?}, {} threads, M = {m} tokens; load average {}",
        a.threads,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let report = |name: &str, flop: f64, (w, c): (f64, f64)| {
        println!(
            "{name:<10} wall {:6.1} ms {:4.0} GFLOP/s | CPU {:6.1} ms {:4.0} GFLOP/s per core",
            w * 1e3,
            flop / w / 1e9,
            c * 1e3,
            flop / c / 1e9
        );
    };
    let (bias, gamma) = (values(f), values(f));
    let mut total = (0.0, 0.0);
    for (name, k, n) in [
        ("qkv", d, 3 * d),
        ("proj", d, d),
        ("fc1", d, f),
        ("fc2", f, d),
    ] {
        let (x, w) = (values(m * k), values(k * n));
        let mut out = values(m * n);
        let ep = match name {
            "qkv" => Epilogue::Bias(&bias),
            "fc1" => Epilogue::BiasGelu(&bias),
            _ => Epilogue::BiasScaleAdd {
                bias: &bias,
                gamma: &gamma,
            },
        };
        let t = best(a.reps, || gemm(isa, m, k, n, &x, k, &w, &mut out, n, ep));
        report(name, 2.0 * (m * k * n) as f64, t);
        total = (total.0 + t.0, total.1 + t.1);
    }
    let dims = Dims {
        b: 1,
        n: m,
        heads,
        head_dim: d / heads,
        prefix: 5,
    };
    let qkv = values(m * 3 * d);
    let mut out = vec![0f32; m * d];
    let t = best(a.reps, || attention::attention(isa, &qkv, dims, &mut out));
    report("attention", 4.0 * (m * m * d) as f64, t);
    total = (total.0 + t.0, total.1 + t.1);
    let x = values(m * d);
    let mut out = vec![0f32; m * d];
    let t = best(a.reps, || {
        norm::layer_norm(&x, d, &gamma[..d], Some(&bias[..d]), 1e-5, &mut out)
    });
    report("layernorm", 0.0, t);
    total = (total.0 + 2.0 * t.0, total.1 + 2.0 * t.1);
    println!(
        "block (4 products + attention + 2 LayerNorms): wall {:.1} ms, CPU {:.1} ms; x 24 blocks = {:.2} s wall",
        total.0 * 1e3,
        total.1 * 1e3,
        24.0 * total.0
    );
}
