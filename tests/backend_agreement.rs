//! The untrained model on the CPU kernels and on the device under test (`AVA_DINO_TEST_DEVICE`,
//! tests/common/device.rs): one seed gives the same weights on every backend (they are drawn on
//! the host), and the same inputs give the same outputs within f32 rounding. On the CPU the
//! device under test runs burn's ops (`Kernels::Burn`); in the GPU test binary
//! (tests/gpu_parity.rs) it is wgpu, vulkan or cuda, which run burn's ops too.

mod common;

use ava_dino::cpu::Kernels;
use ava_dino::model::{AvaDino, MethodConfig, MethodOutput, Variant};
use ava_dino::rng::SplitMix64;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

/// Every float parameter's values, in visiting order.
fn weights(m: &AvaDino) -> Vec<Vec<f32>> {
    struct V(Vec<Vec<f32>>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0
                .push(p.val().into_data().convert::<f32>().try_to_vec().unwrap());
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

struct Inputs {
    cls: Vec<Vec<f32>>,
    patches: Vec<Vec<f32>>,
    text: Vec<f32>,
}

fn inputs(cfg: &MethodConfig, b: usize, n: usize) -> Inputs {
    let mut rng = SplitMix64(21);
    let mut draw = |len: usize, std: f64| -> Vec<f32> {
        (0..len).map(|_| (rng.normal() * std) as f32).collect()
    };
    Inputs {
        cls: (0..cfg.n_taps()).map(|_| draw(b * cfg.dim, 1.0)).collect(),
        patches: (0..cfg.n_taps())
            .map(|_| draw(b * n * cfg.dim, 1.0))
            .collect(),
        text: draw(b * cfg.text_dim * 2, 0.05),
    }
}

fn run(
    model: &AvaDino,
    x: &Inputs,
    cfg: &MethodConfig,
    (b, grid): (usize, [usize; 2]),
    device: &Device,
    kernels: Kernels,
) -> MethodOutput {
    let n = grid[0] * grid[1];
    let cls: Vec<Tensor<2>> = x
        .cls
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [b, cfg.dim]), device))
        .collect();
    let patches: Vec<Tensor<3>> = x
        .patches
        .iter()
        .map(|v| Tensor::from_data(TensorData::new(v.clone(), [b, n, cfg.dim]), device))
        .collect();
    let text = Tensor::from_data(
        TensorData::new(x.text.clone(), [b, cfg.text_dim, 2]),
        device,
    );
    model
        .try_forward_on(&cls, &patches, grid, text, kernels)
        .unwrap()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec().unwrap()
}

#[test]
fn untrained_model_agrees_across_backends() {
    let tested = common::device::test_device();
    let cpu = Device::flex();
    for variant in [
        Variant::Full,
        Variant::SingleAdapter,
        Variant::LearnableRouting,
    ] {
        let cfg = MethodConfig {
            dim: 64,
            bottleneck: 48,
            text_dim: 40,
            taps: vec![3, 7],
            map_size: 40,
            variant,
            ..MethodConfig::default()
        };
        let (b, grid) = (3, [5, 6]);
        let x = inputs(&cfg, b, grid[0] * grid[1]);
        let reference = AvaDino::new(&cfg, 17, &cpu);
        let other = AvaDino::new(&cfg, 17, &tested);
        assert_eq!(
            weights(&reference),
            weights(&other),
            "{variant:?}: one seed must give the same weights on every backend"
        );
        let want = run(&reference, &x, &cfg, (b, grid), &cpu, Kernels::Auto);
        let got = run(&other, &x, &cfg, (b, grid), &tested, Kernels::Burn);
        for (name, w, g, tol) in [
            ("maps", values(want.maps), values(got.maps), 1e-5),
            ("aacm", values(want.aacm), values(got.aacm), 1e-5),
            (
                "global logits",
                values(want.global),
                values(got.global),
                1e-3,
            ),
            (
                "w_anomaly",
                values(want.w_anomaly),
                values(got.w_anomaly),
                1e-5,
            ),
        ] {
            assert_eq!(w.len(), g.len(), "{variant:?} {name}");
            let worst = w
                .iter()
                .zip(&g)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{variant:?} {name}: max |diff| {worst:e}");
            assert!(
                worst <= tol,
                "{variant:?} {name}: max |diff| {worst:e} > {tol:e}"
            );
        }
    }
}
