//! The parity-fixture contract itself: a comparison outside tolerance, a NaN or a shape mismatch
//! fails, and a report that compared nothing fails.

mod common;

use std::path::PathBuf;

use common::parity::{Case, Report, Tolerance};
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

#[test]
fn empty_report_fails() {
    let caught = std::panic::catch_unwind(|| Report::new("nothing").finish());
    let err = caught.expect_err("a report that compared nothing must fail");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("no comparison"), "{msg}");
}
