//! Fuzzing the `.pth` reader on stable Rust: a seeded mutation loop over the committed PyTorch
//! files (`tests/fixtures/**.pth|.pt`, `tests/data/**.pth|.pt`). Each mutant is written to disk
//! and read by `ava_dino::io::read_pth` on a thread of its own; the test fails on any panic, any
//! read longer than [`LIMIT`], and any read that allocates past
//! [`ava_dino::io::pth::memory_bound`] of its file.
//!
//! Mutations: bit flips, byte insertions and deletions, truncation, chunk copies, "interesting"
//! integers written over the bytes; and, inside a zip, edits of its entries re-packed with valid
//! checksums (so that they reach the pickle parser): pickle opcodes and whole tensor records
//! spliced into `data.pkl`, pickle chunks from other seeds, storages cut or grown, entries
//! dropped or renamed.
//!
//! `cargo test` runs a short loop (a few seconds). The long run:
//!
//! ```text
//! AVA_DINO_FUZZ_ITERS=1000000 cargo test --test fuzz_pth -- --nocapture
//! ```
//!
//! (`AVA_DINO_FUZZ_SEED=<n>` starts another sequence). A failing input is kept under the
//! target directory's `tmp/fuzz_pth/` and its path printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ava_dino::io::pth::{memory_bound, read_pth};
use ava_dino::rng::SplitMix64;

/// The longest a read may take.
const LIMIT: Duration = Duration::from_secs(1);
/// Iterations of the short run in `cargo test`.
const SHORT_RUN: u64 = 600;

/// Counts the bytes allocated by the current thread (frees of other threads' memory lower it),
/// with its peak since [`Counting::reset`].
struct Counting;

thread_local! {
    static CURRENT: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

impl Counting {
    fn add(delta: i64) {
        let _ = CURRENT.try_with(|c| {
            let now = c.get() + delta;
            c.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
    }
    fn reset() {
        CURRENT.with(|c| c.set(0));
        PEAK.with(|p| p.set(0));
    }
    fn peak() -> u64 {
        PEAK.with(|p| p.get().max(0) as u64)
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::add(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::add(-(layout.size() as i64));
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::add(layout.size() as i64);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One seed file: its bytes and, for a zip, its entries.
struct Seed {
    name: String,
    bytes: Vec<u8>,
    entries: Option<Vec<(String, Vec<u8>)>>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds() -> Vec<Seed> {
    let mut paths = Vec::new();
    for dir in ["tests/fixtures", "tests/data"] {
        for e in walkdir::WalkDir::new(root().join(dir)).sort_by_file_name() {
            let p = e.expect("walk tests/").into_path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("pth" | "pt")) {
                paths.push(p);
            }
        }
    }
    assert!(paths.len() >= 8, "seed files missing: {paths:?}");
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let entries = unzip(&bytes);
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            Seed {
                name,
                bytes,
                entries,
            }
        })
        .collect()
}

fn unzip(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).ok()?;
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).ok()?;
            let mut v = Vec::new();
            f.read_to_end(&mut v).ok()?;
            Some((f.name().ok()?.into_owned(), v))
        })
        .collect()
}

