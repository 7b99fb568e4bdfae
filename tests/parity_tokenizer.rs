//! Parity of the CLIP tokenizer with the reference `SimpleTokenizer` + `tokenize(texts, 77)`
//! (kind `tokenizer`, made by `scripts/gen_tokenizer.py`): every line of `cases.jsonl[.gz]` must give
//! identical ids, and `"ids": null` lines (longer than 77) must be errors. Lines that ftfy changes
//! (`"ftfy": true`; ftfy is left out, docs/DEVIATIONS.md) are compared with `ids_no_ftfy`, the
//! reference's ids with ftfy switched off, and how many of them still equal the ftfy ids is printed.

mod common;

use std::io::Read;

use ava_dino::text::Tokenizer;
use ava_dino::text::prompts::{anomaly_sentences, normal_sentences};
use common::parity::contract::Scratch;
use common::parity::{Case, Report, cases};

/// The 44 category names of the five multi-class datasets (MVTec-AD, VisA, BTAD, MPDD, MVTec-AD2).
const CLASS_WORDS: [&str; 44] = [
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
    "01",
    "02",
    "03",
    "bracket_black",
    "bracket_brown",
    "bracket_white",
    "connector",
    "metal_plate",
    "tubes",
    "can",
    "fabric",
    "fruit_jelly",
    "rice",
    "sheet_metal",
    "vial",
    "wallplugs",
    "walnuts",
];

/// Where [`read_rows`] stops showing bad lines one by one.
const BAD_LINES_SHOWN: usize = 5;

struct Row {
    text: String,
    ids: Option<Vec<i64>>,
    ftfy: bool,
    ids_no_ftfy: Option<Vec<i64>>,
}

/// `ids` / `ids_no_ftfy` of one line: 77 integers, or `null` (the reference raises).
fn ids_of(line: &serde_json::Value, key: &str) -> Result<Option<Vec<i64>>, String> {
    match line.get(key) {
        None => Err(format!(
            "`{key}` missing (required: 77 integers, or null for a text the reference refuses)"
        )),
        Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<i64>>>())
            .filter(|ids| ids.len() == 77)
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be 77 integers or null")),
    }
}

fn parse_row(line: &str) -> Result<Row, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = match v.get("text") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(_) => return Err("`text` must be a string".into()),
        None => return Err("`text` missing (required: the input text)".into()),
    };
    let ftfy = match v.get("ftfy") {
        None => false,
        Some(f) => f.as_bool().ok_or("`ftfy` must be true or false")?,
    };
    Ok(Row {
        text,
        ids: ids_of(&v, "ids")?,
        ftfy,
        // Required only where ftfy changes the text: those lines are compared with it.
        ids_no_ftfy: if ftfy {
            ids_of(&v, "ids_no_ftfy")?
        } else {
            None
        },
    })
}

/// The case's `cases.jsonl.gz` or `cases.jsonl` (exactly one), its rows and its bad lines
/// (`line N: what`), or why the file cannot be read.
fn read_rows(case: &Case) -> Result<(&'static str, Vec<Row>, Vec<String>), String> {
    let [gz, plain] = ["cases.jsonl.gz", "cases.jsonl"].map(|n| case.dir.join(n).is_file());
    let text = match (gz, plain) {
        (true, true) => return Err("cases.jsonl.gz and cases.jsonl both present: keep one".into()),
        (false, false) => return Err(String::new()),
        (true, false) => {
            let mut s = String::new();
            std::fs::File::open(case.dir.join("cases.jsonl.gz"))
                .and_then(|f| flate2::read::GzDecoder::new(f).read_to_string(&mut s))
                .map_err(|e| format!("cases.jsonl.gz: not gzip-compressed UTF-8 text: {e}"))?;
            s
        }
        (false, true) => std::fs::read_to_string(case.dir.join("cases.jsonl"))
            .map_err(|e| format!("cases.jsonl: {e}"))?,
    };
    let name = if gz { "cases.jsonl.gz" } else { "cases.jsonl" };
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line) {
            Ok(r) => rows.push(r),
            Err(e) => bad.push(format!("line {}: {e}", i + 1)),
        }
    }
    Ok((name, rows, bad))
}

fn check_case(report: &mut Report, case: &Case, tok: &Tokenizer) {
    let (file, rows, bad) = match read_rows(case) {
        Ok(r) => r,
        Err(e) if e.is_empty() => {
            let what = "one JSON object a line: text, ids, and ids_no_ftfy where ftfy is true";
            report.missing_file(case, "cases.jsonl", what);
            return;
        }
        Err(e) => {
            report.fail(case, "cases.jsonl", &e);
            return;
        }
    };
    for e in bad.iter().take(BAD_LINES_SHOWN) {
        report.fail(case, file, e);
    }
    if bad.len() > BAD_LINES_SHOWN {
        let more = bad.len() - BAD_LINES_SHOWN;
        report.fail(case, file, &format!("{more} more bad lines"));
    }
    let (mut got_all, mut want_all) = (Vec::new(), Vec::new());
    let (mut got_nf, mut want_nf) = (Vec::new(), Vec::new());
    let (mut errors_ok, mut errors_total, mut ftfy_same) = (0, 0, 0);
    let mut shown = 0;
    for r in &rows {
        let want = if r.ftfy { &r.ids_no_ftfy } else { &r.ids };
        let got = tok.encode(&r.text).ok();
        if got.as_ref() != want.as_ref() && shown < 5 {
            eprintln!(
                "mismatch {:?}: got {:?} want {:?}",
                r.text,
                got.as_ref().map(|v| &v[..12.min(v.len())]),
                want.as_ref().map(|v| &v[..12.min(v.len())])
            );
            shown += 1;
        }
        match want {
            None => {
                errors_total += 1;
                errors_ok += got.is_none() as usize;
            }
            Some(w) => {
                let g = got.unwrap_or_else(|| vec![-1; 77]);
                let (gs, ws) = if r.ftfy {
                    (&mut got_nf, &mut want_nf)
                } else {
                    (&mut got_all, &mut want_all)
                };
                gs.extend(g);
                ws.extend(w.iter().copied());
            }
        }
        if r.ftfy && r.ids == r.ids_no_ftfy {
            ftfy_same += 1;
        }
    }
    let n_ftfy = rows.iter().filter(|r| r.ftfy).count();
    report.exact(
        case,
        file,
        &format!("ids({} texts)", want_all.len() / 77),
        &got_all,
        &want_all,
    );
    if n_ftfy > 0 {
        report.exact(
            case,
            file,
            &format!("ids_no_ftfy({n_ftfy} texts, {ftfy_same} unaffected by ftfy)"),
            &got_nf,
            &want_nf,
        );
    }
    report.check(
        case,
        file,
        &format!("too_long_errors={errors_ok}/{errors_total}"),
        errors_ok == errors_total,
    );
}

