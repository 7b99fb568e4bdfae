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
//! Resources are derived from the run ([`Needs`]) unless the user sets them ([`Settings`]: the
//! command line over the experiment's `slurm:` section):
//! - a GPU (`--gres=gpu:1`) only for a GPU device (`wgpu`, `vulkan`, `cuda`);
//! - CPUs per task from the profile and device ([`default_cpus`] says why);
//! - memory = the feature-memory budget + fixed costs (weights, checkpoints, one batch: the cost
//!   model's, `engine::cost::memory`) + [`PROCESS_BYTES`];
//! - time = the cost model's estimate with a margin ([`time_limit_s`]), or a generous default per
//!   profile when there is none.
//!
//! This module turns plain values into text: it runs nothing and knows no engine.

use crate::device::Backend;
use crate::experiment::schema::{Profile, SlurmConfig};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DAY: u64 = 86_400;

/// What a task holds besides the tensors the cost model counts: the binary, the allocator's
/// slack, thread stacks, decoded images. A whole smoke job peaks at 92 MB (release build).
pub const PROCESS_BYTES: u64 = 256 * MIB;

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
}

/// What the run needs, from the experiment and the cost model; no user choice in here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub backend: Backend,
    pub profile: Profile,
    /// `cache.memory_budget` in bytes; `None` when it is `auto` (half of the memory available).
    pub memory_budget: Option<u64>,
    /// Tensor bytes the largest job holds besides its features (weights, checkpoints, one
    /// batch's activations); [`PROCESS_BYTES`] is added on top.
    pub fixed_bytes: u64,
    /// The slowest job's estimated wall time; `None`: a generous profile default.
    pub time_estimate: Option<TimeEstimate>,
}

/// A job's estimated wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEstimate {
    pub seconds: u64,
    /// From rates measured on a machine (the CPU), or projected from FLOPs (a GPU).
    pub measured: bool,
}

/// Settings given on the command line; each one set wins over the experiment's `slurm:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
    pub mem: Option<String>,
    pub max_parallel: Option<usize>,
    /// Appended after the YAML's `extra` lines (a later `#SBATCH` line wins in sbatch).
    pub extra: Vec<String>,
}

/// The user's settings, resolved (command line over YAML) and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// A Slurm time limit, as given.
    pub time: Option<String>,
    pub cpus_per_task: Option<usize>,
    /// A Slurm memory size, as given.
    pub mem: Option<String>,
    /// 0: no limit.
    pub max_parallel: usize,
    pub extra: Vec<String>,
}

impl Settings {
    /// Command line over YAML; every value is checked and a bad one named with its origin
    /// (`--time` or `slurm.time`).
    pub fn resolve(yaml: &SlurmConfig, cli: &Overrides) -> Result<Settings, SlurmError> {
        type Check = fn(&str, &str) -> Result<(), SlurmError>;
        let text = |flag: &str, cli: &Option<String>, key: &str, yaml: &str, check: Check| {
            pick_text(flag, cli, key, yaml)
                .map(|(origin, v)| check(&origin, &v).map(|()| v))
                .transpose()
        };
        let cpus_per_task = cli
            .cpus_per_task
            .map(|n| ("--cpus-per-task", n))
            .or((yaml.cpus_per_task > 0).then_some(("slurm.cpus_per_task", yaml.cpus_per_task)))
            .map(|(origin, n)| match n {
                0 => Err(invalid(origin, "0", "a task needs at least 1 CPU")),
                n => Ok(n),
            })
            .transpose()?;
        let yaml_extra = yaml.extra.iter().map(|e| ("slurm.extra", e));
        let cli_extra = cli.extra.iter().map(|e| ("--sbatch", e));
        let extra = yaml_extra
            .chain(cli_extra)
            .map(|(origin, e)| check_extra(origin, e).map(|()| e.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Settings {
            partition: text(
                "--partition",
                &cli.partition,
                "slurm.partition",
                &yaml.partition,
                check_word,
            )?,
            account: text(
                "--account",
                &cli.account,
                "slurm.account",
                &yaml.account,
                check_word,
            )?,
            qos: text("--qos", &cli.qos, "slurm.qos", &yaml.qos, check_word)?,
            time: text("--time", &cli.time, "slurm.time", &yaml.time, check_time)?,
            cpus_per_task,
            mem: text("--mem", &cli.mem, "slurm.mem", &yaml.mem, check_mem)?,
            max_parallel: cli.max_parallel.unwrap_or(yaml.max_parallel),
            extra,
        })
    }

    /// Options both jobs share: where and under whose name they run, and the user's extra lines.
    fn shared_options(&self) -> Vec<String> {
        let named = [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
        ];
        named
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("--{k}={v}")))
            .chain(self.extra.iter().cloned())
            .collect()
    }
}

