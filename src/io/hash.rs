//! SHA-256 identities: of weight files (cache keys, provenance), of byte strings (cache file
//! names, seeded random weights). The one place the crate hashes.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex SHA-256 of a file's bytes, streamed in 1 MiB reads (weights files are > 1 GB).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// [`sha256_file`], computed once per process for a file of unchanged size and modification
/// time: the identity check before a sweep and the asset loader both need the hash of the same
/// 1-2 GB weights file.
pub fn sha256_file_cached(path: &Path) -> std::io::Result<String> {
    type Key = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
    static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
    let meta = std::fs::metadata(path)?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let key = (canonical, meta.len(), meta.modified().ok());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(h) = cache.lock().expect("hash cache lock").get(&key) {
        return Ok(h.clone());
    }
    let h = sha256_file(path)?;
    cache
        .lock()
        .expect("hash cache lock")
        .insert(key, h.clone());
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_bytes_hash_to_the_sha256_test_vector() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), abc);
        assert_eq!(sha256_file_cached(&p).unwrap(), abc);
        // Another content (and size) is hashed again, not served from the cache.
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(sha256_file_cached(&p).unwrap(), sha256_hex(b"abcd"));
    }
}
