//! Charts (plotters, PNG and SVG): routing-weight distributions of normal vs anomalous images,
//! ours vs published per dataset, training loss curves, and anomaly-map overlays.
//!
//! Every chart carries, below its title, the profile's caveat when the profile is not `full` (in
//! vermillion: a smoke chart must not pass for a paper result) and a small provenance line
//! (revision, device, kernels, threads, dtypes: `TableMeta::provenance_line`), so a picture cut
//! out of a report still says which code and machine made it.
//!
//! Colours are the Okabe-Ito palette ([`okabe_ito`]), which readers with any common colour-vision
//! deficiency can tell apart; anomaly maps use viridis ([`viridis`]), not jet. Each chart's SVG
//! text is returned too ([`Drawn`]), so the HTML page inlines the same drawing.
//!
//! Text needs a font: plotters' `ab_glyph` backend draws with fonts registered at run time, so
//! DejaVu Sans (embedded by the `dejavu` crate) is registered under "sans-serif" before any
//! chart is drawn. No system font is used.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::gallery::SavedMap;
use crate::experiment::EpochRecord;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("chart font: {0}")]
    Font(String),
}

/// The Okabe-Ito palette (Okabe and Ito, "Color Universal Design", 2008), without its black.
pub mod okabe_ito {
    use plotters::style::RGBColor;

    pub const ORANGE: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
    pub const SKY_BLUE: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
    pub const BLUISH_GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
    pub const YELLOW: RGBColor = RGBColor(0xF0, 0xE4, 0x42);
    pub const BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
    pub const VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
    pub const REDDISH_PURPLE: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
}

/// What a chart says above its plot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heading<'a> {
    pub title: &'a str,
    /// The profile's caveat, drawn in vermillion under the title (`None` for `full`).
    pub caveat: Option<&'a str>,
    /// Revision, device, kernels, threads, dtypes (nothing when empty).
    pub provenance: &'a str,
}

/// A drawn chart: the files written and, for vector charts, the SVG text.
#[derive(Debug, Clone, Default)]
pub struct Drawn {
    pub files: Vec<PathBuf>,
    pub svg: Option<String>,
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

/// Height of the caveat line under a title, in pixels.
const CAVEAT_PX: u32 = 18;

/// Draws the heading's title, its caveat (bold, vermillion) and its provenance (small, grey),
/// each line only when it is not empty; returns the area left for the chart.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    heading: &Heading,
    title_px: u32,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut area = root.titled(heading.title, (FONT, title_px))?;
    let centred = Pos::new(HPos::Center, VPos::Top);
    if let Some(caveat) = heading.caveat.filter(|c| !c.is_empty()) {
        let (line, rest) = area.split_vertically(CAVEAT_PX);
        let (w, _) = line.dim_in_pixel();
        let style = TextStyle::from((FONT, 13, FontStyle::Bold))
            .color(&okabe_ito::VERMILLION)
            .pos(centred);
        line.draw_text(caveat, &style, (w as i32 / 2, 0))?;
        area = rest;
    }
    if heading.provenance.is_empty() {
        return Ok(area);
    }
    let (line, rest) = area.split_vertically(PROVENANCE_PX);
    let (w, _) = line.dim_in_pixel();
    let grey = BLACK.mix(0.6);
    let style = TextStyle::from((FONT, 11)).color(&grey).pos(centred);
    line.draw_text(heading.provenance, &style, (w as i32 / 2, 0))?;
    Ok(rest)
}