/// Re-packs entries as `torch.save` does: stored, 64-byte aligned, valid checksums.
fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    for (name, bytes) in entries {
        if z.start_file(name.as_str(), opts).is_err() {
            continue; // a duplicate name after a rename: leave it out
        }
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// Integers a parser is likely to mishandle, little-endian, in 1, 2, 4 and 8 bytes.
fn interesting(rng: &mut SplitMix64) -> Vec<u8> {
    const V: [u64; 12] = [
        0,
        1,
        2,
        0x7f,
        0x80,
        0xff,
        0xffff,
        0x7fff_ffff,
        0xffff_ffff,
        1 << 31,
        1 << 33,
        u64::MAX,
    ];
    let v = V[rng.below(V.len())];
    let width = [1, 2, 4, 8][rng.below(4)];
    v.to_le_bytes()[..width].to_vec()
}

/// A pickle fragment: one opcode (with arguments) or a whole tensor record.
fn pickle_snippet(rng: &mut SplitMix64) -> Vec<u8> {
    const BARE: &[u8] = b"()]}tRbQusae0129N.\x85\x86\x87\x88\x89\x94\x93\x81";
    // BININT with an interesting 4-byte argument.
    let int = |rng: &mut SplitMix64| -> Vec<u8> {
        let mut arg = interesting(rng);
        arg.resize(4, 0);
        [vec![b'J'], arg].concat()
    };
    match rng.below(8) {
        0..=2 => vec![BARE[rng.below(BARE.len())]],
        3 => {
            // An opcode with a length or index argument.
            let op = b"qhrjKMJ\x8aXU\x8cGB\x95\x80"[rng.below(15)];
            let mut v = vec![op];
            v.extend(interesting(rng));
            v
        }
        4 => b"ctorch\nFloatStorage\n".to_vec(),
        5 => b"ctorch._utils\n_rebuild_tensor_v2\n".to_vec(),
        _ => {
            // _rebuild_tensor_v2((storage, FloatStorage, key, cpu, numel), offset, size, stride,
            // False, OrderedDict()) with odd numbers.
            let mut v = b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage".to_vec();
            v.extend_from_slice(b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
            v.extend(int(rng));
            v.extend_from_slice(b"tQ");
            v.extend(int(rng));
            v.push(b'(');
            let rank = rng.below(3) + 1;
            for _ in 0..rank {
                v.extend(int(rng));
            }
            v.extend_from_slice(b"t(");
            for _ in 0..rank {
                v.extend(int(rng));
            }
            v.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtR");
            v
        }
    }
}

/// Byte-level edits of `v`, 1 to 4 of them.
fn mutate_bytes(v: &mut Vec<u8>, rng: &mut SplitMix64, donors: &[&[u8]]) {
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(7) {
            0 if n > 0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(n);
                    v[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = rng.below(n + 1);
                let k = 1 + rng.below(16);
                let ins: Vec<u8> = (0..k).map(|_| rng.next_u64() as u8).collect();
                v.splice(at..at, ins);
            }
            2 if n > 0 => {
                let at = rng.below(n);
                let k = (1 + rng.below(64)).min(n - at);
                v.drain(at..at + k);
            }
            3 => v.truncate(rng.below(n + 1)),
            4 if n > 0 => {
                let at = rng.below(n);
                for (i, b) in interesting(rng).into_iter().enumerate() {
                    if at + i < n {
                        v[at + i] = b;
                    }
                }
            }
            5 if n > 1 => {
                let from = rng.below(n);
                let k = (1 + rng.below(64)).min(n - from);
                let chunk = v[from..from + k].to_vec();
                let at = rng.below(n + 1);
                v.splice(at..at, chunk);
            }
            6 if !donors.is_empty() => {
                let d = donors[rng.below(donors.len())];
                if !d.is_empty() {
                    let from = rng.below(d.len());
                    let k = (1 + rng.below(128)).min(d.len() - from);
                    let at = rng.below(n + 1);
                    v.splice(at..at, d[from..from + k].iter().copied());
                }
            }
            _ => {}
        }
    }
}

/// A mutant of `seed`.
fn mutant(seed: &Seed, all: &[Seed], rng: &mut SplitMix64) -> Vec<u8> {
    let pickles: Vec<&[u8]> = all
        .iter()
        .filter_map(|s| s.entries.as_ref())
        .flat_map(|e| e.iter().filter(|(n, _)| n.ends_with("data.pkl")))
        .map(|(_, b)| b.as_slice())
        .collect();
    let Some(entries) = seed.entries.as_ref().filter(|_| rng.below(3) > 0) else {
        let mut v = seed.bytes.clone();
        mutate_bytes(&mut v, rng, &[]);
        return v;
    };
    let mut entries = entries.clone();
    let i = rng.below(entries.len());
    match rng.below(6) {
        // The pickle: opcodes and tensor records spliced in, or byte edits with other
        // pickles as donors.
        0..=2 => {
            let Some(p) = entries.iter_mut().find(|(n, _)| n.ends_with("data.pkl")) else {
                return seed.bytes.clone();
            };
            if rng.below(2) == 0 {
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(p.1.len() + 1);
                    let s = pickle_snippet(rng);
                    p.1.splice(at..at, s);
                }
            } else {
                mutate_bytes(&mut p.1, rng, &pickles);
            }
        }
        // A storage (or any entry) cut, grown or edited.
        3 => {
            let e = &mut entries[i].1;
            match rng.below(3) {
                0 => e.truncate(rng.below(e.len() + 1)),
                1 => e.extend(std::iter::repeat_n(0u8, 1 + rng.below(64))),
                _ => mutate_bytes(e, rng, &[]),
            }
        }
        4 => {
            entries.remove(i);
        }
        _ => {
            let name = &mut entries[i].0;
            let mut b = name.clone().into_bytes();
            mutate_bytes(&mut b, rng, &[]);
            *name = String::from_utf8_lossy(&b).into_owned();
        }
    }
    rezip(&entries)
}

