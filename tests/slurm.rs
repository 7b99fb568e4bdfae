//! `ava-dino sweep ... --emit slurm` (issue 11, deliverable 5): the script submits the array and
//! then a collect job that depends on it, runs one job per task with every path intact, takes its
//! settings from the command line over the YAML, leaves job identities alone, and, where Slurm is
//! installed, is accepted by `sbatch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ava_dino::device::Backend;
use ava_dino::experiment::schema::SlurmConfig;
use ava_dino::experiment::{self, ExperimentDir, Profile, load_experiment};
use ava_dino::runner::slurm::{self, Needs, Plan};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn table(name: &str) -> String {
    root()
        .join("experiments")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// `ava-dino ARGS` run in `cwd`.
fn ava(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ava-dino"))
        .current_dir(cwd)
        .args(args)
        .env_remove("AVA_DINO_PROFILE")
        .env_remove("AVA_DINO_RUNS")
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `out` failed with `code`, printed nothing on stdout, and said each of `says` on
/// stderr.
fn refused(out: &Output, code: i32, says: &[&str]) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for s in says {
        assert!(stderr.contains(s), "`{s}` in: {stderr}");
    }
}

/// An experiment file with one run and `rest` after it.
fn experiment(path: &Path, rest: &str) {
    let sweep = "sweep:\n  runs:\n    - train: visa\n      targets: [mvtec]\n";
    std::fs::write(path, format!("{sweep}{rest}")).unwrap();
}

/// The script `out` printed; asserts that emitting succeeded and that each of `lines` is one of
/// its `#SBATCH` lines.
fn emitted(out: &Output, lines: &[&str]) -> String {
    let (script, stderr) = text(out);
    assert!(out.status.success(), "{stderr}");
    let have = sbatch_lines(&script);
    for l in lines {
        assert!(have.contains(l), "{l}: {script}");
    }
    script
}

fn sbatch_lines(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("#SBATCH "))
        .collect()
}

