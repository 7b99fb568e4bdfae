//! Synthetic twins: small deterministic copies of all nine datasets in their real on-disk layouts
//! (file formats included), with per-category textures or objects and painted defects whose masks
//! are exact. `AVA_DINO_DATA_ROOT=<out>` points every command at them.
//!
//! Each dataset root also gets `synth.json` with the per-category normal/anomalous counts written,
//! which `datasets check` uses instead of the official counts of `datasets.toml`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ColorType, ImageFormat};
use rayon::prelude::*;

use super::DataError;
use super::registry::{DatasetSpec, LayoutKind, Registry};
use crate::io::write_atomic;

/// Name of the per-dataset file recording what the generator wrote.
pub const SYNTH_MARKER: &str = "synth.json";

/// Version of what the generator writes. Bump it with any change to the generated files, so that
/// twins written by an older generator are regenerated instead of silently reused.
pub const GENERATOR_VERSION: u32 = 1;

/// What one category of a twin holds (test split).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthCategory {
    pub name: String,
    pub normal: usize,
    pub anomalous: usize,
}

/// One dataset twin.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthDataset {
    pub key: String,
    pub root: PathBuf,
    pub seed: u64,
    pub categories: Vec<SynthCategory>,
    /// Image files written (test images plus any train images).
    pub images: usize,
}

/// Everything written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthSummary {
    pub out: PathBuf,
    pub datasets: Vec<SynthDataset>,
    pub images: usize,
    pub files: usize,
}

/// How many images a twin category holds (test split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counts {
    /// A handful per category (2-3 normal, 3-10 anomalous, by layout): the smoke profile.
    #[default]
    Small,
    /// `n` per category: half normal (rounded down; none for medical sets), the rest anomalous.
    PerCategory(usize),
    /// The official test counts of `datasets.toml` (the default where a category has none).
    Official,
}

/// Image sizes of the twins (`data.synthetic.resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Small odd sizes around 70 px (fast; exercises up- and downscaling).
    #[default]
    Small,
    /// Each dataset's real image size (MVTec-AD 700-1024 px, VisA 1500x1000, MVTec AD 2
    /// 2448x2048...): decoding and resizing cost what they cost on the real data.
    Real,
}

/// What the generator writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SynthOptions {
    pub seed: u64,
    pub counts: Counts,
    /// Counts for single datasets (by registry key), over `counts`: one large twin (a KSDD2 of
    /// 1,000 images) beside small others.
    pub per_dataset: std::collections::BTreeMap<String, Counts>,
    pub resolution: Resolution,
}

impl SynthOptions {
    /// The smoke twins (small counts, small images) with `seed`.
    pub fn small(seed: u64) -> Self {
        SynthOptions {
            seed,
            ..Default::default()
        }
    }

    /// One line naming everything that changes the files (for "already written?" markers).
    pub fn stamp(&self) -> String {
        let mut s = format!("seed={}\ngenerator={GENERATOR_VERSION}\n", self.seed);
        if self.counts != Counts::Small {
            s.push_str(&format!("counts={:?}\n", self.counts));
        }
        for (key, c) in &self.per_dataset {
            s.push_str(&format!("counts.{key}={c:?}\n"));
        }
        if self.resolution != Resolution::Small {
            s.push_str(&format!("resolution={:?}\n", self.resolution));
        }
        s
    }
}

/// Writes the smoke twins of every dataset of the embedded registry under `out`.
pub fn write_all(out: &Path, seed: u64) -> Result<SynthSummary, DataError> {
    write_with(out, &SynthOptions::small(seed))
}

/// Writes twins of every dataset of the embedded registry under `out`.
pub fn write_with(out: &Path, opts: &SynthOptions) -> Result<SynthSummary, DataError> {
    write_registry(&Registry::embedded()?, out, opts)
}

