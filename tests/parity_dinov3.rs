//! DINOv3 backbone parity with transformers' DINOv3ViTModel (bf16 RoPE periods), kind `dinov3`
//! (contract in docs/fixtures.md, fixtures from `scripts/gen_dinov3.py`).
//! Every case is checked through every weight file it holds (HF and Meta layouts); `config.json`
//! and `io.safetensors` (`pixel_values`, `taps`, and `normed.{k}`, `patches.{k}`, `cls.{k}` for
//! every tap k) are required.

mod common;

use ava_dino::backbone::load_backbone;
use ava_dino::io::{HostTensor, TensorFile};
use burn::tensor::Device;
use common::device::test_device;
use common::parity::contract::Scratch;
use common::parity::{Case, Dtype, Report, Tolerance, cases};

const TOL: Tolerance = Tolerance::abs_rel(1e-4, 1e-5);
const WEIGHT_FILES: [&str; 3] = ["model.safetensors", "meta.safetensors", "meta.pth"];
const IO: &str = "io.safetensors";

#[test]
fn dinov3_matches_pytorch() {
    let device = test_device();
    let mut report = Report::new("dinov3");
    for case in cases("dinov3") {
        check_case(&mut report, &case, &device);
    }
    report.finish();
}

/// The inputs of a case, and whether every reference tensor is present.
fn read_io(report: &mut Report, case: &Case) -> Option<(TensorFile, Vec<usize>)> {
    if !case.dir.join("config.json").is_file() {
        let what = "the transformers DINOv3ViTConfig the weights are built with";
        report.missing_file(case, "config.json", what);
    }
    let io = report.read_tensors(case, IO, "pixel_values, taps and the reference outputs")?;
    let pixels = report.required(case, &io, "pixel_values", Dtype::F32, &["B", "3", "H", "W"]);
    let taps: Vec<usize> = report
        .required(case, &io, "taps", Dtype::I64, &["K"])?
        .as_i64()
        .unwrap()
        .iter()
        .map(|&t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect();
    let mut complete = pixels.is_some() && case.dir.join("config.json").is_file();
    for k in &taps {
        for (name, dims) in [
            (format!("normed.{k}"), &["B", "1+R+N", "D"][..]),
            (format!("patches.{k}"), &["B", "N", "D"]),
            (format!("cls.{k}"), &["B", "D"]),
        ] {
            complete &= report
                .required(case, &io, &name, Dtype::F32, dims)
                .is_some();
        }
    }
    complete.then_some((io, taps))
}

fn check_case(report: &mut Report, case: &Case, device: &Device) {
    let Some((io, taps)) = read_io(report, case) else {
        return;
    };
    let pixels = io.tensors["pixel_values"].to_tensor::<4>(device);
    let mut any = false;
    for file in WEIGHT_FILES {
        let path = case.dir.join(file);
        if !path.exists() {
            continue;
        }
        any = true;
        let model = match load_backbone(&path, device) {
            Ok(m) => m,
            Err(e) => {
                report.fail(case, file, &format!("load error: {e}"));
                continue;
            }
        };
        if let Err(e) = model.check_input(pixels.dims(), &taps) {
            report.fail(case, IO, &format!("pixel_values/taps: {e}"));
            continue;
        }
        let feats = model.forward_taps(pixels.clone(), &taps);
        for (&k, f) in taps.iter().zip(feats) {
            for (name, got) in [
                (format!("normed.{k}"), HostTensor::from_tensor(f.normed)),
                (format!("patches.{k}"), HostTensor::from_tensor(f.patches)),
                (format!("cls.{k}"), HostTensor::from_tensor(f.cls)),
            ] {
                let want = &io.tensors[&name];
                report.close(
                    case,
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
    if any {
        report.check(case, "-", "has_weight_file", true);
    } else {
        let what = "at least one weights file: model.safetensors (HF), meta.safetensors or meta.pth (Meta)";
        report.missing_file(case, &WEIGHT_FILES.join("|"), what);
    }
}

/// docs/fixtures.md, kind `dinov3`: one weights layout with its config and the io tensors pass;
/// each required file or tensor missing fails.
#[test]
fn dinov3_fixture_contract() {
    let s = Scratch::new("dinov3");
    s.copy("rect_b2", "minimal_meta")
        .remove_file("gen_args.json")
        .remove_file("model.safetensors")
        .remove_file("meta.pth");
    s.copy("square_r0", "no_taps")
        .remove_tensors(IO, |n| n == "taps");
    s.copy("square_r0", "no_cls")
        .remove_tensors(IO, |n| n == "cls.2");
    s.copy("square_r0", "no_config").remove_file("config.json");
    s.copy("square_r0", "no_weights")
        .remove_file("model.safetensors")
        .remove_file("meta.safetensors");
    let run = s.run("dinov3_matches_pytorch");

    run.assert_passes("minimal_meta", &[]);
    run.assert_same_as_committed("minimal_meta", "rect_b2");
    run.assert_fails("no_taps", &["io.safetensors taps missing", "i64 [K]"]);
    run.assert_fails("no_cls", &["io.safetensors cls.2 missing", "f32 [B,D]"]);
    run.assert_fails("no_config", &["config.json missing (required file"]);
    run.assert_fails(
        "no_weights",
        &["model.safetensors|meta.safetensors|meta.pth missing"],
    );
}
