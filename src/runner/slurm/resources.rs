//! The resources of one array task: derived from the run (device, profile, memory budget, the
//! cost model's fixed memory and time) unless the user set them.

use crate::device::Backend;
use crate::experiment::schema::Profile;
use crate::experiment::schema::SlurmConfig;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const DAY: u64 = 86_400;

use crate::engine::budget::Budget;
pub use crate::engine::cost::PROCESS_BYTES;
use crate::experiment::MemoryBudget;

/// What the run needs, from the experiment and the cost model; no user choice in here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub backend: Backend,
    pub profile: Profile,
    /// `cache.memory_budget` in bytes; `None` when it is `auto` (derived from the memory
    /// available).
    pub memory_budget: Option<u64>,
    /// Tensor bytes the largest job holds outside its budget (weights, checkpoints; one batch's
    /// activations are inside the budget); [`PROCESS_BYTES`] is added on top.
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
pub fn resources(needs: &Needs, s: &SlurmConfig) -> Resources {
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

/// `--mem`, and the budget tasks must be given when `cache.memory_budget` is `auto`: the task's
/// memory is known here, so every task gets the same budget (`auto`'s rule applied to `--mem`)
/// whatever the node has free when it starts.
fn memory(
    needs: &Needs,
    s: &SlurmConfig,
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
                    "memory: {m} (set by the user: the whole node; cache.memory_budget auto, 3/4 \
                     of what the node has available after the fixed costs)"
                ));
                (m.clone(), None)
            }
            asked => {
                let budget = Budget::resolve(MemoryBudget::Auto, Some(asked), fixed).bytes;
                why.push(format!(
                    "memory: {m} (set by the user; cache.memory_budget auto: 3/4 of what the \
                     fixed costs ({} MiB) leave, {} MiB)",
                    mib(fixed),
                    mib(budget)
                ));
                (m.clone(), Some(budget))
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
                "memory: {m} = memory budget {} MiB ({source}; features, maps and one batch's \
                 activations) + fixed costs {} MiB (weights, checkpoints, the process)",
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

#[cfg(test)]
mod tests {
    use super::super::tests::{needs, settings};
    use super::*;

    #[test]
    fn memory_comes_from_the_budget_and_time_from_the_estimate() {
        let mut n = needs(Backend::Cpu, Profile::Full);
        n.memory_budget = Some(3 * GIB);
        n.fixed_bytes = GIB - PROCESS_BYTES + 1;
        n.time_estimate = Some(TimeEstimate {
            seconds: 3600,
            measured: true,
        });
        let r = resources(&n, &settings(&SlurmConfig::default()));
        // 4 GiB + 1 byte rounds up to the next MiB.
        assert_eq!(r.mem, "4097M");
        // The tasks read the configured budget from the experiment.
        assert_eq!(r.task_budget, None);
        // 1 h x 1.5 + 10 min.
        assert_eq!(r.time, "01:40:00");
        assert!(r.why.iter().any(|w| w.contains("(cache.memory_budget;")));
        assert!(r.warnings.is_empty());
        // A limit over a day is said: many partitions refuse it.
        n.time_estimate = Some(TimeEstimate {
            seconds: DAY,
            measured: true,
        });
        let r = resources(&n, &settings(&SlurmConfig::default()));
        assert_eq!(r.time, "1-12:10:00");
        assert!(r.warnings[0].contains("over 24 h"), "{:?}", r.warnings);
    }

    #[test]
    fn an_auto_budget_is_fixed_for_the_tasks() {
        let n = needs(Backend::Cpu, Profile::Smoke);
        // Derived memory: the profile's default budget, which every task is given.
        let r = resources(&n, &settings(&SlurmConfig::default()));
        assert_eq!((r.mem.as_str(), r.task_budget), ("1280M", Some(GIB)));
        // The user's memory: `auto`'s rule applied to it, 3/4 of what the fixed costs (here
        // only the process) leave.
        let mem = |m: &str| SlurmConfig {
            mem: Some(m.into()),
            ..SlurmConfig::default()
        };
        let r = resources(&n, &settings(&mem("16G")));
        assert_eq!(
            (r.mem.as_str(), r.task_budget),
            ("16G", Some((16 * GIB - PROCESS_BYTES) / 4 * 3))
        );
        let r = resources(&n, &settings(&mem("3000")));
        assert_eq!(r.task_budget, Some((3000 * MIB - PROCESS_BYTES) / 4 * 3));
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
    }

    #[test]
    fn times_and_sizes_are_written_in_slurm_formats() {
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
}
