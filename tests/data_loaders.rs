//! Loaders of every layout, through the synthetic twins, under both protocols: counts, labels,
//! masks, class words, ordering; plus the twins' determinism and the batch loader.

use std::collections::BTreeMap;
use std::path::Path;

use ava_dino::data::preprocess::{Normalize, decode_luma, load_batch};
use ava_dino::data::synth::{SynthSummary, write_all};
use ava_dino::data::{ListOptions, Protocol, Registry, Sample, SampleOrder, list_samples};

fn twins(dir: &Path) -> (Registry, SynthSummary) {
    let summary = write_all(dir, 7).expect("synth");
    let reg = Registry::load(&Registry::default_path())
        .expect("registry")
        .with_data_root(dir);
    (reg, summary)
}

fn counts(samples: &[Sample]) -> BTreeMap<String, (usize, usize)> {
    let mut m = BTreeMap::new();
    for s in samples {
        let e = m.entry(s.category.clone()).or_insert((0, 0));
        if s.label == 0 { e.0 += 1 } else { e.1 += 1 }
    }
    m
}

/// The reference's class word: component [-4] of the path under its default roots
/// (docs/data.md): "Data" for VisA, the root's parent for the flat sets, else the
/// category folder (BTAD/ColonDB/ClinicDB: "01").
fn reference_word(key: &str, category: &str) -> String {
    match key {
        "visa" => "Data".into(),
        "ksdd2" => "industrial".into(),
        "kvasir" => "medical".into(),
        _ => category.into(),
    }
}

#[test]
fn every_layout_under_both_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, summary) = twins(tmp.path());
    assert_eq!(summary.datasets.len(), 9, "nine twins");
    assert!(
        (250..=500).contains(&summary.images),
        "a few hundred images, got {}",
        summary.images
    );

    for ds in &summary.datasets {
        let spec = reg.get(&ds.key).unwrap();
        let written: BTreeMap<String, (usize, usize)> = ds
            .categories
            .iter()
            .map(|c| (c.name.clone(), (c.normal, c.anomalous)))
            .collect();
        for protocol in [Protocol::Reference, Protocol::Corrected] {
            let samples = list_samples(&reg, &ds.key, protocol, &ListOptions::default())
                .unwrap_or_else(|e| panic!("{} {protocol}: {e}", ds.key));
            let got = counts(&samples);
            let total: usize = written.values().map(|(n, a)| n + a).sum();
            match (ds.key.as_str(), protocol) {
                // Official KSDD2 ships a GT file for every image: the reference calls all anomalous.
                ("ksdd2", Protocol::Reference) => {
                    assert_eq!(
                        got["01"],
                        (0, total),
                        "ksdd2 reference labels = has a GT file"
                    );
                }
                // Reference Kvasir: seed-42 shuffle, keep [int(.7n)+int(.15n)..] = 3 of 20.
                ("kvasir", Protocol::Reference) => {
                    assert_eq!(got["01"], (0, 3), "kvasir reference subset")
                }
                _ => assert_eq!(
                    got, written,
                    "{} {protocol}: per-category (normal, anomalous)",
                    ds.key
                ),
            }
            // Sorted by category then image path; absolute paths exist; anomalous ones have masks.
            for w in samples.windows(2) {
                assert!(
                    (&w[0].category, &w[0].image_rel) < (&w[1].category, &w[1].image_rel),
                    "{}: order",
                    ds.key
                );
            }
            for s in &samples {
                assert!(
                    s.image.is_absolute() && s.image.is_file(),
                    "{}",
                    s.image.display()
                );
                assert_eq!(s.mask_threshold, spec.mask_threshold);
                if s.label == 1 {
                    let m = s
                        .mask
                        .as_ref()
                        .unwrap_or_else(|| panic!("{} has no mask", s.image.display()));
                    let px = decode_luma(m).unwrap();
                    if ds.key != "ksdd2" || protocol == Protocol::Corrected {
                        assert!(
                            px.data.iter().any(|&v| v > 0),
                            "{}: anomalous mask is empty",
                            m.display()
                        );
                    }
                } else if ds.key != "ksdd2" {
                    assert!(
                        s.mask.is_none(),
                        "{}: normal image with a mask",
                        s.image.display()
                    );
                } else {
                    let px = decode_luma(s.mask.as_ref().unwrap()).unwrap();
                    assert!(
                        px.data.iter().all(|&v| v == 0),
                        "ksdd2 normal has an all-zero GT"
                    );
                }
                let want = match protocol {
                    Protocol::Reference => reference_word(&ds.key, &s.category),
                    Protocol::Corrected => spec
                        .categories
                        .iter()
                        .find(|c| c.name == s.category)
                        .unwrap()
                        .true_class_word(),
                };
                assert_eq!(
                    s.class_word, want,
                    "{} {protocol} class word of {}",
                    ds.key, s.image_rel
                );
            }
        }
    }
}

#[test]
fn reference_pairs_by_sorted_order_and_corrected_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = twins(tmp.path());
    for protocol in [Protocol::Reference, Protocol::Corrected] {
        let s = list_samples(
            &reg,
            "mvtec",
            protocol,
            &ListOptions {
                categories: vec!["bottle".into()],
                ..ListOptions::default()
            },
        )
        .unwrap();
        for x in s.iter().filter(|x| x.label == 1) {
            let stem = Path::new(&x.image_rel)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                x.mask_rel
                    .as_ref()
                    .unwrap()
                    .ends_with(&format!("{stem}_mask.png")),
                "{:?}",
                x.mask_rel
            );
        }
    }
    // Kvasir masks are JPEG yet exactly binary (8x8-aligned defects at quality 100).
    let k = list_samples(&reg, "kvasir", Protocol::Corrected, &ListOptions::default()).unwrap();
    for s in &k {
        let m = decode_luma(s.mask.as_ref().unwrap()).unwrap();
        assert!(
            m.data.iter().all(|&v| v == 0 || v == 255),
            "{}: JPEG mask not binary",
            s.image_rel
        );
    }
}

