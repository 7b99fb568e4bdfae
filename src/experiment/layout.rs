//! Where a sweep writes, and how: one experiment directory, a run directory per job, a training
//! directory per shared training, a checkpoint directory per epoch.
//!
//! ```text
//! runs/<name>-<profile>/                        ExperimentDir
//!   .locks/run-<job>.lock, .locks/train-<key>.lock
//!   <variant>__<train>__<target>__s<seed>/      RunDir: one job
//!     config.resolved.yaml   the job's identifying configuration (Job::config)
//!     overrides.txt          command-line overrides, one per line
//!     fingerprint            what the results depend on: config, code digest, weights, samples
//!     log.txt                progress lines
//!     maps/<category>/*.safetensors   a few anomaly maps per category (overlay charts)
//!     routing.csv            per-image routing weights of the reported checkpoint
//!     metrics.json           RunMetrics
//!     per_category.csv       per-category metrics with mean rows
//!     DONE                   written last: the job is finished and is skipped when run again
//!   _train/<variant>__<train>__s<seed>/         TrainDir: shared by every target of a training
//!     config.resolved.yaml, fingerprint (+ the training set's sample list), log.txt
//!     checkpoints/epoch_NNN/                    CheckpointDir; epoch 0 = at initialization
//!       adapters.safetensors  trainer_model.bpk  trainer_optim.bpk  epoch.json
//!       epoch_<N-1>.pth       the reference's own format (dual text-routed variants)
//!       COMPLETE              written last
//! ```
//! Every file is written atomically (`crate::io::write_atomic`). A process holds a directory's
//! lock (`.locks/`, outside the directory so that moving it aside keeps the lock) for as long as
//! it writes there, so two processes never interleave.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::job::Job;
use super::record::{RoutingRow, RunMetrics, now_rfc3339, routing_csv};
use super::schema::Experiment;
use crate::io::{FileLock, HostTensor, TensorFile};

/// Errors of run-directory handling; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{dir} holds work made differently ({}); rerun with --force to move it aside and start \
         afresh, or write into another --runs directory",
        differences.join("; ")
    )]
    Changed {
        dir: PathBuf,
        /// One entry per key that differs: `train.epochs: 15 -> 5`.
        differences: Vec<String>,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    crate::io::write_atomic(path, bytes).map_err(io(path))
}

/// Version of the `fingerprint` file; a directory written under another one is "made
/// differently" (its parts cannot be compared).
const FINGERPRINT_FORMAT: &str = "2";
/// The `fingerprint` line naming the `--force` session that made the directory (not identity).
const FORCE_LINE: &str = "force";

/// What a directory's results depend on. A directory made under another identity is never
/// resumed, extended or reused: its epochs or maps would mix with ours, or its numbers would be
/// reported as ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The resolved YAML (`Job::config` or `Job::train_config`): every key that changes a number.
    pub config: String,
    /// The other parts, by name: `code` (digest of the computing source), `weights.backbone`,
    /// `weights.text` (weight hashes or embedded ids), `samples.train`, `samples.target` (digests
    /// of the sample lists).
    pub parts: BTreeMap<String, String>,
}

