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
    let (ok, text) = sweep_in(&root(), tmp, runs, table, extra);
    assert!(ok, "sweep {table} {extra:?} failed:\n{text}");
    text
}

/// `ava-dino sweep` started in `cwd`: whether it succeeded, and what it printed.
fn sweep_in(cwd: &Path, tmp: &Path, runs: &Path, table: &str, extra: &[&str]) -> (bool, String) {
    sweep_with(cwd, &[], tmp, runs, table, extra)
}

/// [`sweep_in`] with environment variables set for the process.
fn sweep_with(
    cwd: &Path,
    env: &[(&str, &str)],
    tmp: &Path,
    runs: &Path,
    table: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .current_dir(cwd)
        .envs(env.iter().copied())
        .arg("sweep")
        .arg(root().join(format!("experiments/{table}.yaml")))
        .args(["--profile", "smoke", "--quiet", "--runs"])
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
    (out.status.success(), text)
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
    // Every evaluation carries bootstrap intervals, per category and for the mean.
    for ev in [
        &first.best_epoch,
        &first.final_epoch,
        first.untrained.as_ref().unwrap(),
    ] {
        let info = ev.bootstrap.as_ref().expect("bootstrap info");
        assert_eq!(info.replicates, 1000);
        let mean = ev.mean_interval.as_ref().expect("mean interval");
        let p = mean.pixel_auroc.expect("pixel AUROC interval");
        assert!(p.lo <= p.hi && p.lo >= 0.0 && p.hi <= 1.0, "{p:?}");
        assert!(ev.per_category.iter().all(|c| c.interval.is_some()));
    }
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

/// A finished run is reused only under the identity it was made with: a key that changes a
/// number stops the sweep before any work, naming the key and the ways out; a key that changes
/// no number, or nothing, keeps skipping it. Started outside the repository, the run still
/// records the binary's revision.
#[test]
fn changed_configuration_stops_before_any_work_unchanged_keys_reuse() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let runs = tmp.path().join("runs");
    let run = runs.join("paper-smoke/full__visa__mvtec__s0");
    let run_in = |extra: &[&str]| sweep_in(&elsewhere, tmp.path(), &runs, "table4", extra);
    let (ok, out) = run_in(&["--all"]);
    assert!(ok, "{out}");
    let m = metrics(&run);
    assert_eq!(
        m.provenance.git_revision.as_deref(),
        ava_dino::build_info::revision(),
        "the revision comes from the binary, not from the directory it runs in"
    );
    assert!(m.provenance.git_revision.is_some());
    assert_eq!(m.provenance.code, ava_dino::build_info::CODE);
    assert!(m.provenance.threads >= 1);
    assert_eq!(
        m.provenance.kernels,
        ava_dino::backbone::Kernels::configured().name(),
        "the CPU kernels' instruction set"
    );
    assert_eq!(
        (
            m.provenance.backbone_dtype.as_str(),
            m.provenance.feature_dtype.as_str()
        ),
        ("f32", "f32")
    );
    let log = || std::fs::read_to_string(run.join("log.txt")).unwrap();
    let (done, log_before) = (std::fs::read(run.join("DONE")).unwrap(), log());

    for (set, key) in [
        ("train.epochs=5", "train.epochs: 3 -> 5"),
        ("backbone.dtype=bf16", "backbone.dtype: f32 -> bf16"),
        ("cache.dtype=f16", "cache.dtype: f32 -> f16"),
    ] {
        let (ok, out) = run_in(&["--all", "--set", set]);
        assert!(!ok, "{set}: reused a run made differently:\n{out}");
        for want in [
            key,
            "job 0 full__visa__mvtec__s0",
            "nothing was run",
            "--force",
            "--runs",
        ] {
            assert!(out.contains(want), "{set}: `{want}` missing:\n{out}");
        }
        assert_eq!(log(), log_before, "{set}: work was done before stopping");
    }
    // Keys that change no number, and no change at all, keep the finished job.
    for extra in [
        &[
            "--set",
            "cache.memory_budget=1GiB",
            "--set",
            "train.log_interval_s=3",
        ][..],
        &["--set", "cache.train=memory"],
        &[],
    ] {
        let mut args = vec!["--all"];
        args.extend_from_slice(extra);
        let (ok, out) = run_in(&args);
        assert!(
            ok && out.contains("already done, skipped"),
            "{extra:?}:\n{out}"
        );
    }
    assert_eq!(std::fs::read(run.join("DONE")).unwrap(), done);
}