/// The command line's value when given, else the YAML's when not empty, with its origin.
fn pick_text(flag: &str, cli: &Option<String>, key: &str, yaml: &str) -> Option<(String, String)> {
    match cli {
        Some(v) => Some((flag.to_string(), v.clone())),
        None if !yaml.is_empty() => Some((key.to_string(), yaml.to_string())),
        None => None,
    }
}

fn invalid(origin: &str, value: &str, problem: &str) -> SlurmError {
    SlurmError::Invalid {
        origin: origin.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

/// `Ok` when `ok`, else the value refused with `problem`.
fn require(ok: bool, origin: &str, value: &str, problem: &str) -> Result<(), SlurmError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(origin, value, problem))
    }
}

/// A value written on an `#SBATCH` line: sbatch splits those lines at white space and strips
/// quotes, and a line break would end the line, so none of these may appear.
fn check_word(origin: &str, value: &str) -> Result<(), SlurmError> {
    require(
        !value.is_empty(),
        origin,
        value,
        "is empty; leave it out to use the default",
    )?;
    let odd = |c: char| c.is_whitespace() || c.is_control() || c == '\'' || c == '"';
    require(
        !value.chars().any(odd),
        origin,
        value,
        "must be one word without spaces or quotes (it is written on an #SBATCH line)",
    )
}

/// One sbatch option per extra line, e.g. `--constraint=avx512`.
fn check_extra(origin: &str, value: &str) -> Result<(), SlurmError> {
    check_word(origin, value)?;
    require(
        value.starts_with('-'),
        origin,
        value,
        "must be one sbatch option such as --constraint=avx512 (without `#SBATCH`)",
    )
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or `UNLIMITED`.
fn check_time(origin: &str, value: &str) -> Result<(), SlurmError> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match value.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, value),
    };
    let fields: Vec<&str> = rest.split(':').collect();
    let unlimited = ["unlimited", "infinite"].map(|w| value.eq_ignore_ascii_case(w));
    require(
        unlimited.contains(&true)
            || (days.is_none_or(digits) && fields.len() <= 3 && fields.iter().all(|f| digits(f))),
        origin,
        value,
        "is not a Slurm time limit; write minutes (90), HH:MM:SS (02:00:00) or D-HH:MM:SS (1-12:00:00)",
    )
}

/// Slurm's memory sizes: a whole number with an optional K, M (the default), G or T suffix.
fn check_mem(origin: &str, value: &str) -> Result<(), SlurmError> {
    let number = value.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix_len = value.len() - number.len();
    require(
        suffix_len <= 1 && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
        origin,
        value,
        "is not a Slurm memory size; write a whole number with K, M, G or T (16G, 16000M)",
    )
}

/// The resources of one array task, and why each has its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Ask for one GPU (`--gres=gpu:1`).
    pub gpu: bool,
    pub cpus: usize,
    /// `--mem`, in Slurm's format.
    pub mem: String,
    /// `--time`, in Slurm's format.
    pub time: String,
    /// The feature-memory budget each task must be given (`--set cache.memory_budget=`), when the
    /// configured one is `auto` and so would read the node's memory rather than the task's.
    pub task_budget: Option<u64>,
    /// One line per resource saying where its value comes from (written into the script).
    pub why: Vec<String>,
    /// Choices that may not work (printed when emitting, and written into the script).
    pub warnings: Vec<String>,
}

