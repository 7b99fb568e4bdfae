//! Parity of the CLIP text tower with transformers' `CLIPTextModelWithProjection` (kind `clip_text`,
//! made by `scripts/gen_clip_text.py`). Every weights file of a case (HF `model.safetensors`, OpenAI
//! `openai.safetensors`, plain state dict `model.pt`) must give the case's `text_embeds`; cases with
//! the full vocabulary also check the prompt-ensemble features `ensemble.<word>.{normal,anomaly}`
//! (tokenized by our tokenizer, encoded, normalized, averaged). The activation is the config's
//! `hidden_act`.

mod common;

use ava_dino::io::TensorFile;
use ava_dino::text::prompts::encode_class_word;
use ava_dino::text::{ClipTextConfig, Tokenizer, load_text_encoder};
use burn::tensor::Device;
use common::parity::{Report, Tolerance, cases};

const TOL: Tolerance = Tolerance::abs_rel(1e-4, 1e-5);
const WEIGHTS: [&str; 3] = ["model.safetensors", "openai.safetensors", "model.pt"];

#[test]
fn clip_text_matches_pytorch() {
    let device = Device::flex();
    let tokenizer = Tokenizer::new();
    let mut report = Report::new("clip_text");
    for case in cases("clip_text") {
        let config = match ClipTextConfig::from_file(&case.dir.join("config.json")) {
            Ok(c) => c,
            Err(e) => {
                report.fail(&case, "config.json", &e.to_string());
                continue;
            }
        };
        let io = TensorFile::read(case.dir.join("io.safetensors")).expect("io.safetensors");
        let ids = io.i64("input_ids", 2).expect("input_ids i64 [B,77]");
        let want = io.f32("text_embeds", 2).expect("text_embeds f32 [B,E]");
        let (b, s) = (ids.shape[0], ids.shape[1]);
        let mut loaded = 0;
        for file in WEIGHTS.iter().filter(|f| case.dir.join(f).is_file()) {
            let model = match load_text_encoder(&case.dir.join(file), config.hidden_act, &device) {
                Ok(m) => m,
                Err(e) => {
                    report.fail(&case, file, &format!("load: {e}"));
                    continue;
                }
            };
            loaded += 1;
            let got = ava_dino::io::HostTensor::from_tensor(
                model
                    .encode_host(ids.as_i64().unwrap(), b, s)
                    .expect("encode"),
            );
            report.close(
                &case,
                file,
                &format!("text_embeds[{}]", config.hidden_act),
                &got.shape,
                got.as_f32().unwrap(),
                &want.shape,
                want.as_f32().unwrap(),
                TOL,
            );

            if *file != "model.safetensors" {
                continue;
            }
            let words: Vec<&str> = io
                .tensors
                .keys()
                .filter_map(|k| k.strip_prefix("ensemble.")?.strip_suffix(".normal"))
                .collect();
            for word in words {
                let f = encode_class_word(&model, &tokenizer, word).expect("ensemble");
                for (name, got) in [("normal", &f.normal), ("anomaly", &f.anomaly)] {
                    let key = format!("ensemble.{word}.{name}");
                    let want = io.f32(&key, 1).expect("ensemble tensor");
                    report.close(
                        &case,
                        "io.safetensors",
                        &key,
                        &[got.len()],
                        got,
                        &want.shape,
                        want.as_f32().unwrap(),
                        TOL,
                    );
                }
            }
        }
        report.check(
            &case,
            "-",
            &format!("weights files loaded={loaded}"),
            loaded > 0,
        );
    }
    report.finish();
}
