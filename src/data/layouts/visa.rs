//! VisA: the APRIL-GAN `meta.json` (what the reference reads) or, when absent, the official
//! `split_csv/1cls.csv` (columns object, split, label, image, mask).

use std::path::Path;

use serde::Deserialize;

use super::sample;
use crate::data::registry::{CategorySpec, DatasetSpec};
use crate::data::{DataError, Protocol, Sample};

#[derive(Deserialize)]
struct Meta {
    test: std::collections::BTreeMap<String, Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    img_path: String,
    #[serde(default)]
    mask_path: String,
    #[serde(default)]
    anomaly: Option<u8>,
}

pub fn list(
    spec: &DatasetSpec,
    root: &Path,
    cats: &[&CategorySpec],
    protocol: Protocol,
) -> Result<Vec<Sample>, DataError> {
    let meta = root.join(&spec.meta);
    let rows = if meta.is_file() {
        from_meta(&meta, cats)?
    } else {
        from_csv(spec, root, cats)?
    };
    Ok(rows
        .into_iter()
        .map(|(cat, img, mask, anomaly)| {
            // The reference decides the label by the substring `Normal` in the image path.
            let label = match protocol {
                Protocol::Reference => u8::from(!img.contains("Normal")),
                Protocol::Corrected => anomaly,
            };
            sample(spec, root, cat, img, mask, label, protocol)
        })
        .collect())
}

type Row<'a> = (&'a CategorySpec, String, Option<String>, u8);

fn from_meta<'a>(path: &Path, cats: &[&'a CategorySpec]) -> Result<Vec<Row<'a>>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| DataError::Meta {
        path: path.to_path_buf(),
        reason: format!("not an APRIL-GAN meta.json ({e}); regenerate it or delete it to read split_csv/1cls.csv"),
    })?;
    let mut out = Vec::new();
    for cat in cats {
        let entries = meta.test.get(&cat.name).ok_or_else(|| DataError::Meta {
            path: path.to_path_buf(),
            reason: format!(
                "no `test.{}` list; regenerate meta.json or fix the category in datasets.toml",
                cat.name
            ),
        })?;
        for e in entries {
            let label = e.anomaly.unwrap_or(u8::from(!e.mask_path.is_empty()));
            let mask = (!e.mask_path.is_empty()).then(|| e.mask_path.clone());
            out.push((*cat, e.img_path.clone(), mask, label));
        }
    }
    Ok(out)
}

fn from_csv<'a>(
    spec: &DatasetSpec,
    root: &Path,
    cats: &[&'a CategorySpec],
) -> Result<Vec<Row<'a>>, DataError> {
    let path = root.join(&spec.split_csv);
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::Layout {
        path: path.clone(),
        reason: format!(
            "neither {} nor this split file is readable ({e}); VisA needs one of them",
            spec.meta
        ),
    })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| DataError::Meta {
                path: path.clone(),
                reason: format!("no `{name}` column (expected object,split,label,image,mask)"),
            })
    };
    let (co, cs, cl, ci, cm) = (
        col("object")?,
        col("split")?,
        col("label")?,
        col("image")?,
        col("mask")?,
    );
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        if get(cs) != "test" {
            continue;
        }
        let Some(cat) = cats.iter().find(|c| c.name == get(co)) else {
            continue;
        };
        let label = match get(cl) {
            "normal" => 0,
            "anomaly" => 1,
            other => {
                return Err(DataError::Meta {
                    path: path.clone(),
                    reason: format!("line {}: label `{other}` is not normal|anomaly", n + 2),
                });
            }
        };
        let mask = (!get(cm).is_empty()).then(|| get(cm).to_string());
        out.push((*cat, get(ci).to_string(), mask, label));
    }
    Ok(out)
}