/// The smoke tables under every instruction set of the CPU kernels this machine runs (a CI
/// runner without AVX-512 runs AVX2): the same numbers bit for bit, each run naming its variant.
#[test]
fn every_cpu_kernel_variant_gives_the_same_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for isa in ava_dino::backbone::Isa::available() {
        let runs = tmp.path().join(isa.name());
        let env = [("AVA_DINO_CPU_KERNELS", isa.name())];
        // Shards of its own: a variant never reads features another one computed (their keys
        // are equal, since the variants give the same bits).
        let cache = format!("cache.dir={}", runs.join("cache").display());
        let args = ["--all", "--set", &cache];
        let (ok, out) = sweep_with(&root(), &env, tmp.path(), &runs, "table4", &args);
        assert!(ok, "{}: {out}", isa.name());
        let m = metrics(&runs.join("paper-smoke/full__visa__mvtec__s0"));
        assert_eq!(m.provenance.kernels, isa.name());
        let extracted = m.provenance.backbone_images.get("extract").copied();
        assert!(
            extracted.is_some_and(|n| n > 0),
            "{}: no backbone pass",
            isa.name()
        );
        results.push((isa.name(), numbers(&m)));
    }
    assert!(
        results.len() >= 2,
        "every CPU runs at least its best variant and portable"
    );
    for (name, n) in &results[1..] {
        assert_eq!(n, &results[0].1, "{name} differs from {}", results[0].0);
    }
}

/// Two seeds of one training set read the features the first one extracted: the backbone runs
/// once over the training images, not once per seed, and each seed still trains on its own.
#[test]
fn seeds_share_the_training_and_target_features() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    sweep(
        tmp.path(),
        &runs,
        "table4",
        &[
            "--all",
            "--set",
            "sweep.seeds=[0,1]",
            "--set",
            "cache.train=auto",
        ],
    );
    let (s0, s1) = (
        metrics(&runs.join("paper-smoke/full__visa__mvtec__s0")),
        metrics(&runs.join("paper-smoke/full__visa__mvtec__s1")),
    );
    let extracted = |m: &RunMetrics| m.provenance.backbone_images.get("extract").copied();
    assert!(extracted(&s0).is_some_and(|n| n > 0), "{:?}", s0.provenance);
    assert_eq!(extracted(&s1), Some(0), "{:?}", s1.provenance);
    assert_eq!(s1.provenance.feature_store, "disk");
    // The target too: the first seed writes its features, the second reads them back.
    let evaluated = |m: &RunMetrics| m.provenance.backbone_images.get("eval").copied();
    assert!(evaluated(&s0).is_some_and(|n| n > 0), "{:?}", s0.provenance);
    assert_eq!(evaluated(&s1), Some(0), "{:?}", s1.provenance);
    assert_ne!(
        numbers(&s0),
        numbers(&s1),
        "each seed trains its own adapters"
    );
}

/// The estimate's disk figures are what a sweep leaves: the checkpoints its trainings keep
/// (every epoch's adapters and `epoch_N.pth`, the trainer state of the last two) and the feature
/// shards it writes (two seeds share the training and the target shards: written once).
#[test]
fn the_estimate_prices_what_a_sweep_leaves_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let extra = [
        "--all",
        "--set",
        "sweep.seeds=[0,1]",
        "--set",
        "cache.train=auto",
    ];
    sweep(tmp.path(), &runs, "table4", &extra);
    // The same configuration as the sweep's: its `--set` values, in order.
    let overrides: Vec<String> = tiny(tmp.path())
        .into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .filter(|a| !a.starts_with("--"))
        .collect();
    let loaded = ava_dino::experiment::load_experiment(
        &root().join("experiments/table4.yaml"),
        Some(ava_dino::experiment::Profile::Smoke),
        &overrides,
    )
    .unwrap();
    let rates = ava_dino::engine::cost::calibration::CpuRates::build();
    let e = ava_dino::runner::estimate::estimate(&[loaded], &root(), &rates).unwrap();
    let priced = e.disk();
    let bytes = |dir: &Path, keep: &dyn Fn(&Path) -> bool| -> f64 {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file() && keep(e.path()))
            .map(|e| e.metadata().unwrap().len() as f64)
            .sum()
    };
    let checkpoints = bytes(&runs, &|p| {
        p.components().any(|c| c.as_os_str() == "checkpoints")
    });
    let shards = bytes(&tmp.path().join("cache"), &|_| true);
    for (what, on_disk, priced) in [
        ("checkpoints", checkpoints, priced.checkpoints),
        ("feature shards", shards, priced.shards),
    ] {
        assert!(
            on_disk > 0.0 && (on_disk / priced - 1.0).abs() < 0.02,
            "{what}: {on_disk} B on disk, {priced} B priced"
        );
    }
    assert_eq!(priced.spilled, 0.0, "the maps fit the budget");

    // The warning compares those needs with the room of the disks that take them: the runs
    // directory takes the checkpoints, `cache.dir` the shards; on one disk they add up.
    use ava_dino::io::space::{Space, space_of};
    let (cache, need) = (tmp.path().join("cache"), priced.kept());
    let one_disk = |free: f64| {
        move |_: &Path| {
            Some(Space {
                device: 1,
                free: free as u64,
            })
        }
    };
    assert_eq!(e.disk_warning(&root(), &runs, one_disk(need + 1.0)), None);
    let w = e
        .disk_warning(&root(), &runs, one_disk(need - 1.0))
        .expect("one byte short is said");
    for part in [
        runs.display().to_string(),
        cache.display().to_string(),
        "cache.dtype: f16".into(),
    ] {
        assert!(w.contains(&part), "{part} missing: {w}");
    }
    // Two disks: only the one short of room is named.
    let (checkpoints, shards) = (priced.checkpoints as u64, priced.shards as u64);
    let two_disks = |p: &Path| {
        Some(if p.starts_with(&runs) {
            Space {
                device: 1,
                free: checkpoints + 1,
            }
        } else {
            Space {
                device: 2,
                free: shards - 1,
            }
        })
    };
    let w = e.disk_warning(&root(), &runs, two_disks).unwrap();
    assert!(w.contains(&cache.display().to_string()), "{w}");
    assert!(!w.contains(&runs.display().to_string()), "{w}");
    // This machine has room for a few megabytes.
    assert_eq!(e.disk_warning(&root(), &runs, space_of), None);
}

