//! The calibration file: this machine's measured stage rates ([`super::calibrate`]), kept so that
//! `ava-dino estimate` and `reproduce --dry-run` price a job on the CPU they run on instead of
//! on the build machine's ([`BUILD_CPU`]).
//!
//! One JSON file holds several entries, each keyed by CPU model and thread count: a rate
//! measured on another CPU, or with another number of threads, says nothing about this process,
//! so it is never used. The file lives in the user's cache directory (a measurement is
//! reproducible, so it is cache, not configuration): `$AVA_DINO_CALIBRATION` when set, else
//! `$XDG_CACHE_HOME/ava-dino/calibration.json`, else `~/.cache/ava-dino/calibration.json`.
//! Writes are atomic and serialized by a lock beside the file.
//!
//! A file that cannot be read is an error naming the file and the fix, not a silent fallback:
//! an estimate that quietly switches to other rates prints other hours with nothing to say why.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BUILD_CPU, BUILD_CPU_NAME, Rates};
use crate::io::atomic::write_atomic;
use crate::io::lock::lock;

/// The environment variable that names the calibration file (tests, or a shared location).
pub const ENV: &str = "AVA_DINO_CALIBRATION";

/// The file format this binary reads and writes.
pub const VERSION: u32 = 1;

/// What a calibration is measured for: rates transfer to neither another CPU nor another
/// thread count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The CPU model (`/proc/cpuinfo`'s `model name`, see [`cpu_model`]).
    pub cpu: String,
    /// rayon's threads (`RAYON_NUM_THREADS`, else every core; `calibrate --threads`).
    pub threads: usize,
}

impl Key {
    /// This process: its CPU model and rayon's thread count.
    pub fn this_process() -> Key {
        Key {
            cpu: cpu_model(),
            threads: rayon::current_num_threads(),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub key: Key,
    /// When it was measured (UTC, RFC 3339).
    pub measured: String,
    /// The binary that measured it (`build_info::describe`).
    pub revision: String,
    pub rates: Rates,
}

impl Entry {
    /// `rates` measured now by this binary for `key`.
    pub fn now(key: Key, rates: Rates) -> Entry {
        Entry {
            key,
            measured: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            revision: crate::build_info::describe(),
            rates,
        }
    }

    /// The day it was measured (`YYYY-MM-DD`).
    pub fn date(&self) -> &str {
        self.measured.get(..10).unwrap_or(&self.measured)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    entries: Vec<Entry>,
}

/// Why the calibration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(
        "calibration file {path}: {message}; delete it (or point {ENV} at another file) and run \
         `ava-dino calibrate` to measure this machine again"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("calibration file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no place for the calibration file: none of {ENV}, XDG_CACHE_HOME and HOME is set; set \
         {ENV}=PATH"
    )]
    NoPath,
}

/// The calibration file's place from the environment `var` (see the module docs); `None` when
/// no variable gives one.
pub fn path_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(ENV) {
        return Some(p);
    }
    // The XDG base-directory rule: a relative XDG_CACHE_HOME is invalid and ignored.
    let base = set("XDG_CACHE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".cache")))
        .or_else(|| set("LOCALAPPDATA"))?;
    Some(base.join("ava-dino").join("calibration.json"))
}

/// The calibration file of this process's environment.
pub fn default_path() -> Result<PathBuf, CalibrationError> {
    path_from(|k| std::env::var_os(k)).ok_or(CalibrationError::NoPath)
}

/// The CPU model from `/proc/cpuinfo` (`model name` on x86, `Hardware`, `cpu model` or `CPU
/// part` elsewhere), else the architecture: the key a calibration is stored under.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| model_from_cpuinfo(&s))
        .unwrap_or_else(|| format!("{} CPU (model unknown)", std::env::consts::ARCH))
}

/// The model line of a `/proc/cpuinfo` text (see [`cpu_model`]).
pub fn model_from_cpuinfo(text: &str) -> Option<String> {
    ["model name", "Hardware", "cpu model", "CPU part"]
        .iter()
        .find_map(|field| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *field && !v.trim().is_empty())
                    .then(|| v.split_whitespace().collect::<Vec<_>>().join(" "))
            })
        })
}

/// The calibration file at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub path: PathBuf,
}

impl Store {
    pub fn at(path: impl Into<PathBuf>) -> Store {
        Store { path: path.into() }
    }

    /// The file of this process's environment ([`default_path`]).
    pub fn locate() -> Result<Store, CalibrationError> {
        default_path().map(Store::at)
    }