/// Writes twins of every dataset of `registry` under `out` (folder names from `root`).
pub fn write_registry(
    registry: &Registry,
    out: &Path,
    opts: &SynthOptions,
) -> Result<SynthSummary, DataError> {
    let mut jobs = Vec::new();
    let mut datasets = Vec::new();
    for spec in registry.datasets.values() {
        let (ds, mut j) = plan(spec, &out.join(&spec.root), opts);
        jobs.append(&mut j);
        datasets.push(ds);
    }
    // Files are rendered when written: at real resolution and official counts the twins are
    // gigabytes, which must never sit in memory at once.
    jobs.par_iter()
        .map(|j| j.write())
        .collect::<Result<Vec<()>, DataError>>()?;
    for ds in &datasets {
        let json = serde_json::to_vec_pretty(ds).expect("serializable");
        let p = ds.root.join(SYNTH_MARKER);
        write_atomic(&p, &json).map_err(|e| DataError::Io { path: p, source: e })?;
    }
    let images = datasets.iter().map(|d| d.images).sum();
    Ok(SynthSummary {
        out: out.to_path_buf(),
        datasets,
        images,
        files: jobs.iter().map(Job::files).sum(),
    })
}

/// What [`write_registry`] would write under `out`, without writing anything (cheap: images are
/// only rendered when written).
pub fn planned(registry: &Registry, out: &Path, opts: &SynthOptions) -> Vec<SynthDataset> {
    registry
        .datasets
        .values()
        .map(|spec| plan(spec, &out.join(&spec.root), opts).0)
        .collect()
}

/// The size of the images of `key`/`cat` at `resolution` (width, height; the small sizes vary
/// by a few pixels from image to image, this is the first).
pub fn image_size(
    key: &str,
    cat_index: usize,
    cat: &str,
    resolution: Resolution,
) -> (usize, usize) {
    match resolution {
        Resolution::Small => size_for(key, cat_index, 0),
        Resolution::Real => real_size(key, cat),
    }
}