/// What reading one input gave.
enum Outcome {
    Read(usize),
    Refused(String),
    Panicked(String),
}

/// Caught panics are reported by the tests with their input; the default hook would only print
/// them again (set once for the whole binary: tests run in parallel).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// A reader under test: the number of tensors read, or the error message.
type Reader = fn(&Path) -> Result<usize, String>;

fn pth_reader(path: &Path) -> Result<usize, String> {
    read_pth(path).map(|m| m.len()).map_err(|e| e.to_string())
}

/// Runs `read` on `path` on a fresh thread: what it gave, its heap peak, its time; `None` when
/// it did not finish within `wait`.
fn guarded(path: &Path, read: Reader, wait: Duration) -> Option<(Outcome, u64, Duration)> {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    let start = Instant::now();
    std::thread::spawn(move || {
        Counting::reset();
        let r = std::panic::catch_unwind(|| read(&p));
        let peak = Counting::peak();
        let outcome = match r {
            Ok(Ok(n)) => Outcome::Read(n),
            Ok(Err(e)) => Outcome::Refused(e),
            Err(payload) => Outcome::Panicked(
                payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        };
        let _ = tx.send((outcome, peak));
    });
    let (outcome, peak) = rx.recv_timeout(wait).ok()?;
    Some((outcome, peak, start.elapsed()))
}

/// The kind of a refusal, for the summary: its message without the file and numbers.
fn kind(msg: &str) -> String {
    let rest = msg.split_once(": ").map_or(msg, |(_, r)| r);
    rest.chars()
        .take(60)
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[test]
fn pth_reader_survives_mutated_checkpoints() {
    let iters: u64 = std::env::var("AVA_DINO_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SHORT_RUN);
    let seed: u64 = std::env::var("AVA_DINO_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seeds = seeds();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz_pth");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("input-{}.pth", std::process::id()));
    quiet_panics();
    let mut rng = SplitMix64(seed ^ 0xF022_0000_0000_0013);
    let (mut read, mut tensors, mut refused) = (0u64, 0usize, BTreeMap::<String, u64>::new());
    let (mut slowest, mut worst_ratio, mut most_per_byte) = (Duration::ZERO, 0f64, 0f64);
    let mut failures = Vec::new();
    let start = Instant::now();
    let (mut tried, mut late) = (0u64, 0u64);
    for i in 0..iters {
        tried += 1;
        let s = &seeds[rng.below(seeds.len())];
        let bytes = mutant(s, &seeds, &mut rng);
        std::fs::write(&input, &bytes).unwrap();
        let keep = |why: &str| {
            let kept = dir.join(format!("failure-{seed}-{i}.pth"));
            std::fs::copy(&input, &kept).unwrap();
            format!("{why} (mutant of {}, kept at {})", s.name, kept.display())
        };
        // A read over LIMIT is run again: on a loaded machine a thread can wait for a core for
        // a second. Slow twice, or no answer at all within 10 LIMIT, fails.
        let wait = 10 * LIMIT;
        let mut result = guarded(&input, pth_reader, wait);
        if result.as_ref().is_some_and(|r| r.2 > LIMIT) {
            late += 1;
            result = guarded(&input, pth_reader, wait);
        }
        let Some((outcome, peak, took)) = result else {
            failures.push(keep(&format!("no answer within {wait:?}")));
            break; // the reading thread is still running
        };
        if took > LIMIT {
            failures.push(keep(&format!(
                "read twice in over {LIMIT:?}, last {took:?}"
            )));
        }
        slowest = slowest.max(took);
        let bound = memory_bound(bytes.len() as u64);
        worst_ratio = worst_ratio.max(peak as f64 / bound as f64);
        most_per_byte = most_per_byte.max(peak as f64 / bytes.len().max(1) as f64);
        if peak > bound {
            failures.push(keep(&format!(
                "allocated {peak} bytes, above the bound {bound} of a {}-byte file",
                bytes.len()
            )));
        }
        match outcome {
            Outcome::Read(n) => {
                read += 1;
                tensors += n;
            }
            Outcome::Refused(msg) => *refused.entry(kind(&msg)).or_default() += 1,
            Outcome::Panicked(msg) => failures.push(keep(&format!("panicked: {msg}"))),
        }
        if failures.len() >= 5 {
            break;
        }
    }
    let _ = std::fs::remove_file(&input);
    println!(
        "fuzz_pth: {tried} inputs from {} seeds (seed {seed}) in {:.1}s: {read} read ({tensors} tensors), {} refused \
         ({} kinds), slowest {:.1} ms ({late} run again after a read over {LIMIT:?}), peak memory \
         at most {:.1}% of the bound and {:.1} bytes per file byte",
        seeds.len(),
        start.elapsed().as_secs_f64(),
        refused.values().sum::<u64>(),
        refused.len(),
        slowest.as_secs_f64() * 1e3,
        worst_ratio * 100.0,
        most_per_byte
    );
    let mut kinds: Vec<_> = refused.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (k, n) in kinds.iter().take(12) {
        println!("  {n:>8}  {k}");
    }
    assert!(
        read > 0,
        "no mutant was read: the mutations are too destructive"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The guard itself can fail: it sees a panic, a hang and a large allocation. And the crafted
/// stride-0 checkpoint (4 views of 8 GiB each, issue 13) is refused in a few kB of heap.
#[test]
fn the_guard_sees_panics_hangs_and_allocations() {
    quiet_panics();
    let file = root().join("tests/data/pth/stride0.pth");
    let panics: Reader = |_| panic!("boom");
    assert!(matches!(
        guarded(&file, panics, LIMIT),
        Some((Outcome::Panicked(m), _, _)) if m == "boom"
    ));
    let hangs: Reader = |_| {
        std::thread::sleep(LIMIT + Duration::from_millis(200));
        Ok(0)
    };
    assert!(guarded(&file, hangs, LIMIT).is_none());
    let allocates: Reader = |_| Ok(std::hint::black_box(vec![1u8; 64 << 20]).len());
    let (_, peak, _) = guarded(&file, allocates, LIMIT).unwrap();
    assert!(peak >= 64 << 20, "{peak}");

    let (outcome, peak, took) = guarded(&file, pth_reader, LIMIT).unwrap();
    assert!(
        matches!(&outcome, Outcome::Refused(m) if m.contains("declare 34359738368 bytes")),
        "{}",
        match outcome {
            Outcome::Read(n) => format!("read {n} tensors"),
            Outcome::Refused(m) | Outcome::Panicked(m) => m,
        }
    );
    assert!(peak < 1 << 20 && took < LIMIT, "{peak} bytes, {took:?}");

    // A thousand references to one memoized thousand-element list: read (no tensors) within
    // the bound.
    let bomb = root().join("tests/data/pth/memo_bomb.pth");
    let (outcome, peak, took) = guarded(&bomb, pth_reader, LIMIT).unwrap();
    let len = std::fs::metadata(&bomb).unwrap().len();
    assert!(matches!(outcome, Outcome::Read(0)));
    assert!(
        peak < memory_bound(len) && took < LIMIT,
        "{peak} bytes, {took:?}"
    );
}
