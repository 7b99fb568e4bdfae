//! Gathering finished run directories.

use std::path::{Path, PathBuf};

use crate::experiment::{Job, RoutingRow, RunDir, RunDirError, RunMetrics};

/// One finished run, as read back from its directory.
#[derive(Debug, Clone)]
pub struct CollectedRun {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
    pub routing: Option<Vec<RoutingRow>>,
}

impl CollectedRun {
    pub fn job(&self) -> &Job {
        &self.metrics.job
    }
}

/// Finished runs (directories holding `DONE`) at `root`, one level below it (an experiment
/// directory) or two levels below (a `runs/` directory), sorted by job. Unfinished directories
/// are listed in the second vector so the caller can say what is missing.
pub fn collect_runs(root: &Path) -> Result<(Vec<CollectedRun>, Vec<PathBuf>), RunDirError> {
    let mut candidates = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if Job::from_dir_name(&name).is_some() {
            candidates.push(dir);
            continue;
        }
        if depth >= 2 {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|source| RunDirError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries.filter_map(|e| e.ok()) {
            if e.path().is_dir() {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    candidates.sort();
    let mut runs = Vec::new();
    let mut unfinished = Vec::new();
    for dir in candidates {
        let rd = RunDir::at(&dir);
        if !rd.is_done() {
            unfinished.push(dir);
            continue;
        }
        let metrics = rd.read_metrics()?;
        let routing = rd.read_routing()?;
        runs.push(CollectedRun {
            dir,
            metrics,
            routing,
        });
    }
    runs.sort_by(|a, b| a.metrics.job.cmp(&b.metrics.job).then(a.dir.cmp(&b.dir)));
    Ok((runs, unfinished))
}
