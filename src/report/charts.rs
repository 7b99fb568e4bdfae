//! Charts (plotters, PNG and SVG): routing-weight distributions of normal vs anomalous images,
//! ours vs published per dataset, training loss curves, and anomaly-map overlays.
//!
//! Every chart carries, below its title, a small provenance line (revision, device, kernels,
//! threads, dtypes: `TableMeta::provenance_line`), so a picture cut out of a report still says
//! which code and machine made it.
//!
//! Text needs a font: plotters' `ab_glyph` backend draws with fonts registered at run time, so
//! DejaVu Sans (embedded by the `dejavu` crate) is registered under "sans-serif" before any
//! chart is drawn. No system font is used.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::experiment::EpochRecord;
use crate::io::TensorFile;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("chart font: {0}")]
    Font(String),
    #[error("overlay from {path}: {message}")]
    Map { path: PathBuf, message: String },
}

const FONT: &str = "sans-serif";

/// Registers the embedded font once per process.
pub fn register_fonts() -> Result<(), ChartError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            plotters::style::register_font(FONT, style, bytes)
                .map_err(|_| "DejaVu Sans did not parse".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(ChartError::Font)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Height of the provenance line under a title, in pixels.
const PROVENANCE_PX: u32 = 16;

/// Draws `title` and, under it in small grey type, `provenance` (nothing when empty); returns
/// the area left for the chart.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    title_px: u32,
    provenance: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let area = root.titled(title, (FONT, title_px))?;
    if provenance.is_empty() {
        return Ok(area);
    }
    let (line, rest) = area.split_vertically(PROVENANCE_PX);
    let (w, _) = line.dim_in_pixel();
    let grey = BLACK.mix(0.6);
    let style = TextStyle::from((FONT, 11))
        .color(&grey)
        .pos(Pos::new(HPos::Center, VPos::Top));
    line.draw_text(provenance, &style, (w as i32 / 2, 0))?;
    Ok(rest)
}

fn prepare(stem: &Path) -> Result<(PathBuf, PathBuf), ChartError> {
    register_fonts()?;
    let name = stem
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        stem.with_file_name(format!("{name}.png")),
        stem.with_file_name(format!("{name}.svg")),
    ))
}

fn draw_err(path: &Path) -> impl Fn(Box<dyn std::error::Error>) -> ChartError + '_ {
    move |e| ChartError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Encodes the RGB buffer as PNG and writes both files atomically.