#[test]
fn tokenizer_matches_reference() {
    let tok = Tokenizer::new();
    let mut report = Report::new("tokenizer");
    for case in cases("tokenizer") {
        check_case(&mut report, &case, &tok);
    }
    report.finish();
}

/// The committed fixture holds every reference prompt of the 44 class words (18,480 sentences).
#[test]
fn committed_fixture_covers_every_reference_prompt() {
    let case = Case {
        label: "tokenizer/reference".into(),
        dir: common::parity::committed_root().join("tokenizer/reference"),
    };
    let (_, rows, bad) = read_rows(&case).expect("committed tokenizer fixture");
    assert!(bad.is_empty(), "{bad:?}");
    let texts: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| !r.ftfy && r.ids.is_some())
        .map(|r| r.text.as_str())
        .collect();
    let mut n = 0;
    for w in CLASS_WORDS {
        for s in normal_sentences(w).into_iter().chain(anomaly_sentences(w)) {
            assert!(texts.contains(s.as_str()), "missing reference prompt {s:?}");
            n += 1;
        }
    }
    assert_eq!(n, 18_480);
}

/// docs/fixtures.md, kind `tokenizer`: lines with only `text` and `ids` (plus `ids_no_ftfy` where
/// `ftfy` is true) pass from a plain `cases.jsonl`; a line missing a required key fails, naming
/// the line and the key.
#[test]
fn tokenizer_fixture_contract() {
    let committed = Case {
        label: "tokenizer/reference".into(),
        dir: common::parity::committed_root().join("tokenizer/reference"),
    };
    let (_, rows, _) = read_rows(&committed).expect("committed tokenizer fixture");
    // Every ftfy line, every refused text and every 50th other line, `ftfy` only where true.
    let keep = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| r.ftfy || r.ids.is_none() || i % 50 == 0);
    let lines: Vec<String> = keep
        .map(|(_, r)| {
            let mut v = serde_json::json!({"text": r.text, "ids": r.ids});
            if r.ftfy {
                v["ftfy"] = true.into();
                v["ids_no_ftfy"] = serde_json::json!(r.ids_no_ftfy);
            }
            v.to_string()
        })
        .collect();
    let s = Scratch::new("tokenizer");
    let write = |case: &str, lines: &[String]| {
        std::fs::write(s.empty(case).path().join("cases.jsonl"), lines.join("\n")).unwrap()
    };
    write("minimal", &lines);
    let ftfy_line = lines
        .iter()
        .position(|l| l.contains("\"ftfy\":true"))
        .unwrap();
    let mut edited = lines.clone();
    edited[ftfy_line] = edited[ftfy_line].replace("\"ids_no_ftfy\"", "\"was_ids_no_ftfy\"");
    write("ftfy_without_ids_no_ftfy", &edited);
    let mut edited = lines.clone();
    edited[0] = edited[0].replace("\"ids\"", "\"was_ids\"");
    write("no_ids", &edited);
    let mut edited = lines.clone();
    edited[1] = edited[1].replacen(",0]", "]", 1);
    write("short_ids", &edited);
    s.empty("no_file");
    let run = s.run("tokenizer_matches_reference");

    run.assert_passes("minimal", &[]);
    let n_ftfy = rows.iter().filter(|r| r.ftfy).count();
    let n_refused = rows.iter().filter(|r| !r.ftfy && r.ids.is_none()).count();
    for want in [
        format!("ids_no_ftfy({n_ftfy} texts"),
        format!("too_long_errors={n_refused}/{n_refused} ok"),
    ] {
        let lines = run.lines("minimal");
        assert!(
            lines.iter().any(|l| l.contains(&want)),
            "{want}: {lines:#?}"
        );
    }
    let n = ftfy_line + 1;
    run.assert_fails(
        "ftfy_without_ids_no_ftfy",
        &[&format!("cases.jsonl line {n}: `ids_no_ftfy` missing")],
    );
    run.assert_fails("no_ids", &["cases.jsonl line 1: `ids` missing"]);
    run.assert_fails(
        "short_ids",
        &["cases.jsonl line 2: `ids` must be 77 integers"],
    );
    run.assert_fails("no_file", &["cases.jsonl missing (required file"]);
}