/// Reads a twin's `synth.json`, if the dataset root is a twin.
pub fn read_marker(root: &Path) -> Option<SynthDataset> {
    let text = std::fs::read(root.join(SYNTH_MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

// ---------------------------------------------------------------------------------------------
// Files to write

/// One image to render (and its mask), kept as a recipe until it is written.
struct Render {
    /// Dataset key and category: seed the category's look.
    key: String,
    cat: String,
    rel: String,
    size: (usize, usize),
    defect: Option<Defect>,
    mask_rel: Option<String>,
    mask_on: u8,
    seed: u64,
}

enum Payload {
    Image(Render),
    Text { rel: String, body: String },
}

struct Job {
    /// The dataset root; files are written at `root/<rel>`.
    root: PathBuf,
    payload: Payload,
}

impl Job {
    /// Files this job writes.
    fn files(&self) -> usize {
        match &self.payload {
            Payload::Image(r) => 1 + usize::from(r.mask_rel.is_some()),
            Payload::Text { .. } => 1,
        }
    }

    fn write(&self) -> Result<(), DataError> {
        match &self.payload {
            Payload::Text { rel, body } => put(&self.root.join(rel), body.as_bytes()),
            Payload::Image(r) => {
                let mut cat_rng = Rng::new(&[&r.key, &r.cat], r.seed);
                let mut rng = Rng::new(&[&r.key, &r.rel], r.seed);
                let mut canvas = Canvas::new(r.size.0, r.size.1, &mut cat_rng, &mut rng);
                if let Some(d) = r.defect {
                    canvas.defect(d, &mut rng);
                }
                let (w, h) = (canvas.w, canvas.h);
                let image = encode(&canvas.rgb, w, h, ColorType::Rgb8, format_of(ext(&r.rel)));
                put(&self.root.join(&r.rel), &image)?;
                if let Some(m) = &r.mask_rel {
                    let mask = canvas.mask_values(r.mask_on);
                    put(
                        &self.root.join(m),
                        &encode(&mask, w, h, ColorType::L8, format_of(ext(m))),
                    )?;
                }
                Ok(())
            }
        }
    }
}

fn ext(rel: &str) -> &str {
    rel.rsplit('.').next().unwrap_or("png")
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    write_atomic(path, bytes).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn encode(data: &[u8], w: usize, h: usize, color: ColorType, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    if format == ImageFormat::Jpeg {
        // Quality 100 keeps 8x8-aligned constant blocks exact (Kvasir's JPEG masks stay binary).
        let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 100);
        image::ImageEncoder::write_image(enc, data, w as u32, h as u32, color.into())
            .expect("in-memory JPEG encode");
    } else {
        image::write_buffer_with_format(&mut buf, data, w as u32, h as u32, color, format)
            .expect("in-memory encode");
    }
    buf.into_inner()
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness and drawing

/// SplitMix64: tiny, seedable, stable across platforms.
struct Rng(u64);

impl Rng {
    fn new(parts: &[&str], seed: u64) -> Self {
        // FNV-1a over the parts, mixed with the seed: one independent stream per file.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for p in parts {
            for b in p.bytes().chain([0xff]) {
                h ^= b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        }
        Rng(h)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo).max(1) as u64) as usize
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn color(&mut self) -> [u8; 3] {
        [
            self.range(30, 226) as u8,
            self.range(30, 226) as u8,
            self.range(30, 226) as u8,
        ]
    }
}

/// Defect kinds painted on anomalous images.
#[derive(Clone, Copy)]
enum Defect {
    Scratch,
    Blob,
    Missing,
    Stain,
    /// 8x8-aligned rectangle (JPEG-exact masks).
    Block,
}

const DEFECT_NAMES: [(&str, Defect); 4] = [
    ("scratch", Defect::Scratch),
    ("blob", Defect::Blob),
    ("missing", Defect::Missing),
    ("stain", Defect::Stain),
];

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
    mask: Vec<u8>,
    background: [u8; 3],
    /// Pixels belonging to the object (objects) or everything (textures).
    object: Vec<bool>,
}

impl Canvas {
    /// A category's look: even category seeds give textures (oriented stripes), odd ones objects
    /// (an ellipse with a ring on a flat background). Per-image noise keeps images distinct.
    fn new(w: usize, h: usize, cat_rng: &mut Rng, img_rng: &mut Rng) -> Self {
        let texture = cat_rng.next().is_multiple_of(2);
        let (c0, c1) = (cat_rng.color(), cat_rng.color());
        let freq = 0.15 + 0.35 * cat_rng.f();
        let angle = std::f32::consts::PI * cat_rng.f();
        let (ca, sa) = (angle.cos(), angle.sin());
        let (rx, ry) = (
            w as f32 * (0.25 + 0.1 * cat_rng.f()),
            h as f32 * (0.25 + 0.1 * cat_rng.f()),
        );
        let (cx, cy) = (
            w as f32 / 2.0 + img_rng.f() * 4.0 - 2.0,
            h as f32 / 2.0 + img_rng.f() * 4.0 - 2.0,
        );
        let mut rgb = vec![0u8; w * h * 3];
        let mut object = vec![false; w * h];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let noise = (img_rng.next() % 13) as i32 - 6;
                let (col, inside) = if texture {
                    let t = ((x as f32 * ca + y as f32 * sa) * freq).sin() * 0.5 + 0.5;
                    (mix(c0, c1, t), true)
                } else {
                    let d = ((x as f32 - cx) / rx).powi(2) + ((y as f32 - cy) / ry).powi(2);
                    if d <= 1.0 {
                        (
                            if (0.35..0.5).contains(&d) {
                                mix(c1, c0, 0.4)
                            } else {
                                c1
                            },
                            true,
                        )
                    } else {
                        (c0, false)
                    }
                };
                object[i] = inside;
                for c in 0..3 {
                    rgb[i * 3 + c] = (col[c] as i32 + noise).clamp(0, 255) as u8;
                }
            }
        }
        Canvas {
            w,
            h,
            rgb,
            mask: vec![0; w * h],
            background: c0,
            object,
        }
    }

    fn paint(&mut self, x: usize, y: usize, col: [u8; 3]) {
        let i = y * self.w + x;
        self.rgb[i * 3..i * 3 + 3].copy_from_slice(&col);
        self.mask[i] = 1;
    }

    /// Paints one defect; the mask marks exactly the pixels painted.
    fn defect(&mut self, kind: Defect, rng: &mut Rng) {
        let (w, h) = (self.w, self.h);
        match kind {
            Defect::Scratch => {
                let (x0, y0) = (
                    rng.range(w / 5, w * 4 / 5) as f32,
                    rng.range(h / 5, h * 4 / 5) as f32,
                );
                let a = rng.f() * std::f32::consts::PI;
                let len = (w.min(h) as f32) * (0.25 + 0.2 * rng.f());
                let col = [20, 20, 25];
                for s in 0..(len * 2.0) as usize {
                    let t = s as f32 / 2.0;
                    let (x, y) = (x0 + a.cos() * t, y0 + a.sin() * t);
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        let (px, py) = (x as isize + dx, y as isize + dy);
                        if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                            self.paint(px as usize, py as usize, col);
                        }
                    }
                }
            }
            Defect::Blob | Defect::Stain => {
                let r = rng.range(3, (w.min(h) / 6).max(4)) as f32;
                let (cx, cy) = (
                    rng.range(w / 4, w * 3 / 4) as f32,
                    rng.range(h / 4, h * 3 / 4) as f32,
                );
                let col = if matches!(kind, Defect::Stain) {
                    [190, 60, 40]
                } else {
                    invert(self.background)
                };
                for y in 0..h {
                    for x in 0..w {
                        let (dx, dy) = (x as f32 - cx, (y as f32 - cy) * 1.3);
                        if dx * dx + dy * dy <= r * r {
                            self.paint(x, y, col);
                        }
                    }
                }
            }
            Defect::Missing => {
                // A chunk of the object (or texture) replaced by the background colour; only
                // pixels that belonged to the object change, so only they are marked.
                let (rw, rh) = (w / 4, h / 4);
                let (x0, y0) = (rng.range(w / 4, w / 2), rng.range(h / 4, h / 2));
                let bg = if self.object.iter().all(|&o| o) {
                    invert(self.background)
                } else {
                    self.background
                };
                for y in y0..y0 + rh {
                    for x in x0..x0 + rw {
                        if self.object[y * self.w + x] {
                            self.paint(x, y, bg);
                        }
                    }
                }
            }
            Defect::Block => {
                let bw = 8 * rng.range(1, (w / 8 / 2).max(2));
                let bh = 8 * rng.range(1, (h / 8 / 2).max(2));
                let x0 = 8 * rng.range(0, ((w - bw) / 8).max(1));
                let y0 = 8 * rng.range(0, ((h - bh) / 8).max(1));
                for y in y0..(y0 + bh).min(h) {
                    for x in x0..(x0 + bw).min(w) {
                        self.paint(x, y, [235, 170, 150]);
                    }
                }
            }
        }
        if !self.mask.iter().any(|&m| m > 0) {
            // Never leave an anomalous image without a defect pixel.
            let (x, y) = (w / 2, h / 2);
            self.paint(x, y, [255, 0, 255]);
        }
    }

    /// The mask with anomalous pixels set to `on`.
    fn mask_values(&self, on: u8) -> Vec<u8> {
        self.mask
            .iter()
            .map(|&m| if m > 0 { on } else { 0 })
            .collect()
    }
}