fn save(
    png: &Path,
    svg: Option<(&Path, String)>,
    size: (u32, u32),
    rgb: Vec<u8>,
) -> Result<Vec<PathBuf>, ChartError> {
    let img = image::RgbImage::from_raw(size.0, size.1, rgb).expect("buffer sized for the image");
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| ChartError::Draw {
        path: png.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut files = vec![(png, bytes)];
    files.extend(svg.map(|(path, text)| (path, text.into_bytes())));
    for (path, data) in &files {
        crate::io::write_atomic(path, data).map_err(|e| ChartError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(files.into_iter().map(|(p, _)| p.to_path_buf()).collect())
}

/// Draws `$body` (an expression using the drawing area `$a`) twice, into an RGB buffer and an
/// SVG string (the body is generic over the backend, so it is expanded once per backend), and
/// writes `<stem>.png` and `<stem>.svg`.
macro_rules! png_and_svg {
    ($stem:expr, $size:expr, |$a:ident| $body:expr) => {{
        let (png, svg) = prepare($stem)?;
        let size: (u32, u32) = $size;
        let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
        {
            let $a = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
            $body.map_err(draw_err(&png))?;
        }
        let mut svg_text = String::new();
        {
            let $a = SVGBackend::with_string(&mut svg_text, size).into_drawing_area();
            $body.map_err(draw_err(&svg))?;
        }
        save(&png, Some((&svg, svg_text)), size, rgb)
    }};
    // Raster pictures (anomaly-map overlays): an SVG of one rectangle per pixel would be 4 MB of
    // nothing a vector format is good for, so these are PNG only.
    (png_only $stem:expr, $size:expr, |$a:ident| $body:expr) => {{
        let (png, _) = prepare($stem)?;
        let size: (u32, u32) = $size;
        let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
        {
            let $a = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
            $body.map_err(draw_err(&png))?;
        }
        save(&png, None, size, rgb)
    }};
}

/// Counts of `values` in `bins` equal bins over [0, 1].
pub fn histogram(values: &[f64], bins: usize) -> Vec<usize> {
    let mut counts = vec![0; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = ((v.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        counts[i] += 1;
    }
    counts
}

/// Histogram of the anomaly routing weight `w_a` for normal and anomalous test images.
pub fn routing_histogram(
    stem: &Path,
    title: &str,
    provenance: &str,
    normal: &[f64],
    anomalous: &[f64],
) -> Result<Vec<PathBuf>, ChartError> {
    const BINS: usize = 20;
    let (hn, ha) = (histogram(normal, BINS), histogram(anomalous, BINS));
    let ymax = hn.iter().chain(&ha).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        (title, provenance): (&str, &str),
        hn: &[usize],
        ha: &[usize],
        ymax: f64,
        n: (usize, usize),
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let area = titled(&root, title, 20, provenance)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_desc("anomaly routing weight w_a (mean over taps)")
            .y_desc("test images")
            .label_style((FONT, 13))
            .draw()?;
        let w = 1.0 / hn.len() as f64;
        for (counts, color, label) in [
            (hn, BLUE, format!("normal (n={})", n.0)),
            (ha, RED, format!("anomalous (n={})", n.1)),
        ] {
            chart
                .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                    Rectangle::new(
                        [(i as f64 * w, 0.0), ((i + 1) as f64 * w, c as f64)],
                        color.mix(0.45).filled(),
                    )
                }))?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.45).filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperMiddle)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
    let n = (normal.len(), anomalous.len());
    png_and_svg!(stem, (800, 500), |a| body(
        a,
        (title, provenance),
        &hn,
        &ha,
        ymax,
        n
    ))
}

/// Grouped bars: ours vs published per dataset, for one metric (percent).
pub fn ours_vs_published(
    stem: &Path,
    title: &str,
    provenance: &str,
    rows: &[(String, Option<f64>, Option<f64>)],
) -> Result<Vec<PathBuf>, ChartError> {
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        (title, provenance): (&str, &str),
        rows: &[(String, Option<f64>, Option<f64>)],
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let n = rows.len().max(1);
        let area = titled(&root, title, 20, provenance)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)?;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                // Label only the centre of each dataset's slot.
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("percent")
            .label_style((FONT, 12))
            .draw()?;
        for (k, color, label) in [(0usize, BLUE, "ours"), (1, GREEN, "paper (AVA-DINO)")] {
            let bars = rows.iter().enumerate().filter_map(move |(i, r)| {
                let v = if k == 0 { r.1 } else { r.2 }?;
                let x0 = i as f64 + 0.1 + 0.4 * k as f64;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + 0.38, v)],
                    color.mix(0.7).filled(),
                ))
            });
            chart.draw_series(bars)?.label(label).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.7).filled())
            });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
    // x labels are placed at n*2+1 evenly spaced points 0, 0.5, 1, ...: the formatter keeps the
    // half-integers, which are the slot centres.
    png_and_svg!(stem, (900, 500), |a| body(a, (title, provenance), rows))
}

