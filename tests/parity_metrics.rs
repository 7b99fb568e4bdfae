//! Parity of `ava_dino::metrics` with scikit-learn / scikit-image (fixtures: `scripts/gen_metrics.py`).

mod common;

use ava_dino::io::TensorFile;
use ava_dino::metrics::{AUPRO_FPR_LIMIT, aupro, pixel_metrics};
use common::parity::{Case, Report, cases};

const TOL: f64 = 1e-6;
const TOL_AUPRO: f64 = 1e-4;

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
            report.scalar(case, "expected.json", name, g, w, tol);
        }
        (None, None) if want.is_null() => {
            report.check(
                case,
                "expected.json",
                &format!("{name} undefined=null"),
                true,
            );
        }
        (g, _) => {
            report.check(
                case,
                "expected.json",
                &format!("{name} got={g:?} want={want}"),
                false,
            );
        }
    }
}

fn run_case(report: &mut Report, case: &Case) -> Result<(), String> {
    let text = std::fs::read_to_string(case.dir.join("expected.json"))
        .map_err(|e| format!("expected.json: {e}"))?;
    let want: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("expected.json: {e}"))?;
    let file = TensorFile::read(case.dir.join("case.safetensors")).map_err(|e| e.to_string())?;
    let scores = file
        .f32("scores", 1)
        .map_err(|e| e.to_string())?
        .as_f32()
        .unwrap();
    let labels = file
        .u8("labels", 1)
        .map_err(|e| e.to_string())?
        .as_u8()
        .unwrap();
    let m = pixel_metrics(scores, labels).map_err(|e| e.to_string())?;
    compare(report, case, "auroc", m.auroc, &want["auroc"], TOL);
    compare(report, case, "ap", m.ap, &want["ap"], TOL);
    compare(report, case, "f1_max", m.f1_max, &want["f1_max"], TOL);
    compare(
        report,
        case,
        "f1_threshold",
        m.f1_threshold,
        &want["f1_threshold"],
        TOL,
    );
    if file.contains("maps") {
        let maps = file.f32("maps", 3).map_err(|e| e.to_string())?;
        let masks = file.u8("masks", 3).map_err(|e| e.to_string())?;
        let (k, h, w) = (maps.shape[0], maps.shape[1], maps.shape[2]);
        let got = aupro(
            maps.as_f32().unwrap(),
            masks.as_u8().unwrap(),
            k,
            h,
            w,
            AUPRO_FPR_LIMIT,
        )
        .map_err(|e| e.to_string())?;
        compare(report, case, "aupro", got, &want["aupro"], TOL_AUPRO);
    }
    Ok(())
}

#[test]
fn metrics_match_sklearn() {
    let mut report = Report::new("metrics");
    for case in cases("metrics") {
        if let Err(e) = run_case(&mut report, &case) {
            report.fail(&case, "case", &e);
        }
    }
    report.finish();
}
