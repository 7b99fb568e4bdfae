//! DINOv3 backbone parity with transformers' DINOv3ViTModel (bf16 RoPE periods), kind `dinov3`.
//! Every case is checked through every weight file it holds (HF and Meta layouts).

mod common;

use ava_dino::backbone::load_backbone;
use ava_dino::io::{HostTensor, TensorFile};
use burn::tensor::Device;
use common::parity::{Report, Tolerance, cases};

const TOL: Tolerance = Tolerance::abs_rel(1e-4, 1e-5);
const WEIGHT_FILES: [&str; 3] = ["model.safetensors", "meta.safetensors", "meta.pth"];

#[test]
fn dinov3_matches_pytorch() {
    let device = Device::flex();
    let mut report = Report::new("dinov3");
    for case in cases("dinov3") {
        let io = match TensorFile::read(case.dir.join("io.safetensors")) {
            Ok(io) => io,
            Err(e) => {
                report.fail(&case, "io.safetensors", &format!("unreadable: {e}"));
                continue;
            }
        };
        let pixels = io
            .tensor::<4>("pixel_values", &device)
            .expect("pixel_values f32 [B,3,H,W]");
        let taps: Vec<usize> = io
            .i64("taps", 1)
            .expect("taps i64 [K]")
            .as_i64()
            .unwrap()
            .iter()
            .map(|&t| t as usize)
            .collect();
        let mut any = false;
        for file in WEIGHT_FILES {
            let path = case.dir.join(file);
            if !path.exists() {
                continue;
            }
            any = true;
            let model = match load_backbone(&path, &device) {
                Ok(m) => m,
                Err(e) => {
                    report.fail(&case, file, &format!("load error: {e}"));
                    continue;
                }
            };
            let feats = model.forward_taps(pixels.clone(), &taps);
            for (&k, f) in taps.iter().zip(feats) {
                for (name, got) in [
                    (format!("normed.{k}"), HostTensor::from_tensor(f.normed)),
                    (format!("patches.{k}"), HostTensor::from_tensor(f.patches)),
                    (format!("cls.{k}"), HostTensor::from_tensor(f.cls)),
                ] {
                    let want = io.get(&name).expect("reference tensor present");
                    report.close(
                        &case,
                        file,
                        &name,
                        &got.shape,
                        got.as_f32().unwrap(),
                        &want.shape,
                        &want.to_f32_vec(),
                        TOL,
                    );
                }
            }
        }
        report.check(&case, "-", "has_weight_file", any);
    }
    report.finish();
}