impl Identity {
    /// The `fingerprint` file's identity lines: `key value`.
    fn lines(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("format".to_string(), FINGERPRINT_FORMAT.to_string()),
            ("config".to_string(), short_hash(self.config.as_bytes())),
        ];
        v.extend(self.parts.iter().map(|(k, v)| (k.clone(), v.clone())));
        v
    }

    /// How the identity recorded in `dir` differs from this one, one entry per key
    /// (`train.epochs: 15 -> 5`, `code: 0123.. -> 4567..`); empty when `dir` records none or the
    /// same one.
    pub fn differences(&self, dir: &Path) -> Result<Vec<String>, RunDirError> {
        let fp = dir.join("fingerprint");
        if !fp.is_file() {
            // Finished or trained work that records no identity was not made by this harness's
            // sweep: never reused as ours.
            let made = dir.join("DONE").exists() || dir.join("checkpoints").exists();
            return Ok(if made {
                vec![format!(
                    "fingerprint: none (made by hand or by a harness that wrote none) -> format {FINGERPRINT_FORMAT}"
                )]
            } else {
                Vec::new()
            });
        }
        let text = std::fs::read_to_string(&fp).map_err(io(&fp))?;
        let found: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(k, _)| *k != FORCE_LINE)
            .collect();
        if found.get("format") != Some(&FINGERPRINT_FORMAT) {
            return Ok(vec![format!(
                "fingerprint: written by an earlier version of the harness (format {}) -> format {FINGERPRINT_FORMAT}",
                found.get("format").unwrap_or(&"1")
            )]);
        }
        let ours: BTreeMap<String, String> = self.lines().into_iter().collect();
        let mut out = Vec::new();
        let keys: std::collections::BTreeSet<&str> = found
            .keys()
            .copied()
            .chain(ours.keys().map(String::as_str))
            .collect();
        for key in keys {
            let (had, now) = (found.get(key).copied(), ours.get(key).map(String::as_str));
            if had == now {
                continue;
            }
            if key == "config" {
                let earlier = dir.join("config.resolved.yaml");
                out.extend(config_differences(&earlier, &self.config));
                if !out.is_empty() {
                    continue;
                }
            }
            out.push(format!(
                "{key}: {} -> {}",
                had.unwrap_or("(none)"),
                now.unwrap_or("(none)")
            ));
        }
        Ok(out)
    }
}

/// The keys whose values differ between the resolved configuration in `earlier` (a file) and
/// `now` (YAML text), as `key.path: old -> new`; empty when either cannot be read as YAML.
fn config_differences(earlier: &Path, now: &str) -> Vec<String> {
    let parse = |text: &str| serde_saphyr::from_str::<serde_json::Value>(text).ok();
    let (Some(old), Some(new)) = (
        std::fs::read_to_string(earlier)
            .ok()
            .as_deref()
            .and_then(parse),
        parse(now),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff_values("", &old, &new, &mut out);
    out
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => diff_values(&p, x, y, out),
                (x, y) => out.push(format!("{p}: {} -> {}", show(x), show(y))),
            }
        }
    } else if old != new {
        out.push(format!(
            "{path}: {} -> {}",
            show(Some(old)),
            show(Some(new))
        ));
    }
}