/// Whether a backend computes on a GPU.
pub fn is_gpu(backend: Backend) -> bool {
    match backend {
        Backend::Cpu => false,
        Backend::Wgpu | Backend::Vulkan | Backend::Cuda => true,
    }
}

/// CPUs per task when the user gives none, and why.
pub fn default_cpus(backend: Backend, profile: Profile) -> (usize, &'static str) {
    match (profile, is_gpu(backend)) {
        (Profile::Smoke, _) => (
            2,
            "the smoke profile is sized for a 2-core machine, so it fits the smallest node",
        ),
        (Profile::Rehearsal | Profile::Full, false) => (
            8,
            "CPU device: the backbone's matrix products, image decoding and metrics use every \
             allocated core; 8 fits most nodes, more is faster",
        ),
        (Profile::Rehearsal | Profile::Full, true) => (
            4,
            "GPU device: the CPUs only decode and resize images and compute metrics",
        ),
    }
}

/// The feature-memory budget of a task when `cache.memory_budget` is `auto` and no `--mem` is
/// given: the smoke profile's features are a few MB (a whole smoke job peaks at 92 MB); 8 GiB
/// holds about 500 ViT-L/16 images' features (16.8 MB each) at full size (and rehearsal size).
pub fn default_memory_budget(profile: Profile) -> u64 {
    match profile {
        Profile::Smoke => GIB,
        Profile::Rehearsal | Profile::Full => 8 * GIB,
    }
}

/// The time limit assumed when there is no estimate: generous, since a task that hits its limit
/// is killed (it resumes from its last checkpoint when submitted again). A smoke job takes about
/// a minute on 2 cores; a full-size job on a CPU takes hours. 24 h is a common partition limit.
pub fn default_time_s(profile: Profile) -> u64 {
    match profile {
        Profile::Smoke => 3600,
        Profile::Rehearsal | Profile::Full => DAY,
    }
}

/// The time limit for an estimate, rounded up to whole minutes: a measured one half as much
/// again plus 10 minutes (slower nodes, shared file systems); a projected one (a GPU's, from
/// FLOPs, not measured) three times plus an hour.
pub fn time_limit_s(e: TimeEstimate) -> u64 {
    let (factor, slack) = if e.measured { (1.5, 600) } else { (3.0, 3600) };
    ((e.seconds as f64 * factor).ceil() as u64 + slack).div_ceil(60) * 60
}

/// Seconds as Slurm's `HH:MM:SS`, or `D-HH:MM:SS` from a day on.
pub fn format_time(secs: u64) -> String {
    let (d, rem) = (secs / DAY, secs % DAY);
    let hms = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 { format!("{d}-{hms}") } else { hms }
}

