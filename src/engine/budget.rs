//! The memory budget: a bound on the memory that grows with the number of images (training
//! features, a category's anomaly maps during evaluation). Fixed costs - the backbone's weights,
//! one batch's activations, the evaluated checkpoints - come on top and do not grow with the
//! dataset (docs/scale.md gives them at full size).

use crate::experiment::MemoryBudget;
use crate::experiment::schema::format_bytes;

/// A resolved budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    /// `Some(available)` when the budget is `auto`: half of what was available.
    pub available: Option<u64>,
}

impl Budget {
    /// `cfg` as bytes; `auto` reads the memory available now (`MemAvailable` of
    /// `/proc/meminfo`; 8 GiB assumed where that cannot be read).
    pub fn resolve(cfg: MemoryBudget) -> Budget {
        match cfg {
            MemoryBudget::Bytes(bytes) => Budget {
                bytes,
                available: None,
            },
            MemoryBudget::Auto => {
                let available = mem_available().unwrap_or(16 << 30);
                Budget {
                    bytes: available / 2,
                    available: Some(available),
                }
            }
        }
    }

    /// One line for the log.
    pub fn describe(&self) -> String {
        match self.available {
            Some(a) => format!(
                "memory budget {} (auto: half of the {} available)",
                format_bytes(self.bytes),
                format_bytes(a)
            ),
            None => format!("memory budget {}", format_bytes(self.bytes)),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
    fn configured_budgets_are_exact_and_auto_is_half_of_available() {
        assert_eq!(
            Budget::resolve(MemoryBudget::parse("1GiB").unwrap()).bytes,
            1 << 30
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
        let auto = Budget::resolve(MemoryBudget::Auto);
        let available = auto.available.expect("auto records what was available");
        assert_eq!(auto.bytes, available / 2);
        assert!(auto.describe().contains("auto"), "{}", auto.describe());
    }
}
