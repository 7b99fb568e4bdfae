//! Embeds what a result's provenance and identity need to know about the binary itself, so that
//! neither depends on the directory a run is started from:
//!
//! - `AVA_DINO_GIT_REVISION`, `AVA_DINO_GIT_DIRTY`, `AVA_DINO_GIT_DIFF`: the commit the binary is
//!   built from, whether the files it is compiled from had uncommitted changes, and a digest of
//!   those changes (two different uncommitted trees get two different digests);
//! - `AVA_DINO_CODE`, `AVA_DINO_CODE_FEATURES`, `AVA_DINO_CODE_TEXT`: digests of the source that
//!   computes results, of the source that computes backbone features, and of the source that
//!   computes text features. They are part of the identity of runs, feature shards and text
//!   features: a change to a document or to the command line keeps every result reusable, a change
//!   to code that computes does not.
//!
//! Packagers building outside a git checkout can set `AVA_DINO_BUILD_REVISION`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Paths whose contents are compiled into the binary and change numbers (relative to the crate).
const COMPUTE: &[&str] = &["src", "datasets.toml", "Cargo.lock"];
/// Parts of `src/` that never change a number: the command line, the report (tables and charts
/// of finished runs), the Slurm script and the cost estimate (its model, and the calibration
/// that measures and stores this machine's rates).
const NOT_COMPUTE: &[&str] = &[
    "src/main.rs",
    "src/cli",
    "src/report",
    "src/runner/slurm",
    "src/runner/slurm.rs",
    "src/runner/estimate.rs",
    "src/engine/cost.rs",
    "src/engine/cost",
];
/// What the backbone features depend on: the model, decoding and preprocessing, weight loading,
/// the embedded random weights, extraction and the shard format.
const FEATURES: &[&str] = &[
    "src/backbone",
    "src/cpu",
    "src/data",
    "src/io",
    "src/device.rs",
    "src/rng.rs",
    "src/engine/assets.rs",
    "src/engine/extract.rs",
    "src/engine/features.rs",
    "src/engine/cache.rs",
    "datasets.toml",
    "Cargo.lock",
];
/// What the text features depend on: the text tower, tokenizer, prompts, weight loading.
const TEXT: &[&str] = &[
    "src/text",
    "src/io",
    "src/device.rs",
    "src/rng.rs",
    "Cargo.lock",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    for p in COMPUTE {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=AVA_DINO_BUILD_REVISION");

    let all = files(&root, COMPUTE);
    let compute: Vec<&PathBuf> = all
        .iter()
        .filter(|p| !NOT_COMPUTE.iter().any(|x| under(p, x)))
        .collect();
    let pick = |set: &[&str]| -> Vec<&PathBuf> {
        all.iter()
            .filter(|p| set.iter().any(|x| under(p, x)))
            .collect()
    };
    env("AVA_DINO_CODE", &digest(&root, &compute));
    env("AVA_DINO_CODE_FEATURES", &digest(&root, &pick(FEATURES)));
    env("AVA_DINO_CODE_TEXT", &digest(&root, &pick(TEXT)));

    let (revision, dirty, diff) = git_state(&root);
    env("AVA_DINO_GIT_REVISION", &revision);
    env("AVA_DINO_GIT_DIRTY", &dirty);
    env("AVA_DINO_GIT_DIFF", &diff);
}

fn env(key: &str, value: &str) {
    println!("cargo:rustc-env={key}={value}");
}

/// Whether relative path `p` is `prefix` or lies under it.
fn under(p: &Path, prefix: &str) -> bool {
    p.starts_with(prefix)
}

/// Every file under `roots` (relative paths, sorted), skipping editor and OS litter.
fn files(root: &Path, roots: &[&str]) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: PathBuf, out: &mut Vec<PathBuf>) {
        let abs = root.join(&rel);
        if abs.is_file() {
            out.push(rel);
            return;
        }
        let Ok(entries) = std::fs::read_dir(&abs) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            walk(root, rel.join(name), out);
        }
    }
    let mut out = Vec::new();
    for r in roots {
        walk(root, PathBuf::from(r), &mut out);
    }
    out.sort();
    out
}

/// SHA-256 (first 16 hex) over each file's relative path, length and bytes.
fn digest(root: &Path, files: &[&PathBuf]) -> String {
    let mut h = Sha256::new();
    for rel in files {
        let bytes = std::fs::read(root.join(rel)).unwrap_or_default();
        h.update(rel.to_string_lossy().replace('\\', "/").as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    hex(&h.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn git(root: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status.success().then_some(out.stdout)
}

fn git_text(root: &Path, args: &[&str]) -> Option<String> {
    git(root, args).map(|b| String::from_utf8_lossy(&b).trim().to_string())
}

/// `(revision, dirty, diff digest)`, empty strings where unknown. Asks cargo to rerun this
/// script when HEAD moves (a commit, a checkout), in a plain clone or a worktree alike.
fn git_state(root: &Path) -> (String, String, String) {
    if let Ok(rev) = std::env::var("AVA_DINO_BUILD_REVISION") {
        return (rev, String::new(), String::new());
    }
    let Some(rev) = git_text(root, &["rev-parse", "HEAD"]) else {
        return (String::new(), String::new(), String::new());
    };
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(r) = git_text(root, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git_text(root, &["rev-parse", "--git-path", &w]) {
            let p = root.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    // Uncommitted changes to the files the binary is compiled from (tracked and untracked):
    // exactly the paths watched above, so the digest is never stale.
    let mut args = vec!["diff", "HEAD", "--no-ext-diff", "--binary", "--"];
    args.extend(COMPUTE);
    let diff = git(root, &args).unwrap_or_default();
    let mut args = vec!["ls-files", "--others", "--exclude-standard", "--"];
    args.extend(COMPUTE);
    let untracked = git_text(root, &args).unwrap_or_default();
    if diff.is_empty() && untracked.is_empty() {
        return (rev, "0".into(), String::new());
    }
    let mut h = Sha256::new();
    h.update(&diff);
    for rel in untracked.lines() {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(std::fs::read(root.join(rel)).unwrap_or_default());
    }
    (rev, "1".into(), hex(&h.finalize()[..8]))
}
