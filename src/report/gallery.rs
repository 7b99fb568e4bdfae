//! The anomaly maps a run saved for its overlays (`maps/<category>/<image>.safetensors`, written
//! by `RunDir::write_map`): listing them, reading one, and what a gallery says under it (the
//! image score and whether the image is anomalous).

use std::path::{Path, PathBuf};

use crate::io::TensorFile;

/// One saved map, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedMap {
    pub category: String,
    /// File stem: `<index in the target>_<image stem>`.
    pub name: String,
    /// Height and width.
    pub size: (usize, usize),
    /// The resized input, `[H, W, 3]` RGB.
    pub image: Vec<u8>,
    /// Ground-truth mask, `[H, W]`, 0/1.
    pub gt: Vec<u8>,
    /// Pixel anomaly scores, `[H, W]`.
    pub map: Vec<f32>,
    /// The image's label (true = anomalous); maps saved before the label was recorded fall back
    /// to "the mask has a defect pixel".
    pub anomalous: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("saved map {path}: {message}; rerun the job (`--force`) to write its maps again")]
pub struct MapError {
    pub path: PathBuf,
    pub message: String,
}

impl SavedMap {
    pub fn read(path: &Path) -> Result<SavedMap, MapError> {
        let bad = |message: String| MapError {
            path: path.to_path_buf(),
            message,
        };
        let f = TensorFile::read(path).map_err(|e| bad(e.to_string()))?;
        let image = f.u8("image", 3).map_err(|e| bad(e.to_string()))?;
        let gt = f.u8("gt", 2).map_err(|e| bad(e.to_string()))?;
        let map = f.f32("map", 2).map_err(|e| bad(e.to_string()))?;
        let (h, w) = (image.shape[0], image.shape[1]);
        if image.shape[2] != 3 || gt.shape != [h, w] || map.shape != [h, w] {
            return Err(bad(format!(
                "shapes image {:?}, gt {:?}, map {:?}; expected [H,W,3], [H,W], [H,W]",
                image.shape, gt.shape, map.shape
            )));
        }
        let gt = gt.as_u8().expect("u8").to_vec();
        let anomalous = if f.contains("label") {
            let label = f.u8("label", 1).map_err(|e| bad(e.to_string()))?;
            label.as_u8().expect("u8").first().is_some_and(|&l| l != 0)
        } else {
            gt.iter().any(|&g| g > 0)
        };
        let stem = |p: &Path| {
            p.file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Ok(SavedMap {
            category: path.parent().map(stem).unwrap_or_default(),
            name: stem(path),
            size: (h, w),
            image: image.as_u8().expect("u8").to_vec(),
            gt,
            map: map.as_f32().expect("f32").to_vec(),
            anomalous,
        })
    }

    /// The image score as the evaluation computes it: the maximum of the map.
    pub fn score(&self) -> f32 {
        self.map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

/// The saved maps of the run directory `run`, by category, then by name (none when the run
/// saved none).
pub fn saved_maps(run: &Path) -> Vec<PathBuf> {
    let Ok(cats) = std::fs::read_dir(run.join("maps")) else {
        return Vec::new();
    };
    let mut cats: Vec<PathBuf> = cats
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cats.sort();
    let mut out = Vec::new();
    for cat in cats {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cat)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}