fn mix(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    [0, 1, 2].map(|c| (a[c] as f32 * (1.0 - t) + b[c] as f32 * t).round() as u8)
}

fn invert(c: [u8; 3]) -> [u8; 3] {
    c.map(|v| 255 - v)
}

// ---------------------------------------------------------------------------------------------
// Layout plans

fn format_of(ext: &str) -> ImageFormat {
    match ext {
        "bmp" => ImageFormat::Bmp,
        "jpg" | "JPG" | "jpeg" => ImageFormat::Jpeg,
        "tif" | "tiff" => ImageFormat::Tiff,
        _ => ImageFormat::Png,
    }
}

struct Plan<'a> {
    spec: &'a DatasetSpec,
    root: &'a Path,
    opts: SynthOptions,
    jobs: Vec<Job>,
    images: usize,
}

impl Plan<'_> {
    /// Queues one image (and its mask when `mask_rel` is set); `defect` paints an anomaly.
    fn image(
        &mut self,
        cat: &str,
        rel: &str,
        size: (usize, usize),
        defect: Option<Defect>,
        mask: Option<(&str, u8)>,
    ) {
        self.jobs.push(Job {
            root: self.root.to_path_buf(),
            payload: Payload::Image(Render {
                key: self.spec.key.clone(),
                cat: cat.to_string(),
                rel: rel.to_string(),
                size,
                defect,
                mask_rel: mask.map(|(m, _)| m.to_string()),
                mask_on: mask.map_or(0, |(_, on)| on),
                seed: self.opts.seed,
            }),
        });
        self.images += 1;
    }

    fn text(&mut self, rel: &str, body: String) {
        self.jobs.push(Job {
            root: self.root.to_path_buf(),
            payload: Payload::Text {
                rel: rel.to_string(),
                body,
            },
        });
    }

    /// (normal, anomalous) test images of category `ci`; `small` is the smoke twins' count.
    fn counts(&self, ci: usize, small: (usize, usize)) -> (usize, usize) {
        let medical = self.spec.domain == super::Domain::Medical;
        let counts = self
            .opts
            .per_dataset
            .get(&self.spec.key)
            .copied()
            .unwrap_or(self.opts.counts);
        match counts {
            Counts::Small => small,
            Counts::PerCategory(n) if medical => (0, n),
            Counts::PerCategory(n) => (n / 2, n - n / 2),
            Counts::Official => {
                let c = &self.spec.categories[ci];
                match (c.normal, c.anomalous) {
                    (Some(n), Some(a)) => (n, a),
                    _ => small,
                }
            }
        }
    }

    /// Size of the `i`-th image of category `ci`.
    fn size(&self, ci: usize, i: usize) -> (usize, usize) {
        match self.opts.resolution {
            Resolution::Small => size_for(&self.spec.key, ci, i),
            Resolution::Real => real_size(&self.spec.key, &self.spec.categories[ci].name),
        }
    }
}