fn show(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// SHA-256 (hex, first 16 characters).
pub fn short_hash(bytes: &[u8]) -> String {
    crate::io::sha256_hex(bytes)[..16].to_string()
}

/// What the run and training directories have in common: a path, a lock, an identity check,
/// a log.
pub trait WorkDir {
    fn path(&self) -> &Path;
    /// The lock file guarding this directory (outside it).
    fn lock_file(&self) -> &Path;

    fn fingerprint_file(&self) -> PathBuf {
        self.path().join("fingerprint")
    }
    fn config_file(&self) -> PathBuf {
        self.path().join("config.resolved.yaml")
    }
    fn log_file(&self) -> PathBuf {
        self.path().join("log.txt")
    }

    /// Takes this directory's lock, waiting (after calling `on_wait`) while another process
    /// holds it.
    fn lock(&self, on_wait: impl FnOnce()) -> Result<FileLock, RunDirError> {
        crate::io::lock(self.lock_file(), on_wait).map_err(io(self.lock_file()))
    }

    /// Takes this directory's lock shared: readers (an evaluation reading a training's
    /// checkpoints) hold it together, and a writer or `--force` waits until they are done.
    fn lock_shared(&self, on_wait: impl FnOnce()) -> Result<FileLock, RunDirError> {
        crate::io::lock_shared(self.lock_file(), on_wait).map_err(io(self.lock_file()))
    }

    /// Creates the directory (call with the lock held), removes temporaries a killed writer
    /// left, and checks `identity` against an earlier attempt: the same identity resumes,
    /// another one is refused naming every key that differs. Records the config and the
    /// fingerprint, with `force` (the `--force` session making it) when given.
    fn prepare(&self, identity: &Identity, force: Option<&str>) -> Result<(), RunDirError> {
        let dir = self.path();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        crate::io::sweep_temps(dir, std::time::Duration::ZERO).map_err(io(dir))?;
        let differences = identity.differences(dir)?;
        if !differences.is_empty() {
            return Err(RunDirError::Changed {
                dir: dir.to_path_buf(),
                differences,
            });
        }
        let fp = self.fingerprint_file();
        let earlier_force = self.force_session()?;
        write(&self.config_file(), identity.config.as_bytes())?;
        let mut text: String = identity
            .lines()
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect();
        if let Some(f) = force.map(str::to_string).or(earlier_force) {
            text.push_str(&format!("{FORCE_LINE} {f}\n"));
        }
        write(&fp, text.as_bytes())
    }

    /// The `--force` session that made this directory, if one did.
    fn force_session(&self) -> Result<Option<String>, RunDirError> {
        let fp = self.fingerprint_file();
        if !fp.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&fp).map_err(io(&fp))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == FORCE_LINE)
            .map(|(_, v)| v.to_string()))
    }

    /// Under `--force` session `session`: moves the directory aside unless this session made it
    /// (array tasks of one forced sweep share a session, so a training one of them made is kept
    /// for the others). Call with the lock held.
    fn replace_for(&self, session: &str) -> Result<Option<PathBuf>, RunDirError> {
        if self.force_session()?.as_deref() == Some(session) {
            return Ok(None);
        }
        self.move_aside()
    }

    /// Appends one line to `log.txt` (a log is the one file that grows; it is not a result).
    fn log_line(&self, line: &str) -> Result<(), RunDirError> {
        let path = self.log_file();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        writeln!(f, "{} {line}", now_rfc3339()).map_err(io(&path))
    }

    /// Moves the directory aside to `<name>.replaced-<time>` (call with the lock held); returns
    /// where it went, `None` when there was nothing to move.
    fn move_aside(&self) -> Result<Option<PathBuf>, RunDirError> {
        let dir = self.path();
        if !dir.exists() {
            return Ok(None);
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = now_rfc3339().replace(':', "");
        let mut to = dir.with_file_name(format!("{name}.replaced-{stamp}"));
        let mut k = 1;
        while to.exists() {
            to = dir.with_file_name(format!("{name}.replaced-{stamp}-{k}"));
            k += 1;
        }
        std::fs::rename(dir, &to).map_err(io(dir))?;
        if let Some(parent) = dir.parent() {
            crate::io::sync_dir(parent).map_err(io(parent))?;
        }
        Ok(Some(to))
    }
}

/// `runs/<name>-<profile>/`: every run of one experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentDir {
    pub path: PathBuf,
}

impl ExperimentDir {
    pub fn new(runs_root: &Path, exp: &Experiment) -> Self {
        ExperimentDir {
            path: runs_root.join(format!("{}-{}", exp.name, exp.profile)),
        }
    }

    /// The run directory of `job`.
    pub fn run(&self, job: &Job) -> RunDir {
        RunDir {
            path: self.path.join(job.dir_name()),
            lock: self
                .path
                .join(".locks")
                .join(format!("run-{}.lock", job.dir_name())),
        }
    }

    /// The training directory of `job`, shared by every job with the same [`Job::train_key`]
    /// (Table 1's eight VisA-trained targets train once).
    pub fn training(&self, job: &Job) -> TrainDir {
        TrainDir {
            path: self.path.join("_train").join(job.train_key()),
            lock: self
                .path
                .join(".locks")
                .join(format!("train-{}.lock", job.train_key())),
        }
    }
}

/// One job's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub path: PathBuf,
    lock: PathBuf,
}

impl WorkDir for RunDir {
    fn path(&self) -> &Path {
        &self.path
    }
    fn lock_file(&self) -> &Path {
        &self.lock
    }
}

