//! Slurm job-array scripts for a sweep (`ava-dino sweep <experiment> --emit slurm`).
//!
//! One file does everything and is run with `bash FILE`:
//! - outside Slurm it submits itself as the array (`sbatch` reads its `#SBATCH` lines), then
//!   `ava-dino collect` as a second job that starts once every task has succeeded
//!   (`--dependency=afterok:<array id>`, cancelled if a task fails);
//! - inside the array (`SLURM_ARRAY_TASK_ID` set) it runs that one job of the sweep.
//!
//! Why a submitting wrapper rather than `sbatch FILE` alone: the collect job's dependency names
//! the array's job id, which exists only once the array is submitted, so something must submit
//! twice; doing it on the login node needs no `sbatch` on the compute nodes and holds no
//! allocation while waiting. `sbatch FILE` still works and runs the array alone.
//!
//! Resources are derived from the run ([`Needs`]) unless the user sets them ([`SlurmConfig`]: the
//! command line over the experiment's `slurm:` section):
//! - a GPU (`--gres=gpu:1`) only for a GPU device (`wgpu`, `vulkan`, `cuda`);
//! - CPUs per task from the profile and device ([`default_cpus`] says why);
//! - memory = the feature-memory budget + fixed costs (weights, checkpoints, one batch: the cost
//!   model's, `engine::cost::memory`) + [`PROCESS_BYTES`];
//! - time = the cost model's estimate with a margin ([`time_limit_s`]), or a generous default per
//!   profile when there is none.
//!
//! `settings` resolves and checks the user's settings, `resources` derives the task's resources,
//! this file writes the script. It turns plain values into text: it runs nothing and knows no
//! engine.

pub mod emit;
mod resources;
mod settings;

use crate::experiment::schema::Profile;
use settings::check_word;

pub use resources::{
    Needs, PROCESS_BYTES, Resources, TimeEstimate, default_cpus, default_memory_budget,
    default_time_s, format_mem, format_time, is_gpu, resources, time_limit_s,
};
pub use settings::{DEFAULT_MAX_PARALLEL, resolve};

use crate::experiment::schema::SlurmConfig;

/// Resources of the collect job. Measured on the smoke profile: 25 MB peak RSS, under a second;
/// it reads only `metrics.json`, CSVs and a few saved maps, so full runs stay far below this.
const COLLECT_CPUS: usize = 1;
const COLLECT_MEM: &str = "2G";
const COLLECT_TIME: &str = "00:30:00";

/// A setting that Slurm would refuse or misread, named as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlurmError {
    #[error("{origin} `{value}`: {problem}")]
    Invalid {
        /// `--time` or `slurm.time`: where the value came from.
        origin: String,
        value: String,
        problem: String,
    },
    #[error("the experiment has no jobs: there is nothing to submit")]
    NoJobs,
    #[error(
        "estimating the jobs' cost for the Slurm resources: {0}; give --mem and --time to do without the estimate"
    )]
    Estimate(String),
    #[error("path {path} is not valid UTF-8; a job script cannot name it faithfully, rename it")]
    NotUtf8 { path: String },
}

/// Everything the script is made of, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Experiment name and profile: the Slurm job names are `ava-<name>-<profile>[-collect]`.
    pub name: String,
    pub profile: Profile,
    /// The experiment file (for the script's comments).
    pub experiment_file: String,
    /// Array tasks: one per job of the sweep.
    pub n_jobs: usize,
    /// Directory every job runs in; relative paths in the arguments are relative to it.
    pub workdir: String,
    /// The `ava-dino` binary the jobs run.
    pub program: String,
    /// Arguments of one task, before `--task-index I`.
    pub task_args: Vec<String>,
    /// Arguments of the collect job.
    pub collect_args: Vec<String>,
}