/// Each dataset's typical image size (width, height); MVTec-AD and BTAD vary by category.
pub fn real_size(key: &str, cat: &str) -> (usize, usize) {
    match (key, cat) {
        ("mvtec", "bottle") => (900, 900),
        ("mvtec", "metal_nut") => (700, 700),
        ("mvtec", "pill") => (800, 800),
        ("mvtec", "tile") => (840, 840),
        ("mvtec" | "mpdd", _) => (1024, 1024),
        ("visa", _) => (1500, 1000),
        ("btad", "01") => (1600, 1600),
        ("btad", "02") => (600, 600),
        ("btad", _) => (800, 600),
        ("ksdd2", _) => (232, 640),
        ("mvtec_ad2", _) => (2448, 2048),
        ("kvasir", _) => (622, 530),
        ("colondb", _) => (574, 500),
        ("clinicdb", _) => (384, 288),
        _ => (1024, 1024),
    }
}

/// Image size of the `i`-th file of a category: small, odd, varied (exercises up- and downscaling
/// in the resize and size-independent code paths).
fn size_for(key: &str, cat: usize, i: usize) -> (usize, usize) {
    let base = match key {
        "ksdd2" => (46, 126),
        "clinicdb" => (96, 72),
        "kvasir" => (88, 72),
        _ => (72, 64),
    };
    (base.0 + (cat * 3 + i) % 7, base.1 + (cat + i * 5) % 9)
}