/// Light mesh lines kept per axis: plotters draws one SVG element per line, and ten per axis
/// tripled the size of a chart inlined into the HTML page for no reading gained.
const LIGHT_LINES: usize = 1;

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
) -> Result<Drawn, ChartError> {
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
    let mut files = vec![(png, bytes.as_slice())];
    files.extend(svg.as_ref().map(|(path, text)| (*path, text.as_bytes())));
    for (path, data) in &files {
        crate::io::write_atomic(path, data).map_err(|e| ChartError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(Drawn {
        files: files.iter().map(|(p, _)| p.to_path_buf()).collect(),
        svg: svg.map(|(_, text)| text),
    })
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
    heading: &Heading,
    normal: &[f64],
    anomalous: &[f64],
) -> Result<Drawn, ChartError> {
    let h = RoutingBins::new(normal, anomalous);
    png_and_svg!(stem, ROUTING_SIZE, |a| routing_body(a, heading, &h))
}

/// [`routing_histogram`] as SVG text only, written nowhere (a run's own histogram on the page).
pub fn routing_histogram_svg(
    heading: &Heading,
    normal: &[f64],
    anomalous: &[f64],
) -> Result<String, ChartError> {
    register_fonts()?;
    let h = RoutingBins::new(normal, anomalous);
    let mut svg = String::new();
    {
        let a = SVGBackend::with_string(&mut svg, ROUTING_SIZE).into_drawing_area();
        routing_body(a, heading, &h).map_err(draw_err(Path::new("(inline svg)")))?;
    }
    Ok(svg)
}

const ROUTING_SIZE: (u32, u32) = (800, 500);

/// The two histograms of a routing chart.
struct RoutingBins {
    normal: Vec<usize>,
    anomalous: Vec<usize>,
    n: (usize, usize),
    ymax: f64,
}

impl RoutingBins {
    fn new(normal: &[f64], anomalous: &[f64]) -> RoutingBins {
        const BINS: usize = 20;
        let (hn, ha) = (histogram(normal, BINS), histogram(anomalous, BINS));
        let ymax = hn.iter().chain(&ha).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        RoutingBins {
            normal: hn,
            anomalous: ha,
            n: (normal.len(), anomalous.len()),
            ymax,
        }
    }
}

fn routing_body<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    heading: &Heading,
    h: &RoutingBins,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let area = titled(&root, heading, 20)?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..h.ymax)?;
    chart
        .configure_mesh()
        .max_light_lines(LIGHT_LINES)
        .x_desc("anomaly routing weight w_a (softmax output, 0-1; mean over taps)")
        .y_desc("test images (count)")
        .label_style((FONT, 13))
        .draw()?;
    let w = 1.0 / h.normal.len() as f64;
    for (counts, color, label) in [
        (&h.normal, okabe_ito::BLUE, format!("normal (n={})", h.n.0)),
        (
            &h.anomalous,
            okabe_ito::VERMILLION,
            format!("anomalous (n={})", h.n.1),
        ),
    ] {
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                Rectangle::new(
                    [(i as f64 * w, 0.0), ((i + 1) as f64 * w, c as f64)],
                    color.mix(0.55).filled(),
                )
            }))?
            .label(label)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.55).filled())
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

