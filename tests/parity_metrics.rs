//! Parity of `ava_dino::metrics` with scikit-learn / scikit-image (kind `metrics`, contract in
//! docs/fixtures.md, fixtures from `scripts/gen_metrics.py`).
//!
//! `case.safetensors`: `scores` f32 [N] and `labels` u8 [N] (required); `maps` f32 [K,H,W] with
//! `masks` u8 [K,H,W] (an optional pair). `expected.json`: `auroc`, `ap`, `f1_max` (required; a
//! number, or `null` where the metric is undefined), `f1_threshold` (optional), `aupro` (required
//! with maps). Tolerance: 1e-6 absolute for the ranking metrics, 1e-4 for AUPRO.

mod common;

use ava_dino::metrics::{AUPRO_FPR_LIMIT, aupro, pixel_metrics};
use common::parity::contract::Scratch;
use common::parity::{Case, Dtype, Report, cases};

const TOL: f64 = 1e-6;
const TOL_AUPRO: f64 = 1e-4;
const CASE: &str = "case.safetensors";
const EXPECTED: &str = "expected.json";
const DEFINED_OR_NULL: &str = "a number, or null where the metric is undefined";

/// One metric: `null` must be `None`, a number must be matched within `tol`.
fn compare(
    report: &mut Report,
    case: &Case,
    name: &str,
    got: Option<f64>,
    want: &serde_json::Value,
    tol: f64,
) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => {
            report.scalar(case, EXPECTED, name, g, w, tol);
        }
        (None, None) if want.is_null() => {
            report.check(case, EXPECTED, &format!("{name} undefined=null"), true);
        }
        (g, _) => {
            report.check(
                case,
                EXPECTED,
                &format!("{name} got={g:?} want={want}"),
                false,
            );
        }
    }
}

fn run_case(report: &mut Report, case: &Case) {
    let Some(want) = report.read_json(case, EXPECTED, "the scikit-learn values") else {
        return;
    };
    let Some(file) = report.read_tensors(case, CASE, "the scores and labels") else {
        return;
    };
    let scores = report.required(case, &file, "scores", Dtype::F32, &["N"]);
    let labels = report.required(case, &file, "labels", Dtype::U8, &["N"]);
    let keys = ["auroc", "ap", "f1_max"]
        .map(|k| report.required_key(case, EXPECTED, &want, k, DEFINED_OR_NULL));
    if let (Some(scores), Some(labels)) = (scores, labels) {
        match pixel_metrics(scores.as_f32().unwrap(), labels.as_u8().unwrap()) {
            Ok(m) => {
                for ((key, got), w) in [("auroc", m.auroc), ("ap", m.ap), ("f1_max", m.f1_max)]
                    .into_iter()
                    .zip(keys)
                {
                    if let Some(w) = w {
                        compare(report, case, key, got, w, TOL);
                    }
                }
                match want.get("f1_threshold") {
                    Some(w) => compare(report, case, "f1_threshold", m.f1_threshold, w, TOL),
                    None => report.skip(case, EXPECTED, "f1_threshold"),
                }
            }
            Err(e) => report.fail(case, CASE, &format!("scores/labels: {e}")),
        }
    }

    // maps + masks come as a pair; with them `aupro` is required, without them it must be null.
    if !(file.contains("maps") || file.contains("masks")) {
        if want.get("aupro").is_some_and(|v| !v.is_null()) {
            report.fail(
                case,
                EXPECTED,
                &format!(
                    "aupro is {} but {CASE} has no maps/masks to compute it from",
                    want["aupro"]
                ),
            );
        }
        return;
    }
    let maps = report.required(case, &file, "maps", Dtype::F32, &["K", "H", "W"]);
    let masks = report.required(case, &file, "masks", Dtype::U8, &["K", "H", "W"]);
    let w = report.required_key(case, EXPECTED, &want, "aupro", DEFINED_OR_NULL);
    let (Some(maps), Some(masks), Some(w)) = (maps, masks, w) else {
        return;
    };
    let (k, h, wd) = (maps.shape[0], maps.shape[1], maps.shape[2]);
    match aupro(
        maps.as_f32().unwrap(),
        masks.as_u8().unwrap(),
        k,
        h,
        wd,
        AUPRO_FPR_LIMIT,
    ) {
        Ok(got) => compare(report, case, "aupro", got, w, TOL_AUPRO),
        Err(e) => report.fail(case, CASE, &format!("maps/masks: {e}")),
    }
}

#[test]
fn metrics_match_sklearn() {
    let mut report = Report::new("metrics");
    for case in cases("metrics") {
        run_case(&mut report, &case);
    }
    report.finish();
}

/// docs/fixtures.md, kind `metrics`: only the required fields pass; each required one missing fails.
#[test]
fn metrics_fixture_contract() {
    let s = Scratch::new("metrics");
    s.copy("regions_several", "minimal_regions")
        .remove_key(EXPECTED, "f1_threshold");
    s.copy("one_class_negative", "minimal_undefined")
        .remove_key(EXPECTED, "f1_threshold")
        .remove_key(EXPECTED, "aupro");
    s.copy("tiny", "no_auroc").remove_key(EXPECTED, "auroc");
    s.copy("tiny", "no_labels")
        .remove_tensors(CASE, |n| n == "labels");
    s.copy("regions_several", "no_aupro")
        .remove_key(EXPECTED, "aupro");
    s.copy("regions_several", "masks_without_maps")
        .remove_tensors(CASE, |n| n == "maps");
    s.copy("tiny", "aupro_without_maps")
        .edit_json(EXPECTED, |o| {
            o.insert("aupro".into(), 0.5.into());
        });
    s.copy("tiny", "no_expected").remove_file(EXPECTED);
    let run = s.run("metrics_match_sklearn");

    run.assert_passes("minimal_regions", &["expected.json f1_threshold"]);
    run.assert_same_as_committed("minimal_regions", "regions_several");
    run.assert_passes("minimal_undefined", &["expected.json f1_threshold"]);
    run.assert_same_as_committed("minimal_undefined", "one_class_negative");
    run.assert_fails("no_auroc", &["expected.json auroc missing"]);
    run.assert_fails("no_labels", &["case.safetensors labels missing", "u8 [N]"]);
    run.assert_fails("no_aupro", &["expected.json aupro missing"]);
    run.assert_fails("masks_without_maps", &["case.safetensors maps missing"]);
    run.assert_fails("aupro_without_maps", &["expected.json aupro is 0.5"]);
    run.assert_fails("no_expected", &["expected.json missing (required file"]);
}
