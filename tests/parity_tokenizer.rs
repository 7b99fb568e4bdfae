//! Parity of the CLIP tokenizer with the reference `SimpleTokenizer` + `tokenize(texts, 77)`
//! (kind `tokenizer`, made by `scripts/gen_tokenizer.py`): every line of `cases.jsonl[.gz]` must give
//! identical ids, and `"ids": null` lines (longer than 77) must be errors. Lines that ftfy changes
//! (`"ftfy": true`; ftfy is left out, docs/DEVIATIONS.md) are compared with `ids_no_ftfy`, the
//! reference's ids with ftfy switched off, and how many of them still equal the ftfy ids is printed.

mod common;

use std::io::Read;

use ava_dino::text::Tokenizer;
use ava_dino::text::prompts::{anomaly_sentences, normal_sentences};
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

struct Row {
    text: String,
    ids: Option<Vec<i64>>,
    ftfy: bool,
    ids_no_ftfy: Option<Vec<i64>>,
}

fn read_rows(case: &Case) -> Option<(String, Vec<Row>)> {
    let (name, text) = if case.dir.join("cases.jsonl.gz").is_file() {
        let mut s = String::new();
        let f = std::fs::File::open(case.dir.join("cases.jsonl.gz")).unwrap();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut s)
            .expect("gzip cases");
        ("cases.jsonl.gz", s)
    } else {
        (
            "cases.jsonl",
            std::fs::read_to_string(case.dir.join("cases.jsonl")).ok()?,
        )
    };
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect())
    };
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            Row {
                text: v["text"].as_str().unwrap().to_string(),
                ids: ids(&v["ids"]),
                ftfy: v["ftfy"].as_bool().unwrap_or(false),
                ids_no_ftfy: ids(&v["ids_no_ftfy"]),
            }
        })
        .collect();
    Some((name.to_string(), rows))
}

#[test]
fn tokenizer_matches_reference() {
    let tok = Tokenizer::new();
    let mut report = Report::new("tokenizer");
    for case in cases("tokenizer") {
        let Some((file, rows)) = read_rows(&case) else {
            report.fail(&case, "cases.jsonl", "missing");
            continue;
        };
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
            &case,
            &file,
            &format!("ids({} texts)", rows.len() - n_ftfy - errors_total),
            &got_all,
            &want_all,
        );
        if n_ftfy > 0 {
            report.exact(
                &case,
                &file,
                &format!("ids_no_ftfy({n_ftfy} texts, {ftfy_same} unaffected by ftfy)"),
                &got_nf,
                &want_nf,
            );
        }
        report.check(
            &case,
            &file,
            &format!("too_long_errors={errors_ok}/{errors_total}"),
            errors_ok == errors_total,
        );
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
    let (_, rows) = read_rows(&case).expect("committed tokenizer fixture");
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
