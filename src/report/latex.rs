//! A report table as LaTeX (`tableN.tex`): a `table` float with booktabs rules, the best values
//! in bold ([`Table::best_cells`]), and under it the same settings, provenance and notes as the
//! Markdown, so the file goes into a paper unchanged.
//!
//! The file needs `\usepackage{booktabs}` and `\usepackage{graphicx}` (its first line says so):
//! graphicx shrinks a table wider than the text (Table 1 has 26 columns) and never enlarges one.
//! Everything printed is escaped ([`escape`]); the few non-ASCII characters the tables use
//! (Δ, ±, –) become their LaTeX forms, so pdflatex needs no Unicode setup.

use super::render::{Cell, Table};

/// Columns from which a table is set as `table*` (the full width of a two-column paper).
const WIDE_COLUMNS: usize = 8;

/// `s` as LaTeX text: the ten special characters escaped, `<`, `>` and `|` spelled as text
/// commands (the default OT1 font prints `<` as `¡`), and the non-ASCII characters of the
/// report in their LaTeX forms. Other characters pass unchanged.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            '<' => out.push_str(r"\textless{}"),
            '>' => out.push_str(r"\textgreater{}"),
            '|' => out.push_str(r"\textbar{}"),
            'Δ' => out.push_str(r"$\Delta$"),
            '±' => out.push_str(r"$\pm$"),
            '×' => out.push_str(r"$\times$"),
            '·' => out.push_str(r"$\cdot$"),
            '≤' => out.push_str(r"$\leq$"),
            '≥' => out.push_str(r"$\geq$"),
            '→' => out.push_str(r"$\rightarrow$"),
            'µ' | 'μ' => out.push_str(r"$\mu$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            '…' => out.push_str(r"\dots{}"),
            _ => out.push(c),
        }
    }
    out
}

/// A number with `decimals` decimals, with a math minus (a hyphen is shorter than a minus).
fn number(v: f64, decimals: usize, signed: bool) -> String {
    let s = if signed {
        format!("{v:+.decimals$}")
    } else {
        format!("{v:.decimals$}")
    };
    match s.strip_prefix('-') {
        Some(rest) => format!("$-${rest}"),
        None => match s.strip_prefix('+') {
            Some(rest) => format!("$+${rest}"),
            None => s,
        },
    }
}

/// One cell; `best` sets the value (not its spread or interval) in bold.
fn cell(c: &Cell, decimals: usize, best: bool) -> String {
    let bold = |s: String| {
        if best { format!(r"\textbf{{{s}}}") } else { s }
    };
    match c {
        Cell::Text(s) => escape(s),
        Cell::Num(Some(v)) => bold(number(*v, decimals, false)),
        Cell::Delta(Some(v)) => number(*v, decimals, true),
        Cell::Num(None) | Cell::Delta(None) => "--".into(),
        Cell::Int(n) => number(*n as f64, 0, false),
        Cell::NotDefined => "n/a".into(),
        Cell::Estimate(e) => {
            let Some(v) = e.value else {
                return "--".into();
            };
            let mut s = bold(number(v, decimals, false));
            if let Some(sd) = e.std {
                s.push_str(&format!(r" {{\scriptsize$\pm${sd:.decimals$}}}"));
            }
            if let Some(i) = e.interval {
                s.push_str(&format!(
                    r" {{\scriptsize[{}, {}]}}",
                    number(i.lo, decimals, false),
                    number(i.hi, decimals, false)
                ));
            }
            s
        }
    }
}

/// The caption: the title without its `Table N: ` (LaTeX numbers its tables itself).
fn caption(title: &str) -> &str {
    match title.split_once(": ") {
        Some((head, rest)) if head.starts_with("Table ") => rest,
        _ => title,
    }
}

