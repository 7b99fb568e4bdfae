//! Run directories: layout, the `DONE` marker, the config fingerprint, resume helpers.
//!
//! ```text
//! runs/<name>-<profile>/<variant>__<train>__<target>__s<seed>/
//!   config.resolved.yaml   the effective experiment of this job (variant applied)
//!   overrides.txt          command-line overrides, one per line
//!   fingerprint            hash of config.resolved.yaml: a rerun with another config is refused
//!   log.txt                progress lines
//!   checkpoints/epoch_NNN/ one per epoch; complete when it holds COMPLETE
//!   maps/                  a few anomaly maps per category (overlay charts)
//!   routing.csv            per-image routing weights of the reported checkpoint
//!   metrics.json           RunMetrics
//!   per_category.csv       per-category metrics with mean rows
//!   DONE                   written last: the job is finished and is skipped when run again
//! ```
//! Every file is written atomically (`crate::io::write_atomic`).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::io::{HostTensor, TensorFile};

use super::record::{RoutingRow, RunMetrics, routing_csv};

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
        "{dir} holds a run made with a different configuration (fingerprint {found}, this config {expected}); \
         remove the directory or give the experiment another name"
    )]
    ConfigChanged {
        dir: PathBuf,
        found: String,
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
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
    pub fn config(&self) -> PathBuf {
        self.path.join("config.resolved.yaml")
    }
    pub fn fingerprint_file(&self) -> PathBuf {
        self.path.join("fingerprint")
    }
    pub fn log(&self) -> PathBuf {
        self.path.join("log.txt")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoints")
    }
    pub fn maps(&self) -> PathBuf {
        self.path.join("maps")
    }

    /// The directory of epoch `epoch`'s checkpoint (`checkpoints/epoch_003/`).
    pub fn checkpoint_dir(&self, epoch: usize) -> PathBuf {
        self.checkpoints().join(format!("epoch_{epoch:03}"))
    }

    /// Saves one anomaly map for the overlay charts: `maps/<category>/<name>.safetensors` with
    /// `image` u8 [H, W, 3] (the resized input), `gt` u8 [H, W] (0/1) and `map` f32 [H, W]
    /// (the pixel anomaly score).
    pub fn write_map(
        &self,
        category: &str,
        name: &str,
        image: HostTensor,
        gt: HostTensor,
        map: HostTensor,
    ) -> Result<PathBuf, RunDirError> {
        let path = self
            .maps()
            .join(category)
            .join(format!("{name}.safetensors"));
        let mut f = TensorFile::new(&path);
        f.insert("image", image);
        f.insert("gt", gt);
        f.insert("map", map);
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

    /// Creates the directory, records the resolved config and checks it against an earlier
    /// attempt: the same config resumes, another config is refused.
    pub fn prepare(&self, resolved_yaml: &str, overrides: &[String]) -> Result<(), RunDirError> {
        std::fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let expected = fingerprint(resolved_yaml);
        let fp = self.fingerprint_file();
        if fp.is_file() {
            let found = std::fs::read_to_string(&fp)
                .map_err(io(&fp))?
                .trim()
                .to_string();
            if found != expected {
                return Err(RunDirError::ConfigChanged {
                    dir: self.path.clone(),
                    found,
                    expected,
                });
            }
        }
        write(&self.config(), resolved_yaml.as_bytes())?;
        write(
            &self.path.join("overrides.txt"),
            overrides.join("\n").as_bytes(),
        )?;
        write(&fp, expected.as_bytes())
    }

    /// Marks epoch `epoch`'s checkpoint complete; call after every file in it is written.
    pub fn mark_checkpoint_complete(&self, epoch: usize) -> Result<(), RunDirError> {
        write(&self.checkpoint_dir(epoch).join("COMPLETE"), b"")
    }

    /// The last epoch whose checkpoint is complete, to resume from (`None`: start afresh).
    /// Half-written epochs (no `COMPLETE`) are ignored.
    pub fn latest_complete_checkpoint(&self) -> Option<(usize, PathBuf)> {
        let entries = std::fs::read_dir(self.checkpoints()).ok()?;
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let epoch: usize = name.strip_prefix("epoch_")?.parse().ok()?;
                e.path()
                    .join("COMPLETE")
                    .is_file()
                    .then(|| (epoch, e.path()))
            })
            .max_by_key(|(epoch, _)| *epoch)
    }

    /// Appends one line to `log.txt` (a log is the one file that grows; it is not a result).
    pub fn log_line(&self, line: &str) -> Result<(), RunDirError> {
        let path = self.log();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        writeln!(f, "{} {line}", super::record::now_rfc3339()).map_err(io(&path))
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
        write(&self.done_marker(), super::record::now_rfc3339().as_bytes())
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

fn write(path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
    crate::io::write_atomic(path, bytes).map_err(io(path))
}

/// SHA-256 (hex, first 16 characters) of a resolved config.
pub fn fingerprint(resolved_yaml: &str) -> String {
    let digest = Sha256::digest(resolved_yaml.as_bytes());
    hex::encode(digest)[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_finds_the_last_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let rd = RunDir::new(dir.path().join("run"));
        rd.prepare("a: 1\n", &[]).unwrap();
        assert_eq!(rd.latest_complete_checkpoint(), None);
        for e in 1..=3 {
            std::fs::create_dir_all(rd.checkpoint_dir(e)).unwrap();
        }
        rd.mark_checkpoint_complete(1).unwrap();
        rd.mark_checkpoint_complete(2).unwrap();
        // Epoch 3 was interrupted: its directory exists without COMPLETE.
        assert_eq!(rd.latest_complete_checkpoint().map(|(e, _)| e), Some(2));
    }

    #[test]
    fn another_config_is_refused_the_same_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let rd = RunDir::new(dir.path().join("run"));
        rd.prepare("a: 1\n", &["x=1".into()]).unwrap();
        rd.prepare("a: 1\n", &["x=1".into()]).unwrap();
        let err = rd.prepare("a: 2\n", &[]).unwrap_err();
        assert!(matches!(err, RunDirError::ConfigChanged { .. }), "{err}");
        assert!(err.to_string().contains("remove the directory"));
    }
}
