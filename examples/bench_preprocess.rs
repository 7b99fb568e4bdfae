//! Decode + Pillow-exact resize throughput (images/s) at 1 and 2 rayon threads.
//!
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --example bench_preprocess -- [N] [SIZE]`
//! writes N synthetic 1024x1024 PNGs and N 1024x1024 JPEGs (MVTec-like) to a temp dir, then times
//! `load_image(path, SIZE)` + `load_mask` over them. Besides images/s (wall clock) it prints the
//! process CPU milliseconds per image (`/proc/self/stat`, Linux), which a busy machine disturbs
//! less.

use std::time::Instant;

use ava_dino::data::preprocess::{Normalize, load_image, load_mask};
use rayon::prelude::*;

/// User + system CPU time of this process in milliseconds (Linux; 0 elsewhere).
fn cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 2..]
        .split(' ')
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks * 10.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(24);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    let dir = tempfile::tempdir().unwrap();
    let mut pngs = Vec::new();
    let mut jpgs = Vec::new();
    for i in 0..n {
        let img = image::RgbImage::from_fn(1024, 1024, |x, y| {
            let v = ((x * 7 + y * 3 + i as u32 * 11) % 256) as u8;
            image::Rgb([v, (x % 200) as u8, ((y + x / 3) % 256) as u8])
        });
        let p = dir.path().join(format!("{i:03}.png"));
        img.save(&p).unwrap();
        pngs.push(p);
        let j = dir.path().join(format!("{i:03}.jpg"));
        img.save(&j).unwrap();
        jpgs.push(j);
    }
    let mask = dir.path().join("mask.png");
    image::GrayImage::from_fn(1024, 1024, |x, _| {
        image::Luma([if x > 500 { 255 } else { 0 }])
    })
    .save(&mask)
    .unwrap();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (name, files) in [("png 1024x1024", &pngs), ("jpeg 1024x1024", &jpgs)] {
            let (t, c) = (Instant::now(), cpu_ms());
            pool.install(|| {
                files
                    .par_iter()
                    .for_each(|p| drop(load_image(p, size, &Normalize::IMAGENET).unwrap()))
            });
            let (s, cpu) = (t.elapsed().as_secs_f64(), (cpu_ms() - c) / n as f64);
            println!(
                "{name} -> {size}: {threads} thread(s): {:.1} images/s ({n} images, {s:.2}s), {cpu:.1} cpu ms/image",
                n as f64 / s
            );
        }
        let (t, c) = (Instant::now(), cpu_ms());
        pool.install(|| {
            (0..n)
                .into_par_iter()
                .for_each(|_| drop(load_mask(Some(&mask), size, 0.5).unwrap()))
        });
        let (s, cpu) = (t.elapsed().as_secs_f64(), (cpu_ms() - c) / n as f64);
        println!(
            "mask png 1024x1024 -> {size}: {threads} thread(s): {:.1} masks/s, {cpu:.1} cpu ms/mask",
            n as f64 / s
        );
    }
}
