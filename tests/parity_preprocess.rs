//! Parity of image/mask preprocessing with Pillow + torchvision (kind `preprocess`, contract in
//! docs/fixtures.md, fixtures from `scripts/gen_preprocess.py`).
//!
//! Tolerance (issue 4): resized pixels within 1/255 of Pillow before normalization (we aim for,
//! and on PNG/BMP/TIFF get, exact equality; JPEG decoders may differ by a unit), normalized
//! values within the same bound divided by the smallest std; masks identical.
//!
//! Files: `case.json` (`size` required; `image`, `mask`, `mask_threshold` as below), the source
//! image, an optional mask image, `expected.safetensors` (`pixel_values` required, `pixels_u8`
//! optional, `mask` required when the case has a mask image). An image not named in `case.json`
//! is the case's one `image.<ext>` file; a mask not named (key absent) is its one `mask.<ext>`
//! file if any, and `"mask": null` means none.

mod common;

use std::path::{Path, PathBuf};

use ava_dino::data::preprocess::{Normalize, load_image, load_image_u8, load_mask};
use common::parity::contract::Scratch;
use common::parity::{Case, Dtype, Report, Tolerance, cases};

const META: &str = "case.json";
const EXPECTED: &str = "expected.safetensors";

/// The files of `dir` named `<stem>.<ext>` (one extension), sorted.
fn files_named(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.is_file()
            && p.extension().is_some()
            && p.file_stem().is_some_and(|s| s.to_str() == Some(stem))
    });
    found.sort();
    found
}

/// The source file `key` (`image` or `mask`) of a case: named by `case.json`, else found as the
/// one `<key>.<ext>` file. `Ok(None)`: no mask. `Err`: what is wrong, for a failure line.
fn source(case: &Case, meta: &serde_json::Value, key: &str) -> Result<Option<PathBuf>, String> {
    match meta.get(key) {
        Some(serde_json::Value::String(name)) => Ok(Some(case.dir.join(name))),
        Some(serde_json::Value::Null) if key == "mask" => Ok(None),
        Some(v) if !v.is_null() => Err(format!("`{key}` must be a file name, got {v}")),
        _ => {
            let found = files_named(&case.dir, key);
            let names: Vec<String> = found
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            match (found.len(), key) {
                (1, _) => Ok(found.into_iter().next()),
                (0, "mask") => Ok(None),
                (0, _) => Err(format!(
                    "names no `{key}` and the case holds no {key}.<ext> file: add one or name it in `{key}`"
                )),
                _ => Err(format!(
                    "names no `{key}` and the case holds several {key} files ({}): name one in `{key}`",
                    names.join(", ")
                )),
            }
        }
    }
}

/// What `case.json` gives: output size, threshold, image and mask paths.
struct Inputs {
    size: usize,
    threshold: f32,
    image: PathBuf,
    mask: Option<PathBuf>,
}

fn read_inputs(report: &mut Report, case: &Case) -> Option<Inputs> {
    let meta = report.read_json(case, META, "`size` and the source files")?;
    let size = report
        .required_key(
            case,
            META,
            &meta,
            "size",
            "the output side S, a positive integer",
        )
        .map(|v| v.as_u64().filter(|&s| s > 0).ok_or(v));
    let size = match size {
        Some(Ok(s)) => Some(s as usize),
        Some(Err(v)) => {
            report.fail(
                case,
                META,
                &format!("`size` must be a positive integer, got {v}"),
            );
            None
        }
        None => None,
    };
    let mut paths = ["image", "mask"].map(|key| {
        source(case, &meta, key)
            .map_err(|e| report.fail(case, META, &e))
            .ok()
    });
    let (image, mask) = (paths[0].take().flatten(), paths[1].take()?);
    // Datasets binarize at 0 or 0.5 (datasets.toml): there is no default to fall back on.
    let threshold = match (&mask, meta.get("mask_threshold")) {
        (None, _) => Some(0.0),
        (Some(_), Some(v)) if v.is_number() => v.as_f64().map(|t| t as f32),
        (Some(_), Some(v)) => {
            report.fail(
                case,
                META,
                &format!("`mask_threshold` must be a number, got {v}"),
            );
            None
        }
        (Some(_), None) => {
            let what = "the mask binarization threshold t (v/255 > t) when the case has a mask";
            report.missing(case, META, "mask_threshold", what);
            None
        }
    };
    Some(Inputs {
        size: size?,
        threshold: threshold?,
        image: image?,
        mask,
    })
}

