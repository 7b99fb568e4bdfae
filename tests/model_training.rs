//! Behaviour of the method beyond parity: every variant trains, the routing loss separates the
//! routing weights of normal and anomalous samples, checkpoints round-trip (ours and the
//! reference's `.pth`), and the full-size model has the reference's parameter count.

use ava_dino::model::{AvaDino, Batch, MethodConfig, OptimConfig, Trainer, Variant};
use ava_dino::rng::SplitMix64;
use burn::tensor::{Device, Int, Tensor, TensorData};

const B: usize = 4;
const GRID: [usize; 2] = [4, 4];

fn tiny(variant: Variant) -> MethodConfig {
    MethodConfig {
        dim: 16,
        bottleneck: 8,
        text_dim: 12,
        taps: vec![0, 1],
        map_size: 8,
        variant,
        ..MethodConfig::default()
    }
}

/// A fixed problem: labels [0, 1, 0, 1]; anomalous samples carry a shared direction in their CLS
/// and in the masked patches; normal and anomaly text features differ only slightly, so text
/// routing starts near 0.5 for everyone.
///
/// Drawn on the host from one seed: the device's generator is process-wide, and tests running in
/// parallel would interleave their draws (a different problem on every run).
fn problem(cfg: &MethodConfig, device: &Device) -> Batch {
    let (d, e, s) = (cfg.dim, cfg.text_dim, cfg.map_size);
    let mut rng = SplitMix64(7);
    let mut normal = |shape: Vec<usize>, std: f64| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
        TensorData::new(v, shape)
    };
    let n = GRID[0] * GRID[1];
    let labels = [0i64, 1, 0, 1];
    let y = Tensor::<1>::from_data(
        TensorData::new(labels.iter().map(|&l| l as f32).collect::<Vec<_>>(), [B]),
        device,
    );
    let dir = Tensor::<2>::from_data(normal(vec![1, d], 1.0), device);
    let shift = y.clone().reshape([B, 1]) * dir.clone().mul_scalar(2.0);
    let cls = (0..cfg.n_taps())
        .map(|_| Tensor::<2>::from_data(normal(vec![B, d], 1.0), device) + shift.clone())
        .collect();
    // Mask: the top-left quarter of the map for anomalous samples; patches of that region shifted.
    let mut mask = vec![0f32; B * s * s];
    let mut pmask = vec![0f32; B * n];
    for (b, &l) in labels.iter().enumerate() {
        if l == 1 {
            for i in 0..s / 2 {
                for j in 0..s / 2 {
                    mask[b * s * s + i * s + j] = 1.0;
                }
            }
            for i in 0..GRID[0] / 2 {
                for j in 0..GRID[1] / 2 {
                    pmask[b * n + i * GRID[1] + j] = 1.0;
                }
            }
        }
    }
    let pm = Tensor::<3>::from_data(TensorData::new(pmask, [B, n, 1]), device);
    let patches = (0..cfg.n_taps())
        .map(|_| {
            Tensor::<3>::from_data(normal(vec![B, n, d], 1.0), device)
                + pm.clone() * dir.clone().reshape([1, 1, d]).mul_scalar(2.0)
        })
        .collect();
    let t_n = Tensor::<2>::from_data(normal(vec![1, e], 1.0), device);
    let t_a = t_n.clone() + Tensor::<2>::from_data(normal(vec![1, e], 0.05), device);
    let text = Tensor::stack::<3>(vec![t_n, t_a], 2).expand([B, e, 2]);
    Batch {
        cls,
        patches,
        grid: GRID,
        text,
        labels: Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [B]), device),
        masks: Tensor::from_data(TensorData::new(mask, [B, s, s]), device),
    }
}

fn mean_by_label(w: &Tensor<1>) -> (f32, f32) {
    let v: Vec<f32> = w.clone().into_data().convert::<f32>().try_to_vec().unwrap();
    ((v[0] + v[2]) / 2.0, (v[1] + v[3]) / 2.0)
}

