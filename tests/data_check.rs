//! `datasets check` on the synthetic twins (clean: no errors) and on a damaged copy (a truncated
//! PNG, a deleted mask, a renamed category, a mask of another size): each problem reported by path.

use std::path::Path;
use std::process::Command;

use ava_dino::data::check::{Severity, check_dataset};
use ava_dino::data::synth::write_all;
use ava_dino::data::{ListOptions, Protocol, Registry, list_samples};

fn registry(dir: &Path) -> Registry {
    Registry::load(&Registry::default_path())
        .unwrap()
        .with_data_root(dir)
}

#[test]
fn clean_twins_pass_every_check() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 1).unwrap();
    let reg = registry(tmp.path());
    for key in reg.datasets.keys() {
        let r = check_dataset(&reg, key).unwrap();
        assert!(r.synthetic, "{key}: synth.json recognised");
        assert!(r.problems.is_empty(), "{key}: {:#?}", r.problems);
        assert!(r.files_decoded > 0);
    }
}

#[test]
fn damaged_copy_is_reported_by_path() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 1).unwrap();
    let mv = tmp.path().join("MVTecAD");
    let truncated = mv.join("bottle/test/blob/001.png");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let deleted = mv.join("carpet/ground_truth/stain/000_mask.png");
    let carpet_types: Vec<_> = std::fs::read_dir(mv.join("carpet/ground_truth"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let deleted = if deleted.exists() {
        deleted
    } else {
        mv.join("carpet/ground_truth")
            .join(&carpet_types[0])
            .join("000_mask.png")
    };
    std::fs::remove_file(&deleted).unwrap();
    std::fs::rename(mv.join("zipper"), mv.join("zipper_v2")).unwrap();
    // A mask of another size than its image.
    let resized = mv.join("grid/ground_truth");
    let ty = std::fs::read_dir(&resized)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let odd_mask = ty.join("001_mask.png");
    image::GrayImage::new(5, 7).save(&odd_mask).unwrap();

    let reg = registry(tmp.path());
    let r = check_dataset(&reg, "mvtec").unwrap();
    assert!(!r.ok());
    let has = |p: &Path, what: &str| {
        r.problems
            .iter()
            .any(|x| x.severity == Severity::Error && x.path == p && x.message.contains(what))
    };
    assert!(has(&truncated, "unreadable image"), "{:#?}", r.problems);
    let orphan_image = deleted
        .parent()
        .unwrap()
        .to_string_lossy()
        .replace("ground_truth", "test")
        + "/000.png";
    assert!(
        has(Path::new(&orphan_image), "no mask"),
        "{:#?}",
        r.problems
    );
    assert!(has(&mv.join("zipper/test"), "missing"), "{:#?}", r.problems);
    assert!(
        has(&mv.join("zipper_v2"), "not in datasets.toml"),
        "{:#?}",
        r.problems
    );
    assert!(has(&odd_mask, "mask is 5x7"), "{:#?}", r.problems);

    // The reference protocol refuses to pair masks by sorted order with one missing, naming the folder;
    // --skip-bad under corrected leaves out just that image.
    let err = list_samples(
        &reg,
        "mvtec",
        Protocol::Reference,
        &ListOptions {
            categories: vec!["carpet".into()],
            ..ListOptions::default()
        },
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .contains(&deleted.parent().unwrap().display().to_string())
    );
    let opts = ListOptions {
        categories: vec!["carpet".into()],
        skip_bad: true,
        ..ListOptions::default()
    };
    let (s, skipped) =
        ava_dino::data::list_samples_with_skipped(&reg, "mvtec", Protocol::Corrected, &opts)
            .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, Path::new(&orphan_image));
    assert_eq!(s.len() + 1, 6);

    // The CLI prints every path and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args(["datasets", "check", "mvtec", "--data-root"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for p in [
        &truncated,
        Path::new(&orphan_image),
        &mv.join("zipper_v2"),
        &odd_mask,
    ] {
        assert!(
            text.contains(&p.display().to_string()),
            "{} not in:\n{text}",
            p.display()
        );
    }
}

#[test]
fn missing_root_is_an_error_naming_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let r = check_dataset(&reg, "visa").unwrap();
    assert!(!r.ok());
    assert_eq!(r.problems[0].path, tmp.path().join("VisA_20220922"));
    assert!(r.problems[0].message.contains("AVA_DINO_VISA_ROOT"));
    let e = list_samples(&reg, "visa", Protocol::Reference, &ListOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("AVA_DINO_VISA_ROOT") && e.contains("VisA_20220922"),
        "{e}"
    );
}

#[test]
fn empty_category_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 2).unwrap();
    let cat = tmp.path().join("MPDD/tubes/test");
    for ty in std::fs::read_dir(&cat).unwrap() {
        let ty = ty.unwrap().path();
        for f in std::fs::read_dir(&ty).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
    }
    let reg = registry(tmp.path());
    let e = list_samples(&reg, "mpdd", Protocol::Corrected, &ListOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&tmp.path().join("MPDD/tubes").display().to_string())
            && e.contains("no test images"),
        "{e}"
    );
    let r = check_dataset(&reg, "mpdd").unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.severity == Severity::Error && p.message.contains("no test images")),
        "{:#?}",
        r.problems
    );
}
