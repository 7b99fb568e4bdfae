//! Mutation fuzzing of the JPEG path on stable Rust (cargo-fuzz needs nightly).
//!
//! Seeds are the corpus JPEGs (`tests/fixtures/decoder/corpus/**.jpg`). Each input is a seed with
//! 1-4 mutations from a seeded generator: bit flips, interesting bytes, byte inserts and
//! deletes, truncation, 16-bit length/size fields set to edge values, and marker-segment splices
//! (a segment of another seed inserted, or one of this seed's segments dropped or doubled).
//! Every input must end in `Ok` or an error, never a panic, within 1 s of CPU time (this
//! thread's, from `/proc/thread-self/schedstat`, so that a loaded machine does not fail it;
//! wall time where that file is missing) and 600 MB of peak allocation (the decoder's own limit
//! is 512 MiB). A failing input is written to
//! `$AVA_DINO_FUZZ_OUT` (default `target/fuzz-jpeg/`) and named in the failure.
//!
//! `AVA_DINO_FUZZ_DUMP=DIR` also writes every input to `DIR/corpus/fuzz/`, for a differential
//! check against Pillow: `scripts/gen_decoder_corpus.py --corpus DIR/corpus --out
//! DIR/expected.jsonl`, then `AVA_DINO_DECODER_CORPUS=DIR cargo test --test decoder_corpus`.
//!
//! Short run (part of `cargo test`, ~5 s in the debug profile): 1,000 inputs. Long run, as recorded in docs/data.md:
//! `AVA_DINO_FUZZ_ITERS=200000 AVA_DINO_FUZZ_SEED=1 cargo test --release --test fuzz_jpeg -- --nocapture`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ava_dino::image::decode::decode_bytes;

mod common;

#[global_allocator]
static ALLOCATOR: common::alloc::Counting = common::alloc::Counting;

const MAX_TIME: Duration = Duration::from_secs(1);
const MAX_BYTES: usize = 600_000_000;