impl RunDir {
    /// A run directory on its own (reading a finished run; its lock file is beside it).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock = path.with_file_name(format!(".{name}.lock"));
        RunDir { path, lock }
    }

    pub fn done_marker(&self) -> PathBuf {
        self.path.join("DONE")
    }
    pub fn metrics_json(&self) -> PathBuf {
        self.path.join("metrics.json")
    }
    pub fn per_category_csv(&self) -> PathBuf {
        self.path.join("per_category.csv")
    }
    pub fn routing_csv(&self) -> PathBuf {
        self.path.join("routing.csv")
    }
    pub fn overrides_file(&self) -> PathBuf {
        self.path.join("overrides.txt")
    }
    pub fn maps(&self) -> PathBuf {
        self.path.join("maps")
    }

    /// The training directory this run's job used (its sibling `_train/<key>`).
    pub fn training(&self, job: &Job) -> TrainDir {
        let exp_dir = self.path.parent().unwrap_or(Path::new("."));
        ExperimentDir {
            path: exp_dir.to_path_buf(),
        }
        .training(job)
    }

    /// Records the command-line overrides (beside the resolved config).
    pub fn write_overrides(&self, overrides: &[String]) -> Result<(), RunDirError> {
        write(&self.overrides_file(), overrides.join("\n").as_bytes())
    }

    /// Saves one anomaly map for the overlay charts: `maps/<category>/<name>.safetensors` with
    /// `image` u8 [H, W, 3] (the resized input), `gt` u8 [H, W] (0/1), `map` f32 [H, W]
    /// (the pixel anomaly score) and `label` u8 [1] (1 = anomalous: the image's label, which a
    /// mask does not always show, e.g. a defect too small to survive the resize).
    pub fn write_map(
        &self,
        category: &str,
        name: &str,
        image: HostTensor,
        gt: HostTensor,
        map: HostTensor,
        label: u8,
    ) -> Result<PathBuf, RunDirError> {
        let path = self
            .maps()
            .join(category)
            .join(format!("{name}.safetensors"));
        let mut f = TensorFile::new(&path);
        f.insert("image", image);
        f.insert("gt", gt);
        f.insert("map", map);
        f.insert("label", HostTensor::u8(vec![1], vec![label]));
        f.write(&path).map_err(|e| RunDirError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(path)
    }

    /// Finished: `DONE` exists (written after everything else).
    pub fn is_done(&self) -> bool {
        self.done_marker().is_file()
    }

    /// Writes `routing.csv` (per-image routing weights of the reported checkpoint).
    pub fn write_routing(&self, rows: &[RoutingRow]) -> Result<(), RunDirError> {
        write(&self.routing_csv(), routing_csv(rows).as_bytes())
    }

    /// Writes `metrics.json`, `per_category.csv` and, last, `DONE`.
    pub fn finish(&self, metrics: &RunMetrics) -> Result<(), RunDirError> {
        let json = serde_json::to_vec_pretty(metrics).expect("RunMetrics serializes");
        write(&self.metrics_json(), &json)?;
        write(
            &self.per_category_csv(),
            metrics.per_category_csv().as_bytes(),
        )?;
        write(&self.done_marker(), now_rfc3339().as_bytes())
    }

    /// Reads `metrics.json`.
    pub fn read_metrics(&self) -> Result<RunMetrics, RunDirError> {
        let path = self.metrics_json();
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| RunDirError::Parse {
            path,
            message: e.to_string(),
        })
    }

    /// Reads the resolved configuration the run was made with.
    pub fn read_config(&self) -> Result<Experiment, RunDirError> {
        let path = self.config_file();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_saphyr::from_str(&text).map_err(|e| RunDirError::Parse {
            path,
            message: format!("not a resolved experiment: {e}"),
        })
    }

    /// Reads `routing.csv` if present.
    pub fn read_routing(&self) -> Result<Option<Vec<RoutingRow>>, RunDirError> {
        let path = self.routing_csv();
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        super::record::read_routing_csv(&text)
            .map(Some)
            .map_err(|message| RunDirError::Parse { path, message })
    }
}

/// A training shared by the jobs of one [`Job::train_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainDir {
    pub path: PathBuf,
    lock: PathBuf,
}

impl WorkDir for TrainDir {
    fn path(&self) -> &Path {
        &self.path
    }
    fn lock_file(&self) -> &Path {
        &self.lock
    }
}

