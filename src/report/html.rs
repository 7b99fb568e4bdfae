//! The report as one self-contained page, `results/<profile>/index.html`: Tables 1-4 (ours beside
//! the published numbers, deltas, intervals, the settings and the cells outside tolerance), the
//! charts as inline SVG, a drill-down per training and run (per-category table, loss curves,
//! routing weights, a gallery of anomaly maps with their scores, provenance), and, for any
//! profile but `full`, a banner saying that its numbers say nothing about the paper.
//!
//! Plain string building over the same [`Table`] values the Markdown, CSV, JSON and LaTeX come
//! from. The page makes no network request: CSS is inline, charts are inline SVG (their XML
//! namespace attribute, an `http://` URL that HTML does not need, is dropped), gallery images are
//! relative paths into the page's folder, and there is no script.

use std::collections::{BTreeMap, BTreeSet};

use super::collect::CollectedRun;
use super::render::{Cell, Table};
use crate::experiment::{EpochSelection, MetricSet};

/// `s` as HTML text or attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A relative path (`/`-separated) as a URL path: every byte outside the unreserved set and
/// `/` percent-encoded, so a space or `#` in a dataset's file name cannot cut the link short.
pub fn url_path(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len());
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as an HTML id (letters, digits, `-` and `_`; anything else becomes `-`).
fn id_of(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Which cells the regression check of this profile flags, and its rule in words.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    /// Keys of the [`CheckCell`](super::CheckCell)s outside tolerance.
    pub outside: BTreeSet<String>,
    /// What "outside" means here (shown in the legend).
    pub rule: String,
}

/// A chart drawn for the page.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The chart's SVG text (from plotters).
    pub svg: String,
    /// What it shows, for screen readers.
    pub label: String,
    /// The PNG beside it, relative to the page, when one was written.
    pub png: Option<String>,
}

/// One image of a run's gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub category: String,
    pub name: String,
    /// The overlay PNG, relative to the page.
    pub src: String,
    pub anomalous: bool,
    /// The image score: the maximum of its anomaly map.
    pub score: f32,
}

/// One run's drill-down.
#[derive(Debug, Clone)]
pub struct RunView<'a> {
    pub run: &'a CollectedRun,
    pub per_category: &'a Table,
    pub routing: Option<Figure>,
    pub gallery: Vec<Tile>,
}

/// One training (variant, training set, seed) and the runs evaluated from it.
#[derive(Debug, Clone)]
pub struct TrainingView<'a> {
    pub key: String,
    pub loss: Option<Figure>,
    pub runs: Vec<RunView<'a>>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub profile: &'a str,
    pub selection: EpochSelection,
    /// Tables 1-4 (those written).
    pub tables: &'a [Table],
    /// Charts shown after the tables (ours vs published, the routing behind Table 4).
    pub figures: Vec<Figure>,
    pub trainings: Vec<TrainingView<'a>>,
    pub marks: Marks,
    /// Every run behind the page (for the provenance summary).
    pub runs: &'a [CollectedRun],
}

