//! Issue 13: dataset loaders never list `predict` overlays (`*.anomaly.png`) written inside a
//! dataset folder, and `ava-dino synth --out` refuses a folder holding anything but earlier twins.

use std::path::Path;
use std::process::Command;

use ava_dino::data::synth::write_all;
use ava_dino::data::{ListOptions, Registry, list_samples};
use ava_dino::protocol::Protocol;

const BIN: &str = env!("CARGO_BIN_EXE_ava-dino");

fn all_samples(root: &Path) -> Vec<String> {
    let reg = Registry::embedded()
        .unwrap()
        .with_data_root(root.to_path_buf());
    let mut out = Vec::new();
    for key in reg.datasets.keys() {
        for s in list_samples(&reg, key, Protocol::Corrected, &ListOptions::default()).unwrap() {
            out.push(format!(
                "{key}/{}|{:?}|{}",
                s.image_rel, s.mask_rel, s.label
            ));
        }
    }
    out
}

#[test]
fn loaders_ignore_predict_overlays() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 5).unwrap();
    let before = all_samples(tmp.path());
    // An overlay beside every image file (the old `predict` default), in any case.
    let mut written = 0;
    for e in walkdir::WalkDir::new(tmp.path()) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((stem, ext)) = name.rsplit_once('.')
            && ["png", "jpg", "JPG", "bmp", "tif"].contains(&ext)
        {
            let overlay = if written % 2 == 0 {
                format!("{stem}.anomaly.png")
            } else {
                format!("{stem}.ANOMALY.PNG")
            };
            std::fs::copy(e.path(), e.path().with_file_name(overlay)).unwrap();
            written += 1;
        }
    }
    assert!(written > 300, "{written} overlays");
    assert_eq!(all_samples(tmp.path()), before);
}

fn synth(out: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["synth", "--out"])
        .arg(out)
        .output()
        .expect("binary runs")
}

#[test]
fn synth_refuses_a_folder_that_is_not_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    // A new folder, then the same folder again (earlier twins): both fine.
    let out = tmp.path().join("twins");
    assert!(synth(&out).status.success());
    let o = synth(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A data root with real files: refused, nothing written, one line saying what to do.
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("mvtec_anomaly_detection/bottle")).unwrap();
    std::fs::write(data.join("README.txt"), "real data").unwrap();
    let o = synth(&data);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("data")
            && err.contains("not an earlier `ava-dino synth` output")
            && err.contains("new or empty folder"),
        "{err}"
    );
    assert!(!data.join("mvtec_anomaly_detection/bottle/test").exists());
    // A twin folder to which something else was added is refused too; a file as --out as well.
    std::fs::write(out.join("notes.md"), "mine").unwrap();
    assert_eq!(synth(&out).status.code(), Some(1));
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let o = synth(&file);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a folder"));
    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(synth(&empty).status.success());
}

#[test]
fn synth_writes_the_asked_images_per_category() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("twins");
    let o = Command::new(BIN)
        .args(["synth", "--per-category", "2", "--out"])
        .arg(&out)
        .output()
        .expect("binary runs");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // VisA's 12 categories and MVTec-AD's 15, one normal and one anomalous image each.
    for want in [
        "visa        12 categories   24 test images (12 normal, 12 anomalous)",
        "mvtec       15 categories   30 test images (15 normal, 15 anomalous)",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }
    // Zero is refused by the argument parser, naming the option.
    let o = Command::new(BIN)
        .args(["synth", "--per-category", "0", "--out"])
        .arg(tmp.path().join("none"))
        .output()
        .expect("binary runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--per-category"));
}