/// The table as a LaTeX float.
pub fn to_latex(t: &Table) -> String {
    let groups = t.column_groups();
    let order: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.columns.iter().map(|(j, _)| *j))
        .collect();
    let best = t.best_cells();
    let float = if t.columns.len() > WIDE_COLUMNS {
        "table*"
    } else {
        "table"
    };
    let spec: String = order
        .iter()
        .map(|&j| if t.is_text_column(j) { 'l' } else { 'r' })
        .collect();
    let mut s = format!(
        "% {}.tex: {} (written by `ava-dino collect`).\n\
         % Needs \\usepackage{{booktabs}} and \\usepackage{{graphicx}}.\n",
        t.name,
        t.title.replace('\n', " ")
    );
    s.push_str(&format!("\\begin{{{float}}}[t]\n\\centering\n"));
    s.push_str(&format!("\\caption{{{}}}\n", escape(caption(&t.title))));
    s.push_str(&format!(
        "\\label{{tab:ava-dino-{}}}\n",
        t.name.replace(['/', '_'], "-")
    ));
    // Shrinks the tabular to the line width when it is wider, never enlarges it.
    s.push_str("\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n");
    s.push_str(&format!("\\begin{{tabular}}{{{spec}}}\n\\toprule\n"));
    if groups.iter().any(|g| g.title.is_some()) {
        let mut heads = Vec::new();
        let mut rules = Vec::new();
        let mut first = 1;
        for g in &groups {
            let n = g.columns.len();
            match &g.title {
                Some(title) => {
                    heads.push(format!("\\multicolumn{{{n}}}{{c}}{{{}}}", escape(title)));
                    rules.push(format!("\\cmidrule(lr){{{first}-{}}}", first + n - 1));
                }
                None => heads.extend(std::iter::repeat_n(String::new(), n)),
            }
            first += n;
        }
        s.push_str(&format!(
            "{} \\\\\n{}\n",
            heads.join(" & "),
            rules.join(" ")
        ));
    }
    let names: Vec<String> = groups
        .iter()
        .flat_map(|g| g.columns.iter().map(|(_, name)| escape(name)))
        .collect();
    s.push_str(&format!("{} \\\\\n\\midrule\n", names.join(" & ")));
    for (i, row) in t.rows.iter().enumerate() {
        let cells: Vec<String> = order
            .iter()
            .map(|&j| {
                row.get(j).map_or_else(
                    || "--".to_string(),
                    |c| cell(c, t.decimals, best.contains(&(i, j))),
                )
            })
            .collect();
        s.push_str(&format!("{} \\\\\n", cells.join(" & ")));
    }
    s.push_str("\\bottomrule\n\\end{tabular}%\n}\n");
    let m = &t.meta;
    let mut notes = vec![format!(
        "Numbers from: {} (profile {}).",
        m.assets_or_dash(),
        m.profile
    )];
    notes.extend(m.lines().iter().map(|l| format!("{l}.")));
    notes.extend(t.best.note().map(|n| format!("{n}.")));
    s.push_str("\\par\\smallskip\n{\\footnotesize\\raggedright\n");
    for n in notes {
        s.push_str(&format!("{}\\par\n", escape(&capitalised(&n))));
    }
    s.push_str("}\n");
    s.push_str(&format!("\\end{{{float}}}\n"));
    s
}

