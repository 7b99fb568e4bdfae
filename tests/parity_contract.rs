//! The parity-fixture contract itself: a comparison outside tolerance, a NaN or a shape mismatch
//! fails, and a report that compared nothing fails; an absent optional field is a skip (neither a
//! comparison nor a failure), an absent required one or a wrong dtype/rank a failure naming the
//! file and the field.

mod common;

use std::path::PathBuf;

use ava_dino::io::{HostTensor, TensorFile};
use common::parity::{Case, Dtype, Report, Tolerance};
fn case() -> Case {
    Case {
        label: "k/c".into(),
        dir: PathBuf::new(),
    }
}

#[test]
fn tolerance_fails_outside_and_passes_inside() {
    let mut r = Report::new("k");
    assert!(r.close(
        &case(),
        "f",
        "t",
        &[2],
        &[1.0, 2.0],
        &[2],
        &[1.0, 2.00001],
        Tolerance::abs_rel(1e-4, 1e-5)
    ));
    assert!(!r.close(
        &case(),
        "f",
        "t",
        &[2],
        &[1.0, 2.1],
        &[2],
        &[1.0, 2.0],
        Tolerance::abs_rel(1e-4, 1e-5)
    ));
    assert!(!r.close(
        &case(),
        "f",
        "t",
        &[2],
        &[1.0, f32::NAN],
        &[2],
        &[1.0, 2.0],
        Tolerance::abs(1.0)
    ));
    assert!(!r.close(
        &case(),
        "f",
        "t",
        &[1, 2],
        &[1.0, 2.0],
        &[2],
        &[1.0, 2.0],
        Tolerance::abs(1.0)
    ));
    assert!(!r.exact(&case(), "f", "ids", &[1, 2, 3], &[1, 2, 4]));
    assert_eq!(r.failed(), 4);
}

/// `finish` of `report` fails with a message containing `needle`.
fn assert_finish_fails(report: Report, needle: &str) {
    let caught = std::panic::catch_unwind(|| report.finish());
    let err = caught.expect_err("the report must fail");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains(needle), "{msg}");
}

#[test]
fn empty_report_fails() {
    assert_finish_fails(Report::new("nothing"), "no comparison");
}

#[test]
fn optional_absent_is_skipped_required_absent_fails() {
    let mut file = TensorFile::new("/somewhere/io.safetensors");
    file.insert("x", HostTensor::f32(vec![2], vec![1.0, 2.0]));
    file.insert("ids", HostTensor::i64(vec![2], vec![1, 2]));
    let mut r = Report::new("k");
    assert!(
        r.optional(&case(), &file, "x", Dtype::F32, &["N"])
            .is_some()
    );
    assert!(
        r.optional(&case(), &file, "y", Dtype::F32, &["N"])
            .is_none()
    );
    assert_eq!(
        r.skipped(),
        ["parity k/c io.safetensors y skipped (absent)"]
    );
    assert_eq!(r.failed(), 0);

    assert!(
        r.required(&case(), &file, "z", Dtype::U8, &["H", "W"])
            .is_none()
    );
    assert!(r.failures()[0].starts_with("parity k/c io.safetensors z missing (required: u8 [H,W]"));
    // Present but of another dtype or rank: a failure too, optional or not.
    assert!(
        r.optional(&case(), &file, "ids", Dtype::F32, &["N"])
            .is_none()
    );
    assert!(
        r.required(&case(), &file, "x", Dtype::F32, &["B", "N"])
            .is_none()
    );
    assert_eq!(r.failed(), 3);
    assert!(r.failures()[1].contains("ids") && r.failures()[1].contains("wanted f32 [N]"));
    assert!(r.failures()[2].contains("wanted f32 [B,N]"));
    assert_eq!(r.skipped().len(), 1);
}

#[test]
fn missing_keys_and_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.json"), r#"{"x": null}"#).unwrap();
    std::fs::write(dir.path().join("b.json"), "[1]").unwrap();
    let c = Case {
        label: "k/c".into(),
        dir: dir.path().to_path_buf(),
    };
    let mut r = Report::new("k");
    let v = r.read_json(&c, "a.json", "-").unwrap();
    // `null` is present (an undefined value), a missing key is not.
    assert!(r.required_key(&c, "a.json", &v, "x", "a number").is_some());
    assert!(r.required_key(&c, "a.json", &v, "y", "a number").is_none());
    assert!(r.read_json(&c, "b.json", "-").is_none());
    assert!(r.read_json(&c, "none.json", "the values").is_none());
    assert!(
        r.read_tensors(&c, "none.safetensors", "the tensors")
            .is_none()
    );
    assert_eq!(
        r.failures(),
        [
            "parity k/c a.json y missing (required: a number; see docs/fixtures.md) FAIL",
            "parity k/c b.json is not a JSON object FAIL",
            "parity k/c none.json missing (required file: the values; see docs/fixtures.md) FAIL",
            "parity k/c none.safetensors missing (required file: the tensors; see docs/fixtures.md) FAIL",
        ]
    );
}

#[test]
fn a_report_of_skips_only_fails() {
    let mut r = Report::new("skips");
    r.skip(&case(), "f", "t");
    assert_finish_fails(r, "no comparison");
}