/// Writes an executable shell script.
fn executable(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Records written by the fakes: one per call, fields separated by NUL, calls by a 0x1e byte.
fn records(path: &Path) -> Vec<Vec<String>> {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    raw.split_terminator('\u{1e}')
        .map(|r| r.split_terminator('\0').map(String::from).collect())
        .collect()
}

/// A fake that logs its working directory and arguments to `$FAKE_LOG` (then prints `print`).
fn fake(path: &Path, print: &str) {
    executable(
        path,
        &format!(
            "printf '%s\\0' \"$(pwd -P)\" \"$@\" >>\"$FAKE_LOG\"\nprintf '\\036' >>\"$FAKE_LOG\"\n{print}\n"
        ),
    );
}

#[test]
fn the_script_submits_the_array_then_collect_and_runs_each_task_with_paths_intact() {
    let tmp = tempfile::tempdir().unwrap();
    // Every character a shell treats specially, in the paths the script names.
    let workdir = tmp.path().join("work dir 'q' $HOME `x` \"d\"");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&workdir).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let program = workdir.join("fake ava-dino");
    fake(&program, "");
    // sbatch --parsable prints `id` or `id;cluster`.
    fake(
        &bin.join("sbatch"),
        "if [ -e \"$FAKE_COUNT\" ]; then echo '102;cluster'; else echo 101; fi\n\
         touch \"$FAKE_COUNT\"",
    );
    let task_args: Vec<String> = [
        "sweep",
        "experiments/table 2.yaml",
        "--profile=smoke",
        "--runs",
        "my runs",
        "--set=data.root=/data/it's here",
    ]
    .map(String::from)
    .to_vec();
    let collect_args: Vec<String> = ["collect", "my runs/paper-smoke", "--tables", "table2"]
        .map(String::from)
        .to_vec();
    let plan = Plan {
        name: "paper".into(),
        profile: Profile::Smoke,
        experiment_file: "experiments/table 2.yaml".into(),
        n_jobs: 4,
        workdir: workdir.to_str().unwrap().into(),
        program: program.to_str().unwrap().into(),
        task_args: task_args.clone(),
        collect_args: collect_args.clone(),
    };
    let settings = slurm::resolve(
        &Default::default(),
        &SlurmConfig {
            partition: Some("debug".into()),
            extra: vec!["--constraint=avx512".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let needs = Needs {
        backend: Backend::Cpu,
        profile: Profile::Smoke,
        memory_budget: None,
        fixed_bytes: 1 << 28,
        time_estimate: None,
    };
    let script = slurm::script(&plan, &settings, &slurm::resources(&needs, &settings)).unwrap();
    let script_path = workdir.join("t2 job.sbatch");
    std::fs::write(&script_path, &script).unwrap();
    let log = tmp.path().join("log");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = |env: &[(&str, &str)], shell: &str| {
        let mut c = Command::new(shell);
        // Submitted from elsewhere: the script finds itself and its work directory.
        c.current_dir(tmp.path())
            .arg(&script_path)
            .env("PATH", &path)
            .env("FAKE_LOG", &log)
            .env("FAKE_COUNT", tmp.path().join("count"))
            .env_remove("SLURM_ARRAY_TASK_ID");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };

    // Submission: the array (this very file), then collect depending on it.
    let out = run(&[], "bash");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("array job 101 (4 tasks), collect job 102"),
        "{stdout}"
    );
    let calls = records(&log);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let wd = workdir.to_str().unwrap();
    assert_eq!(
        calls[0],
        [wd, "--parsable", script_path.to_str().unwrap()],
        "the array is this file, submitted from the work directory"
    );
    let collect = &calls[1];
    assert_eq!(collect[0], wd);
    for opt in [
        "--dependency=afterok:101",
        "--kill-on-invalid-dep=yes",
        "--job-name=ava-paper-smoke-collect",
        "--partition=debug",
        "--constraint=avx512",
    ] {
        assert!(collect.iter().any(|a| a == opt), "{opt} in {collect:?}");
    }
    let wrap = collect
        .iter()
        .find_map(|a| a.strip_prefix("--wrap="))
        .expect("collect is submitted with --wrap");

    // The collect job: sbatch runs the wrapped command with /bin/sh.
    std::fs::remove_file(&log).unwrap();
    let out = Command::new("sh")
        .current_dir(tmp.path())
        .args(["-c", wrap])
        .env("FAKE_LOG", &log)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let mut expected = vec![wd.to_string()];
    expected.extend(collect_args);
    assert_eq!(records(&log), [expected]);

    // One array task: job 2 of the sweep, in the work directory, every argument intact.
    std::fs::remove_file(&log).unwrap();
    let out = run(&[("SLURM_ARRAY_TASK_ID", "2")], "bash");
    assert!(out.status.success(), "{:?}", text(&out));
    let mut expected = vec![wd.to_string()];
    expected.extend(task_args);
    expected.extend(["--task-index".to_string(), "2".to_string()]);
    assert_eq!(records(&log), [expected]);

    // Run with sh by mistake: one clear line, nothing submitted.
    std::fs::remove_file(&log).unwrap();
    refused(&run(&[], "sh"), 2, &["run this file with bash"]);
    assert!(!log.exists());

    // No sbatch on PATH: said so, nothing else happens. (Rust looks the program up in the
    // child's PATH, so name bash by its full path.)
    let bash = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("bash"))
        .find(|p| p.is_file())
        .expect("bash on PATH");
    let out = Command::new(bash)
        .arg(&script_path)
        .env("PATH", tmp.path().join("empty"))
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    refused(&out, 1, &["sbatch not found"]);
}

#[test]
fn emit_takes_settings_from_the_command_line_over_the_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let t2 = table("table2.yaml");
    let out = ava(
        tmp.path(),
        &[
            "sweep",
            &t2,
            "--profile",
            "smoke",
            "--emit",
            "slurm",
            "--set",
            "slurm.partition=from-yaml",
            "--set",
            "slurm.account=1234",
            "--set",
            "slurm.extra=[--constraint=yaml]",
            "--partition",
            "from-cli",
            "--time",
            "02:00:00",
            "--sbatch=--constraint=avx512",
            "--sbatch",
            "--mail-type=END",
        ],
    );
    let script = emitted(
        &out,
        &[
            "--partition=from-cli",
            "--account=1234",
            "--time=02:00:00",
            "--cpus-per-task=2",
        ],
    );
    let lines = sbatch_lines(&script);
    assert!(!script.contains("gres"), "{script}");
    let extras: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("--constraint") || l.starts_with("--mail"))
        .collect();
    assert_eq!(
        extras,
        [
            &"--constraint=yaml",
            &"--constraint=avx512",
            &"--mail-type=END"
        ]
    );
    // The tasks run this experiment with its profile; collect writes its tables.
    assert!(script.contains("--profile=smoke --runs runs"), "{script}");
    assert!(
        script.contains("collect runs/paper-smoke --tables table2"),
        "{script}"
    );

    // A `slurm:` section in the experiment file, and a GPU device.
    let file = tmp.path().join("exp.yaml");
    experiment(
        &file,
        "name: t\ndevice: cuda\n\
         slurm:\n  partition: gpu\n  qos: \"long\"\n  time: \"1-00:00:00\"\n  max_parallel: 2\n",
    );
    let f = file.to_str().unwrap();
    let out = ava(
        tmp.path(),
        &["sweep", f, "--emit", "slurm", "--qos", "short"],
    );
    emitted(
        &out,
        &[
            "--array=0-0%2",
            "--gres=gpu:1",
            "--cpus-per-task=4",
            "--partition=gpu",
            "--qos=short",
            "--time=1-00:00:00",
        ],
    );

    // Bad values: one line naming the setting, exit 1, no script.
    let out = ava(
        tmp.path(),
        &["sweep", &t2, "--emit", "slurm", "--time", "2h"],
    );
    refused(&out, 1, &["--time `2h`: is not a Slurm time"]);
    experiment(&file, "slurm:\n  mem: 16GB\n");
    let out = ava(tmp.path(), &["sweep", f, "--emit", "slurm"]);
    refused(&out, 1, &["exp.yaml", "slurm.mem `16GB`"]);
    // A YAML number where Slurm wants text is refused with the fix, not converted (0123 -> 123).
    experiment(&file, "slurm:\n  account: 0123\n");
    let out = ava(tmp.path(), &["sweep", f, "--emit", "slurm"]);
    refused(
        &out,
        1,
        &["exp.yaml:6:", "key `slurm.account`", "in quotes"],
    );
    // Slurm flags without --emit are an error, not silently ignored.
    let out = ava(tmp.path(), &["sweep", &t2, "--list", "--partition", "x"]);
    refused(&out, 1, &["add --emit slurm"]);
}

