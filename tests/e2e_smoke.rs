//! End to end on a tiny profile, through the binary: synthetic twins, random backbones, training,
//! evaluation, run directories. Checks the promises of issue 7 that need real processes:
//! finished jobs are skipped, a run killed mid-training resumes and ends with the same numbers,
//! and jobs run one by one by index equal a serial sweep.

use std::path::{Path, PathBuf};
use std::process::Command;

use ava_dino::experiment::RunMetrics;

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
        "train.epochs=3".into(),
        format!("data.synthetic.dir={}", tmp.join("synthetic").display()),
        // Shards on disk: the resumed process reads features back instead of recomputing them.
        "cache.train=disk".into(),
        format!("cache.dir={}", tmp.join("cache").display()),
    ];
    sets.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

fn sweep(tmp: &Path, runs: &Path, table: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .current_dir(root())
        .args([
            "sweep",
            &format!("experiments/{table}.yaml"),
            "--profile",
            "smoke",
            "--quiet",
            "--runs",
        ])
        .arg(runs)
        .args(tiny(tmp))
        .args(extra)
        .output()
        .expect("run ava-dino");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "sweep {table} {extra:?} failed:\n{text}"
    );
    text
}

fn metrics(run: &Path) -> RunMetrics {
    serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap()
}

/// The numbers of a run (evaluations, losses, routing), without timings and host facts.
fn numbers(m: &RunMetrics) -> String {
    let losses: Vec<_> = m.epochs.iter().map(|e| (&e.loss, &e.mean)).collect();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}",
        m.best_epoch, m.final_epoch, m.untrained, losses, m.routing
    )
}

#[test]
fn smoke_job_runs_skips_and_resumes_to_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    sweep(tmp.path(), &runs, "table4", &["--all"]);
    let run = runs.join("paper-smoke").join("full__visa__mvtec__s0");
    let first = metrics(&run);
    assert!(
        first.provenance.embedded,
        "a run on the embedded default says so"
    );
    assert_eq!(first.final_epoch.epoch, 3);
    assert!(
        first.untrained.is_some(),
        "the untrained baseline is reported"
    );
    assert!(
        first.final_epoch.mean.pixel_auroc.is_some(),
        "pixel AUROC defined on the synthetic twin"
    );
    assert!(
        first
            .epochs
            .iter()
            .all(|e| e.loss.total.is_finite() && e.loss.total > 0.0)
    );
    assert!(run.join("routing.csv").is_file() && run.join("DONE").is_file());
    // Table 4's separation figure is the AUROC of the per-image weights the run wrote.
    let rows = ava_dino::experiment::record::read_routing_csv(
        &std::fs::read_to_string(run.join("routing.csv")).unwrap(),
    )
    .unwrap();
    let w: Vec<f32> = rows.iter().map(|r| r.w_anomaly as f32).collect();
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let separation = first.routing.as_ref().unwrap().separation_auroc;
    assert!(
        separation.is_some(),
        "normal and anomalous MVTec twin images"
    );
    assert_eq!(separation, ava_dino::metrics::auroc(&w, &labels).unwrap());
    assert!(
        first.epochs[2].loss.total < first.epochs[0].loss.total,
        "training lowers the loss"
    );

    // Score a user's image with the trained run: one JSON line and an overlay in a fresh folder
    // under the run (never beside the input).
    let img_dir = tmp.path().join("mine");
    std::fs::create_dir_all(&img_dir).unwrap();
    let src = walk_png(&tmp.path().join("synthetic").join("MVTecAD"));
    std::fs::copy(&src, img_dir.join("part.png")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .current_dir(root())
        .args(["predict", "--class-word", "bottle", "--run"])
        .arg(&run)
        .arg("--image")
        .arg(&img_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (wn, wa) = (
        line["w_normal"].as_f64().unwrap(),
        line["w_anomaly"].as_f64().unwrap(),
    );
    assert!(
        (wn + wa - 1.0).abs() < 1e-5 && line["score"].as_f64().unwrap().is_finite(),
        "{line}"
    );
    let overlay = PathBuf::from(line["overlay"].as_str().unwrap());
    assert!(
        overlay.is_file() && overlay.starts_with(run.join("predict")),
        "{overlay:?}"
    );
    assert!(overlay.ends_with("part.png.anomaly.png"), "{overlay:?}");
    assert_eq!(
        std::fs::read_dir(&img_dir).unwrap().count(),
        1,
        "nothing written beside the input"
    );
    // Into a chosen folder: the input tree is mirrored, and a second run refuses to overwrite.
    let out_dir = tmp.path().join("overlays");
    let predict_into = || {
        Command::new(env!("CARGO_BIN_EXE_ava-dino"))
            .current_dir(root())
            .args(["predict", "--class-word", "bottle", "--run"])
            .arg(&run)
            .arg("--image")
            .arg(&img_dir)
            .arg("--out-dir")
            .arg(&out_dir)
            .output()
            .unwrap()
    };
    assert!(predict_into().status.success());
    let before = std::fs::read(out_dir.join("part.png.anomaly.png")).unwrap();
    let again = predict_into();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read(out_dir.join("part.png.anomaly.png")).unwrap(),
        before
    );

    // Run again: the finished job is skipped.
    let again = sweep(tmp.path(), &runs, "table4", &["--all"]);
    assert!(
        again.contains("skipped") || again.contains("skip"),
        "finished job not skipped:\n{again}"
    );

    // Only the two latest checkpoints keep the trainer state (resume reads the latest).
    let ckpt = runs
        .join("paper-smoke")
        .join("_train")
        .join("full__visa__s0")
        .join("checkpoints");
    let has_state = |e: &str| ckpt.join(e).join("trainer_optim.bpk").is_file();
    assert_eq!(
        ["epoch_000", "epoch_001", "epoch_002", "epoch_003"].map(has_state),
        [false, false, true, true]
    );
    assert!(
        ckpt.join("epoch_001")
            .join("adapters.safetensors")
            .is_file()
    );
    // Simulate a kill while epoch 3 was being written (no COMPLETE marker yet) and rerun.
    std::fs::remove_file(ckpt.join("epoch_003").join("COMPLETE")).unwrap();
    std::fs::remove_file(ckpt.join("epoch_003").join("adapters.safetensors")).unwrap();
    for f in ["DONE", "metrics.json", "routing.csv"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    sweep(tmp.path(), &runs, "table4", &["--all"]);
    let log =
        std::fs::read_to_string(runs.join("paper-smoke/_train/full__visa__s0/log.txt")).unwrap();
    assert!(log.contains("resuming training after epoch 2"), "{log}");
    let shards = walkdir::WalkDir::new(tmp.path().join("cache"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .count();
    assert!(
        shards > 0,
        "feature shards written under the configured cache dir"
    );
    let resumed = metrics(&run);
    assert_eq!(
        numbers(&resumed),
        numbers(&first),
        "a resumed run ends with the same numbers"
    );

    // --force really retrains: the old run and training are moved aside (not deleted, not
    // reused) and the new training starts from epoch 0.
    sweep(tmp.path(), &runs, "table4", &["--all", "--force"]);
    let exp_dir = runs.join("paper-smoke");
    let aside = |dir: &Path, name: &str| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(&format!("{name}.replaced-"))
            })
            .count()
    };
    assert_eq!(aside(&exp_dir, "full__visa__mvtec__s0"), 1);
    assert_eq!(aside(&exp_dir.join("_train"), "full__visa__s0"), 1);
    let log = std::fs::read_to_string(exp_dir.join("_train/full__visa__s0/log.txt")).unwrap();
    assert!(
        !log.contains("resuming"),
        "a forced training starts afresh:\n{log}"
    );
    assert_eq!(
        numbers(&metrics(&run)),
        numbers(&first),
        "and is deterministic"
    );
    // Collect ignores the moved-aside runs.
    let (runs_found, _) = ava_dino::report::collect_runs(&runs).unwrap();
    assert_eq!(runs_found.len(), 1);
}

