//! The `tokenize` and `text` subcommands, run as the user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ava_dino::io::TensorFile;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ava-dino"))
}

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip_text")
        .join(case)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tokenize_prints_one_array_per_text_and_fails_on_over_long_text() {
    let o = bin()
        .args(["tokenize", "a photo of a bottle.", "Fish &amp; Chips"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Vec<i64>> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.len() == 77));
    // Reference ids (open_clip SimpleTokenizer).
    assert_eq!(
        &lines[0][..8],
        &[49406, 320, 1125, 539, 320, 5392, 269, 49407]
    );
    assert_eq!(&lines[1][..6], &[49406, 2759, 261, 8855, 49407, 0]);

    let long = ["word"; 76].join(" ");
    let o = bin().args(["tokenize", "fine", &long]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "nothing is printed when a text fails");
    let err = stderr(&o);
    assert!(
        err.starts_with("error: ")
            && err.contains("too long")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn text_embeds_of_input_ids_match_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let case = fixture("quick_gelu_w16");
    let o = bin()
        .args(["text", "--clip"])
        .arg(&case)
        .arg("--input")
        .arg(case.join("io.safetensors"))
        .args(["--activation", "quick_gelu", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("activation quick_gelu"));
    let got = TensorFile::read(&out).unwrap();
    let want = TensorFile::read(case.join("io.safetensors")).unwrap();
    let (g, w) = (
        got.f32("text_embeds", 2).unwrap(),
        want.f32("text_embeds", 2).unwrap(),
    );
    assert_eq!(g.shape, w.shape);
    let max = g
        .as_f32()
        .unwrap()
        .iter()
        .zip(w.as_f32().unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-4, "max abs {max}");
    assert_eq!(
        got.u8("activation", 1).unwrap().as_u8().unwrap(),
        b"quick_gelu"
    );
}

#[test]
fn class_words_are_encoded_once_and_then_served_from_the_caches() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |out: &str| {
        let o = bin()
            .args(["text", "--clip"])
            .arg(fixture("vocab_full_w8"))
            .args(["--class-word", "bottle", "bottle", "--cache-dir"])
            .arg(&cache)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let first = run("a.safetensors");
    assert!(
        first.contains("`bottle` encoded")
            && first.contains("`bottle` (gelu) from the memory cache"),
        "{first}"
    );
    let second = run("b.safetensors");
    assert!(
        second.contains("from the disk cache") && !second.contains("encoded ("),
        "{second}"
    );
    let a = TensorFile::read(dir.path().join("a.safetensors")).unwrap();
    let b = TensorFile::read(dir.path().join("b.safetensors")).unwrap();
    assert_eq!(a.tensors, b.tensors);
    let want = TensorFile::read(fixture("vocab_full_w8").join("io.safetensors")).unwrap();
    let (g, w) = (
        a.f32("ensemble.bottle.normal", 1).unwrap(),
        want.f32("ensemble.bottle.normal", 1).unwrap(),
    );
    let max = g
        .as_f32()
        .unwrap()
        .iter()
        .zip(w.as_f32().unwrap())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-4, "max abs {max}");
}

#[test]
fn torchscript_weights_name_the_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["text", "--clip"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torchscript_linear.pt"))
        .args(["--class-word", "x", "--out"])
        .arg(dir.path().join("x.safetensors"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("TorchScript") && err.contains("torch.jit.load") && err.contains("README"),
        "{err}"
    );
}
