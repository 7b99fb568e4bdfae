//! Experiments: the committed YAML files load under both profiles, overrides and errors behave,
//! and the CLI lists and emits jobs. Issue 7.

use std::path::{Path, PathBuf};
use std::process::Command;

use ava_dino::experiment::{
    self, ExperimentDir, ExperimentError, Job, Profile, Source, TableKind, Variant, WorkDir,
    load_experiment,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exp_file(name: &str) -> PathBuf {
    root().join("experiments").join(name)
}

#[test]
fn reference_defaults_match_design_section_2() {
    let e = experiment::Experiment::default();
    assert_eq!(e.data.image_size, 512);
    assert_eq!(e.backbone.taps, vec![5, 11, 17, 23]);
    assert_eq!(e.model.bottleneck, 768);
    assert_eq!(e.model.tau, 0.1);
    assert_eq!(
        (
            e.optim.lr,
            e.optim.betas,
            e.optim.eps,
            e.optim.weight_decay,
            e.optim.warmup
        ),
        (1e-4, [0.9, 0.999], 1e-8, 1e-2, 0.03)
    );
    assert_eq!((e.train.batch_size, e.train.epochs), (64, 20));
    assert_eq!(
        (e.loss.aware, e.loss.seg, e.loss.global, e.loss.route),
        (0.25, 0.5, 0.25, 0.1)
    );
    assert_eq!(e.protocol, experiment::Protocol::Reference);
    assert_eq!(e.text.activation, experiment::schema::Activation::Gelu);
    assert_eq!(e.eval.selection, experiment::EpochSelection::ReferenceBest);
}

#[test]
fn the_four_tables_load_under_both_profiles() {
    let expected_jobs = [
        ("table1.yaml", 9),
        ("table2.yaml", 4),
        ("table3.yaml", 2),
        ("table4.yaml", 1),
    ];
    for (file, n) in expected_jobs {
        for profile in [Profile::Smoke, Profile::Full] {
            let l = load_experiment(&exp_file(file), Some(profile), &[])
                .unwrap_or_else(|e| panic!("{file} {profile}: {e}"));
            assert_eq!(l.experiment.profile, profile);
            assert_eq!(experiment::jobs(&l.experiment).len(), n, "{file}");
            // Defaults not named by the file or the profile keep the reference value.
            assert_eq!(l.experiment.loss.route, 0.1);
        }
    }
    let smoke = load_experiment(&exp_file("table1.yaml"), Some(Profile::Smoke), &[])
        .unwrap()
        .experiment;
    assert!(
        smoke.backbone.weights.is_embedded()
            && smoke.text.weights.is_embedded()
            && smoke.data.root.is_embedded()
    );
    assert_eq!(smoke.tables, vec![TableKind::Table1]);
    let full = load_experiment(&exp_file("table1.yaml"), Some(Profile::Full), &[])
        .unwrap()
        .experiment;
    assert_eq!(full.backbone.weights, Source::Env("AVA_DINO_DINOV3".into()));
    assert_eq!(full.data.image_size, 512);
}

#[test]
fn overrides_change_only_their_key_and_are_type_checked() {
    let f = exp_file("table2.yaml");
    let l = load_experiment(
        &f,
        Some(Profile::Smoke),
        &[
            "train.epochs=2".into(),
            "backbone.taps=[7]".into(),
            "optim.betas=[0.8, 0.99]".into(),
            "protocol=corrected".into(),
        ],
    )
    .unwrap();
    let e = &l.experiment;
    assert_eq!(e.train.epochs, 2);
    assert_eq!(e.backbone.taps, vec![7]);
    assert_eq!(e.optim.betas, [0.8, 0.99]);
    assert_eq!(e.protocol, experiment::Protocol::Corrected);
    assert_eq!(e.train.batch_size, 8, "the profile's value survives");

    let err = load_experiment(&f, None, &["train.epoch=2".into()]).unwrap_err();
    assert!(
        matches!(err, ExperimentError::OverrideUnknownKey { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("train.epoch") && err.to_string().contains("epochs"),
        "{err}"
    );
    let err = load_experiment(&f, None, &["train.epochs=many".into()]).unwrap_err();
    assert!(matches!(err, ExperimentError::OverrideType { .. }), "{err}");
    // One dataset's twin size: the key under per_dataset is a dataset key, not a schema field.
    let l = load_experiment(
        &f,
        Some(Profile::Smoke),
        &["data.synthetic.per_dataset.ksdd2=1000".into()],
    )
    .unwrap();
    let syn = &l.experiment.data.synthetic;
    assert_eq!(
        syn.per_dataset.get("ksdd2"),
        Some(&experiment::schema::PerCategory::Count(1000))
    );
    let opts = syn.options();
    assert_eq!(
        opts.per_dataset.get("ksdd2"),
        Some(&ava_dino::data::synth::Counts::PerCategory(1000))
    );
    assert!(opts.stamp().contains("counts.ksdd2=PerCategory(1000)"));
    let err =
        load_experiment(&f, None, &["data.synthetic.per_dataset.ksdd2=lots".into()]).unwrap_err();
    assert!(matches!(err, ExperimentError::OverrideType { .. }), "{err}");
    let err = load_experiment(&f, None, &["epochs".into()]).unwrap_err();
    assert!(
        matches!(err, ExperimentError::OverrideSyntax { .. }),
        "{err}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_keys_and_wrong_types_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "name: t\nsweep:\n  runs:\n    - train: visa\n      targets: [mvtec]\n";
    let p = write(
        dir.path(),
        "unknown.yaml",
        &format!("{base}train:\n  epochs: 3\n  lr_typo: 1\n"),
    );
    let err = load_experiment(&p, None, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:8:3: key `train.lr_typo`", p.display())),
        "{err}"
    );
    assert!(err.contains("unknown field"), "{err}");

    let p = write(
        dir.path(),
        "type.yaml",
        &format!("{base}model:\n  tau: fast\n"),
    );
    let err = load_experiment(&p, None, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:7:8: key `model.tau`", p.display())),
        "{err}"
    );

    let p = write(
        dir.path(),
        "variant.yaml",
        "name: t\nsweep:\n  variants: [fulll]\n  runs:\n    - train: visa\n      targets: [mvtec]\n",
    );
    let err = load_experiment(&p, None, &[]).unwrap_err().to_string();
    assert!(
        err.contains(":3:") && err.contains("sweep.variants"),
        "{err}"
    );

    // A smoke profile file is required next to the experiment.
    let p = write(dir.path(), "ok.yaml", base);
    assert!(load_experiment(&p, None, &[]).is_ok());
    let err = load_experiment(&p, Some(Profile::Smoke), &[]).unwrap_err();
    assert!(
        matches!(err, ExperimentError::MissingProfile { .. }),
        "{err}"
    );
}

/// `backbone.dtype` parses from a file and from `--set`; a value that is not a dtype is refused
/// with the key and the accepted values.
#[test]
fn backbone_dtype_parses_and_a_bad_value_is_refused() {
    use ava_dino::backbone::Precision;
    let dir = tempfile::tempdir().unwrap();
    let base = "name: t\nsweep:\n  runs:\n    - train: visa\n      targets: [mvtec]\n";
    let good = write(dir.path(), "f32.yaml", base);
    let e = load_experiment(&good, None, &[]).unwrap().experiment;
    assert_eq!(e.backbone.dtype, Precision::F32, "f32 is the default");
    let e = load_experiment(&good, None, &["backbone.dtype=f16".into()])
        .unwrap()
        .experiment;
    assert_eq!(e.backbone.dtype, Precision::F16);
    let p = write(
        dir.path(),
        "bf16.yaml",
        &format!("{base}backbone:\n  dtype: bf16\n"),
    );
    let e = load_experiment(&p, None, &[]).unwrap().experiment;
    assert_eq!(e.backbone.dtype, Precision::Bf16);

    let p = write(
        dir.path(),
        "bad.yaml",
        &format!("{base}backbone:\n  dtype: fp8\n"),
    );
    let err = load_experiment(&p, None, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:7:10: key `backbone.dtype`", p.display())),
        "{err}"
    );
    assert!(err.contains("expected one of f32, bf16, f16"), "{err}");
    let err = load_experiment(&good, None, &["backbone.dtype=half".into()]).unwrap_err();
    assert!(matches!(err, ExperimentError::OverrideType { .. }), "{err}");
    assert!(err.to_string().contains("backbone.dtype=half"), "{err}");
}

#[test]
fn variants_adjust_taps_and_loss() {
    let e = load_experiment(&exp_file("table3.yaml"), Some(Profile::Full), &[])
        .unwrap()
        .experiment;
    let job = |variant| Job {
        variant,
        train: "visa".into(),
        target: "mvtec".into(),
        seed: 0,
    };
    assert_eq!(job(Variant::LastLayer).config(&e).backbone.taps, vec![23]);
    assert_eq!(job(Variant::TextRoutingNoLroute).config(&e).loss.route, 0.0);
    let full = job(Variant::Full).config(&e);
    assert_eq!(
        (full.backbone.taps, full.loss),
        (e.backbone.taps.clone(), e.loss)
    );
    // The method the job trains: the same variant, its taps, its loss weights.
    let m = job(Variant::LastLayer).method_config(&e, 1024, 768);
    assert_eq!(
        (m.taps, m.variant, m.loss_weights.route),
        (vec![23], Variant::LastLayer, 0.1)
    );
    // Fields that cannot change a number do not change a job's identity.
    let mut other = e.clone();
    other.description = "another".into();
    other.cache.memory_budget = experiment::MemoryBudget::Bytes(1 << 30);
    other.cache.train = experiment::TrainStore::Recompute;
    other.train.log_interval_s = 1.0;
    assert_eq!(
        job(Variant::Full).config(&other),
        job(Variant::Full).config(&e)
    );
    other.cache.dtype = experiment::FeatureDtype::F16;
    assert_ne!(
        job(Variant::Full).config(&other),
        job(Variant::Full).config(&e)
    );
}

#[test]
fn jobs_shared_between_tables_get_the_same_run_dir_and_config() {
    let t1 = load_experiment(&exp_file("table1.yaml"), Some(Profile::Smoke), &[])
        .unwrap()
        .experiment;
    let t4 = load_experiment(&exp_file("table4.yaml"), Some(Profile::Smoke), &[])
        .unwrap()
        .experiment;
    let job = experiment::jobs(&t4)[0].clone();
    assert!(experiment::jobs(&t1).contains(&job));
    let runs = Path::new("runs");
    let (d1, d4) = (ExperimentDir::new(runs, &t1), ExperimentDir::new(runs, &t4));
    assert_eq!(d1.run(&job), d4.run(&job));
    assert_eq!(
        d1.run(&job).path,
        Path::new("runs/paper-smoke/full__visa__mvtec__s0")
    );
    assert_eq!(
        d1.training(&job).path,
        Path::new("runs/paper-smoke/_train/full__visa__s0")
    );
    assert_eq!(job.config(&t1), job.config(&t4));
}

fn ava(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn cli_lists_emits_and_refuses_missing_assets() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().to_str().unwrap();
    let out = ava(&[
        "sweep",
        "experiments/table2.yaml",
        "--profile",
        "smoke",
        "--runs",
        runs,
        "--list",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        vec![
            "0\tsingle_adapter__visa__mvtec__s0\tpending",
            "1\tlearnable_routing__visa__mvtec__s0\tpending",
            "2\ttext_routing_no_lroute__visa__mvtec__s0\tpending",
            "3\tfull__visa__mvtec__s0\tpending",
        ]
    );

    let out = ava(&[
        "sweep",
        "experiments/table2.yaml",
        "--profile",
        "smoke",
        "--set",
        "train.epochs=2",
        "--emit",
        "slurm",
    ]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert!(
        script.contains("--task-index \"$SLURM_ARRAY_TASK_ID\"")
            && script.contains("--set=train.epochs=2"),
        "{script}"
    );

    let out = ava(&[
        "sweep",
        "experiments/table2.yaml",
        "--profile",
        "smoke",
        "--runs",
        runs,
        "--task-index",
        "9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));

    // Full profile with no assets: one message listing everything, before any work.
    let registry = dir.path().join("datasets.toml");
    std::fs::copy(root().join("datasets.toml"), &registry).unwrap();
    let registry_set = format!("data.registry={}", registry.display());
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args([
            "sweep",
            "experiments/table4.yaml",
            "--profile",
            "full",
            "--runs",
            runs,
            "--all",
            "--set",
            &registry_set,
        ])
        .env_remove("AVA_DINO_DINOV3")
        .env_remove("AVA_DINO_CLIP")
        .env_remove("AVA_DINO_DATA_ROOT")
        .env_remove("AVA_DINO_VISA_ROOT")
        .env_remove("AVA_DINO_MVTEC_ROOT")
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "AVA_DINO_DINOV3",
        "AVA_DINO_CLIP",
        "dataset `mvtec`",
        "dataset `visa`",
        "nothing was run",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    assert!(
        !dir.path().join("paper-full").exists(),
        "no run directory may be created"
    );
}

/// Marks Table 2's smoke job 1 finished under `runs` with the identity a sweep from this
/// process would ask for (its fingerprint and `DONE`), as a sweep leaves it; that identity.
fn finish_table2_job1(runs: &Path) -> ava_dino::engine::JobIdentity {
    let l = load_experiment(&exp_file("table2.yaml"), Some(Profile::Smoke), &[]).unwrap();
    let jobs = experiment::jobs(&l.experiment);
    let rd = ExperimentDir::new(runs, &l.experiment).run(&jobs[1]);
    let identity = ava_dino::engine::job_identity(&jobs[1], &l.experiment, &root()).unwrap();
    rd.prepare(&identity.run, None).unwrap();
    std::fs::write(rd.done_marker(), "x").unwrap();
    identity
}

/// Under `train.shuffle: torch` the training set is the list the reference's `Dataset` indexes
/// (VisA in `meta.json` order, normal images first in the twins), so the torch permutation picks
/// the same images; the sorted list would put each category's anomalous images first. The
/// target stays sorted, and the run's identity records the list it trains on.
#[test]
fn a_torch_shuffled_training_set_comes_in_the_references_order() {
    use ava_dino::data::{ListOptions, SampleOrder, list_samples};
    use ava_dino::engine::identity::sample_list_hash;
    let digests = |shuffle: &str| {
        let sets = [format!("train.shuffle={shuffle}")];
        let l = load_experiment(&exp_file("table4.yaml"), Some(Profile::Smoke), &sets).unwrap();
        let exp = l.experiment;
        let job = experiment::jobs(&exp)[0].clone();
        let identity = ava_dino::engine::job_identity(&job, &exp, &root()).unwrap();
        let config = job.config(&exp);
        let registry = ava_dino::engine::assets::registry(&config.data, &root()).unwrap();
        let listed = |key: &str, order: SampleOrder| {
            let opts = ListOptions {
                order,
                ..ListOptions::default()
            };
            list_samples(&registry, key, config.protocol, &opts).unwrap()
        };
        let part = |name: &str| identity.run.parts[name].clone();
        let (layout, sorted) = (
            listed(&job.train, SampleOrder::Layout),
            listed(&job.train, SampleOrder::Sorted),
        );
        assert_ne!(layout, sorted, "the twins' meta.json order is not sorted");
        assert_eq!(
            part("samples.target"),
            sample_list_hash(&listed(&job.target, SampleOrder::Sorted))
        );
        (
            part("samples.train"),
            sample_list_hash(&layout),
            sample_list_hash(&sorted),
        )
    };
    let (train, layout, _) = digests("torch");
    assert_eq!(train, layout, "torch: the reference's order");
    let (train, _, sorted) = digests("seeded");
    assert_eq!(train, sorted, "seeded: sorted, as before");
}

/// The CPU kernels and burn's ops give other last bits, so a run finished on one is not
/// reused under the other: the sweep names the difference and runs nothing.
#[test]
fn a_run_made_on_the_cpu_kernels_is_not_reused_under_burns_ops() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().to_str().unwrap();
    let identity = finish_table2_job1(dir.path());
    assert_eq!(
        identity.run.parts.get("kernels").map(String::as_str),
        Some("cpu"),
        "the tests run on the CPU kernels (AVA_DINO_CPU_KERNELS unset)"
    );
    let sweep = |kernels: &str| {
        Command::new(env!("CARGO_BIN_EXE_ava-dino"))
            .args(["sweep", "experiments/table2.yaml", "--profile", "smoke"])
            .args(["--runs", runs, "--task-index", "1"])
            .env("AVA_DINO_CPU_KERNELS", kernels)
            .current_dir(root())
            .output()
            .unwrap()
    };
    // Another instruction set gives the same bits: reused.
    let out = sweep("portable");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("already done, skipped"), "{err}");
    let out = sweep("burn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "reused a run made on other kernels: {err}"
    );
    for needle in [
        "made differently",
        "kernels: cpu -> burn",
        "nothing was run",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
}

#[test]
fn finished_jobs_are_skipped_and_unfinished_reach_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().to_str().unwrap();
    // Job 1 finished earlier under the identity the sweep asks for (its fingerprint and DONE are
    // there): skipped without touching the engine.
    finish_table2_job1(dir.path());
    let l = load_experiment(&exp_file("table2.yaml"), Some(Profile::Smoke), &[]).unwrap();
    let jobs = experiment::jobs(&l.experiment);
    let out = ava(&[
        "sweep",
        "experiments/table2.yaml",
        "--profile",
        "smoke",
        "--runs",
        runs,
        "--task-index",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already done, skipped"));
    let listed = String::from_utf8(
        ava(&[
            "sweep",
            "experiments/table2.yaml",
            "--profile",
            "smoke",
            "--runs",
            runs,
            "--list",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        listed.contains("1\tlearnable_routing__visa__mvtec__s0\tdone"),
        "{listed}"
    );

    // Job 0 is not finished: the run directory is prepared and the engine runs it to the end
    // (tiny settings layered over the smoke profile, twins written under the temporary dir).
    let syn = format!(
        "data.synthetic.dir={}",
        dir.path().join("synthetic").display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .args([
            "sweep",
            "experiments/table2.yaml",
            "--profile",
            "smoke",
            "--runs",
            runs,
            "--quiet",
            "--set",
            "train.epochs=2",
            "--set",
            "data.image_size=32",
            "--set",
            "backbone.embedded.patch=8",
            "--set",
            &syn,
        ])
        .env("SLURM_ARRAY_TASK_ID", "0")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rd0 = ExperimentDir::new(dir.path(), &l.experiment).run(&jobs[0]);
    assert!(
        rd0.config_file().is_file() && rd0.fingerprint_file().is_file() && rd0.log_file().is_file()
    );
    assert!(rd0.is_done() && rd0.metrics_json().is_file());

    // An unfinished run directory made with another configuration is refused, not mixed.
    std::fs::remove_file(rd0.done_marker()).unwrap();
    let out = ava(&[
        "sweep",
        "experiments/table2.yaml",
        "--profile",
        "smoke",
        "--runs",
        runs,
        "--task-index",
        "0",
        "--set",
        "train.epochs=1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train.epochs: 2 -> 1") && err.contains("nothing was run"),
        "{err}"
    );
}

/// A tap beyond the backbone the weights describe (or an image size its patch does not divide)
/// stops the sweep with one clear error before any work: no panic after the weights are loaded.
#[test]
fn taps_are_checked_against_the_loaded_backbone_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let bb = dir.path().join("bb");
    let out = ava(&[
        "random-backbone",
        "--preset",
        "tiny",
        "--out",
        bb.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = dir.path().join("runs");
    let weights = format!("backbone.weights={}", bb.display());
    let syn = format!("data.synthetic.dir={}", dir.path().join("syn").display());
    let out = ava(&[
        "sweep",
        "experiments/table4.yaml",
        "--profile",
        "smoke",
        "--all",
        "--runs",
        runs.to_str().unwrap(),
        "--set",
        &weights,
        "--set",
        "backbone.taps=[30]",
        "--set",
        "data.image_size=32",
        "--set",
        &syn,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tap 30 is out of range"), "{err}");
    assert!(err.contains("nothing was run"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!runs.exists(), "no run directory may be created");
}

#[test]
fn the_estimate_counts_a_backbone_pass_only_where_no_shards_answer() {
    // Table 2's ablations train on VisA and evaluate on MVTec-AD, all with the same taps. The
    // first job's training writes VisA's feature shards and its evaluation MVTec-AD's (other
    // jobs evaluate the same target); every later job reads both back, so only the first job
    // runs any image through the backbone (engine/plan.rs, engine/pipeline.rs).
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        "cache.memory_budget=1GiB".to_string(),
        format!("data.root={}", tmp.path().join("absent").display()),
    ];
    let loaded = load_experiment(&exp_file("table2.yaml"), Some(Profile::Full), &sets).unwrap();
    let rates = ava_dino::engine::cost::calibration::CpuRates::build();
    let e = ava_dino::runner::estimate::estimate(&[loaded], &root(), &rates).unwrap();
    let backbone = |j: &ava_dino::runner::estimate::JobEstimate| {
        j.cpu
            .iter()
            .find(|s| s.name == "backbone")
            .map_or(0.0, |s| s.flops)
    };
    let per_image = ava_dino::backbone::Spec::paper().shape().flops(512, 23);
    let images: Vec<f64> = e.jobs.iter().map(|j| backbone(j) / per_image).collect();
    assert!(e.jobs.len() >= 2, "{images:?}");
    // VisA's 2,162 and MVTec-AD's 1,725 official test images, then nothing.
    assert!((images[0] - (2162.0 + 1725.0)).abs() < 1e-6, "{images:?}");
    for &n in &images[1..] {
        assert_eq!(n, 0.0, "{images:?}");
    }
    // The caller's budget is the one priced (the run directory's identity resets the cache
    // settings; the job still runs with them); the data gets what one batch's activations
    // leave of it (here nothing: at full size a micro-batch of 8 needs about 1.6 GiB).
    for j in &e.jobs {
        assert_eq!(j.budget, 1 << 30, "{}", j.label);
        let m = j.memory;
        assert!(
            m.activations > j.budget && m.data == 0,
            "{}: {m:?}",
            j.label
        );
        assert_eq!(m.peak(), m.fixed + m.activations + m.data);
    }
}

/// A single job keeps the target's features in memory, so its overlay maps run their few
/// images per category through the backbone a second time (engine/overlays.rs); its training
/// writes the untrained checkpoint and one per epoch. The estimate prices both.
#[test]
fn the_estimate_prices_the_overlays_second_pass_and_the_checkpoint_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [format!("data.root={}", tmp.path().join("absent").display())];
    let loaded = load_experiment(&exp_file("table4.yaml"), Some(Profile::Full), &sets).unwrap();
    let exp = loaded.experiment.clone();
    let rates = ava_dino::engine::cost::calibration::CpuRates::build();
    let e = ava_dino::runner::estimate::estimate(&[loaded], &root(), &rates).unwrap();
    assert_eq!(e.jobs.len(), 1);
    let stage = |name: &str| {
        e.jobs[0]
            .cpu
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let per_image = ava_dino::backbone::Spec::paper().shape().flops(512, 23);
    let images = stage("backbone").flops / per_image;
    // VisA's 2,162 and MVTec-AD's 1,725 official test images, and the overlays of 15
    // categories (every one larger than `maps_per_category`).
    let k = exp.eval.maps_per_category as f64;
    assert!(k > 0.0);
    assert!(
        (images - (2162.0 + 1725.0 + 15.0 * k)).abs() < 1e-6,
        "{images}"
    );
    // 21 checkpoints of the reference's 28.3 M parameters: 8 bytes per parameter for the
    // untrained one, 20 per trained epoch.
    let job = experiment::jobs(&exp)[0].clone();
    let method = job.method_config(&exp, 1024, 768);
    let bytes = ava_dino::engine::cost::checkpoint_bytes(&method, exp.train.epochs);
    assert_eq!(
        bytes,
        28_311_552.0 * 4.0 * (2.0 + 5.0 * exp.train.epochs as f64)
    );
    let disk = stage("checkpoints (disk)").seconds;
    assert!(
        (disk - bytes / (rates.rates.checkpoint_mb_per_s * 1e6)).abs() < 1e-9,
        "{disk}"
    );
}

/// `--device` is accepted by every command that computes (it is the `device` key), and
/// `sweep --job NAME` picks a job by the name `--list` prints; an unknown name lists the jobs.
#[test]
fn device_and_job_name_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let file = exp_file("table4.yaml");
    let file = file.to_str().unwrap();
    let out = ava(&[
        "sweep",
        file,
        "--profile",
        "smoke",
        "--list",
        "--device",
        "cpu",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("full__visa__mvtec__s0"), "{text}");
    let out = ava(&["estimate", file, "--profile", "smoke", "--device", "cpu"]);
    assert!(out.status.success(), "{out:?}");
    let out = ava(&[
        "sweep",
        file,
        "--profile",
        "smoke",
        "--device",
        "tpu",
        "--list",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown device `tpu`"), "{err}");
    let out = ava(&[
        "sweep",
        file,
        "--profile",
        "smoke",
        "--runs",
        runs.to_str().unwrap(),
        "--job",
        "full__visa__nope__s0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--job full__visa__nope__s0: no such job")
            && err.contains("full__visa__mvtec__s0"),
        "{err}"
    );
    assert!(!runs.exists(), "nothing may be created");
}

/// `--version` names the code exactly (revision, uncommitted changes, code digest), for reports
/// that quote it (scripts/authors-e2e.sh).
#[test]
fn the_version_names_the_revision_and_the_code() {
    let out = ava(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&ava_dino::build_info::describe())
            && text.contains(ava_dino::build_info::CODE),
        "{text}"
    );
}