#[test]
fn visa_reads_split_csv_when_meta_json_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = twins(tmp.path());
    for protocol in [Protocol::Reference, Protocol::Corrected] {
        let with_meta = list_samples(&reg, "visa", protocol, &ListOptions::default()).unwrap();
        std::fs::rename(
            tmp.path().join("VisA_20220922/meta.json"),
            tmp.path().join("VisA_20220922/meta.json.off"),
        )
        .unwrap();
        let from_csv = list_samples(&reg, "visa", protocol, &ListOptions::default()).unwrap();
        std::fs::rename(
            tmp.path().join("VisA_20220922/meta.json.off"),
            tmp.path().join("VisA_20220922/meta.json"),
        )
        .unwrap();
        assert_eq!(with_meta, from_csv, "{protocol}");
        assert!(
            with_meta.iter().all(|s| !s.image_rel.contains("0002.JPG")),
            "train rows excluded"
        );
    }
}

/// `SampleOrder::Layout` is the order the reference's `Dataset` classes index their images:
/// VisA in `meta.json` entry order per category (here rewritten into a scrambled order that is
/// not sorted), MVTec-like trees by sorted defect-type folder then sorted file name, both in the
/// registry's category order. The default order sorts both the same way.
#[test]
fn layout_order_is_the_reference_datasets_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = twins(tmp.path());
    let layout = ListOptions {
        order: SampleOrder::Layout,
        ..ListOptions::default()
    };
    let rels = |v: &[Sample]| v.iter().map(|s| s.image_rel.clone()).collect::<Vec<_>>();

    // VisA: reverse every category's entries in meta.json, then rotate by one, so the entry
    // order is neither sorted nor reverse-sorted.
    let meta_path = tmp.path().join("VisA_20220922/meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    let mut want = Vec::new();
    let cats: Vec<String> = reg
        .get("visa")
        .unwrap()
        .categories
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for c in &cats {
        let list = meta["test"][c].as_array_mut().unwrap();
        list.reverse();
        list.rotate_left(1);
        want.extend(
            list.iter()
                .map(|e| e["img_path"].as_str().unwrap().to_string()),
        );
    }
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let got = list_samples(&reg, "visa", Protocol::Reference, &layout).unwrap();
    assert_eq!(rels(&got), want, "VisA in meta.json order");
    let sorted = list_samples(&reg, "visa", Protocol::Reference, &ListOptions::default()).unwrap();
    assert_ne!(
        rels(&sorted),
        want,
        "the scrambled order must differ from the sorted one"
    );
    let mut again = got.clone();
    again.sort_by(|a, b| (&a.category, &a.image_rel).cmp(&(&b.category, &b.image_rel)));
    assert_eq!(again, sorted, "same samples, other order");

    // MVTec: what the reference's `get_image_data` walks (sorted classes, sorted defect types,
    // sorted files), restated with plain directory reads.
    let root = tmp.path().join("MVTecAD");
    let sorted_names = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut want = Vec::new();
    for c in reg.get("mvtec").unwrap().categories.iter().map(|c| &c.name) {
        for ty in sorted_names(&root.join(c).join("test")) {
            for f in sorted_names(&root.join(c).join("test").join(&ty)) {
                want.push(format!("{c}/test/{ty}/{f}"));
            }
        }
    }
    let got = list_samples(&reg, "mvtec", Protocol::Reference, &layout).unwrap();
    assert_eq!(rels(&got), want, "MVTec in the reference's walk order");
}

#[test]
fn twins_are_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_all(a.path(), 3).unwrap();
    write_all(b.path(), 3).unwrap();
    let files = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(d)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && e.file_name() != "synth.json")
            .map(|e| {
                (
                    e.path()
                        .strip_prefix(d)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.len() > 500);
    assert!(fa == fb, "same seed must give the same bytes");
}

#[test]
fn batch_loader_keeps_order_and_reports_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = twins(tmp.path());
    let samples = list_samples(&reg, "btad", Protocol::Reference, &ListOptions::default()).unwrap();
    let (ok, skipped) = load_batch(&samples, 32, &Normalize::IMAGENET, false).unwrap();
    assert_eq!(ok.len(), samples.len());
    assert!(skipped.is_empty());
    for (k, (i, img, mask)) in ok.iter().enumerate() {
        assert_eq!(*i, k);
        assert_eq!(img.shape, vec![3, 32, 32]);
        assert_eq!(mask.shape, vec![32, 32]);
        let on = mask.as_u8().unwrap().iter().filter(|&&v| v == 1).count();
        assert_eq!(on > 0, samples[k].label == 1, "{}", samples[k].image_rel);
    }
    // Truncate one image: an error naming it, or (skip_bad) a skipped entry naming it.
    let bad = &samples[1].image;
    let bytes = std::fs::read(bad).unwrap();
    std::fs::write(bad, &bytes[..bytes.len() / 3]).unwrap();
    let err = load_batch(&samples, 32, &Normalize::IMAGENET, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    let (ok, skipped) = load_batch(&samples, 32, &Normalize::IMAGENET, true).unwrap();
    assert_eq!(ok.len(), samples.len() - 1);
    assert_eq!(skipped.len(), 1);
    assert_eq!(&skipped[0].path, bad);
    assert!(ok.iter().all(|(i, _, _)| *i != 1));
}
