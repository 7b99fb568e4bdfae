//! Free disk space, so that a sweep's needs (checkpoints, feature shards, spilled maps) can be
//! compared with what the disks that will take them hold before any work starts.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file system that holds a path, and its room now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// The file system's device id: paths with the same one share the room.
    pub device: u64,
    /// Bytes an unprivileged user may still write.
    pub free: u64,
}

/// The space of the file system that holds `path`, or would hold it: the nearest existing
/// ancestor is asked (a runs directory not made yet lands where its parent is). `None` where it
/// cannot be read.
pub fn space_of(path: &Path) -> Option<Space> {
    let absolute = std::path::absolute(path).ok()?;
    let existing = absolute.ancestors().find(|p| p.exists())?;
    let device = std::fs::metadata(existing).ok()?.dev();
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some(Space {
        device,
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_not_made_yet_is_on_its_parents_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let here = space_of(dir.path()).expect("a temporary folder's space is readable");
        let later = space_of(&dir.path().join("runs/paper-full")).unwrap();
        assert_eq!(later.device, here.device);
        assert!(here.free > 0);
        // /proc is another file system, with no room to write.
        let proc_fs = space_of(Path::new("/proc/self")).unwrap();
        assert_ne!(proc_fs.device, here.device);
        assert_eq!(proc_fs.free, 0);
    }
}
