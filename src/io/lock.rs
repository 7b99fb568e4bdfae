//! Advisory locks on lock files (`flock`): one process at a time in a training or a run
//! directory. The lock dies with its process (a `kill -9` frees it), works across PID namespaces
//! on one host, and on network file systems that support `flock` (Lustre, NFSv4 on Linux).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    pub path: PathBuf,
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Takes the lock at `path`, waiting for its holder if there is one; `on_wait` is called once
/// before waiting (to say why nothing happens).
pub fn lock(path: &Path, on_wait: impl FnOnce()) -> io::Result<FileLock> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            on_wait();
            file.lock()?;
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    Ok(FileLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Takes the lock at `path` shared with other shared holders (readers), waiting while an
/// exclusive holder ([`lock`]) has it; an exclusive taker waits until every shared holder is gone.
pub fn lock_shared(path: &Path, on_wait: impl FnOnce()) -> io::Result<FileLock> {
    let file = open(path)?;
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            on_wait();
            file.lock_shared()?;
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    Ok(FileLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Takes the lock at `path` if it is free.
pub fn try_lock(path: &Path) -> io::Result<Option<FileLock>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_coexist_and_keep_an_exclusive_taker_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let a = lock_shared(&path, || panic!("free")).unwrap();
        let b = lock_shared(&path, || {
            panic!("shared holders do not wait for each other")
        })
        .unwrap();
        assert!(
            try_lock(&path).unwrap().is_none(),
            "readers keep a writer out"
        );
        drop(a);
        assert!(
            try_lock(&path).unwrap().is_none(),
            "one reader still holds it"
        );
        drop(b);
        let w = try_lock(&path).unwrap().expect("free again");
        let mut waited = false;
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn({
            let path = path.clone();
            move || {
                let _r = lock_shared(&path, || tx.send(()).unwrap()).unwrap();
            }
        });
        if rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok() {
            waited = true;
        }
        assert!(waited, "a reader waits for the writer");
        drop(w);
        t.join().unwrap();
    }

    #[test]
    fn second_holder_waits_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/x.lock");
        let first = lock(&path, || panic!("free lock must not wait")).unwrap();
        assert!(try_lock(&path).unwrap().is_none(), "held lock is busy");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut waited = false;
                let _l = lock(&path, || waited = true).unwrap();
                tx.send(waited).unwrap();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            rx.try_recv().is_err(),
            "the waiter got in while the lock was held"
        );
        drop(first);
        assert!(rx.recv().unwrap(), "the waiter was told it waits");
        waiter.join().unwrap();
        assert!(try_lock(&path).unwrap().is_some());
    }
}
