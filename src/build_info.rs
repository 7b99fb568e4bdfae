//! What this binary is: the commit it was built from, whether it carried uncommitted changes,
//! and digests of the source that computes results (written by `build.rs` at build time).
//!
//! Provenance reads the revision from here, never from the directory a run is started in: a run
//! started outside the repository still says which code computed it. Identities read the
//! digests: runs, trainings, feature shards and text features made by other computing code are
//! never reused, while a change to the documentation, the command line or the report keeps them.

/// The git commit the binary was built from; `None` outside a git checkout.
pub fn revision() -> Option<&'static str> {
    non_empty(env!("AVA_DINO_GIT_REVISION"))
}

/// Whether the files the binary is compiled from had uncommitted changes; `None` when unknown.
pub fn dirty() -> Option<bool> {
    match env!("AVA_DINO_GIT_DIRTY") {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Digest (16 hex) of those uncommitted changes, when there are some.
pub fn diff() -> Option<&'static str> {
    non_empty(env!("AVA_DINO_GIT_DIFF"))
}

/// What `ava-dino --version` prints after the name: the package version, the revision
/// ([`describe`]) and the code digest, so that a report quoting it names the code exactly.
pub fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} ({}, code {CODE})",
            env!("CARGO_PKG_VERSION"),
            describe()
        )
    })
}

/// `<revision>`, `<revision>+dirty.<diff digest>` or `unknown`: one line for logs and headers.
pub fn describe() -> String {
    match (revision(), diff()) {
        (Some(r), Some(d)) => format!("{r}+dirty.{d}"),
        (Some(r), None) => r.to_string(),
        (None, _) => "unknown".into(),
    }
}

/// Digest of the source that computes results (everything but the command line, the report,
/// the Slurm script and the cost estimate; `build.rs` lists it).
pub const CODE: &str = env!("AVA_DINO_CODE");
/// Digest of the source that computes backbone features.
pub const CODE_FEATURES: &str = env!("AVA_DINO_CODE_FEATURES");
/// Digest of the source that computes text features.
pub const CODE_TEXT: &str = env!("AVA_DINO_CODE_TEXT");

fn non_empty(s: &'static str) -> Option<&'static str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_16_hex_and_the_revision_is_a_commit_in_a_checkout() {
        for d in [CODE, CODE_FEATURES, CODE_TEXT] {
            assert_eq!(d.len(), 16, "{d}");
            assert!(d.bytes().all(|b| b.is_ascii_hexdigit()), "{d}");
        }
        assert_ne!(CODE, CODE_FEATURES);
        // Tests build from a git checkout (CI clones the repository).
        let rev = revision().expect("built from a git checkout");
        assert_eq!(rev.len(), 40, "{rev}");
        assert!(dirty().is_some());
        assert_eq!(diff().is_some(), dirty() == Some(true));
        assert!(describe().starts_with(rev));
    }
}