const CSS: &str = r#"
:root{--fg:#1b1b1b;--muted:#5f5f5f;--rule:#2b2b2b;--hair:#e2e2e2;--blue:#0072B2;--verm:#D55E00;--orange:#E69F00}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:var(--fg);margin:0 auto;padding:8px 10px 48px;max-width:1600px}
h1{font-size:21px;margin:2px 0 2px}
h2{font-size:17px;margin:26px 0 6px}
h3{font-size:15px;margin:16px 0 4px}
code{font-size:12.5px;background:#f3f3f3;padding:0 3px;border-radius:3px}
a{color:var(--blue)}
.sub{color:var(--muted);margin:0 0 6px}
.banner{border:2px solid var(--verm);background:#fdeee3;padding:6px 12px;border-radius:4px;margin:6px 0}
.banner strong{color:#8a3a00}
nav{margin:6px 0}
nav a{margin-right:14px}
.legend{font-size:12.5px;color:var(--muted);margin:4px 0 8px}
.flag{color:var(--verm);font-weight:700}
.scroll{overflow-x:auto}
table.grid{border-collapse:collapse;font-size:11.5px;font-variant-numeric:tabular-nums;margin:2px 0}
.grid th,.grid td{padding:2px 3px;text-align:right;white-space:nowrap;vertical-align:top}
.grid td:first-child,.grid th:first-child{padding-left:0}
.grid thead tr:first-child th{border-top:2px solid var(--rule)}
.grid thead tr:last-child th{border-bottom:1px solid var(--rule)}
.grid th{font-weight:600;font-size:10.5px;vertical-align:bottom;white-space:normal}
.grid th.group{text-align:center;border-bottom:1px solid #9a9a9a}
.grid tbody td{border-bottom:1px solid var(--hair)}
.grid tbody tr:last-child td{border-bottom:2px solid var(--rule)}
.grid .txt{text-align:left}
.grid .gs{border-left:1px solid #c9c9c9}
.grid .best .v{font-weight:700}
.grid td.out{background:#fbe3d3}
.grid .sd{font-size:10.5px;color:var(--muted)}
.grid .iv{display:block;font-size:9.5px;color:var(--muted);line-height:1.15}
.grid .na{color:var(--muted)}
.grid tbody tr:hover td{background:#f4f8fb}
ul.meta{font-size:12.5px;color:#333;margin:6px 0 0;padding-left:18px}
.files{font-size:12.5px;color:var(--muted);margin:4px 0}
figure{margin:8px 0}
figure svg{max-width:100%;height:auto;display:block}
details figure svg{max-width:640px}
figcaption{font-size:12.5px;color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px 16px}
details{margin:4px 0}
details>summary{cursor:pointer;padding:3px 0}
details.training{border-top:1px solid var(--hair);padding:2px 0}
details.training>summary{font-weight:600}
details.run{margin-left:18px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:10px}
.gallery img{width:100%;height:auto;display:block;border:1px solid var(--hair)}
.tag{display:inline-block;font-size:11px;font-weight:700;padding:0 5px;border-radius:3px;color:#fff}
.tag.anomalous{background:var(--verm)}
.tag.normal{background:var(--blue)}
table.kv{border-collapse:collapse;font-size:12.5px}
.kv th{text-align:left;font-weight:600;padding:1px 12px 1px 0;vertical-align:top;white-space:nowrap}
.kv td{padding:1px 0;word-break:break-all}
"#;

/// The page.
pub fn page(p: &Page) -> String {
    let mut s = String::with_capacity(256 * 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // An empty inline icon: without one the browser asks the folder for `favicon.ico`.
    s.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    s.push_str(&format!(
        "<title>AVA-DINO reproduction: {} profile</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        escape(p.profile)
    ));
    header(&mut s, p);
    for t in p.tables {
        table_section(&mut s, t, &p.marks);
    }
    if !p.figures.is_empty() {
        s.push_str("<section id=\"charts\">\n<h2>Charts</h2>\n<div class=\"charts\">\n");
        for f in &p.figures {
            figure(&mut s, f);
        }
        s.push_str("</div>\n</section>\n");
    }
    runs_section(&mut s, p);
    provenance_section(&mut s, p);
    s.push_str("</body>\n</html>\n");
    s
}

/// The banner a profile other than `full` carries, in words (also the charts' caveat, shorter).
pub fn banner_text(profile: &str) -> Option<String> {
    (profile != "full")
        .then(|| format!("Profile {profile}: these numbers say nothing about the paper."))
}

fn header(s: &mut String, p: &Page) {
    s.push_str(&format!(
        "<header>\n<h1>AVA-DINO reproduction &middot; profile <code>{}</code></h1>\n",
        escape(p.profile)
    ));
    let revisions: BTreeSet<String> = p
        .tables
        .iter()
        .flat_map(|t| t.meta.git_revision.iter().cloned())
        .collect();
    s.push_str(&format!(
        "<p class=\"sub\">{} finished runs &middot; epoch selection: {} &middot; harness revision {}</p>\n",
        p.runs.len(),
        escape(p.selection.label()),
        escape(&join_or_dash(revisions.into_iter().collect()))
    ));
    if let Some(text) = banner_text(p.profile) {
        let assets = p
            .tables
            .iter()
            .map(|t| t.meta.assets.as_str())
            .find(|a| !a.is_empty())
            .unwrap_or("embedded default");
        s.push_str(&format!(
            "<p class=\"banner\" role=\"note\"><strong>{}</strong> Source: {}. They show that every stage of the pipeline runs, not how AVA-DINO performs; numbers to compare with the paper come from <code>cargo xtask reproduce all --profile full</code> on the real weights and datasets.</p>\n",
            escape(&text),
            escape(assets)
        ));
    }
    s.push_str("<nav>");
    for t in p.tables {
        s.push_str(&format!(
            "<a href=\"#{}\">{}</a>",
            id_of(&t.name),
            escape(t.title.split(':').next().unwrap_or(&t.title))
        ));
    }
    s.push_str("<a href=\"#charts\">Charts</a><a href=\"#runs\">Runs</a><a href=\"#provenance\">Provenance</a></nav>\n");
    s.push_str(&format!(
        "<p class=\"legend\">Percent unless stated. <b>ours</b>: mean over seeds (&plusmn; standard deviation over seeds) with its 95&nbsp;% bootstrap interval underneath; &Delta; = ours &minus; paper; <b>bold</b>: best; <span class=\"flag\">&dagger;</span> on a shaded cell: outside tolerance ({}).</p>\n",
        with_code(&p.marks.rule)
    ));
    s.push_str("</header>\n");
}

fn join_or_dash(v: Vec<String>) -> String {
    if v.is_empty() {
        "–".into()
    } else {
        v.join(", ")
    }
}

fn table_section(s: &mut String, t: &Table, marks: &Marks) {
    let id = id_of(&t.name);
    s.push_str(&format!(
        "<section id=\"{id}\">\n<h2>{}</h2>\n",
        escape(&t.title)
    ));
    s.push_str(&table_html(t, marks));
    meta_list(s, t);
    s.push_str(&format!(
        "<p class=\"files\">Also as <a href=\"{n}.md\">{n}.md</a>, <a href=\"{n}.csv\">.csv</a>, <a href=\"{n}.json\">.json</a>, <a href=\"{n}.tex\">.tex</a>.</p>\n</section>\n",
        n = url_path(&t.name)
    ));
}

/// The "numbers from" line, then [`TableMeta::lines`](super::TableMeta::lines).
fn meta_list(s: &mut String, t: &Table) {
    s.push_str(&format!(
        "<ul class=\"meta\">\n<li>numbers from: <b>{}</b> (profile <code>{}</code>)</li>\n",
        escape(t.meta.assets_or_dash()),
        escape(&t.meta.profile)
    ));
    for line in t.meta.lines() {
        s.push_str(&format!("<li>{}</li>\n", with_code(&line)));
    }
    s.push_str("</ul>\n");
}

/// A number with a real minus sign.
fn number(v: f64, decimals: usize, signed: bool) -> String {
    let s = if signed {
        format!("{v:+.decimals$}")
    } else {
        format!("{v:.decimals$}")
    };
    s.replacen('-', "\u{2212}", 1)
}

/// The dagger of a cell outside tolerance.
const FLAG: &str = "<span class=\"flag\" title=\"outside tolerance\">&dagger;</span>";

/// `<td>` of one cell: the value in `.v` (bold when best; `flag` puts the dagger right after
/// it), spread and interval in smaller type.
fn cell_html(c: &Cell, decimals: usize, flag: bool, classes: &mut Vec<&'static str>) -> String {
    let flagged = |s: String| if flag { s + FLAG } else { s };
    match c {
        Cell::Text(t) => {
            classes.push("txt");
            escape(t)
        }
        Cell::Num(Some(v)) => flagged(format!(
            "<span class=\"v\">{}</span>",
            number(*v, decimals, false)
        )),
        Cell::Delta(Some(v)) => number(*v, decimals, true),
        Cell::Num(None) | Cell::Delta(None) => {
            classes.push("na");
            "–".into()
        }
        Cell::Int(n) => n.to_string(),
        Cell::NotDefined => {
            classes.push("na");
            "n/a".into()
        }
        Cell::Estimate(e) => {
            let Some(v) = e.value else {
                classes.push("na");
                return flagged("–".into());
            };
            let mut out = flagged(format!(
                "<span class=\"v\">{}</span>",
                number(v, decimals, false)
            ));
            if let Some(sd) = e.std {
                out.push_str(&format!(
                    " <span class=\"sd\">&plusmn;&nbsp;{sd:.decimals$}</span>"
                ));
            }
            if let Some(i) = e.interval {
                out.push_str(&format!(
                    "<span class=\"iv\">[{}, {}]</span>",
                    number(i.lo, decimals, false),
                    number(i.hi, decimals, false)
                ));
            }
            out
        }
    }
}

/// A column name as a head: `<wbr>` where a lower-case letter meets an upper-case one, so
/// `AnomalyCLIP` may break into `Anomaly` / `CLIP` and a wide table keeps narrow columns.
fn head_name(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if prev_lower && c.is_uppercase() {
            out.push_str("<wbr>");
        }
        out.push_str(&escape(&c.to_string()));
        prev_lower = c.is_lowercase();
    }
    out
}

/// Text with `` `code` `` spans as `<code>` (after escaping).
fn with_code(text: &str) -> String {
    let mut out = String::new();
    for (k, part) in escape(text).split('`').enumerate() {
        if k % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The table as an HTML grid: grouped heads as the Markdown's blocks, best values in bold, the
/// cells the check flags shaded and daggered.
pub fn table_html(t: &Table, marks: &Marks) -> String {
    let groups = t.column_groups();
    let best = t.best_cells();
    let outside: BTreeSet<(usize, usize)> = t
        .cells
        .iter()
        .filter(|c| marks.outside.contains(&c.key))
        .filter_map(|c| c.at)
        .collect();
    // Columns that open a titled group get a rule on their left.
    let mut group_start = BTreeSet::new();
    for g in groups.iter().filter(|g| g.title.is_some()) {
        group_start.extend(g.columns.first().map(|(j, _)| *j));
    }
    let grouped = groups.iter().any(|g| g.title.is_some());
    let align = |j: usize| if t.is_text_column(j) { "txt" } else { "num" };
    let mut s = format!(
        "<div class=\"scroll\"><table class=\"grid\" id=\"grid-{}\">\n<thead>\n<tr>",
        id_of(&t.name)
    );
    for g in &groups {
        match (&g.title, grouped) {
            (Some(title), _) => s.push_str(&format!(
                "<th class=\"group gs\" colspan=\"{}\" scope=\"colgroup\">{}</th>",
                g.columns.len(),
                escape(title)
            )),
            (None, true) => {
                for (j, name) in &g.columns {
                    s.push_str(&format!(
                        "<th class=\"{}\" rowspan=\"2\" scope=\"col\">{}</th>",
                        align(*j),
                        head_name(name)
                    ));
                }
            }
            (None, false) => {
                for (j, name) in &g.columns {
                    s.push_str(&format!(
                        "<th class=\"{}\" scope=\"col\">{}</th>",
                        align(*j),
                        head_name(name)
                    ));
                }
            }
        }
    }
    s.push_str("</tr>\n");
    if grouped {
        s.push_str("<tr>");
        for g in groups.iter().filter(|g| g.title.is_some()) {
            for (j, name) in &g.columns {
                let gs = if group_start.contains(j) { " gs" } else { "" };
                s.push_str(&format!(
                    "<th class=\"{}{gs}\" scope=\"col\">{}</th>",
                    align(*j),
                    head_name(name)
                ));
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</thead>\n<tbody>\n");
    let order: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.columns.iter().map(|(j, _)| *j))
        .collect();
    for (i, row) in t.rows.iter().enumerate() {
        s.push_str("<tr>");
        for &j in &order {
            let Some(c) = row.get(j) else {
                s.push_str("<td></td>");
                continue;
            };
            let mut classes = Vec::new();
            let flag = outside.contains(&(i, j));
            let body = cell_html(c, t.decimals, flag, &mut classes);
            if best.contains(&(i, j)) {
                classes.push("best");
            }
            if group_start.contains(&j) {
                classes.push("gs");
            }
            if flag {
                classes.push("out");
            }
            if classes.is_empty() {
                s.push_str(&format!("<td>{body}</td>"));
            } else {
                s.push_str(&format!("<td class=\"{}\">{body}</td>", classes.join(" ")));
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table></div>\n");
    s
}

/// A plotters SVG made fit to inline: the XML namespace attribute dropped (HTML knows `<svg>`),
/// labelled for screen readers.
fn inline_svg(svg: &str, label: &str) -> String {
    let svg = svg.trim_start();
    let svg = svg
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split_once("?>").map(|(_, r)| r.trim_start()))
        .unwrap_or(svg);
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{}\" ", escape(label)),
        1,
    )
}

fn figure(s: &mut String, f: &Figure) {
    s.push_str("<figure>");
    s.push_str(&inline_svg(&f.svg, &f.label));
    s.push_str(&format!("<figcaption>{}", escape(&f.label)));
    if let Some(png) = &f.png {
        s.push_str(&format!(" &middot; <a href=\"{}\">PNG</a>", url_path(png)));
    }
    s.push_str("</figcaption></figure>\n");
}

/// `60.0 / 80.1 / 20.3`-style summary of a run's selected evaluation.
fn headline(m: &MetricSet) -> String {
    let pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{:.1}", x * 100.0));
    format!(
        "I-AUROC {} &middot; P-AUROC {} &middot; P-F1max {}",
        pct(m.image_auroc),
        pct(m.pixel_auroc),
        pct(m.pixel_f1max)
    )
}

fn runs_section(s: &mut String, p: &Page) {
    s.push_str("<section id=\"runs\">\n<h2>Runs</h2>\n");
    s.push_str("<p class=\"sub\">One entry per training (variant, training set, seed) with its loss curves; inside, one entry per target it was evaluated on: per-category table, routing weights, a gallery of anomaly maps, provenance.</p>\n");
    for tr in &p.trainings {
        let first = tr.runs.first().map(|r| r.run.job());
        let title = match first {
            Some(j) => format!(
                "{} &middot; trained on {} &middot; seed {} &middot; {} target{}",
                escape(j.variant.name()),
                escape(&j.train),
                j.seed,
                tr.runs.len(),
                if tr.runs.len() == 1 { "" } else { "s" }
            ),
            None => escape(&tr.key),
        };
        s.push_str(&format!(
            "<details class=\"training\" id=\"training-{}\"><summary>{title}</summary>\n",
            id_of(&tr.key)
        ));
        match &tr.loss {
            Some(f) => figure(s, f),
            None => s.push_str("<p class=\"sub\">No epochs recorded: no loss curves.</p>\n"),
        }
        for r in &tr.runs {
            run_details(s, r, p.selection);
        }
        s.push_str("</details>\n");
    }
    s.push_str("</section>\n");
}

fn run_details(s: &mut String, r: &RunView, selection: EpochSelection) {
    let job = r.run.job();
    let eval = r.run.metrics.selected(selection);
    s.push_str(&format!(
        "<details class=\"run\" id=\"run-{}\"><summary>target <b>{}</b>: {} (epoch {})</summary>\n",
        id_of(&job.dir_name()),
        escape(&job.target),
        headline(&eval.mean),
        eval.epoch
    ));
    s.push_str(&format!("<h3>{}</h3>\n", escape(&r.per_category.title)));
    s.push_str(&table_html(r.per_category, &Marks::default()));
    meta_list(s, r.per_category);
    match &r.routing {
        Some(f) => figure(s, f),
        None => s.push_str(
            "<p class=\"sub\">No routing weights (the single-adapter variant routes nothing).</p>\n",
        ),
    }
    if !r.gallery.is_empty() {
        s.push_str("<h3>Anomaly maps</h3>\n<p class=\"sub\">Each picture: the resized input, its ground truth, and the anomaly map (viridis, scaled per image from its lowest to its highest pixel) over the input. The image score is the map's maximum, the number the image metrics rank.</p>\n<div class=\"gallery\">\n");
        for t in &r.gallery {
            let (class, word) = if t.anomalous {
                ("anomalous", "anomalous")
            } else {
                ("normal", "normal")
            };
            s.push_str(&format!(
                "<figure><img src=\"{}\" alt=\"{} / {}: {word} image, its mask and its anomaly map\"><figcaption><span class=\"tag {class}\">{word}</span> {} / {} &middot; image score {:.3}</figcaption></figure>\n",
                escape(&url_path(&t.src)),
                escape(&t.category),
                escape(&t.name),
                escape(&t.category),
                escape(&t.name),
                t.score
            ));
        }
        s.push_str("</div>\n");
    }
    s.push_str("<h3>Provenance</h3>\n");
    key_values(s, &run_provenance(r.run));
    s.push_str("</details>\n");
}

fn key_values(s: &mut String, rows: &[(String, String)]) {
    s.push_str("<table class=\"kv\">\n");
    for (k, v) in rows {
        s.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
            escape(k),
            escape(v)
        ));
    }
    s.push_str("</table>\n");
}

/// `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    }
}

/// Bytes in MiB.
fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `phase value, phase value` in the order of the pipeline.
fn phases<V>(m: &BTreeMap<String, V>, f: impl Fn(&V) -> String) -> String {
    const ORDER: [&str; 4] = ["extract", "train", "eval", "total"];
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by_key(|k| (ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()), *k));
    let parts: Vec<String> = keys.iter().map(|k| format!("{k} {}", f(&m[*k]))).collect();
    join_or_dash(parts)
}

fn run_provenance(r: &CollectedRun) -> Vec<(String, String)> {
    let p = &r.metrics.provenance;
    let revision = match (&p.git_revision, p.git_dirty, &p.git_diff) {
        (None, _, _) => "unknown".to_string(),
        (Some(rev), Some(true), Some(d)) => format!("{rev} (dirty: uncommitted changes {d})"),
        (Some(rev), Some(true), None) => format!("{rev} (dirty)"),
        (Some(rev), _, _) => rev.clone(),
    };
    let mut rows = vec![
        ("run directory".to_string(), r.dir.display().to_string()),
        ("harness revision".into(), revision),
        ("code digest".into(), p.code.clone()),
        (
            "weights".into(),
            join_or_dash(p.weights.iter().map(|(k, v)| format!("{k} {v}")).collect()),
        ),
        (
            "assets".into(),
            if p.embedded {
                "embedded default (synthetic twins, seeded random backbones)".into()
            } else {
                "real weights and data".into()
            },
        ),
        (
            "device".into(),
            format!("{}: {} on {} ({})", p.backend, p.device, p.host, p.cpu),
        ),
        (
            "kernels, threads".into(),
            format!("{}, {} threads", p.kernels, p.threads),
        ),
        (
            "dtypes".into(),
            format!(
                "backbone {}, features {}",
                p.backbone_dtype, p.feature_dtype
            ),
        ),
        (
            "protocol, activation".into(),
            format!("{}, {}", p.protocol, p.activation),
        ),
        (
            "image size, taps".into(),
            format!("{}, {:?}", p.image_size, p.taps),
        ),
        ("seed".into(), p.seed.to_string()),
        (
            "epochs reported".into(),
            format!(
                "best {} ({}), final {}",
                r.metrics.best_epoch.epoch,
                r.metrics.best_epoch.selection,
                r.metrics.final_epoch.epoch
            ),
        ),
        ("started".into(), p.started.clone()),
        ("timings".into(), phases(&p.timings, |v| duration(*v))),
        ("peak memory".into(), phases(&p.peak_rss, |v| mib(*v))),
        (
            "images through the backbone".into(),
            phases(&p.backbone_images, |v| v.to_string()),
        ),
        (
            "training features".into(),
            format!("{} (budget {})", p.feature_store, mib(p.memory_budget)),
        ),
        (
            "sample lists".into(),
            join_or_dash(p.samples.iter().map(|(k, v)| format!("{k} {v}")).collect()),
        ),
        ("reference code".into(), p.reference_commit.clone()),
    ];
    if let Some(n) = r.metrics.trainable_parameters {
        rows.push(("trainable parameters".into(), n.to_string()));
    }
    rows
}

fn provenance_section(s: &mut String, p: &Page) {
    s.push_str("<section id=\"provenance\">\n<h2>Provenance</h2>\n");
    let distinct = |f: &dyn Fn(&CollectedRun) -> Vec<String>| -> String {
        let set: BTreeSet<String> = p
            .runs
            .iter()
            .flat_map(f)
            .filter(|v| !v.is_empty())
            .collect();
        join_or_dash(set.into_iter().collect())
    };
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    let mut peak: BTreeMap<String, u64> = BTreeMap::new();
    for r in p.runs {
        let pr = &r.metrics.provenance;
        for (k, v) in &pr.timings {
            *total.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &pr.peak_rss {
            let e = peak.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
    let started: Vec<&str> = p
        .runs
        .iter()
        .map(|r| r.metrics.provenance.started.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let rows = vec![
        (
            "harness revision".to_string(),
            distinct(&|r| {
                let pr = &r.metrics.provenance;
                let rev = pr.git_revision.clone().unwrap_or_else(|| "unknown".into());
                vec![if pr.git_dirty == Some(true) {
                    format!("{rev} (dirty)")
                } else {
                    rev
                }]
            }),
        ),
        (
            "code digest".into(),
            distinct(&|r| vec![r.metrics.provenance.code.clone()]),
        ),
        (
            "weights".into(),
            distinct(&|r| {
                r.metrics
                    .provenance
                    .weights
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            }),
        ),
        (
            "device".into(),
            distinct(&|r| {
                let pr = &r.metrics.provenance;
                vec![format!("{}: {}", pr.backend, pr.device)]
            }),
        ),
        (
            "kernels".into(),
            distinct(&|r| vec![r.metrics.provenance.kernels.clone()]),
        ),
        (
            "dtypes".into(),
            distinct(&|r| {
                let pr = &r.metrics.provenance;
                vec![format!(
                    "backbone {}, features {}",
                    pr.backbone_dtype, pr.feature_dtype
                )]
            }),
        ),
        (
            "protocol".into(),
            distinct(&|r| vec![r.metrics.provenance.protocol.clone()]),
        ),
        ("epoch selection".into(), p.selection.label().to_string()),
        (
            "runs started".into(),
            match (started.iter().min(), started.iter().max()) {
                (Some(a), Some(b)) if a != b => format!("{a} to {b}"),
                (Some(a), _) => a.to_string(),
                _ => "–".into(),
            },
        ),
        (
            "time, summed over runs".into(),
            phases(&total, |v| duration(*v)),
        ),
        (
            "peak memory, largest run".into(),
            phases(&peak, |v| mib(*v)),
        ),
    ];
    key_values(s, &rows);
    s.push_str("<p class=\"sub\">Each run's own record is in its entry under Runs.</p>\n");
    s.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Interval;
    use crate::report::Estimate;
    use crate::report::render::{Best, Block, CheckCell, EstimateColumns, TableMeta};

    #[test]
    fn escaping_text_attributes_and_paths() {
        assert_eq!(
            escape(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        assert_eq!(escape("Δ ± 1.4"), "Δ ± 1.4");
        assert_eq!(
            url_path("charts/overlays/full__visa__mvtec__s0/metal nut__0001_#1.png"),
            "charts/overlays/full__visa__mvtec__s0/metal%20nut__0001_%231.png"
        );
        assert_eq!(url_path("é"), "%C3%A9");
        assert_eq!(
            id_of("per_category/full__visa__mvtec__s0"),
            "per_category-full__visa__mvtec__s0"
        );
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
    }

    fn table() -> Table {
        let e = |v: f64| {
            Cell::Estimate(Estimate::over_seeds([
                (
                    v - 1.0,
                    Some(Interval {
                        lo: v - 5.0,
                        hi: v + 4.0,
                    }),
                ),
                (
                    v + 1.0,
                    Some(Interval {
                        lo: v - 4.0,
                        hi: v + 5.0,
                    }),
                ),
            ]))
        };
        Table {
            name: "table1".into(),
            title: "Table 1: <zero-shot> & more".into(),
            meta: TableMeta {
                profile: "smoke".into(),
                assets: "embedded default".into(),
                notes: vec!["Δ = ours - paper".into()],
                ..TableMeta::default()
            },
            columns: vec![
                "dataset".into(),
                "I-AUROC ours".into(),
                "I-AUROC paper".into(),
                "I-AUROC Δ".into(),
            ],
            rows: vec![
                vec![
                    Cell::Text("mvtec".into()),
                    e(85.0),
                    Cell::Num(Some(93.5)),
                    Cell::Delta(Some(-8.5)),
                ],
                vec![
                    Cell::Text("kvasir".into()),
                    Cell::NotDefined,
                    Cell::NotDefined,
                    Cell::NotDefined,
                ],
            ],
            cells: vec![
                CheckCell {
                    key: "table1/mvtec/image_auroc".into(),
                    ..CheckCell::default()
                }
                .at(0, 1),
            ],
            decimals: 1,
            layout: vec![Block {
                title: "I-AUROC".into(),
                prefix: "I-AUROC ".into(),
                columns: vec![1, 2, 3],
            }],
            key_columns: 1,
            estimate_columns: EstimateColumns {
                interval: true,
                seeds: true,
            },
            best: Best::PerRowInBlock,
        }
    }

    #[test]
    fn a_grid_has_grouped_heads_bold_best_intervals_and_marks() {
        let marks = Marks {
            outside: ["table1/mvtec/image_auroc".to_string()].into(),
            rule: "r".into(),
        };
        let h = table_html(&table(), &marks);
        assert!(
            h.contains("<th class=\"group gs\" colspan=\"3\" scope=\"colgroup\">I-AUROC</th>"),
            "{h}"
        );
        assert!(
            h.contains("<th class=\"txt\" rowspan=\"2\" scope=\"col\">dataset</th>"),
            "{h}"
        );
        assert!(h.contains("<th class=\"num\" scope=\"col\">Δ</th>"), "{h}");
        // Ours: value, spread, interval; flagged outside tolerance; the paper's 93.5 is the best.
        assert!(
            h.contains("<td class=\"gs out\"><span class=\"v\">85.0</span><span class=\"flag\" title=\"outside tolerance\">&dagger;</span> <span class=\"sd\">&plusmn;&nbsp;1.4</span><span class=\"iv\">[80.0, 90.0]</span></td>"),
            "{h}"
        );
        assert!(
            h.contains("<td class=\"best\"><span class=\"v\">93.5</span></td>"),
            "{h}"
        );
        assert!(h.contains("<td>\u{2212}8.5</td>"), "{h}");
        assert!(h.contains("<td class=\"na\">n/a</td>"), "{h}");
        // Without marks nothing is flagged.
        assert!(!table_html(&table(), &Marks::default()).contains("flag"));
    }

    #[test]
    fn svg_is_inlined_without_its_namespace_url() {
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"800\" height=\"500\" viewBox=\"0 0 800 500\" xmlns=\"http://www.w3.org/2000/svg\">\n<text>a</text>\n</svg>";
        let out = inline_svg(svg, "Loss & more");
        assert!(
            out.starts_with("<svg role=\"img\" aria-label=\"Loss &amp; more\" width=\"800\""),
            "{out}"
        );
        assert!(!out.contains("http"), "{out}");
    }

    fn page_of<'a>(tables: &'a [Table], profile: &'a str) -> String {
        page(&Page {
            profile,
            selection: EpochSelection::ReferenceBest,
            tables,
            figures: vec![Figure {
                svg: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"></svg>"
                    .into(),
                label: "a chart".into(),
                png: Some("charts/a chart.png".into()),
            }],
            trainings: Vec::new(),
            marks: Marks::default(),
            runs: &[],
        })
    }

    #[test]
    fn the_page_holds_every_table_makes_no_request_and_warns_off_non_full_profiles() {
        let tables: Vec<Table> = (1..=4)
            .map(|n| {
                let mut t = table();
                t.name = format!("table{n}");
                t.title = format!("Table {n}: something");
                t
            })
            .collect();
        let smoke = page_of(&tables, "smoke");
        for n in 1..=4 {
            assert!(
                smoke.contains(&format!("<section id=\"table{n}\">")),
                "table{n}"
            );
            assert!(smoke.contains(&format!("<table class=\"grid\" id=\"grid-table{n}\">")));
            assert!(smoke.contains(&format!("<a href=\"table{n}.tex\">.tex</a>")));
        }
        assert!(!smoke.contains("http://") && !smoke.contains("https://"));
        assert!(!smoke.contains("<script") && !smoke.contains("stylesheet"));
        // The only link: an empty inline icon, so the browser asks for no favicon.ico.
        assert_eq!(smoke.matches("<link ").count(), 1);
        assert!(smoke.contains("<link rel=\"icon\" href=\"data:,\">"));
        assert!(smoke.contains("<a href=\"charts/a%20chart.png\">PNG</a>"));
        let banner = "<p class=\"banner\" role=\"note\"><strong>Profile smoke: these numbers say nothing about the paper.</strong> Source: embedded default.";
        assert!(smoke.contains(banner), "{smoke}");
        // The banner comes before Table 1; the full profile has none.
        assert!(smoke.find(banner) < smoke.find("<section id=\"table1\">"));
        let full = page_of(&tables, "full");
        assert!(!full.contains("class=\"banner\""));
        assert!(
            page_of(&tables, "rehearsal").contains("Profile rehearsal: these numbers say nothing")
        );
        // Escaped titles.
        assert!(smoke.contains("<title>AVA-DINO reproduction: smoke profile</title>"));
    }
}