/// Bytes as a Slurm memory size, rounded up to whole MiB (`G` when it is whole GiB).
pub fn format_mem(bytes: u64) -> String {
    let mib = bytes.div_ceil(MIB).max(1);
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// The task's resources: the user's settings where given, else derived from `needs`.
pub fn resources(needs: &Needs, s: &Settings) -> Resources {
    let gpu = is_gpu(needs.backend);
    let mut warnings = Vec::new();
    let mut why = vec![if gpu {
        format!("GPU:    1 (device {})", needs.backend)
    } else {
        format!("GPU:    none (device {})", needs.backend)
    }];
    let cpus = match s.cpus_per_task {
        Some(n) => {
            why.push(format!("CPUs:   {n} (set by the user)"));
            n
        }
        None => {
            let (n, reason) = default_cpus(needs.backend, needs.profile);
            why.push(format!(
                "CPUs:   {n} (default for profile {}: {reason})",
                needs.profile
            ));
            n
        }
    };
    let (mem, task_budget) = memory(needs, s, &mut why, &mut warnings);
    let time = match (&s.time, needs.time_estimate) {
        (Some(t), _) => {
            why.push(format!("time:   {t} (set by the user)"));
            t.clone()
        }
        (None, Some(est)) => {
            let t = format_time(time_limit_s(est));
            let how = if est.measured {
                "rates measured on a 2-core CPU, x 1.5 + 10 min"
            } else {
                "projected from FLOPs, not measured: x 3 + 1 h"
            };
            if time_limit_s(est) > DAY {
                warnings.push(format!(
                    "the time limit {t} is over 24 h, a common partition limit; if the job waits \
                     with reason PartitionTimeLimit, set --time (more CPUs or a GPU are faster)"
                ));
            }
            why.push(format!(
                "time:   {t} (the slowest job's estimate {}, {how})",
                format_time(est.seconds)
            ));
            t
        }
        (None, None) => {
            let t = format_time(default_time_s(needs.profile));
            why.push(format!(
                "time:   {t} (no time estimate: a generous default for profile {}; \
                 set --time if your partition allows less or the run needs more)",
                needs.profile
            ));
            t
        }
    };
    Resources {
        gpu,
        cpus,
        mem,
        time,
        task_budget,
        why,
        warnings,
    }
}

/// `--mem`, and the budget tasks must be given when `cache.memory_budget` is `auto`: inside an
/// allocation, "half of the memory available" would read the node's memory, not the task's.
fn memory(
    needs: &Needs,
    s: &Settings,
    why: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> (String, Option<u64>) {
    let fixed = needs.fixed_bytes + PROCESS_BYTES;
    let mib = |b: u64| b.div_ceil(MIB);
    match (&s.mem, needs.memory_budget) {
        (Some(m), Some(budget)) => {
            let asked = mem_bytes(m);
            why.push(format!(
                "memory: {m} (set by the user; cache.memory_budget {} MiB)",
                mib(budget)
            ));
            if asked != 0 && asked < budget + fixed {
                warnings.push(format!(
                    "--mem {m} is less than cache.memory_budget ({} MiB) + the estimated fixed \
                     costs ({} MiB): a task may be killed for memory; raise --mem or lower the budget",
                    mib(budget),
                    mib(fixed)
                ));
            }
            (m.clone(), None)
        }
        (Some(m), None) => match mem_bytes(m) {
            0 => {
                why.push(format!(
                    "memory: {m} (set by the user: the whole node; cache.memory_budget auto, half \
                     of what the node has available)"
                ));
                (m.clone(), None)
            }
            asked => {
                why.push(format!(
                    "memory: {m} (set by the user; cache.memory_budget auto: half of it, {} MiB)",
                    mib(asked / 2)
                ));
                (m.clone(), Some(asked / 2))
            }
        },
        (None, budget) => {
            let (budget, source, task) = match budget {
                Some(b) => (b, "cache.memory_budget".to_string(), None),
                None => {
                    let b = default_memory_budget(needs.profile);
                    let source = format!(
                        "cache.memory_budget is auto: the default for profile {}, given to each task",
                        needs.profile
                    );
                    (b, source, Some(b))
                }
            };
            let m = format_mem(budget + fixed);
            why.push(format!(
                "memory: {m} = feature budget {} MiB ({source}) + fixed costs {} MiB (weights, \
                 checkpoints, one batch, the process)",
                mib(budget),
                mib(fixed),
            ));
            (m, task)
        }
    }
}

/// Bytes of a checked Slurm memory size (`16G`; no suffix: MiB).
fn mem_bytes(mem: &str) -> u64 {
    let number = mem.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale = match mem[number.len()..].to_ascii_uppercase().as_str() {
        "K" => 1 << 10,
        "G" => GIB,
        "T" => 1 << 40,
        _ => MIB,
    };
    number.parse::<u64>().unwrap_or(0).saturating_mul(scale)
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
pub fn script(plan: &Plan, settings: &Settings, res: &Resources) -> Result<String, SlurmError> {
    if plan.n_jobs == 0 {
        return Err(SlurmError::NoJobs);
    }
    let job_name = format!("ava-{}-{}", plan.name, plan.profile);
    check_word("the job name", &job_name)?;
    let throttle = match settings.max_parallel {
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
    let shared = settings.shared_options();
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
    let parallel = match settings.max_parallel {
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

    fn needs(backend: Backend, profile: Profile) -> Needs {
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

    fn plan() -> Plan {
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

    fn settings(cli: &Overrides) -> Settings {
        Settings::resolve(&SlurmConfig::default(), cli).unwrap()
    }

    fn render(needs: &Needs, s: &Settings) -> String {
        script(&plan(), s, &resources(needs, s)).unwrap()
    }

    fn sbatch_lines(script: &str) -> Vec<&str> {
        script
            .lines()
            .filter_map(|l| l.strip_prefix("#SBATCH "))
            .collect()
    }

    #[test]
    fn cpu_smoke_profile_asks_for_no_gpu_and_fits_a_two_core_node() {
        let s = settings(&Overrides::default());
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
        let s = settings(&Overrides::default());
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
    fn memory_comes_from_the_budget_and_time_from_the_estimate() {
        let mut n = needs(Backend::Cpu, Profile::Full);
        n.memory_budget = Some(3 * GIB);
        n.fixed_bytes = GIB - PROCESS_BYTES + 1;
        n.time_estimate = Some(TimeEstimate {
            seconds: 3600,
            measured: true,
        });
        let r = resources(&n, &settings(&Overrides::default()));
        // 4 GiB + 1 byte rounds up to the next MiB.
        assert_eq!(r.mem, "4097M");
        // The tasks read the configured budget from the experiment.
        assert_eq!(r.task_budget, None);
        // 1 h x 1.5 + 10 min.
        assert_eq!(r.time, "01:40:00");
        assert!(r.why.iter().any(|w| w.contains("(cache.memory_budget)")));
        assert!(r.warnings.is_empty());
        // A limit over a day is said: many partitions refuse it.
        n.time_estimate = Some(TimeEstimate {
            seconds: DAY,
            measured: true,
        });
        let r = resources(&n, &settings(&Overrides::default()));
        assert_eq!(r.time, "1-12:10:00");
        assert!(r.warnings[0].contains("over 24 h"), "{:?}", r.warnings);
    }

    #[test]
    fn an_auto_budget_is_fixed_for_the_tasks() {
        let n = needs(Backend::Cpu, Profile::Smoke);
        // Derived memory: the profile's default budget, which every task is given.
        let r = resources(&n, &settings(&Overrides::default()));
        assert_eq!((r.mem.as_str(), r.task_budget), ("1280M", Some(GIB)));
        // The user's memory: half of it, as `auto` means half of what is available.
        let mem = |m: &str| Overrides {
            mem: Some(m.into()),
            ..Overrides::default()
        };
        let r = resources(&n, &settings(&mem("16G")));
        assert_eq!((r.mem.as_str(), r.task_budget), ("16G", Some(8 * GIB)));
        let r = resources(&n, &settings(&mem("3000")));
        assert_eq!(r.task_budget, Some(1500 * MIB));
        // `--mem=0` is the whole node: `auto` stays `auto`.
        let r = resources(&n, &settings(&mem("0")));
        assert_eq!(r.task_budget, None);
        // A configured budget that the user's memory cannot hold is said.
        let n = Needs {
            memory_budget: Some(8 * GIB),
            ..n
        };
        let r = resources(&n, &settings(&mem("8G")));
        assert_eq!(r.task_budget, None);
        assert!(
            r.warnings[0].contains("--mem 8G is less than"),
            "{:?}",
            r.warnings
        );
        let text = script(&plan(), &settings(&mem("8G")), &r).unwrap();
        assert!(text.contains("#   warning: --mem 8G"), "{text}");
    }

    #[test]
    fn user_settings_appear_and_win_over_derived_values() {
        let cli = Overrides {
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
    fn command_line_wins_over_yaml() {
        let yaml = SlurmConfig {
            partition: "from-yaml".into(),
            account: "yaml-account".into(),
            time: "30".into(),
            cpus_per_task: 3,
            max_parallel: 2,
            extra: vec!["--constraint=yaml".into()],
            ..SlurmConfig::default()
        };
        let cli = Overrides {
            partition: Some("from-cli".into()),
            cpus_per_task: Some(5),
            extra: vec!["--constraint=cli".into()],
            ..Overrides::default()
        };
        let s = Settings::resolve(&yaml, &cli).unwrap();
        assert_eq!(s.partition.as_deref(), Some("from-cli"));
        assert_eq!(s.account.as_deref(), Some("yaml-account"));
        assert_eq!(s.time.as_deref(), Some("30"));
        assert_eq!(s.cpus_per_task, Some(5));
        assert_eq!(s.max_parallel, 2);
        // Both extra lists, the command line's last (sbatch keeps the last of a repeated option).
        assert_eq!(s.extra, ["--constraint=yaml", "--constraint=cli"]);
        let only_yaml = Settings::resolve(&yaml, &Overrides::default()).unwrap();
        assert_eq!(only_yaml.partition.as_deref(), Some("from-yaml"));
        assert_eq!(only_yaml.cpus_per_task, Some(3));
    }

    #[test]
    fn bad_settings_are_named_with_their_origin() {
        let err = |cli: Overrides| Settings::resolve(&SlurmConfig::default(), &cli).unwrap_err();
        let msg = err(Overrides {
            time: Some("2h".into()),
            ..Overrides::default()
        })
        .to_string();
        assert!(msg.starts_with("--time `2h`: is not a Slurm time"), "{msg}");
        let msg = err(Overrides {
            mem: Some("16GB".into()),
            ..Overrides::default()
        })
        .to_string();
        assert!(msg.contains("--mem `16GB`") && msg.contains("16G"), "{msg}");
        let msg = err(Overrides {
            partition: Some("gpu a100".into()),
            ..Overrides::default()
        })
        .to_string();
        assert!(
            msg.contains("--partition `gpu a100`: must be one word"),
            "{msg}"
        );
        let msg = err(Overrides {
            extra: vec!["#SBATCH --exclusive".into()],
            ..Overrides::default()
        })
        .to_string();
        assert!(msg.contains("--sbatch"), "{msg}");
        let msg = err(Overrides {
            extra: vec!["constraint=avx512".into()],
            ..Overrides::default()
        })
        .to_string();
        assert!(msg.contains("one sbatch option"), "{msg}");
        let msg = err(Overrides {
            cpus_per_task: Some(0),
            ..Overrides::default()
        })
        .to_string();
        assert!(msg.contains("--cpus-per-task `0`"), "{msg}");
        let yaml = SlurmConfig {
            qos: "high\nnext".into(),
            ..SlurmConfig::default()
        };
        let msg = Settings::resolve(&yaml, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("slurm.qos `high\nnext`"), "{msg}");
    }

    #[test]
    fn slurm_time_and_memory_formats() {
        for ok in [
            "90",
            "90:30",
            "02:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "0",
            "UNLIMITED",
        ] {
            assert!(check_time("t", ok).is_ok(), "{ok}");
        }
        for bad in ["", "2h", "1:2:3:4", "a-01:00:00", "1-", ":30", "01::00"] {
            assert!(check_time("t", bad).is_err(), "{bad}");
        }
        for ok in ["16G", "16000", "512M", "1T", "8g"] {
            assert!(check_mem("m", ok).is_ok(), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "-1G"] {
            assert!(check_mem("m", bad).is_err(), "{bad}");
        }
        assert_eq!(format_time(59), "00:00:59");
        assert_eq!(format_time(90_061), "1-01:01:01");
        let limit = |seconds, measured| time_limit_s(TimeEstimate { seconds, measured });
        assert_eq!(limit(0, true), 600);
        assert_eq!(limit(61, true), 720);
        // A projection (GPU, from FLOPs) gets three times plus 30 minutes.
        assert_eq!(format_time(limit(3600, false)), "04:00:00");
        assert_eq!(format_mem(2 * GIB), "2G");
        assert_eq!(format_mem(GIB + 1), "1025M");
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
        let s = settings(&Overrides::default());
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
        let s = settings(&Overrides::default());
        let r = resources(&needs(Backend::Cpu, Profile::Smoke), &s);
        assert_eq!(script(&p, &s, &r), Err(SlurmError::NoJobs));
    }
}