fn train(variant: Variant, steps: usize, lr: f64) -> (Vec<f32>, (f32, f32)) {
    let device = Device::flex().autodiff();
    let cfg = tiny(variant);
    let batch = problem(&cfg, &device);
    let mut trainer = Trainer::new(
        AvaDino::new(&cfg, 0, &device),
        OptimConfig {
            lr,
            ..OptimConfig::default()
        },
        0,
    );
    let mut totals = Vec::new();
    let mut last = None;
    for _ in 0..steps {
        let (l, out) = trainer.step_with_output(&batch);
        totals.push(l.values().total);
        last = Some(out);
    }
    (totals, mean_by_label(&last.unwrap().w_anomaly))
}

#[test]
fn every_variant_trains() {
    for v in Variant::ALL {
        let (totals, _) = train(v, 40, 1e-3);
        let (first, last) = (totals[0], *totals.last().unwrap());
        println!("{}: total {first:.4} -> {last:.4}", v.name());
        assert!(
            totals.iter().all(|t| t.is_finite()),
            "{}: non-finite loss {totals:?}",
            v.name()
        );
        assert!(
            last < 0.7 * first,
            "{}: loss did not fall enough: {first} -> {last}",
            v.name()
        );
    }
}

#[test]
fn routing_loss_drives_routing_weights_apart() {
    // 300 steps: with the adapters' initial draws of seeds 0-3 the routing loss separates the
    // labels by 0.93-1.00 there (at 100 steps by 0.14-1.00: how fast depends on the draw).
    let (_, (n_full, a_full)) = train(Variant::Full, 300, 1e-2);
    let (_, (n_free, a_free)) = train(Variant::TextRoutingNoLroute, 300, 1e-2);
    println!(
        "w_anomaly normal/anomalous: with L_route {n_full:.3}/{a_full:.3}, without {n_free:.3}/{a_free:.3}"
    );
    assert!(
        a_full - n_full > 0.6,
        "routing loss did not separate: {n_full} vs {a_full}"
    );
    // Without it only the map and global losses move the routing, and not by label.
    assert!(
        (a_free - n_free).abs() < 0.15,
        "without routing loss the weights separated: {n_free} / {a_free}"
    );
    for w in [n_free, a_free] {
        assert!(
            (w - 0.5).abs() < 0.15,
            "without routing loss the weights moved away from 0.5: {n_free} / {a_free}"
        );
    }
}

fn outputs(model: &AvaDino, batch: &Batch) -> Vec<Vec<f32>> {
    let out = model.forward(&batch.cls, &batch.patches, batch.grid, batch.text.clone());
    let v = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    vec![
        v(out.maps),
        v(out.aacm),
        out.global
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap(),
        out.w_normal
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap(),
    ]
}

/// A model that has trained a few steps (so its weights are not the initial draw), on the plain device.
fn trained(variant: Variant) -> (AvaDino, Batch) {
    let device = Device::flex().autodiff();
    let cfg = tiny(variant);
    let batch = problem(&cfg, &device);
    let mut trainer = Trainer::new(
        AvaDino::new(&cfg, 0, &device),
        OptimConfig {
            lr: 1e-2,
            ..OptimConfig::default()
        },
        0,
    );
    for _ in 0..3 {
        trainer.step(&batch);
    }
    (trainer.valid(), plain(&batch))
}

/// The batch on the plain (non-autodiff) device.
fn plain(batch: &Batch) -> Batch {
    Batch {
        cls: batch.cls.iter().map(|t| t.clone().inner()).collect(),
        patches: batch.patches.iter().map(|t| t.clone().inner()).collect(),
        grid: batch.grid,
        text: batch.text.clone().inner(),
        labels: batch.labels.clone().inner(),
        masks: batch.masks.clone().inner(),
    }
}

#[test]
fn own_checkpoint_round_trips_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    for v in Variant::ALL {
        let (model, batch) = trained(v);
        let path = dir.path().join(format!("{}.safetensors", v.name()));
        model.save(&path).unwrap();
        let back = AvaDino::load(&path, &Device::flex()).unwrap();
        assert_eq!(back.config, model.config);
        assert_eq!(
            outputs(&back, &batch),
            outputs(&model, &batch),
            "{}",
            v.name()
        );
    }
}