impl TrainDir {
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }

    /// The checkpoint of epoch `epoch` (`checkpoints/epoch_003/`).
    pub fn epoch(&self, epoch: usize) -> CheckpointDir {
        CheckpointDir {
            epoch,
            path: self.checkpoints().join(format!("epoch_{epoch:03}")),
        }
    }

    /// The last epoch whose checkpoint is complete, to resume from (`None`: start afresh).
    /// Half-written epochs (no `COMPLETE`) are ignored.
    pub fn latest_complete(&self) -> Option<usize> {
        let entries = std::fs::read_dir(self.checkpoints()).ok()?;
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let epoch: usize = name.strip_prefix("epoch_")?.parse().ok()?;
                self.epoch(epoch).is_complete().then_some(epoch)
            })
            .max()
    }
}

/// One epoch's checkpoint: every file of the training state at the end of that epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDir {
    pub epoch: usize,
    pub path: PathBuf,
}

impl CheckpointDir {
    /// The adapters in our format (what evaluation and `predict` load).
    pub fn adapters(&self) -> PathBuf {
        self.path.join("adapters.safetensors")
    }
    /// The exact trainer state (module record with parameter ids), to resume.
    pub fn model_state(&self) -> PathBuf {
        self.path.join("trainer_model.bpk")
    }
    /// The AdamW moments, to resume.
    pub fn optim_state(&self) -> PathBuf {
        self.path.join("trainer_optim.bpk")
    }
    /// Losses and timing of the epoch (`EpochFile` of the engine).
    pub fn epoch_json(&self) -> PathBuf {
        self.path.join("epoch.json")
    }
    /// The reference's `epoch_N.pth` (it counts epochs from 0), readable by its `test.py`.
    pub fn reference_pth(&self) -> Option<PathBuf> {
        (self.epoch > 0).then(|| self.path.join(format!("epoch_{}.pth", self.epoch - 1)))
    }
    fn complete_marker(&self) -> PathBuf {
        self.path.join("COMPLETE")
    }

    /// Marks the checkpoint complete; call after every file in it is written.
    pub fn mark_complete(&self) -> Result<(), RunDirError> {
        write(&self.complete_marker(), b"")
    }

    pub fn is_complete(&self) -> bool {
        self.complete_marker().is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(config: &str, code: &str, samples: Option<&str>) -> Identity {
        let mut parts = BTreeMap::from([("code".to_string(), code.to_string())]);
        if let Some(s) = samples {
            parts.insert("samples.train".into(), s.into());
        }
        Identity {
            config: config.into(),
            parts,
        }
    }

    fn train_dir(root: &Path) -> TrainDir {
        let exp = Experiment::default();
        let job = Job {
            variant: super::super::schema::Variant::Full,
            train: "visa".into(),
            target: "mvtec".into(),
            seed: 0,
        };
        ExperimentDir::new(root, &exp).training(&job)
    }

    #[test]
    fn resume_finds_the_last_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let td = train_dir(dir.path());
        td.prepare(&identity("a: 1\n", "r1", Some("s1")), None)
            .unwrap();
        assert_eq!(td.latest_complete(), None);
        for e in 1..=3 {
            std::fs::create_dir_all(&td.epoch(e).path).unwrap();
        }
        td.epoch(1).mark_complete().unwrap();
        td.epoch(2).mark_complete().unwrap();
        // Epoch 3 was interrupted: its directory exists without COMPLETE.
        assert_eq!(td.latest_complete(), Some(2));
        assert_eq!(
            td.epoch(2).reference_pth().unwrap().file_name().unwrap(),
            "epoch_1.pth"
        );
        assert_eq!(td.epoch(0).reference_pth(), None);
    }

