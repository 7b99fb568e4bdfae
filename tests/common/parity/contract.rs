//! Proof of the fixture contract (docs/fixtures.md) on edited copies of committed cases.
//!
//! A test copies committed cases into a scratch fixture root, strips them down to their required
//! fields (a "minimal" case) or removes one required field (a "broken" case), then runs the kind's
//! own parity test in a child process of the same test binary with `AVA_DINO_PARITY_DIR` pointing
//! at the scratch root: the path a fixture maker takes. The child's parity lines are then checked:
//! a minimal case passes with one `skipped (absent)` line per optional field it lacks and the very
//! lines its committed original gives for everything else; a broken case fails with a line naming
//! the file and the field.

use std::path::{Path, PathBuf};
use std::process::Command;

use ava_dino::io::TensorFile;

use super::{PARITY_DIR_ENV, committed_root};

/// A scratch fixture root holding cases of one kind.
pub struct Scratch {
    dir: tempfile::TempDir,
    kind: String,
}

impl Scratch {
    pub fn new(kind: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join(kind)).expect("kind directory");
        Self {
            dir,
            kind: kind.to_string(),
        }
    }

    /// Copies committed case `source` of this kind to scratch case `name`.
    pub fn copy(&self, source: &str, name: &str) -> CaseDir {
        let from = committed_root().join(&self.kind).join(source);
        let to = self.empty(name);
        for entry in std::fs::read_dir(&from).expect("committed case") {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.0.join(path.file_name().unwrap())).expect("copy fixture file");
        }
        to
    }

    /// An empty scratch case `name`.
    pub fn empty(&self, name: &str) -> CaseDir {
        let dir = self.dir.path().join(&self.kind).join(name);
        std::fs::create_dir(&dir).expect("case directory");
        CaseDir(dir)
    }

    /// Runs the parity test `test` of the running test binary on this scratch root.
    pub fn run(&self, test: &str) -> Run {
        let out = Command::new(std::env::current_exe().expect("test binary path"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(PARITY_DIR_ENV, self.dir.path())
            .output()
            .expect("run the parity test");
        Run {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            kind: self.kind.clone(),
        }
    }
}

/// One scratch case directory, edited in place.
pub struct CaseDir(pub PathBuf);

impl CaseDir {
    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn remove_file(self, name: &str) -> Self {
        std::fs::remove_file(self.0.join(name)).expect("remove fixture file");
        self
    }

    pub fn rename(self, from: &str, to: &str) -> Self {
        std::fs::rename(self.0.join(from), self.0.join(to)).expect("rename fixture file");
        self
    }

    /// Removes key `key` from the JSON object file `name`.
    pub fn remove_key(self, name: &str, key: &str) -> Self {
        self.edit_json(name, |o| {
            o.remove(key).expect("key present in the committed case");
        })
    }

    /// Edits the JSON object file `name`.
    pub fn edit_json(
        self,
        name: &str,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Self {
        let path = self.0.join(name);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("json file"))
                .expect("json");
        edit(v.as_object_mut().expect("json object"));
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).expect("write json");
        self
    }

    /// Removes from the safetensors file `name` every tensor whose name satisfies `drop`.
    pub fn remove_tensors(self, name: &str, drop: impl Fn(&str) -> bool) -> Self {
        let path = self.0.join(name);
        let mut file = TensorFile::read(&path).expect("safetensors file");
        let before = file.tensors.len();
        file.tensors.retain(|k, _| !drop(k));
        assert!(file.tensors.len() < before, "{name}: nothing removed");
        file.write(&path).expect("write safetensors");
        self
    }
}

/// The output of a child parity run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    kind: String,
}

impl Run {
    /// The parity lines of scratch case `case`, without the `parity <label> ` prefix.
    pub fn lines(&self, case: &str) -> Vec<&str> {
        self.lines_of(&format!("{PARITY_DIR_ENV}:{}/{case}", self.kind))
    }

    fn lines_of(&self, label: &str) -> Vec<&str> {
        let prefix = format!("parity {label} ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    fn context(&self) -> String {
        format!(
            "--- child stdout ---\n{}\n--- child stderr ---\n{}",
            self.stdout, self.stderr
        )
    }

    /// Scratch case `case` passed: no failed line, at least one comparison, and exactly the
    /// optional fields `skipped` (each `"<file> <field>"`) reported as absent.
    pub fn assert_passes(&self, case: &str, skipped: &[&str]) {
        let lines = self.lines(case);
        let ctx = self.context();
        assert!(
            !lines.iter().any(|l| l.ends_with(" FAIL")),
            "{case}: a minimal case must pass\n{ctx}"
        );
        assert!(
            lines.iter().any(|l| l.ends_with(" ok")),
            "{case}: no comparison was made\n{ctx}"
        );
        let mut got: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_suffix(" skipped (absent)"))
            .collect();
        let mut want = skipped.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{case}: skipped optional fields\n{ctx}");
    }

    /// Every comparison line (one with a `tol=`) of scratch case `case` is a line of committed
    /// case `source`: the values compared are the committed ones, with the same errors.
    pub fn assert_same_as_committed(&self, case: &str, source: &str) {
        let committed = self.lines_of(&format!("{}/{source}", self.kind));
        assert!(
            !committed.is_empty(),
            "committed case {source} not run\n{}",
            self.context()
        );
        for line in self.lines(case) {
            if line.contains(" tol=") {
                assert!(
                    committed.contains(&line),
                    "{case}: `{line}` is not a line of committed case {source}\n{}",
                    self.context()
                );
            }
        }
    }

    /// Scratch case `case` failed with a line holding every one of `needles` (the file, the field).
    pub fn assert_fails(&self, case: &str, needles: &[&str]) {
        assert!(
            !self.success,
            "a run with a broken case must fail\n{}",
            self.context()
        );
        let lines = self.lines(case);
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(" FAIL") && needles.iter().all(|n| l.contains(n))),
            "{case}: no FAIL line names {needles:?}; its lines: {lines:#?}\n{}",
            self.context()
        );
    }
}