fn check_case(report: &mut Report, case: &Case) {
    let unit = 1.0 / 255.0 + 1e-6;
    let std_min = Normalize::IMAGENET
        .std
        .iter()
        .copied()
        .fold(f32::MAX, f32::min) as f64;
    let Some(inp) = read_inputs(report, case) else {
        return;
    };
    let Some(want) = report.read_tensors(case, EXPECTED, "the Pillow/torchvision output") else {
        return;
    };
    let (s, file) = (inp.size, EXPECTED);
    let sq = s.to_string();
    let (chw, hw) = (["3", &sq, &sq], [sq.as_str(), sq.as_str()]);

    if let Some(w) = report.optional(case, &want, "pixels_u8", Dtype::U8, &chw) {
        match load_image_u8(&inp.image, s) {
            Ok(got) => {
                let scaled = |v: &[u8]| v.iter().map(|&v| v as f32 / 255.0).collect::<Vec<f32>>();
                let (g, wv) = (scaled(got.as_u8().unwrap()), scaled(w.as_u8().unwrap()));
                report.close(
                    case,
                    file,
                    "pixels_u8/255",
                    &got.shape,
                    &g,
                    &w.shape,
                    &wv,
                    Tolerance::abs(unit),
                );
                let exact = got
                    .as_u8()
                    .unwrap()
                    .iter()
                    .zip(w.as_u8().unwrap())
                    .filter(|(a, b)| a != b)
                    .count();
                println!(
                    "  {}: {exact} of {} resized pixel values differ from Pillow",
                    case.label,
                    g.len()
                );
            }
            Err(e) => report.fail(case, file, &format!("load_image_u8: {e}")),
        }
    }
    if let Some(w) = report.required(case, &want, "pixel_values", Dtype::F32, &chw) {
        match load_image(&inp.image, s, &Normalize::IMAGENET) {
            Ok(got) => {
                report.close(
                    case,
                    file,
                    "pixel_values",
                    &got.shape,
                    got.as_f32().unwrap(),
                    &w.shape,
                    w.as_f32().unwrap(),
                    Tolerance::abs(unit / std_min),
                );
            }
            Err(e) => report.fail(case, file, &format!("load_image: {e}")),
        }
    }
    // With a mask image the expected mask is required; without one it is all zeros if given.
    let w = if inp.mask.is_some() {
        report.required(case, &want, "mask", Dtype::U8, &hw)
    } else {
        report.optional(case, &want, "mask", Dtype::U8, &hw)
    };
    if let Some(w) = w {
        match load_mask(inp.mask.as_deref(), s, inp.threshold) {
            Ok(got) => {
                report.check(
                    case,
                    file,
                    &format!("mask shape {:?} vs {:?}", got.shape, w.shape),
                    got.shape == w.shape,
                );
                report.exact(case, file, "mask", got.as_u8().unwrap(), w.as_u8().unwrap());
            }
            Err(e) => report.fail(case, file, &format!("load_mask: {e}")),
        }
    }
}

#[test]
fn preprocess_matches_pillow() {
    let mut report = Report::new("preprocess");
    for case in cases("preprocess") {
        check_case(&mut report, &case);
    }
    report.finish();
}

/// docs/fixtures.md, kind `preprocess`: only the required fields pass (image and mask found by
/// name); each required one missing, or an ambiguous image, fails.
#[test]
fn preprocess_fixture_contract() {
    let s = Scratch::new("preprocess");
    let keep_only = |keys: &'static [&'static str]| {
        move |o: &mut serde_json::Map<String, serde_json::Value>| {
            o.retain(|k, _| keys.contains(&k.as_str()))
        }
    };
    // A JPEG with a JPEG mask, neither named: found as image.jpg and mask.jpg.
    s.copy("jpeg_rgb", "minimal_mask")
        .edit_json(META, keep_only(&["size", "mask_threshold"]))
        .remove_tensors(EXPECTED, |n| n == "pixels_u8");
    // No mask at all: the expected mask is optional too.
    s.copy("jpeg_gray", "minimal_no_mask")
        .edit_json(META, keep_only(&["size"]))
        .remove_tensors(EXPECTED, |n| n == "pixels_u8" || n == "mask");
    s.copy("rgb_png_up", "no_size").remove_key(META, "size");
    s.copy("rgb_png_up", "no_threshold")
        .remove_key(META, "mask_threshold");
    s.copy("rgb_png_up", "no_pixel_values")
        .remove_tensors(EXPECTED, |n| n == "pixel_values");
    s.copy("rgb_png_up", "no_expected_mask")
        .remove_tensors(EXPECTED, |n| n == "mask");
    s.copy("rgb_png_up", "no_image")
        .remove_key(META, "image")
        .rename("image.png", "picture.png");
    let two = s.copy("rgb_png_up", "two_images").remove_key(META, "image");
    std::fs::copy(two.path().join("image.png"), two.path().join("image.bmp")).unwrap();
    let run = s.run("preprocess_matches_pillow");

    let absent = ["expected.safetensors pixels_u8"];
    run.assert_passes("minimal_mask", &absent);
    run.assert_same_as_committed("minimal_mask", "jpeg_rgb");
    run.assert_passes("minimal_no_mask", &[absent[0], "expected.safetensors mask"]);
    run.assert_same_as_committed("minimal_no_mask", "jpeg_gray");
    run.assert_fails("no_size", &["case.json size missing"]);
    run.assert_fails("no_threshold", &["case.json mask_threshold missing"]);
    run.assert_fails(
        "no_pixel_values",
        &["expected.safetensors pixel_values missing", "f32 [3,64,64]"],
    );
    run.assert_fails(
        "no_expected_mask",
        &["expected.safetensors mask missing", "u8 [64,64]"],
    );
    run.assert_fails(
        "no_image",
        &["case.json names no `image`", "no image.<ext> file"],
    );
    run.assert_fails(
        "two_images",
        &["case.json names no `image`", "image.bmp, image.png"],
    );
}
