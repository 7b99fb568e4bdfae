//! Rules of the house that a program can check (rust-analyzer's `tidy.rs` in spirit): every
//! source file says what it is, tests are neither ignored nor expected to panic, code cites only
//! documents that ship with the repository, and no debugging leftovers.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `dirs` (relative to the root) with one of `exts`, this file excluded.
fn files(dirs: &[&str], exts: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| walkdir::WalkDir::new(root().join(d)).into_iter().flatten())
        .map(|e| e.into_path())
        .filter(|p| !p.components().any(|c| c.as_os_str() == "fixtures"))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| exts.contains(&e.to_string_lossy().as_ref()))
        })
        .filter(|p| !p.ends_with("tests/tidy.rs"))
        .collect();
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fail_if_any(what: &str, bad: Vec<String>) {
    assert!(bad.is_empty(), "{what}:\n  {}", bad.join("\n  "));
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let bad = files(&["src", "xtask/src"], &["rs"])
        .into_iter()
        .filter(|p| !read(p).starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    fail_if_any(
        "files without a `//!` opening comment saying what they are",
        bad,
    );
}

#[test]
fn tests_are_neither_ignored_nor_expected_to_panic() {
    // A test that does not run, or passes by panicking, hides what it checks (rust-analyzer's
    // rules); timings belong in `examples/` benchmarks.
    let mut bad = Vec::new();
    for p in files(&["src", "tests", "examples"], &["rs"]) {
        for (i, line) in read(&p).lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("#[ignore") || t.starts_with("#[should_panic") {
                bad.push(format!("{}:{}: {t}", p.display(), i + 1));
            }
        }
    }
    fail_if_any("ignored or should_panic tests", bad);
}

#[test]
fn code_cites_only_documents_in_the_repository() {
    // The design notes and references beside the checkout are not part of the repository: code
    // citing them sends a reader to a file they do not have.
    let outside = [
        "DESIGN.md",
        "backbones.md",
        "datasets.md",
        "house-style.md",
        "burn.md",
        "paper.txt",
    ];
    let mut bad = Vec::new();
    for p in files(
        &["src", "tests", "xtask", "scripts", "examples"],
        &["rs", "py", "sh"],
    ) {
        for (i, line) in read(&p).lines().enumerate() {
            for name in outside {
                let at = line.find(name);
                let in_docs = at.is_some_and(|k| line[..k].ends_with("docs/"));
                if at.is_some() && !in_docs {
                    bad.push(format!("{}:{}: cites {name}", p.display(), i + 1));
                }
            }
            let mut rest = line;
            while let Some(k) = rest.find("docs/") {
                let tail = &rest[k..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c)))
                    .unwrap_or(tail.len());
                let doc = tail[..end].trim_end_matches('.');
                if doc.ends_with(".md") && !root().join(doc).is_file() {
                    bad.push(format!("{}:{}: {doc} does not exist", p.display(), i + 1));
                }
                rest = &tail[end.max(1)..];
            }
        }
    }
    fail_if_any("references to documents outside the repository", bad);
}

#[test]
fn no_debugging_leftovers_in_the_library() {
    let mut bad = Vec::new();
    for p in files(&["src"], &["rs"]) {
        for (i, line) in read(&p).lines().enumerate() {
            for m in ["dbg!(", "todo!(", "unimplemented!("] {
                if line.contains(m) {
                    bad.push(format!("{}:{}: {m}", p.display(), i + 1));
                }
            }
        }
    }
    fail_if_any("debugging leftovers", bad);
}

#[test]
fn ci_runs_the_test_command_of_the_readme() {
    let ci = read(&root().join(".ci/run"));
    let readme = read(&root().join("README.md"));
    assert!(
        ci.contains("\ncargo test\n"),
        ".ci/run must run `cargo test`"
    );
    assert!(
        readme.contains("cargo test"),
        "README.md must give the test command"
    );
}
