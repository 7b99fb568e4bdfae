//! Parity of the CLIP text tower with transformers' `CLIPTextModelWithProjection` (kind `clip_text`,
//! contract in docs/fixtures.md, made by `scripts/gen_clip_text.py`). Every weights file of a case
//! (HF `model.safetensors`, OpenAI `openai.safetensors`, plain state dict `model.pt`; at least one)
//! must give the case's `text_embeds`; cases with the full vocabulary may also hold the
//! prompt-ensemble features `ensemble.<word>.{normal,anomaly}` (tokenized by our tokenizer, encoded,
//! normalized, averaged), checked with the first weights file that loads. The activation is the
//! config's `hidden_act`.

mod common;

use std::collections::BTreeSet;

use ava_dino::io::TensorFile;
use ava_dino::text::prompts::encode_class_word;
use ava_dino::text::{ClipText, ClipTextConfig, Tokenizer, load_text_encoder};
use burn::tensor::Device;
use common::device::test_device;
use common::parity::contract::Scratch;
use common::parity::{Case, Dtype, Report, Tolerance, cases};

const TOL: Tolerance = Tolerance::abs_rel(1e-4, 1e-5);
const WEIGHTS: [&str; 3] = ["model.safetensors", "openai.safetensors", "model.pt"];
const IO: &str = "io.safetensors";

#[test]
fn clip_text_matches_pytorch() {
    let device = test_device();
    let tokenizer = Tokenizer::new();
    let mut report = Report::new("clip_text");
    for case in cases("clip_text") {
        check_case(&mut report, &case, &tokenizer, &device);
    }
    report.finish();
}

/// The ensemble words of `io`: every `<word>` of an `ensemble.<word>.normal|anomaly` tensor.
fn ensemble_words(io: &TensorFile) -> BTreeSet<&str> {
    io.tensors
        .keys()
        .filter_map(|k| {
            let rest = k.strip_prefix("ensemble.")?;
            rest.strip_suffix(".normal")
                .or_else(|| rest.strip_suffix(".anomaly"))
        })
        .collect()
}

/// Compares the prompt-ensemble features of every word `io` holds (both halves are required).
fn check_ensembles(
    report: &mut Report,
    case: &Case,
    io: &TensorFile,
    model: &ClipText,
    tokenizer: &Tokenizer,
) {
    for word in ensemble_words(io) {
        let wants = ["normal", "anomaly"].map(|half| {
            report.required(
                case,
                io,
                &format!("ensemble.{word}.{half}"),
                Dtype::F32,
                &["E"],
            )
        });
        let [Some(want_n), Some(want_a)] = wants else {
            continue;
        };
        let f = match encode_class_word(model, tokenizer, word) {
            Ok(f) => f,
            Err(e) => {
                report.fail(case, IO, &format!("ensemble.{word}: {e}"));
                continue;
            }
        };
        for (name, got, want) in [
            ("normal", &f.normal, want_n),
            ("anomaly", &f.anomaly, want_a),
        ] {
            report.close(
                case,
                IO,
                &format!("ensemble.{word}.{name}"),
                &[got.len()],
                got,
                &want.shape,
                want.as_f32().unwrap(),
                TOL,
            );
        }
    }
}

fn check_case(report: &mut Report, case: &Case, tokenizer: &Tokenizer, device: &Device) {
    let config_path = case.dir.join("config.json");
    if !config_path.is_file() {
        let what = "the transformers CLIPTextConfig; hidden_act is the activation used";
        report.missing_file(case, "config.json", what);
        return;
    }
    let config = match ClipTextConfig::from_file(&config_path) {
        Ok(c) => c,
        Err(e) => {
            report.fail(case, "config.json", &e.to_string());
            return;
        }
    };
    let Some(io) = report.read_tensors(case, IO, "input_ids and text_embeds") else {
        return;
    };
    let ids = report.required(case, &io, "input_ids", Dtype::I64, &["B", "77"]);
    let want = report.required(case, &io, "text_embeds", Dtype::F32, &["B", "E"]);
    let (Some(ids), Some(want)) = (ids, want) else {
        return;
    };
    let (b, s) = (ids.shape[0], ids.shape[1]);
    let present: Vec<&str> = WEIGHTS
        .into_iter()
        .filter(|f| case.dir.join(f).is_file())
        .collect();
    if present.is_empty() {
        let what = "at least one weights file: model.safetensors (HF), openai.safetensors (OpenAI) or model.pt";
        report.missing_file(case, &WEIGHTS.join("|"), what);
        return;
    }
    let mut loaded = 0;
    for file in present {
        let model = match load_text_encoder(&case.dir.join(file), config.hidden_act, device) {
            Ok(m) => m,
            Err(e) => {
                report.fail(case, file, &format!("load: {e}"));
                continue;
            }
        };
        loaded += 1;
        let name = format!("text_embeds[{}]", config.hidden_act);
        match model.encode_host(ids.as_i64().unwrap(), b, s) {
            Ok(got) => {
                let got = ava_dino::io::HostTensor::from_tensor(got);
                report.close(
                    case,
                    file,
                    &name,
                    &got.shape,
                    got.as_f32().unwrap(),
                    &want.shape,
                    want.as_f32().unwrap(),
                    TOL,
                );
            }
            Err(e) => report.fail(case, IO, &format!("input_ids: {e}")),
        }
        if loaded == 1 {
            check_ensembles(report, case, &io, &model, tokenizer);
        }
    }
    report.check(
        case,
        "-",
        &format!("weights files loaded={loaded}"),
        loaded > 0,
    );
}

/// docs/fixtures.md, kind `clip_text`: one weights layout with its config and io tensors pass
/// (the ensemble is then checked with that layout); each required file or tensor missing fails.
#[test]
fn clip_text_fixture_contract() {
    let s = Scratch::new("clip_text");
    s.copy("quick_gelu_w16", "minimal_openai")
        .remove_file("model.safetensors");
    s.copy("gelu_w16", "no_input_ids")
        .remove_tensors(IO, |n| n == "input_ids");
    s.copy("gelu_w16", "no_text_embeds")
        .remove_tensors(IO, |n| n == "text_embeds");
    s.copy("gelu_w16", "no_config").remove_file("config.json");
    s.copy("gelu_w16", "no_weights")
        .remove_file("model.safetensors")
        .remove_file("openai.safetensors")
        .remove_file("model.pt");
    s.copy("vocab_full_w8", "half_ensemble")
        .remove_tensors(IO, |n| {
            n.starts_with("ensemble.") && n != "ensemble.Data.normal"
        });
    let run = s.run("clip_text_matches_pytorch");

    run.assert_passes("minimal_openai", &[]);
    run.assert_same_as_committed("minimal_openai", "quick_gelu_w16");
    run.assert_fails(
        "no_input_ids",
        &["io.safetensors input_ids missing", "i64 [B,77]"],
    );
    run.assert_fails(
        "no_text_embeds",
        &["io.safetensors text_embeds missing", "f32 [B,E]"],
    );
    run.assert_fails("no_config", &["config.json missing (required file"]);
    run.assert_fails(
        "no_weights",
        &["model.safetensors|openai.safetensors|model.pt missing"],
    );
    run.assert_fails(
        "half_ensemble",
        &["io.safetensors ensemble.Data.anomaly missing"],
    );
}
