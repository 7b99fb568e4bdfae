//! The memory budget: a bound on what a job holds besides its fixed costs - one batch's
//! activations (a backbone batch or a training micro-batch), then the data that grows with the
//! number of images (training features, a category's anomaly maps during evaluation). The fixed
//! costs - weights of the backbone, the text tower and the evaluated checkpoints, and the
//! process itself - come on top (`engine::cost::Memory`; docs/scale.md gives them at full size).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::experiment::MemoryBudget;
use crate::experiment::schema::format_bytes;

/// What `auto` assumes is available where the system does not say.
const UNKNOWN_AVAILABLE: u64 = 16 << 30;
/// The smallest `auto` budget: below it, spilling everything is slower than swapping a little.
const MIN_AUTO: u64 = 256 << 20;

/// A resolved budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    /// How an `auto` budget was derived; `None` when the configuration gave bytes.
    pub auto: Option<Auto>,
}

/// The facts an `auto` budget is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auto {
    /// Memory available to the process (cgroup limits included), `None` where unreadable.
    pub available: Option<u64>,
    /// The job's fixed costs (weights, checkpoints, the process).
    pub fixed: u64,
}

impl Budget {
    /// `cfg` as bytes. `auto` is three quarters of what the memory `available` to the process
    /// (see [`available_at_start`]) leaves after the job's `fixed` costs - the quarter left over
    /// absorbs the cost model's error and the page cache - and at least 256 MiB; 16 GiB is
    /// assumed available where that cannot be read.
    pub fn resolve(cfg: MemoryBudget, available: Option<u64>, fixed: u64) -> Budget {
        match cfg {
            MemoryBudget::Bytes(bytes) => Budget { bytes, auto: None },
            MemoryBudget::Auto => {
                let room = available.unwrap_or(UNKNOWN_AVAILABLE).saturating_sub(fixed);
                Budget {
                    bytes: (room / 4 * 3).max(MIN_AUTO),
                    auto: Some(Auto { available, fixed }),
                }
            }
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        match self.auto {
            Some(a) => format!(
                "memory budget {} (auto: 3/4 of the {} available{} after {} of weights, \
                 checkpoints and process; set cache.memory_budget to choose)",
                format_bytes(self.bytes),
                format_bytes(a.available.unwrap_or(UNKNOWN_AVAILABLE)),
                if a.available.is_some() {
                    ""
                } else {
                    " (assumed: /proc/meminfo unreadable)"
                },
                format_bytes(a.fixed)
            ),
            None => format!("memory budget {}", format_bytes(self.bytes)),
        }
    }
}

/// [`mem_available`] read once, the first time it is asked (before a process loads any
/// weights): every job of the process derives its `auto` budget from the same figure, which
/// the job's own fixed costs then come out of.
pub fn available_at_start() -> Option<u64> {
    static AT_START: OnceLock<Option<u64>> = OnceLock::new();
    *AT_START.get_or_init(mem_available)
}

/// The memory this process may still take: `MemAvailable` of `/proc/meminfo`, lowered to what
/// its control groups leave (a container's or a Slurm job's limit minus what the group already
/// uses, at every level up to the root), in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let host = kib * 1024;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| cgroup_headroom(Path::new("/sys/fs/cgroup"), &c));
    Some(cgroup.map_or(host, |c| c.min(host)))
}

/// The smallest `limit - usage` over the memory control groups of a process (`proc_cgroup`: the
/// text of `/proc/self/cgroup`) and their ancestors, under the cgroup file system at `root`:
/// cgroup v2 (`0::/path`: `memory.max`, `memory.current`) or v1 (`N:memory:/path`:
/// `memory/.../memory.limit_in_bytes`, `memory.usage_in_bytes`). `None` without any limit.
pub fn cgroup_headroom(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let read = |p: PathBuf| -> Option<u64> {
        let t = std::fs::read_to_string(p).ok()?;
        t.trim().parse().ok() // "max" (no limit) does not parse
    };
    let mut best: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (base, limit_file, usage_file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        let mut dir = Some(Path::new(path.trim_start_matches('/')));
        while let Some(d) = dir {
            let at = base.join(d);
            if let (Some(limit), Some(usage)) =
                (read(at.join(limit_file)), read(at.join(usage_file)))
            {
                // v1 writes "no limit" as a page-rounded i64::MAX.
                if limit < (1 << 60) {
                    let room = limit.saturating_sub(usage);
                    best = Some(best.map_or(room, |b| b.min(room)));
                }
            }
            dir = d.parent().filter(|p| !p.as_os_str().is_empty()).or(
                // The root group after the named ones.
                (!d.as_os_str().is_empty()).then_some(Path::new("")),
            );
        }
    }
    best
}

