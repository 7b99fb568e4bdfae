//! Atomic file writes: write a uniquely named temporary sibling, fsync it, rename it over the
//! target, fsync the directory.
//!
//! A run killed at any moment leaves either the old file or the new one, never half of one, and
//! the rename itself survives a power cut (the directory entry is synced too). Temporary names
//! carry 64 random bits and are created exclusively, so two writers never share one - not even
//! two containers whose processes are both PID 1 - and a writer never truncates another's.
//! Checkpoints, results and caches all go through here.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Marker between a file's name and the random suffix of its temporaries.
const TEMP_MARK: &str = ".tmp-";

/// 64 bits that differ between processes, threads and calls: the standard library seeds each
/// `RandomState` from the operating system's generator.
fn random_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

/// Creates a fresh temporary sibling of `path` (exclusively: an existing name is never reused),
/// named so that [`sweep_temps`] removes it if its writer is killed. Also for scratch files that
/// are never renamed into place (the evaluation's spilled maps).
pub fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let tmp = path.with_file_name(format!(".{name}{TEMP_MARK}{:016x}", random_suffix()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether `name` is one of our temporary files.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Syncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// The directory of `path` (`.` for a bare name), created if missing.
fn parent_dir(path: &Path) -> io::Result<&Path> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    Ok(parent)
}

/// Writes `path` atomically through `fill`, which receives a fresh temporary file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let parent = parent_dir(path)?;
    let (tmp, mut file) = create_temp(path)?;
    let result = (|| {
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically unless `path` exists: never overwrites, never leaves a
/// partial file (the complete temporary is hard-linked into place, which fails if the name is
/// taken). `AlreadyExists` when `path` exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = parent_dir(path)?;
    let (tmp, mut file) = create_temp(path)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::hard_link(&tmp, path)?;
        sync_dir(parent)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Removes our temporary files under `dir` (recursively) that are older than `min_age`: what a
/// killed writer left behind. Call it where no other process writes (under the directory's
/// lock) with `min_age` zero, or with a margin longer than any write where others may be
/// writing. Returns how many were removed.
pub fn sweep_temps(dir: &Path, min_age: Duration) -> io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    let now = SystemTime::now();
    while let Some(d) = stack.pop() {
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if !is_temp_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let age = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age >= min_age {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    // Another sweeper (or its writer's rename) was first.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn failed_fill_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_are_unique_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        let (a, fa) = create_temp(&path).unwrap();
        let (b, fb) = create_temp(&path).unwrap();
        assert_ne!(a, b);
        assert!(is_temp_name(&a.file_name().unwrap().to_string_lossy()));
        drop((fa, fb));
        // Two threads writing the same file at once: each rename is whole, no temp remains.
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(path, &[t; 4096]).unwrap();
                    }
                });
            }
        });
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.len() == 4096 && bytes.iter().all(|&b| b == bytes[0]));
        assert_eq!(sweep_temps(dir.path(), Duration::ZERO).unwrap(), 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/out.png");
        write_new(&path, b"first").unwrap();
        let err = write_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn sweep_keeps_young_temporaries_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/.m.json.tmp-00ff"), b"x").unwrap();
        fs::write(dir.path().join("a/keep.json"), b"x").unwrap();
        assert_eq!(
            sweep_temps(dir.path(), Duration::from_secs(3600)).unwrap(),
            0
        );
        assert_eq!(sweep_temps(dir.path(), Duration::ZERO).unwrap(), 1);
        assert!(dir.path().join("a/keep.json").is_file());
    }
}
