//! Decoder conformance: every file of the corpus (`tests/fixtures/decoder/corpus/`, assembled from
//! PngSuite, libjpeg-turbo's, libtiff's and Pillow's test images; see its README) either decodes
//! exactly as Pillow does or is refused with the reason listed in `refusals.txt`.
//!
//! Pillow's side is `expected.jsonl` from `scripts/gen_decoder_corpus.py`: for each file the
//! SHA-256 of `Image.open(p).convert("RGB")`, of `.convert("L")` and of the reference resize of the
//! RGB image, or Pillow's error. A file Pillow refuses must be refused here too (no silent
//! acceptance of a broken file); no decoder may panic (a caught panic is reported as a failure).
//!
//! `AVA_DINO_DECODER_CORPUS=DIR` runs the same check on another folder laid out the same way
//! (`DIR/corpus/`, `DIR/expected.jsonl`, `DIR/refusals.txt`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ava_dino::data::preprocess::resize_square;
use ava_dino::image::decode::{Pixels, decode_image};
use sha2::{Digest, Sha256};

/// Side of the resize checked per file (the resize itself is covered by `parity_preprocess`).
const SIZE: usize = 32;

fn root() -> PathBuf {
    match std::env::var_os("AVA_DINO_DECODER_CORPUS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decoder"),
    }
}

#[derive(serde::Deserialize)]
struct Expected {
    file: String,
    pillow: String,
    #[serde(default)]
    size: Vec<usize>,
    #[serde(default)]
    rgb: String,
    #[serde(default)]
    l: String,
    #[serde(default)]
    resized: String,
    #[serde(default)]
    error: String,
}

/// `refusals.txt`: `<file> | <text our error must contain> | <why>` per line, `#` comments.
fn refusals(path: &Path) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        assert!(
            parts.len() == 3 && !parts[1].is_empty() && !parts[2].is_empty(),
            "{}:{}: expected `file | error text | why`",
            path.display(),
            n + 1
        );
        out.insert(
            parts[0].to_string(),
            (parts[1].to_string(), parts[2].to_string()),
        );
    }
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What our decoder made of one file: hashes as in `expected.jsonl`, or the error.
fn ours(path: &Path) -> Result<(Vec<usize>, String, String, String), String> {
    let img = decode_image(path).map_err(|e| e.to_string())?;
    let (w, h) = (img.width, img.height);
    let rgb = Pixels {
        width: w,
        height: h,
        channels: 3,
        data: img.clone().into_rgb(),
    };
    let l = img.into_luma();
    let resized = resize_square(&rgb, SIZE);
    Ok((vec![w, h], sha(&rgb.data), sha(&l), sha(&resized.data)))
}

#[test]
fn corpus_decodes_like_pillow_or_is_a_named_refusal() {
    let root = root();
    let expected_path = root.join("expected.jsonl");
    let text = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
    let mut refused = refusals(&root.join("refusals.txt"));
    let (mut exact, mut named, mut both_refuse) = (0, 0, 0);
    let mut failures = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let want: Expected = serde_json::from_str(line).expect("expected.jsonl row");
        let path = root.join("corpus").join(&want.file);
        let got = ours(&path);
        let listed = refused.remove(&want.file);
        let fail = |why: String| format!("{}: {why}", want.file);
        match (want.pillow.as_str(), got, listed) {
            (_, Err(e), _) if e.contains("panic") => failures.push(fail(format!("panicked: {e}"))),
            ("ok", Ok(g), None) => {
                if g == (want.size.clone(), want.rgb, want.l, want.resized) {
                    exact += 1;
                } else {
                    failures.push(fail(format!(
                        "decodes differently from Pillow (ours {:?}, Pillow {:?})",
                        g.0, want.size
                    )));
                }
            }
            ("ok", Ok(_), Some(_)) => failures.push(fail(
                "listed in refusals.txt but decodes; remove the entry".into(),
            )),
            ("ok", Err(e), Some((needle, _why))) if e.contains(&needle) => named += 1,
            ("ok", Err(e), _) => {
                failures.push(fail(format!("refused without a listed reason: {e}")))
            }
            (_, Ok(_), _) => failures.push(fail(format!(
                "accepted, but Pillow refuses it ({})",
                want.error
            ))),
            (_, Err(_), _) => both_refuse += 1,
        }
    }
    for stale in refused.keys() {
        failures.push(format!("{stale}: in refusals.txt but not in the corpus"));
    }
    println!(
        "decoder corpus {}: {exact} exact, {named} named refusals, {both_refuse} refused like Pillow, {} failures",
        root.display(),
        failures.len()
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(exact > 0, "no file decoded: is the corpus there?");
    assert!(failures.is_empty(), "{} corpus failures", failures.len());
}
