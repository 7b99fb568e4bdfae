//! Up-front asset check: with real assets configured, list everything missing (and where it was
//! looked for) before any work starts.

use std::path::{Path, PathBuf};

use super::job::Job;
use super::schema::{Experiment, Source};

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
    let registry_path = if exp.data.registry.is_absolute() {
        exp.data.registry.clone()
    } else {
        repo_root.join(&exp.data.registry)
    };
    let registry: Option<toml::Value> = std::fs::read_to_string(&registry_path)
        .ok()
        .and_then(|t| toml::from_str(&t).ok());
    if registry.is_none() {
        out.push(MissingAsset {
            what: "dataset registry".into(),
            looked: format!(
                "{} is missing or not valid TOML (data.registry)",
                registry_path.display()
            ),
        });
        return out;
    }
    let common = exp.data.root.resolve();
    let mut keys: Vec<&str> = jobs
        .iter()
        .flat_map(|j| [j.train.as_str(), j.target.as_str()])
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let var = format!("AVA_DINO_{}_ROOT", key.to_ascii_uppercase());
        let own = std::env::var_os(&var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let sub = registry.as_ref().and_then(|r| {
            r.get("datasets")?
                .get(key)?
                .get("root")?
                .as_str()
                .map(str::to_string)
        });
        let what = format!("dataset `{key}`");
        match (own, &common, sub) {
            (Some(p), _, _) if p.is_dir() => {}
            (Some(p), _, _) => out.push(MissingAsset { what, looked: format!("{var}={} is not a directory", p.display()) }),
            (None, _, None) => out.push(MissingAsset { what, looked: format!("no entry [datasets.{key}] with a root in {}", registry_path.display()) }),
            (None, Ok(Some(root)), Some(sub)) if root.join(&sub).is_dir() => {}
            (None, Ok(Some(root)), Some(sub)) => out.push(MissingAsset {
                what,
                looked: format!("{} does not exist (set {var}, or put it under the data root; see datasets.toml)", root.join(sub).display()),
            }),
            (None, Ok(None), _) => {}
            (None, Err(v), Some(sub)) => out.push(MissingAsset { what, looked: format!("neither {var} nor {v} is set (looked for ${v}/{sub})") }),
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
            "[datasets.mvtec]\nroot = \"MVTecAD\"\n",
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
        assert!(text.iter().any(|t| t.contains("[datasets.zzz]")));
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