#[test]
fn slurm_settings_do_not_change_a_jobs_identity() {
    let path = root().join("experiments/table2.yaml");
    let plain = load_experiment(&path, Some(Profile::Smoke), &[]).unwrap();
    let with = load_experiment(
        &path,
        Some(Profile::Smoke),
        &[
            "slurm.partition=gpu".to_string(),
            "slurm.cpus_per_task=16".to_string(),
            "slurm.extra=[--exclusive]".to_string(),
        ],
    )
    .unwrap();
    assert_eq!(with.experiment.slurm.partition.as_deref(), Some("gpu"));
    let jobs = experiment::jobs(&plain.experiment);
    assert_eq!(jobs, experiment::jobs(&with.experiment));
    let yaml = |exp: &experiment::Experiment, job: &experiment::Job| {
        serde_saphyr::to_string(&job.config(exp)).unwrap()
    };
    for job in &jobs {
        // The identity YAML is the same, and holds no slurm section at all (so identities
        // made before the section existed still match).
        let a = yaml(&plain.experiment, job);
        assert_eq!(a, yaml(&with.experiment, job));
        assert!(!a.contains("slurm"), "{a}");
        assert_eq!(
            ExperimentDir::new(Path::new("runs"), &plain.experiment)
                .run(job)
                .path,
            ExperimentDir::new(Path::new("runs"), &with.experiment)
                .run(job)
                .path
        );
    }
}

/// Where Slurm is installed and its controller answers: `sbatch --test-only` accepts the smoke
/// script (the controller checks the GPU request, CPUs and memory against the real nodes).
/// Skipped, with the reason printed, otherwise.
#[test]
fn sbatch_accepts_the_smoke_script() {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()));
    if !on_path {
        eprintln!("SKIPPED sbatch_accepts_the_smoke_script: sbatch is not on PATH");
        return;
    }
    let ping = Command::new("scontrol").arg("ping").output();
    let up = ping
        .as_ref()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !up {
        eprintln!(
            "SKIPPED sbatch_accepts_the_smoke_script: sbatch is installed but no Slurm controller \
             answers `scontrol ping` (start one with scripts/local-slurm.sh start and export SLURM_CONF)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The script emitted for `table` with `flags`, and what `sbatch --test-only` made of it.
    let check = |table_file: &str, flags: &[&str]| {
        let mut args = vec!["sweep", table_file, "--profile", "smoke", "--emit", "slurm"];
        args.extend(flags);
        let script = emitted(&ava(tmp.path(), &args), &[]);
        let file = tmp.path().join("job.sbatch");
        std::fs::write(&file, &script).unwrap();
        let out = Command::new("sbatch")
            .current_dir(tmp.path())
            .arg("--test-only")
            .arg(&file)
            .output()
            .unwrap();
        (script, out)
    };
    for t in ["table2.yaml", "table4.yaml"] {
        let (script, out) = check(&table(t), &[]);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "sbatch refused the {t} smoke script:\n{stderr}{stdout}\n{script}"
        );
        eprintln!("{t}: {}", stderr.trim());
    }
    // The control: a request no node can meet is refused, so the check above can fail.
    let (_, out) = check(&table("table4.yaml"), &["--cpus-per-task", "100000"]);
    assert!(!out.status.success(), "{:?}", text(&out));
}
