//! `ava-dino estimate` names the CPU rates it priced with and where they come from: this
//! machine's calibration for its CPU and thread count, else the build machine's with the command
//! that measures this one; a corrupt calibration file is one error naming it and the fix.
//! `calibrate` itself is not run here (it takes a minute at full size on a release build): the
//! store and the keying are tested in `engine::cost::calibration`, the measurements by
//! `examples/bench_stages.rs` and docs/scale.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ava_dino::engine::cost::BUILD_CPU;
use ava_dino::engine::cost::calibration::{ENV, Entry, Key, Store, cpu_model};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `ava-dino args` with the calibration file at `calibration` and 2 rayon threads.
fn ava(calibration: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args(args)
        .current_dir(root())
        .env(ENV, calibration)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

fn estimate(calibration: &Path) -> (Output, String) {
    let out = ava(
        calibration,
        &[
            "estimate",
            "experiments/table4.yaml",
            "--profile",
            "rehearsal",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// The line of the per-stage summary for `stage` (`| backbone | 1.2 s | 0.0 s |`).
fn summary_row<'a>(text: &'a str, stage: &str) -> &'a str {
    text.lines()
        .rev()
        .find(|l| l.starts_with(&format!("| {stage} |")))
        .unwrap_or_else(|| panic!("no `{stage}` row in\n{text}"))
}

#[test]
fn estimate_names_the_rates_it_used() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("calibration.json");
    let shown = file.display().to_string();

    // No calibration: the build machine's rates, said so, with the command and the file.
    let (out, build) = estimate(&file);
    assert!(out.status.success(), "{out:?}");
    assert!(build.contains("| CPU (build machine's rates) |"), "{build}");
    assert!(build.contains("run `ava-dino calibrate`"), "{build}");
    assert!(build.contains(&shown), "{build}");
    assert!(!build.contains("this CPU"), "{build}");
    assert!(
        !file.exists(),
        "estimate must not write the calibration file"
    );

    // Only other thread counts of this CPU, and other CPUs: still the build machine's.
    let store = Store::at(&file);
    let slow = |k: f64| ava_dino::engine::cost::Rates {
        backbone_gflops: BUILD_CPU.backbone_gflops / k,
        text_gflops: BUILD_CPU.text_gflops / k,
        train_gflops: BUILD_CPU.train_gflops / k,
        eval_gflops: BUILD_CPU.eval_gflops / k,
        decode_s_per_mpix: BUILD_CPU.decode_s_per_mpix * k,
        metric_ns_per_pixel: BUILD_CPU.metric_ns_per_pixel * k,
        checkpoint_mb_per_s: BUILD_CPU.checkpoint_mb_per_s / k,
    };
    let key = |cpu: String, threads| Key { cpu, threads };
    store
        .save(&Entry::now(key(cpu_model(), 3), slow(10.0)))
        .unwrap();
    store
        .save(&Entry::now(key("Another CPU".into(), 2), slow(10.0)))
        .unwrap();
    let (out, other) = estimate(&file);
    assert!(out.status.success(), "{out:?}");
    assert!(other.contains("| CPU (build machine's rates) |"), "{other}");
    assert!(
        other.contains("calibrated at 3 threads only, this process uses 2"),
        "{other}"
    );
    assert_eq!(
        summary_row(&other, "backbone"),
        summary_row(&build, "backbone")
    );

    // This CPU at 2 threads: its rates, named with the date and the file.
    let entry = Entry::now(key(cpu_model(), 2), slow(4.0));
    store.save(&entry).unwrap();
    let (out, calibrated) = estimate(&file);
    assert!(out.status.success(), "{out:?}");
    assert!(
        calibrated.contains("| this CPU (calibrated) |"),
        "{calibrated}"
    );
    let line = format!(
        "rates: calibrated on {}, 2 threads, {} ({shown})",
        cpu_model(),
        entry.date()
    );
    assert!(calibrated.contains(&line), "{line}\n{calibrated}");
    assert!(
        !calibrated.contains("run `ava-dino calibrate`"),
        "{calibrated}"
    );
    // The CPU column is priced at them (4x slower), the GPU column is not.
    let (cpu_build, cpu_cal) = (
        summary_row(&build, "train"),
        summary_row(&calibrated, "train"),
    );
    assert_ne!(cpu_build, cpu_cal);
    let gpu = |row: &str| row.split('|').nth(3).unwrap().trim().to_string();
    assert_eq!(gpu(cpu_build), gpu(cpu_cal));
}

#[test]
fn a_corrupt_calibration_file_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("calibration.json");
    std::fs::write(&file, "{\"version\": 1, \"entries\": [").unwrap();
    let (out, _) = estimate(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: calibration file "), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(
        err.contains("delete it") && err.contains("run `ava-dino calibrate`"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // calibrate refuses it before measuring anything, and leaves it as it was.
    let out = ava(&file, &["calibrate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "{\"version\": 1, \"entries\": ["
    );
}

#[test]
fn calibrate_refuses_what_it_cannot_measure() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("calibration.json");
    // Usage errors (clap's exit 2), before any work; the GPU column is projected, not measured.
    for (args, message) in [
        (
            &["calibrate", "--device", "wgpu"][..],
            "[possible values: cpu]",
        ),
        (&["calibrate", "--threads", "0"][..], "invalid value '0'"),
    ] {
        let out = ava(&file, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!file.exists());
    }
    // A runs folder that cannot take files: one error naming it and the fix, before measuring
    // (no stage line printed, no calibration stored).
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let runs = not_a_dir.join("runs");
    let out = ava(&file, &["calibrate", "--runs", runs.to_str().unwrap()]);
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&runs.display().to_string()) && err.contains("--runs DIR"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches("(os error").count(), 1, "the cause once: {err}");
    assert!(!stdout.contains("decode+resize"), "{stdout}");
    assert!(!file.exists());
}

#[test]
fn a_missing_experiment_file_is_one_line_that_tells_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-experiment.yaml");
    let out = ava(
        &tmp.path().join("calibration.json"),
        &["estimate", missing.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read experiment file "),
        "{err}"
    );
    assert!(err.contains(&missing.display().to_string()), "{err}");
    // The OS's reason is in the error's own text and its source; the line tells it once.
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
}