#[test]
fn jobs_by_index_equal_a_serial_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let (serial, indexed) = (tmp.path().join("serial"), tmp.path().join("indexed"));
    sweep(tmp.path(), &serial, "table3", &["--all"]);
    sweep(tmp.path(), &indexed, "table3", &["--task-index", "1"]);
    sweep(tmp.path(), &indexed, "table3", &["--task-index", "0"]);
    for job in ["last_layer__visa__mvtec__s0", "full__visa__mvtec__s0"] {
        let a = metrics(&serial.join("paper-smoke").join(job));
        let b = metrics(&indexed.join("paper-smoke").join(job));
        assert_eq!(numbers(&a), numbers(&b), "{job}");
    }
    let last = metrics(&serial.join("paper-smoke/last_layer__visa__mvtec__s0"));
    assert_eq!(
        last.provenance.taps,
        vec![3],
        "last_layer keeps only the deepest tap"
    );
}

/// The first PNG image (not a mask) under `dir`, in sorted order.
fn walk_png(dir: &Path) -> PathBuf {
    let mut all: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "png") && p.to_string_lossy().contains("/test/")
        })
        .collect();
    all.sort();
    all.into_iter().next().expect("a synthetic test image")
}

/// `cache.train` only says where training features live: memory, shards on disk and the
/// backbone rerun every epoch train and evaluate to the same numbers.
#[test]
fn every_training_store_gives_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for store in ["memory", "disk", "recompute"] {
        let runs = tmp.path().join(store);
        let set = format!("cache.train={store}");
        let out = sweep(tmp.path(), &runs, "table4", &["--all", "--set", &set]);
        let m = metrics(&runs.join("paper-smoke/full__visa__mvtec__s0"));
        assert_eq!(m.provenance.feature_store, store, "{out}");
        results.push((store, numbers(&m)));
    }
    for (store, n) in &results[1..] {
        assert_eq!(n, &results[0].1, "{store} differs from memory");
    }
}

/// Two processes started at once on jobs that share a training (two Slurm array tasks, two
/// Kubernetes pods): one trains while the other waits for the training's lock, then reuses it;
/// both end with the numbers of a serial sweep.
#[test]
fn concurrent_jobs_sharing_a_training_equal_a_serial_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let (serial, parallel) = (tmp.path().join("serial"), tmp.path().join("parallel"));
    // Twins are written once before the race (both processes would write the same files).
    sweep(tmp.path(), &serial, "table1", &["--task-index", "0"]);
    sweep(tmp.path(), &serial, "table1", &["--task-index", "1"]);
    let spawn = |i: &str| {
        Command::new(env!("CARGO_BIN_EXE_ava-dino"))
            .current_dir(root())
            .args([
                "sweep",
                "experiments/table1.yaml",
                "--profile",
                "smoke",
                "--quiet",
            ])
            .arg("--runs")
            .arg(&parallel)
            .args(tiny(tmp.path()))
            .args(["--task-index", i])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0"), spawn("1"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(parallel.join("paper-smoke/_train/full__visa__s0/log.txt"))
        .unwrap();
    assert_eq!(
        log.matches("steps/epoch").count(),
        1,
        "trained once:\n{log}"
    );
    for job in ["full__visa__mvtec__s0", "full__visa__btad__s0"] {
        let a = metrics(&serial.join("paper-smoke").join(job));
        let b = metrics(&parallel.join("paper-smoke").join(job));
        assert_eq!(numbers(&a), numbers(&b), "{job}");
    }
}