/// `cache.train` only says where training features live: memory, shards on disk and the
/// backbone rerun every epoch train and evaluate to the same numbers. So does a budget too small
/// for any category's maps, which spills them and computes every metric from the files
/// (docs/metrics.md, "Categories larger than memory").
#[test]
fn every_training_store_and_spilled_maps_give_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, store, budget) in [
        ("memory", "memory", None),
        ("disk", "disk", None),
        ("recompute", "recompute", None),
        ("spilled maps", "memory", Some("cache.memory_budget=1KiB")),
    ] {
        let runs = tmp.path().join(name.replace(' ', "-"));
        let set = format!("cache.train={store}");
        let mut extra = vec!["--all", "--set", &set];
        if let Some(budget) = budget {
            extra.extend(["--set", budget]);
        }
        let out = sweep(tmp.path(), &runs, "table4", &extra);
        let run = runs.join("paper-smoke/full__visa__mvtec__s0");
        let m = metrics(&run);
        assert_eq!(m.provenance.feature_store, store, "{out}");
        results.push((name, numbers(&m)));
        let leftovers: Vec<_> = walkdir::WalkDir::new(&run)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".spill-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{name}: spill files left: {leftovers:?}"
        );
    }
    for (name, n) in &results[1..] {
        assert_eq!(n, &results[0].1, "{name} differs from memory");
    }
}

/// Two processes started at once on jobs that share a training (two Slurm array tasks, two
/// Kubernetes pods), on a fresh checkout: one writes the twins while the other waits for them,
/// one trains while the other waits for the training's lock, then reuses it; both end with the
/// numbers of a serial sweep. Then both again with `--force` in one session (one Slurm array):
/// the old training is moved aside once, the new one is trained once and kept for both.
#[test]
fn concurrent_jobs_sharing_a_training_equal_a_serial_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let (serial, parallel) = (tmp.path().join("serial"), tmp.path().join("parallel"));
    sweep(tmp.path(), &serial, "table1", &["--task-index", "0"]);
    sweep(tmp.path(), &serial, "table1", &["--task-index", "1"]);
    // Twins nobody has written yet: the two processes race for them.
    let fresh_twins = format!(
        "data.synthetic.dir={}",
        tmp.path().join("synthetic-race").display()
    );
    let both = |extra: &[&str]| {
        let spawn = |i: &str| {
            Command::new(env!("CARGO_BIN_EXE_ava-dino"))
                .current_dir(root())
                .env("AVA_DINO_FORCE_SESSION", "array-42")
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
                .args(["--set", &fresh_twins, "--task-index", i])
                .args(extra)
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
    };
    let exp_dir = parallel.join("paper-smoke");
    let trained_once = || {
        let log = std::fs::read_to_string(exp_dir.join("_train/full__visa__s0/log.txt")).unwrap();
        assert_eq!(
            log.matches("steps/epoch").count(),
            1,
            "trained once:\n{log}"
        );
    };
    let same_as_serial = || {
        for job in ["full__visa__mvtec__s0", "full__visa__btad__s0"] {
            let a = metrics(&serial.join("paper-smoke").join(job));
            let b = metrics(&exp_dir.join(job));
            assert_eq!(numbers(&a), numbers(&b), "{job}");
        }
    };
    both(&[]);
    trained_once();
    same_as_serial();

    both(&["--force"]);
    let aside = std::fs::read_dir(exp_dir.join("_train"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
        .count();
    assert_eq!(aside, 1, "the shared training is moved aside once");
    trained_once();
    same_as_serial();
}