/// Grouped bars: ours vs published per dataset, for one metric (percent).
pub fn ours_vs_published(
    stem: &Path,
    heading: &Heading,
    rows: &[(String, Option<f64>, Option<f64>)],
) -> Result<Drawn, ChartError> {
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        heading: &Heading,
        rows: &[(String, Option<f64>, Option<f64>)],
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let n = rows.len().max(1);
        let area = titled(&root, heading, 20)?;
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
            .max_light_lines(LIGHT_LINES)
            .x_desc("target dataset")
            .y_desc("score (%)")
            .label_style((FONT, 12))
            .draw()?;
        for (k, color, label) in [
            (0usize, okabe_ito::BLUE, "ours"),
            (1, okabe_ito::ORANGE, "paper (AVA-DINO)"),
        ] {
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
    png_and_svg!(stem, (900, 500), |a| body(a, heading, rows))
}

/// Training loss per epoch: total and the four weighted parts.
pub fn loss_curves(
    stem: &Path,
    heading: &Heading,
    epochs: &[EpochRecord],
) -> Result<Drawn, ChartError> {
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        heading: &Heading,
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
        let area = titled(&root, heading, 20)?;
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..last, 0f64..ymax)?;
        chart
            .configure_mesh()
            .max_light_lines(LIGHT_LINES)
            .x_desc("epoch (passes over the training set)")
            .y_desc("weighted loss, mean over the epoch's steps (no unit)")
            .label_style((FONT, 13))
            .draw()?;
        type Part = (&'static str, RGBColor, fn(&EpochRecord) -> f64);
        let parts: [Part; 5] = [
            ("total", BLACK, |e| e.loss.total),
            ("L_aware", okabe_ito::ORANGE, |e| e.loss.aware),
            ("L_seg", okabe_ito::SKY_BLUE, |e| e.loss.seg),
            ("L_global", okabe_ito::BLUISH_GREEN, |e| e.loss.global),
            ("L_route", okabe_ito::REDDISH_PURPLE, |e| e.loss.route),
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
    png_and_svg!(stem, (800, 500), |a| body(a, heading, epochs))
}

/// A `size x size` RGB image (`rgb`, interleaved) and, beside it, its anomaly `map` min-max
/// scaled through [`viridis`] and blended half over the image, as a PNG (`predict`'s overlays).
pub fn side_by_side_png(
    rgb: &[u8],
    map: &[f32],
    size: usize,
) -> Result<Vec<u8>, image::ImageError> {
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let mut canvas = image::RgbImage::new(2 * size as u32, size as u32);
    for y in 0..size {
        for x in 0..size {
            let i = y * size + x;
            let px = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
            canvas.put_pixel(x as u32, y as u32, image::Rgb(px));
            let v = ((map[i] - lo) / (hi - lo).max(1e-12)) as f64;
            let (r, g, b) = viridis(v);
            let blend = |a: u8, c: u8| ((a as u16 + c as u16) / 2) as u8;
            canvas.put_pixel(
                (size + x) as u32,
                y as u32,
                image::Rgb([blend(px[0], r), blend(px[1], g), blend(px[2], b)]),
            );
        }
    }
    let mut bytes = Vec::new();
    canvas.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

/// Viridis (matplotlib's default colour map: perceptually uniform, readable with the common
/// colour-vision deficiencies and in grey) on [0, 1], interpolated linearly between nine of its
/// colours; NaN reads as 0.
pub fn viridis(v: f64) -> (u8, u8, u8) {
    const STOPS: [(f64, f64, f64); 9] = [
        (68.0, 1.0, 84.0),
        (72.0, 40.0, 120.0),
        (62.0, 74.0, 137.0),
        (49.0, 104.0, 142.0),
        (38.0, 130.0, 142.0),
        (31.0, 158.0, 137.0),
        (53.0, 183.0, 121.0),
        (109.0, 205.0, 89.0),
        (253.0, 231.0, 37.0),
    ];
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let x = v * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let t = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * t).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Image | ground truth | heat map over the image, from a map saved by `RunDir::write_map`.
/// The heat map is min-max normalized per image. PNG only (a raster picture).
pub fn overlay(saved: &SavedMap, stem: &Path, heading: &Heading) -> Result<Drawn, ChartError> {
    let (h, w) = saved.size;
    let (img, gtv, mv) = (&saved.image, &saved.gt, &saved.map);
    let (lo, hi) = mv
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-12);
    // Downsample large maps: one rectangle per drawn pixel.
    let step = (h.max(w) / 128).max(1);
    let (dh, dw) = (h / step, w / step);
    let mut panels = vec![vec![(0u8, 0u8, 0u8); dh * dw]; 3];
    for y in 0..dh {
        for x in 0..dw {
            let (sy, sx) = (y * step, x * step);
            let p = (sy * w + sx) * 3;
            let rgb = (img[p], img[p + 1], img[p + 2]);
            let g = if gtv[sy * w + sx] > 0 { 255 } else { 0 };
            let (r, gg, b) = viridis(f64::from((mv[sy * w + sx] - lo) / span));
            let mix = |a: u8, b: u8| (0.5 * f64::from(a) + 0.5 * f64::from(b)) as u8;
            panels[0][y * dw + x] = rgb;
            panels[1][y * dw + x] = (g, g, g);
            panels[2][y * dw + x] = (mix(rgb.0, r), mix(rgb.1, gg), mix(rgb.2, b));
        }
    }
    fn body<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        heading: &Heading,
        panels: &[Vec<(u8, u8, u8)>],
        dh: usize,
        dw: usize,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let areas = titled(&root, heading, 16)?.split_evenly((1, 3));
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
    // The caveat's line comes on top of the height, so the panels stay square.
    let caveat = if heading.caveat.is_some() {
        CAVEAT_PX
    } else {
        0
    };
    png_and_svg!(png_only stem, (3 * 260, 316 + caveat), |a| body(
        a, heading, &panels, dh, dw
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_runs_from_purple_to_yellow_getting_lighter() {
        assert_eq!(viridis(0.0), (68, 1, 84));
        assert_eq!(viridis(1.0), (253, 231, 37));
        assert_eq!(viridis(0.5), (38, 130, 142));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        assert_eq!(viridis(7.0), viridis(1.0));
        // Lightness rises with the value: the map reads in grey too (jet's does not).
        let luma = |(r, g, b): (u8, u8, u8)| 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
        let l: Vec<f64> = (0..=100).map(|i| luma(viridis(i as f64 / 100.0))).collect();
        assert!(l.windows(2).all(|w| w[1] >= w[0] - 0.5), "{l:?}");
    }

    #[test]
    fn a_chart_names_its_units_colours_and_caveat() {
        let heading = Heading {
            title: "Routing weights: r",
            caveat: Some("smoke profile: these numbers say nothing about the paper"),
            provenance: "rev abc",
        };
        let svg = routing_histogram_svg(&heading, &[0.1, 0.2], &[0.8]).unwrap();
        for text in [
            "Routing weights: r",
            "smoke profile: these numbers say nothing about the paper",
            "rev abc",
            "test images (count)",
            "anomaly routing weight w_a (softmax output, 0-1; mean over taps)",
            "normal (n=2)",
            "anomalous (n=1)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        // Okabe-Ito blue and vermillion for the two groups; the caveat in vermillion too.
        for colour in ["#0072B2", "#D55E00"] {
            assert!(svg.contains(colour), "{colour}");
        }
        // Without a caveat (profile full) there is no such line.
        let full = routing_histogram_svg(
            &Heading {
                caveat: None,
                ..heading
            },
            &[0.1],
            &[0.8],
        )
        .unwrap();
        assert!(!full.contains("say nothing"));
    }
}