/// Training loss per epoch: total and the four weighted parts.
pub fn loss_curves(
    stem: &Path,
    title: &str,
    provenance: &str,
    epochs: &[EpochRecord],
) -> Result<Vec<PathBuf>, ChartError> {
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        (title, provenance): (&str, &str),
        epochs: &[EpochRecord],
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let last = epochs.iter().map(|e| e.epoch).max().unwrap_or(1).max(1) as f64;
        let ymax = epochs
            .iter()
            .flat_map(|e| {
                [
                    e.loss.total,
                    e.loss.aware,
                    e.loss.seg,
                    e.loss.global,
                    e.loss.route,
                ]
            })
            .fold(0.0f64, f64::max)
            .max(1e-6)
            * 1.1;
        let area = titled(&root, title, 20, provenance)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..last, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("mean training loss")
            .label_style((FONT, 13))
            .draw()?;
        type Part = (&'static str, RGBColor, fn(&EpochRecord) -> f64);
        let parts: [Part; 5] = [
            ("total", BLACK, |e| e.loss.total),
            ("L_aware", BLUE, |e| e.loss.aware),
            ("L_seg", RED, |e| e.loss.seg),
            ("L_global", GREEN, |e| e.loss.global),
            ("L_route", MAGENTA, |e| e.loss.route),
        ];
        for (label, color, get) in parts {
            chart
                .draw_series(LineSeries::new(
                    epochs.iter().map(|e| (e.epoch as f64, get(e))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
    png_and_svg!(stem, (800, 500), |a| body(a, (title, provenance), epochs))
}

/// Jet colour map on [0, 1].
pub fn jet(v: f64) -> (u8, u8, u8) {
    let v = v.clamp(0.0, 1.0);
    let c = |x: f64| (255.0 * (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0)) as u8;
    (c(3.0), c(2.0), c(1.0))
}

/// Image | ground truth | heat map over the image, from a map saved by `RunDir::write_map`.
/// The heat map is min-max normalized per image. PNG only (a raster picture).
pub fn overlay(
    map_file: &Path,
    stem: &Path,
    title: &str,
    provenance: &str,
) -> Result<Vec<PathBuf>, ChartError> {
    let bad = |message: String| ChartError::Map {
        path: map_file.to_path_buf(),
        message,
    };
    let f = TensorFile::read(map_file).map_err(|e| bad(e.to_string()))?;
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
    let (img, gtv, mv) = (
        image.as_u8().expect("u8"),
        gt.as_u8().expect("u8"),
        map.as_f32().expect("f32"),
    );
    let (lo, hi) = mv
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-12);
    // Downsample large maps so the SVG stays small (one rectangle per drawn pixel).
    let step = (h.max(w) / 128).max(1);
    let (dh, dw) = (h / step, w / step);
    let mut panels = vec![vec![(0u8, 0u8, 0u8); dh * dw]; 3];
    for y in 0..dh {
        for x in 0..dw {
            let (sy, sx) = (y * step, x * step);
            let p = (sy * w + sx) * 3;
            let rgb = (img[p], img[p + 1], img[p + 2]);
            let g = if gtv[sy * w + sx] > 0 { 255 } else { 0 };
            let (r, gg, b) = jet(f64::from((mv[sy * w + sx] - lo) / span));
            let mix = |a: u8, b: u8| (0.5 * f64::from(a) + 0.5 * f64::from(b)) as u8;
            panels[0][y * dw + x] = rgb;
            panels[1][y * dw + x] = (g, g, g);
            panels[2][y * dw + x] = (mix(rgb.0, r), mix(rgb.1, gg), mix(rgb.2, b));
        }
    }
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        (title, provenance): (&str, &str),
        panels: &[Vec<(u8, u8, u8)>],
        dh: usize,
        dw: usize,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let areas = titled(&root, title, 16, provenance)?.split_evenly((1, 3));
        for ((area, panel), label) in
            areas
                .iter()
                .zip(panels)
                .zip(["image", "ground truth", "anomaly map"])
        {
            let mut chart = ChartBuilder::on(area)
                .caption(label, (FONT, 14))
                .margin(4)
                .build_cartesian_2d(0..dw as i32, dh as i32..0)?;
            chart.draw_series(panel.iter().enumerate().map(|(i, &(r, g, b))| {
                let (x, y) = ((i % dw) as i32, (i / dw) as i32);
                Rectangle::new([(x, y), (x + 1, y + 1)], RGBColor(r, g, b).filled())
            }))?;
        }
        root.present()?;
        Ok(())
    }
    png_and_svg!(png_only stem, (3 * 260, 316), |a| body(
        a,
        (title, provenance),
        &panels,
        dh,
        dw
    ))
}