/// The process's peak resident memory (`VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Starts a new peak-memory measurement (Linux: writing 5 to `/proc/self/clear_refs` resets
/// `VmHWM` to the current resident size), so that [`peak_rss`] then gives one stage's peak.
/// Returns whether the reset took effect.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_limits_of_either_version_lower_the_headroom() {
        let root = tempfile::tempdir().unwrap();
        let put = |rel: &str, v: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        // v2: the job's group has 8 GiB with 3 used; its parent 6 GiB with 5 used (tighter).
        put("slurm/job_1/memory.max", "8589934592\n");
        put("slurm/job_1/memory.current", "3221225472\n");
        put("slurm/memory.max", "6442450944\n");
        put("slurm/memory.current", "5368709120\n");
        put("memory.max", "max\n");
        put("memory.current", "1\n");
        assert_eq!(
            cgroup_headroom(root.path(), "0::/slurm/job_1\n"),
            Some(1 << 30)
        );
        // v1: the memory controller's own tree; "unlimited" is i64::MAX rounded to pages.
        put("memory/docker/abc/memory.limit_in_bytes", "2147483648");
        put("memory/docker/abc/memory.usage_in_bytes", "536870912");
        put("memory/memory.limit_in_bytes", "9223372036854771712");
        put("memory/memory.usage_in_bytes", "5");
        assert_eq!(
            cgroup_headroom(root.path(), "4:memory:/docker/abc\n2:cpu:/x\n"),
            Some(3 << 29)
        );
        // No limit anywhere, or no memory controller: no headroom figure.
        assert_eq!(cgroup_headroom(root.path(), "4:memory:/\n"), None);
        assert_eq!(cgroup_headroom(root.path(), "2:cpu:/x\n"), None);
        assert!(mem_available().is_some_and(|b| b > 0));
    }

    #[test]
    fn configured_budgets_are_exact_and_auto_leaves_room_for_the_fixed_costs() {
        let gib = 1u64 << 30;
        assert_eq!(
            Budget::resolve(MemoryBudget::parse("1GiB").unwrap(), Some(gib), 8 * gib).bytes,
            gib,
            "a configured budget is what it says, whatever is available"
        );
        assert_eq!(
            MemoryBudget::parse("1.5G").unwrap(),
            MemoryBudget::Bytes(3 << 29)
        );
        assert_eq!(
            MemoryBudget::parse("2GB").unwrap(),
            MemoryBudget::Bytes(2_000_000_000)
        );
        assert!(MemoryBudget::parse("8 parsecs").is_err());
        assert!(MemoryBudget::parse("0").is_err());
        // 24 GiB available, 4 GiB fixed: three quarters of the 20 GiB left.
        let auto = Budget::resolve(MemoryBudget::Auto, Some(24 * gib), 4 * gib);
        assert_eq!(auto.bytes, 15 * gib);
        assert!(auto.bytes + 4 * gib < 24 * gib);
        assert!(auto.describe().contains("auto"), "{}", auto.describe());
        // Fixed costs above what is available: the floor (the estimate warns).
        let tight = Budget::resolve(MemoryBudget::Auto, Some(gib), 2 * gib);
        assert_eq!(tight.bytes, MIN_AUTO);
        // Unreadable: 16 GiB assumed, and the line says so.
        let unknown = Budget::resolve(MemoryBudget::Auto, None, 0);
        assert_eq!(unknown.bytes, 12 * gib);
        assert!(
            unknown.describe().contains("assumed"),
            "{}",
            unknown.describe()
        );
        assert_eq!(available_at_start(), available_at_start());
    }
}