fn plan<'a>(
    spec: &'a DatasetSpec,
    root: &'a Path,
    opts: &SynthOptions,
) -> (SynthDataset, Vec<Job>) {
    let mut p = Plan {
        spec,
        root,
        opts: opts.clone(),
        jobs: Vec::new(),
        images: 0,
    };
    let mut cats = Vec::new();
    match spec.layout {
        LayoutKind::Mvtec => {
            for (ci, cat) in spec.categories.iter().enumerate() {
                let medical = spec.domain == super::Domain::Medical;
                let (img_ext, mask_ext) = match (spec.key.as_str(), cat.name.as_str()) {
                    ("btad", "01") => ("bmp", "png"),
                    ("btad", "03") => ("bmp", "bmp"),
                    ("clinicdb", _) => ("tif", "tif"),
                    _ => ("png", "png"),
                };
                let normal_dir = spec
                    .normal_dirs
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "good".into());
                let types: Vec<(String, Defect)> = match spec.key.as_str() {
                    "btad" => vec![("ko".into(), Defect::Blob)],
                    "mvtec_ad2" => vec![("bad".into(), Defect::Stain)],
                    _ if medical => vec![("defect".into(), Defect::Blob)],
                    _ => {
                        let k = ci % DEFECT_NAMES.len();
                        [DEFECT_NAMES[k], DEFECT_NAMES[(k + 1) % DEFECT_NAMES.len()]]
                            .iter()
                            .map(|(n, d)| (n.to_string(), *d))
                            .collect()
                    }
                };
                let small_per_type = if medical {
                    10
                } else if types.len() == 1 {
                    3
                } else {
                    2
                };
                let small = (if medical { 0 } else { 2 }, small_per_type * types.len());
                let (n_normal, n_anomalous) = p.counts(ci, small);
                let name = |i: usize| match spec.key.as_str() {
                    "btad" => format!("{i:04}"),
                    "mvtec_ad2" => format!("{i:03}_regular"),
                    k if k == "colondb" || k == "clinicdb" => format!("{}", i + 1),
                    _ => format!("{i:03}"),
                };
                let mut idx = 0;
                for i in 0..n_normal {
                    let rel = format!(
                        "{}/{}/{}/{}.{img_ext}",
                        cat.name,
                        spec.split_dir,
                        normal_dir,
                        name(i)
                    );
                    p.image(&cat.name, &rel, p.size(ci, idx), None, None);
                    idx += 1;
                }
                // The anomalous images, spread over the defect types (earlier types get the
                // remainder).
                for (t, (ty, d)) in types.iter().enumerate() {
                    let per_type =
                        n_anomalous / types.len() + usize::from(t < n_anomalous % types.len());
                    for i in 0..per_type {
                        let rel = format!(
                            "{}/{}/{}/{}.{img_ext}",
                            cat.name,
                            spec.split_dir,
                            ty,
                            name(i)
                        );
                        let mrel = format!(
                            "{}/{}/{}/{}{}.{mask_ext}",
                            cat.name,
                            spec.gt_dir,
                            ty,
                            name(i),
                            spec.mask_suffix
                        );
                        p.image(
                            &cat.name,
                            &rel,
                            p.size(ci, idx),
                            Some(*d),
                            Some((&mrel, 255)),
                        );
                        idx += 1;
                    }
                }
                if !medical {
                    // One training image per category, so the tree is complete; loaders must ignore it.
                    let rel = format!("{}/train/{}/{}.{img_ext}", cat.name, normal_dir, name(0));
                    p.image(&cat.name, &rel, p.size(ci, idx), None, None);
                }
                cats.push(SynthCategory {
                    name: cat.name.clone(),
                    normal: n_normal,
                    anomalous: n_anomalous,
                });
            }
        }
        LayoutKind::Visa => {
            let mut csv = String::from("object,split,label,image,mask\n");
            let mut meta_test = serde_json::Map::new();
            let mut meta_train = serde_json::Map::new();
            for (ci, cat) in spec.categories.iter().enumerate() {
                let mut test = Vec::new();
                let mut train = Vec::new();
                let (n_normal, n_anom) = p.counts(ci, (2, 3));
                for i in 0..n_normal + 1 {
                    let rel = format!("{}/Data/Images/Normal/{i:04}.JPG", cat.name);
                    p.image(&cat.name, &rel, p.size(ci, i), None, None);
                    let split = if i < n_normal { "test" } else { "train" };
                    csv.push_str(&format!("{},{split},normal,{rel},\n", cat.name));
                    let entry = serde_json::json!({"img_path": rel, "mask_path": "", "cls_name": cat.name, "specie_name": "", "anomaly": 0});
                    if i < n_normal {
                        test.push(entry)
                    } else {
                        train.push(entry)
                    }
                }
                for i in 0..n_anom {
                    let rel = format!("{}/Data/Images/Anomaly/{i:03}.JPG", cat.name);
                    let mrel = format!("{}/Data/Masks/Anomaly/{i:03}.png", cat.name);
                    let (_, d) = DEFECT_NAMES[(ci + i) % DEFECT_NAMES.len()];
                    // VisA masks are index masks (small non-zero values), not 0/255.
                    p.image(
                        &cat.name,
                        &rel,
                        p.size(ci, n_normal + 1 + i),
                        Some(d),
                        Some((&mrel, (1 + i % 3) as u8)),
                    );
                    csv.push_str(&format!("{},test,anomaly,{rel},{mrel}\n", cat.name));
                    test.push(serde_json::json!({"img_path": rel, "mask_path": mrel, "cls_name": cat.name, "specie_name": "", "anomaly": 1}));
                }
                meta_test.insert(cat.name.clone(), serde_json::Value::Array(test));
                meta_train.insert(cat.name.clone(), serde_json::Value::Array(train));
                cats.push(SynthCategory {
                    name: cat.name.clone(),
                    normal: n_normal,
                    anomalous: n_anom,
                });
            }
            p.text(&spec.split_csv, csv);
            let meta = serde_json::json!({"train": meta_train, "test": meta_test});
            p.text(
                &spec.meta,
                serde_json::to_string_pretty(&meta).expect("json"),
            );
        }
        LayoutKind::Ksdd2 => {
            let cat = &spec.categories[0];
            let (n_neg, n_pos) = p.counts(0, (7, 3));
            for i in 0..n_pos + n_neg {
                let id = 20000 + i * 7;
                let rel = format!("{}/{id}.png", spec.split_dir);
                let mrel = format!("{}/{id}{}.png", spec.split_dir, spec.mask_suffix);
                // Official KSDD2 ships a GT file for every image, all-zero for negatives.
                let d = (i < n_pos).then_some(Defect::Scratch);
                p.image(&cat.name, &rel, p.size(0, i), d, Some((&mrel, 255)));
            }
            cats.push(SynthCategory {
                name: cat.name.clone(),
                normal: n_neg,
                anomalous: n_pos,
            });
        }
        LayoutKind::Kvasir => {
            let cat = &spec.categories[0];
            let (_, n) = p.counts(0, (0, 20));
            for i in 0..n {
                let name = format!("cju{:04x}{}.jpg", 0x1a2b + i * 37, ["a", "b", "c"][i % 3]);
                let rel = format!("{}/{name}", spec.images_dir);
                let mrel = format!("{}/{name}", spec.masks_dir);
                p.image(
                    &cat.name,
                    &rel,
                    p.size(0, i),
                    Some(Defect::Block),
                    Some((&mrel, 255)),
                );
            }
            cats.push(SynthCategory {
                name: cat.name.clone(),
                normal: 0,
                anomalous: n,
            });
        }
    }
    let ds = SynthDataset {
        key: spec.key.clone(),
        root: root.to_path_buf(),
        seed: opts.seed,
        categories: cats,
        images: p.images,
    };
    (ds, p.jobs)
}