/// CPU time of this thread, or `None` where Linux's schedstat is not available.
fn cpu_time() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// SplitMix64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seeds() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            if e.is_dir() {
                walk(&e, out);
            } else if e
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg"))
            {
                out.push(e);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decoder/corpus"),
        &mut files,
    );
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// Byte ranges `[start, end)` of the marker segments of a JPEG (up to its first scan data).
fn segments(d: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut p = 2;
    while p + 4 <= d.len() && d[p] == 0xFF {
        let m = d[p + 1];
        if m == 0xD8 || (0xD0..=0xD7).contains(&m) || m == 0x01 {
            p += 2;
            continue;
        }
        let len = u16::from_be_bytes([d[p + 2], d[p + 3]]) as usize;
        let end = (p + 2 + len).min(d.len());
        out.push((p, end));
        if m == 0xDA || m == 0xD9 {
            break;
        }
        p = end;
    }
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0xD9, 0xDA];
    if input.is_empty() {
        input.push(0xFF);
    }
    let n = input.len();
    match rng.below(10) {
        0 | 1 => {
            let i = rng.below(n);
            input[i] ^= 1 << rng.below(8);
        }
        2 => {
            let i = rng.below(n);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 => {
            let i = rng.below(n + 1);
            input.insert(i, rng.next() as u8);
        }
        4 => {
            let i = rng.below(n);
            let k = 1 + rng.below(16).min(n - i - 1);
            input.drain(i..i + k);
        }
        5 => input.truncate(rng.below(n)),
        6 if n >= 2 => {
            // A 16-bit field (segment length, image size) set to an edge value.
            let i = rng.below(n - 1);
            let v: u16 = [0, 1, 2, 0x7FFF, 0x8000, 0xFFFF, 0xFFDC, 8][rng.below(8)];
            input[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        7 => {
            // Splice a segment of another seed in front of one of ours.
            let other = &seeds[rng.below(seeds.len())];
            let theirs = segments(other);
            let ours = segments(input);
            if let (Some(&(s, e)), Some(&(at, _))) = (
                theirs.get(rng.below(theirs.len())),
                ours.get(rng.below(ours.len())),
            ) {
                let seg = other[s..e].to_vec();
                input.splice(at..at, seg);
            }
        }
        8 => {
            // Drop or double one of our segments.
            let ours = segments(input);
            if let Some(&(s, e)) = ours.get(rng.below(ours.len())) {
                if rng.below(2) == 0 {
                    input.drain(s..e);
                } else {
                    let seg = input[s..e].to_vec();
                    input.splice(e..e, seg);
                }
            }
        }
        _ => {
            // Scramble a run of entropy-coded data after the first scan header.
            if let Some(&(_, e)) = segments(input).iter().find(|&&(s, _)| input[s + 1] == 0xDA)
                && e < n
            {
                let i = e + rng.below(n - e);
                for b in input.iter_mut().skip(i).take(1 + rng.below(8)) {
                    *b = rng.next() as u8;
                }
            }
        }
    }
}

#[test]
fn jpeg_decoder_survives_mutations() {
    let iters = env_u64("AVA_DINO_FUZZ_ITERS", 1000);
    let seed = env_u64("AVA_DINO_FUZZ_SEED", 13);
    let seeds = seeds();
    assert!(seeds.len() >= 20, "only {} seed JPEGs", seeds.len());
    let mut rng = Rng(seed);
    let (mut ok, mut refused) = (0u64, 0u64);
    let (mut slowest, mut biggest) = (Duration::ZERO, 0usize);
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    let dump = std::env::var_os("AVA_DINO_FUZZ_DUMP").map(|d| PathBuf::from(d).join("corpus/fuzz"));
    if let Some(d) = &dump {
        std::fs::create_dir_all(d).unwrap();
    }
    let start = Instant::now();
    for i in 0..iters {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &seeds, &mut input);
        }
        if let Some(d) = &dump {
            std::fs::write(d.join(format!("seed{seed}-{i:07}.jpg")), &input).unwrap();
        }
        let base = common::alloc::reset_peak();
        let (t, cpu) = (Instant::now(), cpu_time());
        let result = std::panic::catch_unwind(|| decode_bytes(&input));
        let took = match (cpu, cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => t.elapsed(),
        };
        let peak = common::alloc::peak_since(base);
        let failure = match &result {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if took > MAX_TIME => Some(format!("took {took:?}")),
            Ok(_) if peak > MAX_BYTES => Some(format!("allocated {peak} bytes")),
            _ => None,
        };
        if let Some(why) = failure {
            let dir = std::env::var_os("AVA_DINO_FUZZ_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-jpeg"));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("seed{seed}-input{i}.jpg"));
            std::fs::write(&file, &input).unwrap();
            panic!("input {i} (seed {seed}) {why}; saved to {}", file.display());
        }
        match result.expect("checked") {
            Ok(_) => ok += 1,
            Err(e) => {
                refused += 1;
                // Group by the reason's words: numbers and details in brackets dropped.
                let key: String = e
                    .chars()
                    .take_while(|&c| c != '(' && c != ':' && c != ';')
                    .map(|c| if c.is_ascii_digit() { 'N' } else { c })
                    .collect();
                let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
                *reasons
                    .entry(key.replace("NN", "N").replace("NN", "N"))
                    .or_default() += 1;
            }
        }
        slowest = slowest.max(took);
        biggest = biggest.max(peak);
    }
    println!(
        "fuzz_jpeg: seed {seed}, {iters} inputs from {} seeds in {:.1?}: {ok} decoded, {refused} refused, 0 panics; slowest {slowest:?}, peak {biggest} bytes",
        seeds.len(),
        start.elapsed()
    );
    for (r, n) in &reasons {
        println!("  {n:>8}  {r}");
    }
    assert_eq!(ok + refused, iters);
    assert!(
        ok > 0 && refused > 0,
        "mutations should produce both outcomes"
    );
}
