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

/// The floors of ARCHITECTURE.md's house diagram: room (`engine`, `device`) -> floor number.
fn floors() -> std::collections::BTreeMap<String, u32> {
    let text = read(&root().join("ARCHITECTURE.md"));
    let block = text
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("ARCHITECTURE.md has the floor diagram in a ```text block");
    let mut out = std::collections::BTreeMap::new();
    let mut floor = None;
    for line in block.lines() {
        let mut words = line.split_whitespace().peekable();
        if line.starts_with("floor") {
            words.next();
            floor = words.next().and_then(|n| n.parse::<u32>().ok());
        }
        let Some(f) = floor else { continue };
        for w in words {
            let room = w.strip_suffix('/').or_else(|| w.strip_suffix(".rs"));
            match room {
                Some(r) => out.insert(r.to_string(), f),
                None => break,
            };
        }
    }
    out
}

/// The module path of a source file (`src/engine/assets.rs` -> [engine, assets],
/// `src/engine/mod.rs` -> [engine]); `None` for the crate roots.
fn module_of(file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(root().join("src")).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" | "main.rs" if parts.is_empty() => None,
        "mod.rs" => Some(parts),
        _ => {
            parts.push(last.trim_end_matches(".rs").to_string());
            Some(parts)
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names through `crate::`, `super::` or `self::`, grouped imports expanded,
/// as absolute module paths (`[engine, assets, Assets]`).
fn imported_paths(file: &Path, code: &str) -> Vec<Vec<String>> {
    let module = module_of(file).unwrap_or_default();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Expand `a::{b, c::{d}}` into `a::b`, `a::c::d`.
    fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
        let mut depth = 0;
        let mut start = 0;
        let mut items = Vec::new();
        for (i, ch) in body.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&body[start..]);
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            match item.find("::{") {
                Some(i) if item.ends_with('}') => {
                    let p = format!("{prefix}::{}", &item[..i]);
                    expand(&p, &item[i + 3..item.len() - 1], out);
                }
                _ => out.push(format!("{prefix}::{item}")),
            }
        }
    }
    let mut raw = Vec::new();
    for anchor in ["crate::", "super::", "self::"] {
        let mut rest = code;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().last();
            rest = &rest[i..];
            if before.is_some_and(|c| ident(c) || c == ':') {
                rest = &rest[anchor.len()..];
                continue;
            }
            let head = anchor.trim_end_matches("::");
            let tail = &rest[anchor.len()..];
            if let Some(body) = tail.strip_prefix('{') {
                let mut depth = 1;
                let end = body
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map(|(j, _)| j)
                    .unwrap_or(body.len());
                expand(head, &body[..end], &mut raw);
            } else {
                let len = tail
                    .find(|c: char| !(ident(c) || c == ':'))
                    .unwrap_or(tail.len());
                raw.push(format!("{head}::{}", tail[..len].trim_end_matches(':')));
            }
            rest = &rest[anchor.len()..];
        }
    }
    raw.into_iter()
        .filter_map(|p| {
            let segs: Vec<&str> = p.split("::").map(str::trim).collect();
            let (base, rest): (Vec<String>, &[&str]) = match segs[0] {
                "crate" => (Vec::new(), &segs[1..]),
                "self" => (module.clone(), &segs[1..]),
                "super" => {
                    let mut m = module.clone();
                    let mut k = 0;
                    while segs.get(k) == Some(&"super") {
                        m.pop()?;
                        k += 1;
                    }
                    (m, &segs[k..])
                }
                _ => return None,
            };
            let mut out = base;
            out.extend(rest.iter().map(|s| s.to_string()));
            Some(out)
        })
        .collect()
}

/// The source file that defines the longest existing prefix of a module path.
fn file_of(path: &[String]) -> Option<PathBuf> {
    let src = root().join("src");
    (1..=path.len()).rev().find_map(|n| {
        let dir = path[..n].iter().fold(src.clone(), |p, s| p.join(s));
        let file = dir.with_extension("rs");
        if file.is_file() {
            Some(file)
        } else if dir.join("mod.rs").is_file() {
            Some(dir.join("mod.rs"))
        } else {
            None
        }
    })
}

/// ARCHITECTURE.md's rule, checked: a room imports only rooms on lower floors, and no two files
/// import each other (a folder's `mod.rs` re-exporting its own children is its face, not an
/// import). Checked by hand: an added `use crate::engine::Assets;` in `src/metrics/mod.rs`
/// fails the first half, `use super::pipeline::run_job;` in `src/engine/assets.rs` the second.
#[test]
fn rooms_import_only_lower_floors_and_files_never_each_other() {
    let floors = floors();
    let src_files = files(&["src"], &["rs"]);
    let mut bad = Vec::new();
    let mut edges: std::collections::BTreeSet<(PathBuf, PathBuf)> = Default::default();
    for file in &src_files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let room = &module[0];
        let Some(&floor) = floors.get(room) else {
            bad.push(format!(
                "{}: room `{room}` has no floor in ARCHITECTURE.md",
                file.display()
            ));
            continue;
        };
        for path in imported_paths(file, &code_of(&read(file))) {
            let Some(target_room) = path.first() else {
                continue;
            };
            if target_room != room {
                match floors.get(target_room) {
                    Some(&f) if f < floor => {}
                    Some(&f) => bad.push(format!(
                        "{}: room `{room}` (floor {floor}) imports `{}` (floor {f})",
                        file.display(),
                        path.join("::")
                    )),
                    None => {}
                }
            }
            if let Some(target) = file_of(&path).filter(|t| t != file) {
                let reexport =
                    file.ends_with("mod.rs") && target.starts_with(file.parent().unwrap());
                if !reexport {
                    edges.insert((file.clone(), target));
                }
            }
        }
    }
    for (a, b) in &edges {
        if a < b && edges.contains(&(b.clone(), a.clone())) {
            bad.push(format!(
                "{} and {} import each other",
                a.display(),
                b.display()
            ));
        }
    }
    fail_if_any("the house's floor rule (ARCHITECTURE.md)", bad);
}

/// The backbone seam: outside `src/backbone/`, the code sees `Spec`, `Backbone` and `Shape`,
/// never a concrete model (ARCHITECTURE.md, "A backbone").
#[test]
fn no_concrete_backbone_outside_its_room() {
    let bad: Vec<String> = files(&["src"], &["rs"])
        .into_iter()
        .filter(|p| !p.starts_with(root().join("src/backbone")))
        .flat_map(|p| {
            let text = code_of(&read(&p));
            ["DinoV3", "DinoV3Config"]
                .into_iter()
                .filter(|name| {
                    text.match_indices(name).any(|(i, _)| {
                        let after = text[i + name.len()..].chars().next();
                        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                            || *name == "DinoV3Config"
                    })
                })
                .map(|name| format!("{} names `{name}`", p.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    fail_if_any("concrete backbone types outside src/backbone/", bad);
}