/// The script (see the module documentation for how it is used).
pub fn script(plan: &Plan, settings: &SlurmConfig, res: &Resources) -> Result<String, SlurmError> {
    if plan.n_jobs == 0 {
        return Err(SlurmError::NoJobs);
    }
    let job_name = format!("ava-{}-{}", plan.name, plan.profile);
    check_word("the job name", &job_name)?;
    let max_parallel = settings.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL);
    let throttle = match max_parallel {
        0 => String::new(),
        n => format!("%{n}"),
    };
    let mut sbatch = vec![
        format!("--job-name={job_name}"),
        format!("--array=0-{}{throttle}", plan.n_jobs - 1),
        "--output=slurm-%x-%A_%a.out".to_string(),
    ];
    if res.gpu {
        sbatch.push("--gres=gpu:1".into());
    }
    sbatch.push(format!("--cpus-per-task={}", res.cpus));
    sbatch.push(format!("--mem={}", res.mem));
    sbatch.push(format!("--time={}", res.time));
    let shared = settings::shared_options(settings);
    sbatch.extend(shared.iter().cloned());

    let collect_opts: Vec<String> = [
        format!("--job-name={job_name}-collect"),
        "--output=slurm-%x-%j.out".into(),
        format!("--cpus-per-task={COLLECT_CPUS}"),
        format!("--mem={COLLECT_MEM}"),
        format!("--time={COLLECT_TIME}"),
    ]
    .into_iter()
    .chain(shared)
    .collect();
    // Run by /bin/sh inside the collect job (`sbatch --wrap`): POSIX quoting only.
    let collect_cmd = format!(
        "cd -- {} && exec {} {}",
        shell_quote(&plan.workdir),
        shell_quote(&plan.program),
        shell_words(&plan.collect_args)
    );
    let parallel = match max_parallel {
        0 => "no limit on tasks running at once".to_string(),
        n => format!("at most {n} tasks at once"),
    };

    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line("#!/usr/bin/env bash");
    line(&format!(
        "# ava-dino sweep as a Slurm job array: experiment `{}`, profile {}, from {}.",
        plan.name,
        plan.profile,
        comment_safe(&plan.experiment_file)
    ));
    line(&format!(
        "# {} jobs (one array task each; {parallel}), then `ava-dino collect` once all succeeded.",
        plan.n_jobs
    ));
    for l in [
        "#",
        "# Submit:  bash THIS_FILE",
        "#   It submits this file as the array (sbatch reads the #SBATCH lines below), then the",
        "#   collect job with --dependency=afterok on the array (cancelled if a task fails: fix the",
        "#   cause and run it again). `sbatch THIS_FILE` runs the array alone; collect afterwards by",
        "#   running the command in `collect_cmd` below.",
        "# Jobs are idempotent (a finished one is skipped) and resume from their last checkpoint, so",
        "# submitting again after a failure redoes only what is missing.",
    ] {
        line(l);
    }
    line(&format!(
        "# Jobs run in {} with {}.",
        comment_safe(&plan.workdir),
        comment_safe(&plan.program)
    ));
    line("#");
    line("# Resources of each task (#SBATCH lines are not shell-expanded; to change them emit the");
    line(
        "# script again with --cpus-per-task, --mem, --time, ... or set the experiment's slurm:):",
    );
    for w in &res.why {
        line(&format!("#   {w}"));
    }
    for w in &res.warnings {
        line(&format!("#   warning: {w}"));
    }
    for o in &sbatch {
        line(&format!("#SBATCH {o}"));
    }
    line(r#"if [ -z "${BASH_VERSION:-}" ]; then"#);
    line(
        r#"	echo "run this file with bash (bash THIS_FILE) or submit it with sbatch, not with sh" >&2"#,
    );
    line("	exit 2");
    line("fi");
    line("set -euo pipefail");
    line("");
    line(&format!("workdir={}", shell_quote(&plan.workdir)));
    line(&format!("ava={}", shell_quote(&plan.program)));
    line(&format!("task=({})", shell_words(&plan.task_args)));
    line("");
    line("if [[ -n ${SLURM_ARRAY_TASK_ID:-} ]]; then");
    line("	# Inside the array: job number SLURM_ARRAY_TASK_ID of the sweep.");
    line(r#"	cd -- "$workdir""#);
    line(r#"	exec "$ava" "${task[@]}" --task-index "$SLURM_ARRAY_TASK_ID""#);
    line("fi");
    line("");
    line("# Submission: the array, then collect once every task has succeeded.");
    line(&format!("collect_cmd={}", shell_quote(&collect_cmd)));
    line(&format!("collect_opts=({})", shell_words(&collect_opts)));
    line("if ! command -v sbatch >/dev/null; then");
    line(
        r#"	echo "$0: sbatch not found; run this where Slurm jobs are submitted (a login node)" >&2"#,
    );
    line("	exit 1");
    line("fi");
    line(r#"script=$(readlink -f -- "${BASH_SOURCE[0]}")"#);
    line(r#"cd -- "$workdir""#);
    line(r#"array_id=$(sbatch --parsable "$script")"#);
    line(r#"array_id=${array_id%%;*}"#);
    line(
        r#"if ! collect_id=$(sbatch --parsable --dependency="afterok:$array_id" --kill-on-invalid-dep=yes "${collect_opts[@]}" --wrap="$collect_cmd"); then"#,
    );
    line(
        r#"	echo "$0: the array is submitted (job $array_id) but the collect job was refused; collect by hand when it is done: $collect_cmd" >&2"#,
    );
    line("	exit 1");
    line("fi");
    line(r#"collect_id=${collect_id%%;*}"#);
    let tasks = match plan.n_jobs {
        1 => "1 task".to_string(),
        n => format!("{n} tasks"),
    };
    line(&format!(
        r#"echo "submitted: array job $array_id ({tasks}), collect job $collect_id (after all succeed)""#
    ));
    line(&format!(
        r#"echo "follow with: squeue -j $array_id,$collect_id; logs: $workdir/slurm-{job_name}-${{array_id}}_<task>.out""#
    ));
    Ok(out)
}

/// `s` as one word for sh and bash: bare when it holds only characters no shell treats
/// specially, otherwise in single quotes (inside which only `'` needs care).
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Words quoted one by one and joined by spaces.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A path for a `#` comment line: control characters (a line break would end the comment and
/// start a command) are shown as `?`.
fn comment_safe(p: &str) -> String {
    p.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Backend;

    pub(super) fn needs(backend: Backend, profile: Profile) -> Needs {
        // `cache.memory_budget: auto`, no tensors besides the features (the process's 256 MiB
        // only), no time estimate.
        Needs {
            backend,
            profile,
            memory_budget: None,
            fixed_bytes: 0,
            time_estimate: None,
        }
    }

    pub(super) fn plan() -> Plan {
        Plan {
            name: "paper".into(),
            profile: Profile::Smoke,
            experiment_file: "experiments/table2.yaml".into(),
            n_jobs: 4,
            workdir: "/work/repo".into(),
            program: "/work/repo/target/release/ava-dino".into(),
            task_args: ["sweep", "experiments/table2.yaml", "--profile=smoke"]
                .map(String::from)
                .to_vec(),
            collect_args: ["collect", "runs/paper-smoke"].map(String::from).to_vec(),
        }
    }

    pub(super) fn settings(cli: &SlurmConfig) -> SlurmConfig {
        resolve(&SlurmConfig::default(), cli).unwrap()
    }

    pub(super) fn render(needs: &Needs, s: &SlurmConfig) -> String {
        script(&plan(), s, &resources(needs, s)).unwrap()
    }

    pub(super) fn sbatch_lines(script: &str) -> Vec<&str> {
        script
            .lines()
            .filter_map(|l| l.strip_prefix("#SBATCH "))
            .collect()
    }

    #[test]
    fn cpu_smoke_profile_asks_for_no_gpu_and_fits_a_two_core_node() {
        let s = settings(&SlurmConfig::default());
        let text = render(&needs(Backend::Cpu, Profile::Smoke), &s);
        assert_eq!(
            sbatch_lines(&text),
            [
                "--job-name=ava-paper-smoke",
                "--array=0-3%8",
                "--output=slurm-%x-%A_%a.out",
                "--cpus-per-task=2",
                // 1 GiB budget + 256 MiB fixed.
                "--mem=1280M",
                "--time=01:00:00",
            ]
        );
        assert!(!text.contains("gres"), "{text}");
        assert!(text.contains("GPU:    none (device cpu)"), "{text}");
    }

    #[test]
    fn gpu_devices_ask_for_one_gpu() {
        let s = settings(&SlurmConfig::default());
        for backend in [Backend::Wgpu, Backend::Vulkan, Backend::Cuda] {
            let text = render(&needs(backend, Profile::Full), &s);
            let lines = sbatch_lines(&text);
            assert!(lines.contains(&"--gres=gpu:1"), "{backend}: {text}");
            assert!(lines.contains(&"--cpus-per-task=4"), "{backend}: {text}");
            // 8 GiB budget + 256 MiB fixed; 24 h without an estimate.
            assert!(lines.contains(&"--mem=8448M"), "{backend}: {text}");
            assert!(lines.contains(&"--time=1-00:00:00"), "{backend}: {text}");
        }
        let cpu = render(&needs(Backend::Cpu, Profile::Full), &s);
        assert!(sbatch_lines(&cpu).contains(&"--cpus-per-task=8"), "{cpu}");
        assert!(!cpu.contains("gres"), "{cpu}");
    }

    #[test]
    fn user_settings_appear_and_win_over_derived_values() {
        let cli = SlurmConfig {
            partition: Some("debug".into()),
            account: Some("proj42".into()),
            qos: Some("normal".into()),
            time: Some("02:00:00".into()),
            cpus_per_task: Some(6),
            mem: Some("16G".into()),
            max_parallel: Some(0),
            extra: vec!["--constraint=avx512".into(), "--mail-type=END".into()],
        };
        let s = settings(&cli);
        let text = render(&needs(Backend::Cpu, Profile::Smoke), &s);
        assert_eq!(
            sbatch_lines(&text),
            [
                "--job-name=ava-paper-smoke",
                "--array=0-3",
                "--output=slurm-%x-%A_%a.out",
                "--cpus-per-task=6",
                "--mem=16G",
                "--time=02:00:00",
                "--partition=debug",
                "--account=proj42",
                "--qos=normal",
                "--constraint=avx512",
                "--mail-type=END",
            ]
        );
        // The collect job runs under the same partition, account, QoS and extra options.
        let opts = text
            .lines()
            .find_map(|l| l.strip_prefix("collect_opts=("))
            .unwrap();
        for o in [
            "--partition=debug",
            "--account=proj42",
            "--qos=normal",
            "--constraint=avx512",
        ] {
            assert!(opts.contains(o), "{opts}");
        }
        assert!(opts.contains("--cpus-per-task=1"), "{opts}");
    }

    #[test]
    fn words_are_quoted_for_every_shell() {
        assert_eq!(shell_quote("runs/paper-smoke"), "runs/paper-smoke");
        assert_eq!(shell_quote("--set=train.epochs=2"), "--set=train.epochs=2");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("my runs"), "'my runs'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        // Round trip through sh and bash: each word comes back exactly.
        let words = [
            "plain",
            "two words",
            "it's",
            "$HOME `date` \\ \"q\"",
            "line\nbreak",
            "*?[a]",
            "",
        ]
        .map(String::from);
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-c")
                .arg(format!("printf '%s\\0' {}", shell_words(&words)))
                .output()
                .unwrap();
            let back: Vec<&str> = std::str::from_utf8(&out.stdout)
                .unwrap()
                .split_terminator('\0')
                .collect();
            assert_eq!(back, words, "{shell}");
        }
    }

    #[test]
    fn comments_cannot_break_out_into_commands() {
        let mut p = plan();
        p.workdir = "/tmp/x\nrm -rf ~".into();
        let s = settings(&SlurmConfig::default());
        let text = script(&p, &s, &resources(&needs(Backend::Cpu, Profile::Smoke), &s)).unwrap();
        assert!(
            text.contains("# Jobs run in /tmp/x?rm -rf ~ with"),
            "{text}"
        );
        assert!(text.contains("workdir='/tmp/x\nrm -rf ~'"), "{text}");
    }

    #[test]
    fn an_empty_sweep_is_refused() {
        let mut p = plan();
        p.n_jobs = 0;
        let s = settings(&SlurmConfig::default());
        let r = resources(&needs(Backend::Cpu, Profile::Smoke), &s);
        assert_eq!(script(&p, &s, &r), Err(SlurmError::NoJobs));
    }

    #[test]
    fn warnings_are_written_into_the_script() {
        let n = Needs {
            memory_budget: Some(8 << 30),
            ..needs(Backend::Cpu, Profile::Full)
        };
        let s = settings(&SlurmConfig {
            mem: Some("8G".into()),
            ..SlurmConfig::default()
        });
        let text = render(&n, &s);
        assert!(
            text.contains("#   warning: --mem 8G is less than"),
            "{text}"
        );
    }
}