/// `s` with its first letter in upper case: each note is printed as a sentence.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Interval;
    use crate::report::Estimate;
    use crate::report::render::{Best, EstimateColumns, TableMeta};

    #[test]
    fn escaping_covers_the_special_characters_and_the_report_s_unicode() {
        assert_eq!(
            escape(r"a_b & 95 % $x #1 {y} ~ ^ \ <> |"),
            r"a\_b \& 95 \% \$x \#1 \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} \textless{}\textgreater{} \textbar{}"
        );
        assert_eq!(
            escape("I-AUROC Δ ± 1.4 – n/a"),
            r"I-AUROC $\Delta$ $\pm$ 1.4 -- n/a"
        );
        assert_eq!(escape("plain 12.5"), "plain 12.5");
        assert_eq!(
            capitalised("epoch selection: final"),
            "Epoch selection: final"
        );
    }

    fn small() -> Table {
        let e = |v: f64| {
            Cell::Estimate(Estimate::over_seeds([(
                v,
                Some(Interval {
                    lo: v - 2.0,
                    hi: v + 2.0,
                }),
            )]))
        };
        Table {
            name: "table3".into(),
            title: "Table 3: last layer vs multi_layer".into(),
            meta: TableMeta {
                profile: "smoke".into(),
                assets: "embedded default".into(),
                selection: "final epoch".into(),
                notes: vec!["percent; Δ = ours - paper".into()],
                ..TableMeta::default()
            },
            columns: vec![
                "layers".into(),
                "I-AUROC ours".into(),
                "I-AUROC paper".into(),
                "I-AUROC Δ".into(),
            ],
            rows: vec![
                vec![
                    Cell::Text("Last layer".into()),
                    e(80.0),
                    Cell::Num(Some(90.1)),
                    Cell::Delta(Some(-10.1)),
                ],
                vec![
                    Cell::Text("Multi_layer".into()),
                    e(85.04),
                    Cell::Num(Some(93.5)),
                    Cell::Delta(Some(-8.46)),
                ],
                vec![
                    Cell::Text("none".into()),
                    e(f64::NAN),
                    Cell::Num(None),
                    Cell::Delta(None),
                ],
            ],
            cells: Vec::new(),
            decimals: 1,
            layout: Vec::new(),
            key_columns: 1,
            estimate_columns: EstimateColumns {
                interval: true,
                seeds: true,
            },
            best: Best::PerColumn,
        }
    }

    #[test]
    fn a_small_table_has_booktabs_rules_bold_best_per_column_and_the_notes() {
        let tex = to_latex(&small());
        // booktabs: top, mid and bottom rules, in that order, and no vertical rules.
        let (top, mid, bottom) = (
            tex.find("\\toprule").unwrap(),
            tex.find("\\midrule").unwrap(),
            tex.find("\\bottomrule").unwrap(),
        );
        assert!(top < mid && mid < bottom, "{tex}");
        assert!(tex.contains("\\begin{tabular}{lrrr}"), "{tex}");
        assert!(!tex.contains("\\hline"), "{tex}");
        // The header row, escaped.
        assert!(
            tex.contains("layers & I-AUROC ours & I-AUROC paper & I-AUROC $\\Delta$ \\\\"),
            "{tex}"
        );
        // Best per column: ours 85.0 (row 2), paper 93.5 (row 2); deltas never bold.
        assert!(
            tex.contains(
                "Multi\\_layer & \\textbf{85.0} {\\scriptsize[83.0, 87.0]} & \\textbf{93.5} & $-$8.5 \\\\"
            ),
            "{tex}"
        );
        assert!(
            tex.contains("Last layer & 80.0 {\\scriptsize[78.0, 82.0]} & 90.1 & $-$10.1 \\\\"),
            "{tex}"
        );
        assert!(tex.contains("none & -- & -- & -- \\\\"), "{tex}");
        assert_eq!(tex.matches("\\textbf{").count(), 2, "{tex}");
        // A narrow table is a `table`; LaTeX numbers it, so the caption drops "Table 3: ".
        assert!(tex.contains("\\begin{table}[t]") && tex.contains("\\end{table}\n"));
        assert!(
            tex.contains("\\caption{last layer vs multi\\_layer}"),
            "{tex}"
        );
        assert!(tex.contains("\\label{tab:ava-dino-table3}"), "{tex}");
        // The Markdown's lines, as sentences, and what the bold means.
        for line in [
            "Numbers from: embedded default (profile smoke).\\par",
            "Epoch selection: final epoch.\\par",
            "Percent; $\\Delta$ = ours - paper.\\par",
            "Bold: the best value of each column.\\par",
        ] {
            assert!(tex.contains(line), "{line}: {tex}");
        }
        // Braces balance (a stray one is the commonest way to break a document).
        assert_eq!(
            tex.matches('{').count() - tex.matches("\\{").count(),
            tex.matches('}').count() - tex.matches("\\}").count()
        );
    }

    #[test]
    fn grouped_columns_get_a_spanning_head_and_cmidrules() {
        let mut t = small();
        t.layout = vec![crate::report::render::Block {
            title: "I-AUROC".into(),
            prefix: "I-AUROC ".into(),
            columns: vec![1, 2, 3],
        }];
        t.best = Best::PerRowInBlock;
        let tex = to_latex(&t);
        assert!(
            tex.contains(" & \\multicolumn{3}{c}{I-AUROC} \\\\\n\\cmidrule(lr){2-4}\n"),
            "{tex}"
        );
        assert!(
            tex.contains("layers & ours & paper & $\\Delta$ \\\\"),
            "{tex}"
        );
        // Per row within the block: the paper's number beats ours in both rows.
        assert!(
            tex.contains("80.0 {\\scriptsize[78.0, 82.0]} & \\textbf{90.1}"),
            "{tex}"
        );
        assert!(tex.contains("Bold: the best method of each dataset and metric."));
    }
}
