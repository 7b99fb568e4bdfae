//! `ava-dino metrics` prints the fixture's expected values as one JSON object.

mod common;

use std::process::Command;

#[test]
fn metrics_cli_prints_expected_json() {
    let root = common::parity::committed_root().join("metrics");
    for case in ["regions_touching", "one_class_negative"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
            .args(["metrics", "--input"])
            .arg(root.join(case).join("case.safetensors"))
            .output()
            .expect("run ava-dino");
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(case).join("expected.json")).unwrap(),
        )
        .unwrap();
        for key in ["auroc", "ap", "f1_max", "f1_threshold", "aupro"] {
            match (got[key].as_f64(), want[key].as_f64()) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "{case} {key}: {g} vs {w}"),
                _ => assert!(
                    got[key].is_null() && want[key].is_null(),
                    "{case} {key}: {} vs {}",
                    got[key],
                    want[key]
                ),
            }
        }
    }
}

#[test]
fn metrics_cli_rejects_a_file_without_scores() {
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args(["metrics", "--input", "Cargo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ava-dino");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
}
