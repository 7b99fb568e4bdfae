//! End to end with the authors' formats, through the binary on the smoke profile (issue 22):
//! a training that starts from a checkpoint in either format (`train.init`) with PyTorch's data
//! order (`train.shuffle: torch`), the init file in the run's identity, wrong files refused
//! before any backbone work.

use std::path::{Path, PathBuf};
use std::process::Command;

use ava_dino::experiment::RunMetrics;
use ava_dino::io::{TensorFile, read_pth};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tiny settings layered over the smoke profile; everything written under `tmp`.
fn tiny(tmp: &Path) -> Vec<String> {
    let sets = [
        "data.image_size=32".to_string(),
        "backbone.embedded.patch=8".into(),
        "backbone.embedded.depth=4".into(),
        "backbone.taps=[1,3]".into(),
        "train.epochs=2".into(),
        format!("data.synthetic.dir={}", tmp.join("synthetic").display()),
        format!("cache.dir={}", tmp.join("cache").display()),
    ];
    sets.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

/// `ava-dino <args...>` with the tiny settings: whether it succeeded, and what it printed.
fn ava(tmp: &Path, args: &[&str], sets: &[String]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .current_dir(root())
        .args(args)
        .args(tiny(tmp))
        .args(sets.iter().flat_map(|s| ["--set".to_string(), s.clone()]))
        .output()
        .expect("run ava-dino");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Table 4's one job (full, VisA -> MVTec-AD, seed 0) into `runs`.
fn sweep(tmp: &Path, runs: &Path, sets: &[String]) -> (bool, String) {
    let table = root().join("experiments/table4.yaml");
    let runs = runs.display().to_string();
    let args = [
        "sweep",
        table.to_str().unwrap(),
        "--profile",
        "smoke",
        "--quiet",
        "--all",
        "--runs",
        &runs,
    ];
    ava(tmp, &args, sets)
}

const RUN: &str = "paper-smoke/full__visa__mvtec__s0";

fn metrics(runs: &Path) -> RunMetrics {
    serde_json::from_slice(&std::fs::read(runs.join(RUN).join("metrics.json")).unwrap()).unwrap()
}

/// The one training directory of `runs`.
fn training(runs: &Path) -> PathBuf {
    let dir = runs.join("paper-smoke/_train");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn checkpoint(runs: &Path, epoch: usize) -> PathBuf {
    training(runs).join(format!("checkpoints/epoch_{epoch:03}"))
}

/// The adapters' tensors (reference names, bits) of our safetensors checkpoint.
fn ours(path: &Path) -> Vec<(String, Vec<u32>)> {
    let f = TensorFile::read(path).unwrap();
    f.tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, t)| {
            (
                k.clone(),
                t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

/// The same of the authors' `.pth`.
fn theirs(path: &Path) -> Vec<(String, Vec<u32>)> {
    read_pth(path)
        .unwrap()
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

fn numbers(m: &RunMetrics) -> String {
    let losses: Vec<_> = m.epochs.iter().map(|e| (&e.loss, &e.mean)).collect();
    format!(
        "{:?}|{:?}|{:?}|{:?}",
        m.best_epoch, m.final_epoch, m.untrained, losses
    )
}

#[test]
fn training_starts_from_a_checkpoint_in_either_format() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let (ok, out) = sweep(tmp.path(), &first, &[]);
    assert!(ok, "{out}");
    let init_pth = tmp.path().join("init.pth");
    let init_st = tmp.path().join("init.safetensors");
    std::fs::copy(checkpoint(&first, 1).join("epoch_0.pth"), &init_pth).unwrap();
    std::fs::copy(checkpoint(&first, 1).join("adapters.safetensors"), &init_st).unwrap();
    assert_eq!(
        theirs(&init_pth),
        ours(&init_st),
        "the two formats hold the same adapters"
    );

    // From the authors' format, in PyTorch's order: the training starts exactly there.
    let from = |file: &Path| {
        vec![
            format!("train.init={}", file.display()),
            "train.shuffle=torch".to_string(),
        ]
    };
    let a = tmp.path().join("from_pth");
    let (ok, out) = sweep(tmp.path(), &a, &from(&init_pth));
    assert!(ok, "{out}");
    let start = checkpoint(&a, 0).join("adapters.safetensors");
    assert_eq!(ours(&start), theirs(&init_pth), "epoch 0 is the init file");
    let from_pth = metrics(&a);
    assert_ne!(numbers(&from_pth), numbers(&metrics(&first)));
    assert!(
        std::fs::read_to_string(a.join(RUN).join("fingerprint"))
            .unwrap()
            .contains("weights.init sha256:"),
        "the init file is part of the identity"
    );

    // From our format: the same adapters, so the same numbers.
    let b = tmp.path().join("from_safetensors");
    let (ok, out) = sweep(tmp.path(), &b, &from(&init_st));
    assert!(ok, "{out}");
    assert_eq!(numbers(&metrics(&b)), numbers(&from_pth));

    // Another init file under the same name: the finished run is stale, nothing runs.
    let log = std::fs::read_to_string(a.join(RUN).join("log.txt")).unwrap();
    std::fs::copy(checkpoint(&first, 2).join("epoch_1.pth"), &init_pth).unwrap();
    let (ok, out) = sweep(tmp.path(), &a, &from(&init_pth));
    assert!(!ok, "reused a run made from another init file:\n{out}");
    for want in ["weights.init: sha256:", "nothing was run", "--force"] {
        assert!(out.contains(want), "`{want}` missing:\n{out}");
    }
    assert_eq!(
        std::fs::read_to_string(a.join(RUN).join("log.txt")).unwrap(),
        log
    );

    // Wrong files: one error naming the file and what is wrong, before any backbone work.
    let not_a_checkpoint = tmp.path().join("notes.pth");
    std::fs::write(&not_a_checkpoint, "not a checkpoint").unwrap();
    let cases = [
        (
            from(&not_a_checkpoint),
            "notes.pth: neither a PyTorch checkpoint",
        ),
        (
            [from(&init_pth), vec!["model.bottleneck=16".to_string()]].concat(),
            "init.pth: tensor `",
        ),
        (
            [from(&init_pth), vec!["backbone.taps=[3]".to_string()]].concat(),
            "init.pth: unexpected tensors",
        ),
    ];
    for (i, (sets, want)) in cases.iter().enumerate() {
        let runs = tmp.path().join(format!("wrong{i}"));
        let (ok, out) = sweep(tmp.path(), &runs, sets);
        assert!(!ok && out.contains(want), "`{want}` missing:\n{out}");
        let log = std::fs::read_to_string(runs.join(RUN).join("log.txt")).unwrap_or_default();
        assert!(
            !log.contains("loading assets"),
            "backbone work began:\n{log}"
        );
    }
}

/// `ava-dino evaluate` of `files` on MVTec-AD with the tiny settings and `sets` into `out`.
fn evaluate(tmp: &Path, files: &[&Path], out: &Path, sets: &[String]) -> (bool, String) {
    let table = root().join("experiments/table4.yaml");
    let mut args = vec![
        "evaluate".to_string(),
        "--experiment".into(),
        table.display().to_string(),
        "--profile".into(),
        "smoke".into(),
        "--target".into(),
        "mvtec".into(),
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
        "--checkpoint".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ava(tmp, &args, sets)
}

/// The numbers of an evaluation as JSON text: equal text is equal bits (serde_json writes the
/// shortest form that reads back to the same f64).
fn exact(ev: &ava_dino::experiment::record::Evaluation) -> String {
    serde_json::to_string(&(&ev.per_category, &ev.mean, &ev.mean_interval)).unwrap()
}

#[test]
fn evaluate_reproduces_a_runs_metrics_from_its_own_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (ok, out) = sweep(tmp.path(), &runs, &[]);
    assert!(ok, "{out}");
    let run = metrics(&runs);
    let (best, last) = (&run.best_epoch, &run.final_epoch);
    let theirs = |e: usize| checkpoint(&runs, e).join(format!("epoch_{}.pth", e - 1));
    let ours = checkpoint(&runs, last.epoch).join("adapters.safetensors");
    let mut files = vec![theirs(last.epoch), ours.clone()];
    if best.epoch != last.epoch {
        files.push(theirs(best.epoch));
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let dir = tmp.path().join("eval");
    let (ok, printed) = evaluate(tmp.path(), &refs, &dir, &[]);
    assert!(ok, "{printed}");

    let record: ava_dino::experiment::record::CheckpointsRecord =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(record.checkpoints.len(), files.len());
    let last_label = format!("epoch_{}.pth", last.epoch - 1);
    let ours_label = format!("epoch_{:03}/adapters.safetensors", last.epoch);
    for (c, want) in record.checkpoints.iter().zip([last, last, best]) {
        assert_eq!(exact(&c.evaluation), exact(want), "{}", c.label);
        assert_eq!(c.evaluation.epoch, want.epoch, "{}", c.label);
        assert!(c.sha256.starts_with("sha256:"));
    }
    assert_eq!(record.checkpoints[0].label, last_label);
    assert_eq!(record.checkpoints[1].label, ours_label);

    // The table test.py prints, per checkpoint.
    let mean = &last.mean;
    let f = |v: Option<f64>| v.map_or("nan".to_string(), |v| format!("{v:.5}"));
    let mean_line = format!(
        "  MEAN                      P-AUROC: {}  I-AUROC: {}  F1: {}",
        f(mean.pixel_auroc),
        f(mean.image_auroc),
        f(mean.pixel_f1max)
    );
    for label in [&last_label, &ours_label] {
        let head = format!("Dataset: mvtec  |  Checkpoint: {label}");
        let table = printed.split(&head).nth(1).expect(&head);
        assert!(
            table.contains(&mean_line),
            "`{mean_line}` missing:\n{printed}"
        );
    }
    let c = &last.per_category[0];
    let row = format!("  {:<25} P-AUROC: {}", c.category, f(c.metrics.pixel_auroc));
    assert!(printed.contains(&row), "`{row}` missing:\n{printed}");

    // per_category.csv and overlays, as in a run directory.
    let csv = std::fs::read_to_string(dir.join("per_category.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{last_label},"))),
        "{csv}"
    );
    for label in [last_label.clone(), ours_label.replace('/', "__")] {
        let maps = dir.join(&label).join("maps");
        assert!(
            std::fs::read_dir(&maps).is_ok_and(|mut d| d.next().is_some()),
            "{maps:?}"
        );
    }

    // Wrong files: one line naming the file and what is wrong, before any backbone work (the
    // output folder is made only once the backbone is loaded).
    let notes = tmp.path().join("notes.pth");
    std::fs::write(&notes, "not a checkpoint").unwrap();
    let pth = theirs(last.epoch);
    let cases: [(&[&Path], &[&str], &str); 3] = [
        (
            &[&pth, &notes],
            &[],
            "notes.pth: neither a PyTorch checkpoint",
        ),
        (&[&pth], &["model.bottleneck=16"], "tensor `"),
        (&[&pth], &["backbone.taps=[3]"], "unexpected tensors"),
    ];
    for (i, (files, sets, want)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("wrong{i}"));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let (ok, printed) = evaluate(tmp.path(), files, &out, &sets);
        assert!(
            !ok && printed.contains(want),
            "`{want}` missing:\n{printed}"
        );
        let file = files.last().unwrap().file_name().unwrap().to_string_lossy();
        assert!(
            printed.contains(&*file),
            "the file is not named:\n{printed}"
        );
        assert!(!out.exists(), "work began before the files were checked");
    }
    // An unknown category: named with the known ones, before any backbone work too.
    let out = tmp.path().join("wrong-category");
    let table = root().join("experiments/table4.yaml");
    let (t, o, p) = (
        table.display().to_string(),
        out.display().to_string(),
        pth.display().to_string(),
    );
    let args = [
        "evaluate",
        "--experiment",
        &t,
        "--profile",
        "smoke",
        "--target",
        "mvtec",
        "--quiet",
        "--out",
        &o,
        "--category",
        "bottel",
        "--checkpoint",
        &p,
    ];
    let (ok, printed) = ava(tmp.path(), &args, &[]);
    assert!(
        !ok && printed.contains("unknown category `bottel`; known: bottle"),
        "{printed}"
    );
    assert!(!out.exists(), "work began before the category was checked");
}