#[test]
fn reference_pth_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (model, batch) = trained(Variant::Full);
    let path = dir.path().join("epoch_2.pth");
    model.save_reference_pth(&path, 2).unwrap();
    if let Some(keep) = std::env::var_os("AVA_DINO_KEEP_PTH") {
        std::fs::copy(&path, keep).unwrap();
    }
    let back = AvaDino::load_reference_pth(&model.config, &path, &Device::flex()).unwrap();
    assert_eq!(outputs(&back, &batch), outputs(&model, &batch));
    // The variants the reference format cannot hold are refused, not half-written.
    let (gate, _) = trained(Variant::LearnableRouting);
    let err = gate
        .save_reference_pth(&dir.path().join("g.pth"), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("learnable_routing"), "{err}");
    assert!(!dir.path().join("g.pth").exists());
}

#[test]
fn reads_a_checkpoint_written_by_torch_save() {
    // tests/fixtures/train_step/full_warmup/init.pth was written by torch.save in the reference
    // layout from the same tensors as init.safetensors (scripts/gen_train_step.py --pth).
    let case = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/train_step/full_warmup");
    let from_pth = ava_dino::io::read_pth(&case.join("init.pth")).unwrap();
    let st = ava_dino::io::TensorFile::read(case.join("init.safetensors")).unwrap();
    assert_eq!(from_pth.len(), st.tensors.len());
    for (name, t) in &st.tensors {
        assert_eq!(from_pth.get(name), Some(t), "{name}");
    }
    let mut cfg = tiny(Variant::Full);
    cfg.dim = 32;
    cfg.bottleneck = 16;
    cfg.text_dim = 24;
    let model = AvaDino::load_reference_pth(&cfg, &case.join("init.pth"), &Device::flex()).unwrap();
    assert_eq!(
        model.trainable_params(),
        st.tensors.values().map(|t| t.numel()).sum::<usize>()
    );
    // A config that does not fit names the problem.
    cfg.taps = vec![0, 1, 2];
    let err = AvaDino::load_reference_pth(&cfg, &case.join("init.pth"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains(".2.fc1.0.weight"),
        "{err}"
    );
}

#[test]
fn full_size_has_the_reference_parameter_count() {
    let model = AvaDino::new(&MethodConfig::default(), 0, &Device::flex());
    // 16 visual adapters 1024->768->1024, 2 prompt adapters 768->768->768, text_projection 768->1024.
    let expected = 16 * 2 * 1024 * 768 + 2 * 2 * 768 * 768 + 768 * 1024;
    println!("{}", model.describe());
    assert!(
        model.describe().contains("28,311,552 trainable parameters"),
        "{}",
        model.describe()
    );
    assert_eq!(model.trainable_params(), expected);
    assert_eq!(expected, 28_311_552);
}

#[test]
fn bad_inputs_are_errors_naming_the_problem() {
    let device = Device::flex();
    let cfg = tiny(Variant::Full);
    let model = AvaDino::new(&cfg, 0, &device);
    let batch = problem(&cfg, &device);
    let err = model
        .try_forward(
            &batch.cls[..1],
            &batch.patches[..1],
            GRID,
            batch.text.clone(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("model has 2 taps"), "{err}");
    // 2x8 = 16 patches is a legal (rectangular) grid for the same tokens.
    assert!(
        model
            .try_forward(&batch.cls, &batch.patches, [2, 8], batch.text.clone())
            .is_ok()
    );
    let err = model
        .try_forward(&batch.cls, &batch.patches, [3, 4], batch.text.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("grid [3, 4]"), "{err}");
    let bad_text = Tensor::<3>::zeros([B, 5, 2], &device);
    let err = model
        .try_forward(&batch.cls, &batch.patches, GRID, bad_text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("text is [4, 5, 2]"), "{err}");
    // A checkpoint whose shapes do not fit the config names the tensor.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    model.save(&path).unwrap();
    let other = MethodConfig {
        bottleneck: 4,
        ..cfg
    };
    let err = AvaDino::load_named(&other, &path, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fc1.0.weight") && err.contains("[8, 16]"),
        "{err}"
    );
}

/// Samples `from..to` of a batch.
fn slice(batch: &Batch, from: usize, to: usize) -> Batch {
    let n = to - from;
    Batch {
        cls: batch
            .cls
            .iter()
            .map(|t| t.clone().narrow(0, from, n))
            .collect(),
        patches: batch
            .patches
            .iter()
            .map(|t| t.clone().narrow(0, from, n))
            .collect(),
        grid: batch.grid,
        text: batch.text.clone().narrow(0, from, n),
        labels: batch.labels.clone().narrow(0, from, n),
        masks: batch.masks.clone().narrow(0, from, n),
    }
}

/// Every float parameter's gradient in `grads` (`None`: the loss does not reach it), in the
/// model's visiting order.
fn gradient_values(model: &AvaDino, grads: &burn::optim::GradientsParams) -> Vec<Option<Vec<f32>>> {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    struct Ids(Vec<(ParamId, usize)>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0.push((p.id, D));
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    let vec = |d: TensorData| d.convert::<f32>().try_to_vec::<f32>().unwrap();
    ids.0
        .into_iter()
        .map(|(id, d)| match d {
            1 => grads.get::<1>(id).map(|t| vec(t.into_data())),
            2 => grads.get::<2>(id).map(|t| vec(t.into_data())),
            3 => grads.get::<3>(id).map(|t| vec(t.into_data())),
            _ => panic!("parameter of rank {d}"),
        })
        .collect()
}

/// A batch processed as micro-batches (even or not) accumulates to the whole batch's gradients
/// and losses within f32 rounding; one micro-batch of the whole batch is the plain pass, bit for
/// bit.
#[test]
fn micro_batches_accumulate_to_the_whole_batch() {
    let device = Device::flex().autodiff();
    let cfg = tiny(Variant::Full);
    let batch = problem(&cfg, &device);
    let model = AvaDino::new(&cfg, 5, &device);
    let run = |bounds: &[usize]| {
        let micro = bounds
            .windows(2)
            .map(|w| Ok::<_, std::convert::Infallible>(slice(&batch, w[0], w[1])));
        let kernels = ava_dino::cpu::Kernels::configured();
        let (g, v, w) = ava_dino::model::accumulated_gradients(&model, B, micro, kernels).unwrap();
        (gradient_values(&model, &g), v, w)
    };
    let (whole, v_whole, w_whole) = run(&[0, B]);
    // The plain pass: one backward of the batch's total loss.
    let (losses, _, plain) = model.loss_and_grads(&batch, None);
    assert_eq!(
        losses.values(),
        v_whole,
        "one micro-batch is the plain pass"
    );
    assert_eq!(gradient_values(&model, &plain), whole);
    for bounds in [&[0, 1, 2, 3, 4][..], &[0, 3, 4], &[0, 2, 4]] {
        let (g, v, w) = run(bounds);
        assert_eq!(g.len(), whole.len());
        assert!(whole.iter().filter(|x| x.is_some()).count() > 10);
        let mut worst = 0f32;
        for (a, b) in g.iter().zip(&whole) {
            assert_eq!(
                a.is_some(),
                b.is_some(),
                "{bounds:?}: the same parameters get gradients"
            );
            let (Some(a), Some(b)) = (a, b) else { continue };
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        println!("micro-batches {bounds:?}: largest gradient difference {worst:e} (relative)");
        assert!(
            worst < 1e-5,
            "{bounds:?}: gradients differ by {worst:e} (relative)"
        );
        assert!(
            worst > 0.0 || bounds.len() == 2,
            "{bounds:?}: nothing was split"
        );
        let rel = |x: f32, y: f32| (x - y).abs() / y.abs().max(1e-12);
        assert!(
            rel(v.total, v_whole.total) < 1e-5,
            "{bounds:?}: {v:?} vs {v_whole:?}"
        );
        for (x, y) in w.iter().zip(&w_whole) {
            assert!(
                (x - y).abs() < 1e-6,
                "{bounds:?}: routing weights {w:?} vs {w_whole:?}"
            );
        }
    }
}

/// The CPU kernels' patch branch (host forward and backward, gradients fed back into burn's
/// graph) gives burn's losses, outputs and gradients, for every variant, for a whole batch and
/// for a micro-batch's share: the same function in another summation order.
#[test]
fn cpu_kernels_give_burns_losses_and_gradients() {
    use ava_dino::cpu::Kernels;
    let device = Device::flex().autodiff();
    let vec = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
    for variant in [
        Variant::Full,
        Variant::SingleAdapter,
        Variant::LearnableRouting,
        Variant::TextRoutingNoLroute,
    ] {
        let cfg = tiny(variant);
        let batch = problem(&cfg, &device);
        let model = AvaDino::new(&cfg, 11, &device);
        assert!(model.fused_isa(&batch.patches, Kernels::Auto).is_some());
        for share in [None, Some(0.25)] {
            let (lb, ob, gb) = model.loss_and_grads_on(&batch, share, Kernels::Burn);
            let (lf, of, gf) = model.loss_and_grads_on(&batch, share, Kernels::Auto);
            let (vb, vf) = (lb.values(), lf.values());
            for (name, x, y) in [
                ("aware", vf.aware, vb.aware),
                ("seg", vf.seg, vb.seg),
                ("global", vf.global, vb.global),
                ("route", vf.route, vb.route),
                ("total", vf.total, vb.total),
            ] {
                assert!(
                    (x - y).abs() <= 2e-6 * y.abs().max(1.0),
                    "{variant:?} {share:?} loss {name}: {x} vs burn {y}"
                );
            }
            let maps = |o: &ava_dino::model::MethodOutput| {
                let [b, c, s1, s2] = o.maps.dims();
                vec(o.maps.clone().reshape([b * c * s1 * s2]))
            };
            let worst_map = maps(&of)
                .iter()
                .zip(maps(&ob))
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst_map < 1e-6, "{variant:?} maps differ by {worst_map}");
            let (gf, gb) = (gradient_values(&model, &gf), gradient_values(&model, &gb));
            assert_eq!(gf.len(), gb.len());
            let mut reached = 0;
            for (i, (a, b)) in gf.iter().zip(&gb).enumerate() {
                assert_eq!(a.is_some(), b.is_some(), "{variant:?} parameter {i}");
                let (Some(a), Some(b)) = (a, b) else { continue };
                reached += 1;
                let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                assert!(scale > 0.0, "{variant:?} parameter {i}: zero gradient");
                let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
                assert!(
                    worst < 1e-4,
                    "{variant:?} {share:?} parameter {i}: gradients differ by {worst:e} (relative)"
                );
            }
            assert!(reached >= 10, "{variant:?}: only {reached} gradients");
        }
    }
}

/// A trainer saved after two updates and resumed makes the third update exactly as one that
/// never stopped (model and optimizer state round-trip, whichever optimizer runs).
#[test]
fn resumed_trainer_continues_exactly() {
    let device = Device::flex().autodiff();
    let cfg = tiny(Variant::Full);
    let batch = problem(&cfg, &device);
    let cfg_o = OptimConfig {
        lr: 1e-2,
        ..OptimConfig::default()
    };
    let params = |t: &Trainer| outputs(&t.valid(), &plain(&batch));
    let mut straight = Trainer::new(AvaDino::new(&cfg, 3, &device), cfg_o.clone(), 1);
    for _ in 0..2 {
        straight.step(&batch);
    }
    let (model_bytes, optim_bytes) = straight.state_bytes().unwrap();
    let mut resumed = Trainer::resume(
        AvaDino::new(&cfg, 99, &device),
        cfg_o,
        1,
        model_bytes,
        optim_bytes,
        straight.steps_done(),
    )
    .unwrap();
    straight.step(&batch);
    resumed.step(&batch);
    assert_eq!(params(&straight), params(&resumed));
}