    #[test]
    fn another_config_code_or_sample_list_is_refused_naming_the_keys_the_same_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let td = train_dir(dir.path());
        let base = "train:\n  epochs: 15\n  batch_size: 64\nbackbone:\n  dtype: f32\n";
        td.prepare(&identity(base, "r1", Some("s1")), None).unwrap();
        td.prepare(&identity(base, "r1", Some("s1")), None).unwrap();
        let epochs5 = base.replace("epochs: 15", "epochs: 5");
        let bf16 = base.replace("dtype: f32", "dtype: bf16");
        for (other, want) in [
            (
                identity(&epochs5, "r1", Some("s1")),
                "train.epochs: 15 -> 5",
            ),
            (
                identity(&bf16, "r1", Some("s1")),
                "backbone.dtype: f32 -> bf16",
            ),
            (identity(base, "r2", Some("s1")), "code: r1 -> r2"),
            (identity(base, "r1", Some("s2")), "samples.train: s1 -> s2"),
            (identity(base, "r1", None), "samples.train: s1 -> (none)"),
        ] {
            assert_eq!(other.differences(&td.path).unwrap(), vec![want]);
            let err = td.prepare(&other, None).unwrap_err();
            assert!(
                matches!(&err, RunDirError::Changed { differences, .. } if differences == &[want]),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("--force") && msg.contains("--runs"), "{msg}");
        }
        // Nothing was overwritten by the refused attempts.
        assert!(
            identity(base, "r1", Some("s1"))
                .differences(&td.path)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_fingerprint_of_the_first_format_is_made_differently() {
        let dir = tempfile::tempdir().unwrap();
        let td = train_dir(dir.path());
        std::fs::create_dir_all(&td.path).unwrap();
        std::fs::write(td.fingerprint_file(), "config 0123456789abcdef\ncode abc\n").unwrap();
        let d = identity("a: 1\n", "r1", None)
            .differences(&td.path)
            .unwrap();
        assert_eq!(d.len(), 1);
        assert!(
            d[0].starts_with("fingerprint: written by an earlier version"),
            "{d:?}"
        );
        // Finished work without any fingerprint is not ours either; an empty directory is new.
        std::fs::remove_file(td.fingerprint_file()).unwrap();
        let fresh = identity("a: 1\n", "r1", None);
        assert!(fresh.differences(&td.path).unwrap().is_empty());
        std::fs::write(td.path.join("DONE"), "x").unwrap();
        let d = fresh.differences(&td.path).unwrap();
        assert!(d[0].starts_with("fingerprint: none"), "{d:?}");
    }

    #[test]
    fn a_force_session_keeps_what_it_made_and_moves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let td = train_dir(dir.path());
        let id = identity("a: 1\n", "r1", None);
        td.prepare(&id, None).unwrap();
        // Another session's (or no session's) work is moved aside ...
        let moved = td.replace_for("s-1").unwrap().expect("moved");
        assert!(moved.join("fingerprint").is_file());
        td.prepare(&id, Some("s-1")).unwrap();
        // ... what this session made is kept, and a resumed prepare keeps the session.
        assert_eq!(td.replace_for("s-1").unwrap(), None);
        td.prepare(&id, None).unwrap();
        assert_eq!(td.force_session().unwrap().as_deref(), Some("s-1"));
        assert!(td.replace_for("s-2").unwrap().is_some());
    }

    #[test]
    fn moving_aside_keeps_the_lock_and_frees_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let td = train_dir(dir.path());
        let _lock = td.lock(|| panic!("free")).unwrap();
        td.prepare(&identity("a: 1\n", "r1", None), None).unwrap();
        std::fs::write(td.path.join(".x.tmp-0123"), b"stale").unwrap();
        let moved = td.move_aside().unwrap().expect("moved");
        assert!(!td.path.exists() && moved.join("fingerprint").is_file());
        assert!(
            moved
                .file_name()
                .unwrap()
                .to_string_lossy()
                .contains(".replaced-")
        );
        // A fresh prepare starts clean (and sweeps temporaries a killed writer left).
        td.prepare(&identity("a: 2\n", "r2", None), None).unwrap();
        std::fs::write(td.path.join(".y.tmp-0123"), b"stale").unwrap();
        td.prepare(&identity("a: 2\n", "r2", None), None).unwrap();
        assert!(!td.path.join(".y.tmp-0123").exists());
        assert_eq!(td.move_aside().unwrap().map(|p| p != moved), Some(true));
    }
}
