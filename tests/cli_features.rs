//! `ava-dino features` / `random-backbone` end to end through the binary.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use ava_dino::backbone::Isa;
use ava_dino::io::{HostTensor, TensorFile};
use common::parity::errors;

const BIN: &str = env!("CARGO_BIN_EXE_ava-dino");

fn fixture(case: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dinov3")
        .join(case)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("binary runs")
}

/// A failed run: non-zero exit and exactly one `error:` line on stderr that mentions `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(needle),
        "{err}"
    );
    // The cause is told once, not once by the error's text and again by its source.
    assert!(lines[0].matches("(os error").count() <= 1, "{err}");
}

#[test]
fn input_tensor_matches_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    let case = fixture("rect_b2");
    let io = case.join("io.safetensors");
    let o = run(&[
        "features",
        "--backbone",
        case.to_str().unwrap(),
        "--input",
        io.to_str().unwrap(),
        "--taps",
        "1,0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = TensorFile::read(&out).unwrap();
    let want = TensorFile::read(&io).unwrap();
    for name in [
        "normed.0",
        "patches.0",
        "cls.0",
        "normed.1",
        "patches.1",
        "cls.1",
    ] {
        let (g, w) = (got.get(name).unwrap(), want.get(name).unwrap());
        assert_eq!(g.shape, w.shape, "{name}");
        let (max_abs, rel) = errors(g.as_f32().unwrap(), w.as_f32().unwrap());
        assert!(
            max_abs <= 1e-4 && rel <= 1e-5,
            "{name}: max_abs {max_abs} rel {rel}"
        );
    }
    assert_eq!(got.get("taps").unwrap().as_i64().unwrap(), &[1, 0]);
}

#[test]
fn image_runs_on_a_random_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let o = run(&[
        "random-backbone",
        "--preset",
        "tiny",
        "--seed",
        "3",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = dir.path().join("x.png");
    image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
    .save(&img)
    .unwrap();
    let out = dir.path().join("f.safetensors");
    let o = run(&[
        "features",
        "--backbone",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--taps",
        "0,3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = TensorFile::read(&out).unwrap();
    // 512x512 at patch 16: 1 CLS + 4 registers + 1024 patches, D = 64.
    assert_eq!(f.get("normed.3").unwrap().shape, vec![1, 1029, 64]);
    assert_eq!(f.get("patches.0").unwrap().shape, vec![1, 1024, 64]);
    assert_eq!(f.get("cls.3").unwrap().shape, vec![1, 64]);
    assert!(
        f.get("patches.3")
            .unwrap()
            .as_f32()
            .unwrap()
            .iter()
            .all(|x| x.is_finite())
    );
}

#[test]
fn missing_backbone_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let io = fixture("rect_b2").join("io.safetensors");
    let missing = dir.path().join("nope");
    let out = dir.path().join("f.safetensors");
    let o = run(&[
        "features",
        "--backbone",
        missing.to_str().unwrap(),
        "--input",
        io.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "nope");
    assert!(!out.exists());
}

#[test]
fn unreadable_image_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("broken.png");
    std::fs::write(&img, b"not a png").unwrap();
    let out = dir.path().join("f.safetensors");
    let case = fixture("rect_b2");
    let o = run(&[
        "features",
        "--backbone",
        case.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "broken.png");
    let missing = dir.path().join("absent.jpg");
    let o = run(&[
        "features",
        "--backbone",
        case.to_str().unwrap(),
        "--image",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "absent.jpg");
}

#[test]
fn size_not_divisible_by_patch_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("px.safetensors");
    let mut f = TensorFile::new(&input);
    f.insert(
        "pixel_values",
        HostTensor::f32(vec![1, 3, 20, 40], vec![0.5; 3 * 20 * 40]),
    );
    f.write(&input).unwrap();
    let out = dir.path().join("f.safetensors");
    let case = fixture("rect_b2");
    let o = run(&[
        "features",
        "--backbone",
        case.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--taps",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "patch size 8");
    let o = run(&[
        "features",
        "--backbone",
        case.join("model.safetensors").to_str().unwrap(),
        "--input",
        case.join("io.safetensors").to_str().unwrap(),
        "--taps",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "tap 7");
}

#[test]
fn gpu_device_without_feature_or_gpu_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.safetensors");
    let case = fixture("rect_b2");
    let o = run(&[
        "features",
        "--backbone",
        case.to_str().unwrap(),
        "--input",
        case.join("io.safetensors").to_str().unwrap(),
        "--device",
        "wgpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "--device wgpu");
}

/// `features --input` on the fixture with `AVA_DINO_CPU_KERNELS` set to `kernels`.
fn features_with(kernels: &str, dir: &Path) -> TensorFile {
    let case = fixture("rect_b2");
    let out = dir.join(format!("{kernels}.safetensors"));
    let o = Command::new(BIN)
        .env("AVA_DINO_CPU_KERNELS", kernels)
        .args([
            "features",
            "--backbone",
            case.to_str().unwrap(),
            "--input",
            case.join("io.safetensors").to_str().unwrap(),
            "--taps",
            "1,0",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("binary runs");
    assert!(
        o.status.success(),
        "{kernels}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    TensorFile::read(&out).unwrap()
}

/// The binary on each instruction set this CPU has writes the same bits; on burn's ops, the
/// same features within the parity tolerance.
#[test]
fn every_cpu_kernel_variant_writes_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let want = features_with("portable", dir.path());
    let others: Vec<(Isa, TensorFile)> = Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Portable)
        .map(|isa| (isa, features_with(isa.name(), dir.path())))
        .collect();
    let burn = features_with("burn", dir.path());
    let f32s = |f: &TensorFile, name: &str| f.get(name).unwrap().as_f32().unwrap().to_vec();
    for name in [
        "normed.0",
        "patches.0",
        "cls.0",
        "normed.1",
        "patches.1",
        "cls.1",
    ] {
        let w = f32s(&want, name);
        for (isa, got) in &others {
            let g = f32s(got, name);
            assert_eq!(g.len(), w.len(), "{isa:?} {name}");
            let differ = g
                .iter()
                .zip(&w)
                .filter(|(g, w)| g.to_bits() != w.to_bits())
                .count();
            assert_eq!(differ, 0, "{isa:?} {name}: values differ from portable");
        }
        // burn's ops: the same function, not the same rounding.
        let (max_abs, rel) = errors(&f32s(&burn, name), &w);
        assert!(
            max_abs <= 1e-4 && rel <= 1e-5,
            "burn {name}: max_abs {max_abs} rel {rel}"
        );
    }
}

#[test]
fn a_bad_cpu_kernels_value_stops_before_any_command() {
    for (value, needle) in [
        (
            "fast",
            "AVA_DINO_CPU_KERNELS=fast: unknown value; use one of auto, ",
        ),
        ("avx1024", "AVA_DINO_CPU_KERNELS=avx1024: unknown value"),
    ] {
        // A command that would fail on its own (no such backbone): the variable is checked first.
        let o = Command::new(BIN)
            .env("AVA_DINO_CPU_KERNELS", value)
            .args([
                "features",
                "--backbone",
                "/nonexistent",
                "--out",
                "/nonexistent/f",
            ])
            .output()
            .expect("binary runs");
        assert_one_line_error(&o, needle);
        assert_eq!(o.status.code(), Some(2), "{value}");
    }
}