    /// Every entry; none when the file does not exist.
    pub fn load(&self) -> Result<Vec<Entry>, CalibrationError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CalibrationError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |message: String| CalibrationError::Corrupt {
            path: self.path.clone(),
            message,
        };
        // The version first: a newer format is named as such, not as a parse error.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON ({e})")))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                return Err(corrupt(format!(
                    "format version {v}, this binary reads version {VERSION}"
                )));
            }
            None => return Err(corrupt("no `version` field".into())),
        }
        let file: FileFormat = serde_json::from_value(value)
            .map_err(|e| corrupt(format!("unexpected content ({e})")))?;
        Ok(file.entries)
    }

    /// The entry for `key`, if one was measured.
    pub fn find(&self, key: &Key) -> Result<Option<Entry>, CalibrationError> {
        Ok(self.load()?.into_iter().find(|e| &e.key == key))
    }

    /// Stores `entry`, replacing the one of its key and keeping the others (atomically, under
    /// the lock beside the file).
    pub fn save(&self, entry: &Entry) -> Result<(), CalibrationError> {
        let io = |source| CalibrationError::Io {
            path: self.path.clone(),
            source,
        };
        let _lock = lock(&lock_path(&self.path), || {}).map_err(io)?;
        let mut entries = self.load()?;
        entries.retain(|e| e.key != entry.key);
        entries.push(entry.clone());
        entries.sort_by(|a, b| (&a.key.cpu, a.key.threads).cmp(&(&b.key.cpu, b.key.threads)));
        let file = FileFormat {
            version: VERSION,
            entries,
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("serializable");
        json.push(b'\n');
        write_atomic(&self.path, &json).map_err(io)
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Where the CPU column's rates come from.
#[derive(Debug, Clone, PartialEq)]
pub enum RatesSource {
    /// [`BUILD_CPU`]: no calibration for this CPU and thread count. `file` is where one would
    /// be (when known); `other_threads` names the thread counts this CPU was calibrated at
    /// instead, if any.
    Build {
        file: Option<PathBuf>,
        other_threads: Option<String>,
    },
    /// This machine's calibration.
    Calibrated { entry: Entry, file: PathBuf },
}

/// The CPU rates a projection uses and where they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuRates {
    pub rates: Rates,
    pub source: RatesSource,
}

impl CpuRates {
    /// The build machine's rates ([`BUILD_CPU`]); for projections of another machine (a Slurm
    /// cluster's nodes), where this one's calibration says nothing.
    pub fn build() -> CpuRates {
        CpuRates {
            rates: BUILD_CPU,
            source: RatesSource::Build {
                file: None,
                other_threads: None,
            },
        }
    }

    /// The rates `store` holds for `key`, else the build machine's.
    pub fn lookup(store: &Store, key: &Key) -> Result<CpuRates, CalibrationError> {
        let entries = store.load()?;
        if let Some(entry) = entries.iter().find(|e| &e.key == key) {
            return Ok(CpuRates {
                rates: entry.rates,
                source: RatesSource::Calibrated {
                    entry: entry.clone(),
                    file: store.path.clone(),
                },
            });
        }
        let others: Vec<String> = entries
            .iter()
            .filter(|e| e.key.cpu == key.cpu)
            .map(|e| e.key.threads.to_string())
            .collect();
        Ok(CpuRates {
            rates: BUILD_CPU,
            source: RatesSource::Build {
                file: Some(store.path.clone()),
                other_threads: (!others.is_empty()).then(|| {
                    format!(
                        "this CPU is calibrated at {} threads only, this process uses {}: \
                         `ava-dino calibrate --threads {}`, or set RAYON_NUM_THREADS",
                        others.join(", "),
                        key.threads,
                        key.threads
                    )
                }),
            },
        })
    }

    /// The rates for this process (its CPU and thread count) from the calibration file of its
    /// environment; the build machine's when there is none or no place for one.
    pub fn for_this_process() -> Result<CpuRates, CalibrationError> {
        match Store::locate() {
            Ok(store) => CpuRates::lookup(&store, &Key::this_process()),
            Err(CalibrationError::NoPath) => Ok(CpuRates::build()),
            Err(e) => Err(e),
        }
    }

    /// Whether these are a calibration of this machine.
    pub fn calibrated(&self) -> bool {
        matches!(self.source, RatesSource::Calibrated { .. })
    }

    /// The header of the CPU column.
    pub fn column(&self) -> &'static str {
        if self.calibrated() {
            "this CPU (calibrated)"
        } else {
            "CPU (build machine's rates)"
        }
    }

    /// One line naming the rates and where they come from (and, for the build machine's, how
    /// to measure this one).
    pub fn describe(&self) -> String {
        match &self.source {
            RatesSource::Calibrated { entry, file } => format!(
                "rates: calibrated on {}, {} threads, {} ({})",
                entry.key.cpu,
                entry.key.threads,
                entry.date(),
                file.display()
            ),
            RatesSource::Build {
                file,
                other_threads,
            } => {
                let mut s = format!(
                    "rates: the build machine's ({BUILD_CPU_NAME}), not this machine's; run \
                     `ava-dino calibrate` (under 2 minutes) to measure this one"
                );
                if let Some(note) = other_threads {
                    s.push_str(&format!(" ({note})"));
                }
                if let Some(f) = file {
                    s.push_str(&format!("; it would be stored in {}", f.display()));
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(k: f64) -> Rates {
        Rates {
            backbone_gflops: 100.0 * k,
            text_gflops: 90.0 * k,
            train_gflops: 80.0 * k,
            eval_gflops: 70.0 * k,
            decode_s_per_mpix: 0.02 / k,
            metric_ns_per_pixel: 10.0 / k,
            checkpoint_mb_per_s: 50.0 * k,
        }
    }

    fn key(cpu: &str, threads: usize) -> Key {
        Key {
            cpu: cpu.into(),
            threads,
        }
    }

    #[test]
    fn entries_round_trip_and_are_keyed_by_cpu_and_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("sub/calibration.json"));
        assert_eq!(store.load().unwrap(), Vec::<Entry>::new());
        let a = Entry::now(key("Model A", 2), rates(1.0));
        let b = Entry::now(key("Model A", 4), rates(2.0));
        let c = Entry::now(key("Model B", 2), rates(3.0));
        for e in [&a, &b, &c] {
            store.save(e).unwrap();
        }
        assert_eq!(store.load().unwrap().len(), 3);
        assert_eq!(store.find(&key("Model A", 4)).unwrap(), Some(b.clone()));
        // Saving a key again replaces its entry and keeps the others.
        let a2 = Entry::now(key("Model A", 2), rates(5.0));
        store.save(&a2).unwrap();
        let all = store.load().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.contains(&a2) && all.contains(&b) && all.contains(&c));
        assert!(!all.contains(&a));
        // No temporary or other file is left beside it but the lock.
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["calibration.json", "calibration.json.lock"]);

        // A lookup uses only its own CPU and thread count.
        let r = CpuRates::lookup(&store, &key("Model A", 2)).unwrap();
        assert_eq!(r.rates, rates(5.0));
        assert!(r.calibrated());
        assert!(
            r.describe()
                .starts_with("rates: calibrated on Model A, 2 threads, ")
        );
        assert!(
            r.describe().contains("calibration.json"),
            "{}",
            r.describe()
        );
        for other in [key("Model A", 8), key("Model C", 2)] {
            let r = CpuRates::lookup(&store, &other).unwrap();
            assert_eq!(r.rates, BUILD_CPU, "{other:?}");
            assert!(!r.calibrated());
            assert!(
                r.describe().contains("run `ava-dino calibrate`"),
                "{}",
                r.describe()
            );
        }
        // Another thread count of a calibrated CPU names the ones it has.
        let r = CpuRates::lookup(&store, &key("Model A", 8)).unwrap();
        assert!(
            r.describe().contains("calibrated at 2, 4 threads only"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn a_corrupt_file_is_one_error_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.json");
        let store = Store::at(&path);
        for (bytes, what) in [
            (
                &b"{\"version\": 1, \"entries\": [{\"cpu\": "[..],
                "not JSON",
            ),
            (&b"{\"entries\": []}"[..], "no `version` field"),
            (
                &b"{\"version\": 7, \"entries\": []}"[..],
                "format version 7",
            ),
            (
                &b"{\"version\": 1, \"entries\": [{\"cpu\": \"x\"}]}"[..],
                "unexpected content",
            ),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let msg = store.load().unwrap_err().to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(what), "{msg}");
            assert!(msg.contains("run `ava-dino calibrate`"), "{msg}");
            let msg = CpuRates::lookup(&store, &key("x", 1))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(what), "{msg}");
            // Saving refuses to overwrite it (other machines' entries may be in it).
            let err = store
                .save(&Entry::now(key("x", 1), rates(1.0)))
                .unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn the_file_is_found_in_the_user_cache() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            path_from(env(&[(ENV, "/tmp/c.json"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/tmp/c.json"))
        );
        assert_eq!(
            path_from(env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")])),
            Some(PathBuf::from("/xdg/ava-dino/calibration.json"))
        );
        // A relative XDG_CACHE_HOME is ignored (XDG base-directory rule); an empty value unset.
        assert_eq!(
            path_from(env(&[
                ("XDG_CACHE_HOME", "rel"),
                (ENV, ""),
                ("HOME", "/home/u")
            ])),
            Some(PathBuf::from("/home/u/.cache/ava-dino/calibration.json"))
        );
        assert_eq!(path_from(env(&[])), None);
    }

    #[test]
    fn the_cpu_model_comes_from_cpuinfo() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  9R14 96-Core Processor\n";
        assert_eq!(
            model_from_cpuinfo(x86).as_deref(),
            Some("AMD EPYC 9R14 96-Core Processor")
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n";
        assert_eq!(model_from_cpuinfo(arm).as_deref(), Some("0xd0c"));
        assert_eq!(model_from_cpuinfo("processor : 0\n"), None);
        assert!(!cpu_model().is_empty());
    }
}
