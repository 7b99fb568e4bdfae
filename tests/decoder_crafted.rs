//! Issue 13: every crafted or broken input ends in one error naming the file, quickly and with
//! bounded memory, through the library, the dataset batch loader and `ava-dino features --image`.
//!
//! The files are `tests/fixtures/decoder/corpus/crafted/` (written by
//! `scripts/gen_crafted_images.py`, described there) plus the corpus files whose decoding made
//! the old decoder panic, allocate or disagree with Pillow about refusing. Whether each file must
//! decode or be refused comes from `expected.jsonl` / `refusals.txt` and is checked by
//! `tests/decoder_corpus.rs`; this test bounds the cost of the refusals.
//!
//! Memory is measured in-process with a counting allocator (this binary has a single test, so
//! nothing else allocates meanwhile); the limit is the issue's 200 MB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ava_dino::data::Sample;
use ava_dino::data::preprocess::{Normalize, load_batch};
use ava_dino::image::decode::decode_image;

mod common;

#[global_allocator]
static ALLOCATOR: common::alloc::Counting = common::alloc::Counting;

const MAX_BYTES: usize = 200_000_000;
const MAX_TIME: Duration = Duration::from_secs(1);
const BIN: &str = env!("CARGO_BIN_EXE_ava-dino");

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decoder/corpus")
}

/// The refused inputs: every crafted file Pillow or we refuse, and the issue's corpus files.
fn refused_inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus().join("crafted"))
        .expect("crafted files")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in [
        "pillow/truncated_jpeg.jpg",
        "pillow/tiff_tiled_planar_raw.tif",
        "pillow/tiff_tiled_planar_lzw.tiff",
        "pillow/tiff_tiled_planar_16bit_RGB.tiff",
        "pillow/tiff_tiled_planar_16bit_RGBa.tiff",
        "pillow/apng/chunk_no_fctl.png",
        "pillow/png_decompression_dos.png",
        "pillow/unknown_compression_method.png",
        "pillow/bmp/q/pal2.bmp",
        "pillow/bmp/q/rgba16-4444.bmp",
    ] {
        let p = corpus().join(f);
        assert!(p.is_file(), "{} is missing from the corpus", p.display());
        files.push(p);
    }
    files
        .into_iter()
        .filter(|p| decode_image(p).is_err())
        .collect()
}

fn sample(image: &Path) -> Sample {
    Sample {
        dataset: "crafted".into(),
        category: "crafted".into(),
        image: image.to_path_buf(),
        image_rel: image.file_name().unwrap().to_string_lossy().into_owned(),
        mask: None,
        mask_rel: None,
        label: 0,
        class_word: "object".into(),
        mask_threshold: 0.5,
    }
}

#[test]
fn crafted_inputs_fail_fast_with_one_error_naming_the_file() {
    let files = refused_inputs();
    assert!(
        files.len() >= 15,
        "only {} refused inputs found",
        files.len()
    );
    let issue13 = [
        "issue13_dht_overfull.jpg",
        "issue13_two_sof0.jpg",
        "issue13_huge_sof.jpg",
    ];
    for name in issue13 {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} must be refused"
        );
    }

    // Library: one error naming the file, fast, little memory.
    for f in &files {
        let base = common::alloc::reset_peak();
        let t = Instant::now();
        let err = decode_image(f).unwrap_err().to_string();
        let (took, peak) = (t.elapsed(), common::alloc::peak_since(base));
        let name = f.file_name().unwrap().to_string_lossy();
        println!("{name}: {took:?}, peak {peak} bytes: {err}");
        assert!(
            err.contains(&*name),
            "{name}: error does not name the file: {err}"
        );
        assert!(
            !err.contains("panicked"),
            "{name}: a decoder panicked: {err}"
        );
        assert!(took < MAX_TIME, "{name}: took {took:?}");
        assert!(peak < MAX_BYTES, "{name}: allocated {peak} bytes at peak");
    }

    // Batch loader: with --skip-bad every file is listed, without it the first one is the error.
    let samples: Vec<Sample> = files.iter().map(|f| sample(f)).collect();
    let (ok, skipped) =
        load_batch(&samples, 64, &Normalize::IMAGENET, true).expect("skip_bad never fails");
    assert!(ok.is_empty());
    assert_eq!(skipped.len(), files.len());
    for (s, f) in skipped.iter().zip(&files) {
        assert_eq!(&s.path, f);
    }
    let err = load_batch(&samples, 64, &Normalize::IMAGENET, false).unwrap_err();
    assert_eq!(err.path(), Some(files[0].as_path()));

    // Binary: exit code, exactly one `error:` line naming the file, under a second. The image
    // is read before the backbone, so a missing backbone is never reached.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    for f in &files {
        let t = Instant::now();
        let o = Command::new(BIN)
            .args(["features", "--backbone"])
            .arg(dir.path().join("no-backbone"))
            .arg("--image")
            .arg(f)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("binary runs");
        let took = t.elapsed();
        let name = f.file_name().unwrap().to_string_lossy();
        let stderr = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(!o.status.success(), "{name}: exit status {}", o.status);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert_eq!(lines.len(), 1, "{name}: expected one line, got: {stderr}");
        assert!(
            lines[0].starts_with("error:") && lines[0].contains(&*name),
            "{name}: {stderr}"
        );
        assert!(took < MAX_TIME, "{name}: the binary took {took:?}");
        assert!(!out.exists());
    }
}
