//! Up-front asset check: with real assets configured, list everything missing (and where it was
//! looked for) before any work starts.

use std::path::Path;

use super::job::Job;
use super::schema::{Experiment, Source};
use crate::data::Registry;

/// One missing asset, in words: what, and where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingAsset {
    pub what: String,
    pub looked: String,
}

impl std::fmt::Display for MissingAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.looked)
    }
}

fn check_source(what: &str, src: &Source, hint: &str, out: &mut Vec<MissingAsset>) {
    match src.resolve() {
        Ok(None) => {}
        Ok(Some(p)) if p.exists() => {}
        Ok(Some(p)) => out.push(MissingAsset {
            what: what.into(),
            looked: format!("{} does not exist ({hint})", p.display()),
        }),
        Err(var) => out.push(MissingAsset {
            what: what.into(),
            looked: format!("environment variable {var} is not set ({hint})"),
        }),
    }
}

/// Everything `jobs` need that is not there. Empty for the embedded default.
pub fn missing_assets(exp: &Experiment, jobs: &[Job], repo_root: &Path) -> Vec<MissingAsset> {
    let mut out = Vec::new();
    check_source(
        "DINOv3 ViT-L/16 weights (backbone.weights)",
        &exp.backbone.weights,
        "licence click at Meta or huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m; see README",
        &mut out,
    );
    check_source(
        "CLIP ViT-L/14-336 weights (text.weights)",
        &exp.text.weights,
        "huggingface.co/openai/clip-vit-large-patch14-336; see README",
        &mut out,
    );
    if exp.data.root.is_embedded() {
        return out;
    }
    // The registry and the roots exactly as the run will resolve them.
    let registry = match Registry::load_or_default(&repo_root.join(&exp.data.registry)) {
        Ok(r) => r,
        Err(e) => {
            out.push(MissingAsset {
                what: "dataset registry (data.registry)".into(),
                looked: e.to_string(),
            });
            return out;
        }
    };
    let registry = match exp.data.root.resolve() {
        Ok(Some(root)) => registry.with_data_root(root),
        _ => registry,
    };
    let mut keys: Vec<&str> = jobs
        .iter()
        .flat_map(|j| [j.train.as_str(), j.target.as_str()])
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if let Err(e) = registry.resolve_root(key) {
            out.push(MissingAsset {
                what: format!("dataset `{key}`"),
                looked: e.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_missing_asset_with_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("datasets.toml"),
            "[datasets.mvtec]\nname = \"MVTec-AD\"\ndomain = \"industrial\"\nroot = \"MVTecAD\"\n\
             layout = \"mvtec\"\nmask_threshold = 0.5\nreference_prefix = \"/d/MVTecAD\"\ncategories = [{ name = \"bottle\" }]\n",
        )
        .unwrap();
        let mut e = Experiment::default();
        e.backbone.weights = Source::Path(dir.path().join("nope.safetensors"));
        e.text.weights = Source::Env("AVA_DINO_TEST_SURELY_UNSET_VAR".into());
        e.data.root = Source::Path(dir.path().to_path_buf());
        e.data.registry = dir.path().join("datasets.toml");
        let jobs = vec![Job {
            variant: super::super::schema::Variant::Full,
            train: "zzz".into(),
            target: "mvtec".into(),
            seed: 0,
        }];
        let missing = missing_assets(&e, &jobs, dir.path());
        let text: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        assert_eq!(missing.len(), 4, "{text:#?}");
        assert!(text[0].contains("nope.safetensors"));
        assert!(text[1].contains("AVA_DINO_TEST_SURELY_UNSET_VAR"));
        assert!(
            text.iter()
                .any(|t| t.contains("MVTecAD") && t.contains("AVA_DINO_MVTEC_ROOT"))
        );
        assert!(
            text.iter().any(|t| t.contains("unknown dataset `zzz`")),
            "{text:#?}"
        );
        // Once the folder exists, mvtec is no longer missing.
        std::fs::create_dir(dir.path().join("MVTecAD")).unwrap();
        assert_eq!(missing_assets(&e, &jobs, dir.path()).len(), 3);
    }

    #[test]
    fn embedded_default_needs_nothing() {
        let mut e = Experiment::default();
        e.backbone.weights = Source::Embedded;
        e.text.weights = Source::Embedded;
        e.data.root = Source::Embedded;
        let jobs = vec![Job {
            variant: super::super::schema::Variant::Full,
            train: "visa".into(),
            target: "mvtec".into(),
            seed: 0,
        }];
        assert!(missing_assets(&e, &jobs, Path::new(".")).is_empty());
    }
}
