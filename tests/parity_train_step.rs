//! Parity of the AVA-DINO training step with the PyTorch reference (kind `train_step`, contract in
//! docs/fixtures.md, fixtures from `scripts/gen_train_step.py`): the total loss at every step and
//! every parameter after all steps (required); the loss parts, routing weights, anomaly map and
//! global logits of every step (optional, checked when present).

mod common;

use std::collections::BTreeMap;

use ava_dino::cpu::Kernels;
use ava_dino::io::{HostTensor, TensorFile};
use ava_dino::model::checkpoint::{from_named, key_table};
use ava_dino::model::{Batch, LossWeights, MethodConfig, OptimConfig, Protocol, Trainer, Variant};
use burn::tensor::{Device, Tensor};
use common::device::test_device;
use common::parity::contract::Scratch;
use common::parity::{Case, Dtype, Report, Tolerance, cases};
use serde::de::DeserializeOwned;

const KIND: &str = "train_step";
const MAPS: Tolerance = Tolerance::rel(1e-5);
const PARAMS: Tolerance = Tolerance::abs(1e-6);

const CONFIG: &str = "config.json";
const INIT: &str = "init.safetensors";
const BATCHES: &str = "batches.safetensors";
const EXPECTED: &str = "expected.safetensors";

struct Fixture {
    method: MethodConfig,
    optim: OptimConfig,
    warmup_steps: usize,
    steps: usize,
    grid: [usize; 2],
}

/// The loss weights as the fixture gives them: all four, no defaults.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureLossWeights {
    aware: f64,
    seg: f64,
    global: f64,
    route: f64,
}

/// Required key `key` of `config.json` as a `T`; absent or of another type is one failure line.
fn key<T: DeserializeOwned>(
    r: &mut Report,
    case: &Case,
    cfg: &serde_json::Value,
    key: &str,
    what: &str,
) -> Option<T> {
    let v = r.required_key(case, CONFIG, cfg, key, what)?;
    serde_json::from_value(v.clone())
        .map_err(|e| {
            r.fail(
                case,
                CONFIG,
                &format!("`{key}` must be {what}, got {v}: {e}"),
            )
        })
        .ok()
}

/// Reads `config.json`, recording every missing or malformed key.
fn read_config(r: &mut Report, case: &Case) -> Option<Fixture> {
    let v = r.read_json(
        case,
        CONFIG,
        "sizes, variant, loss weights, optimizer and schedule",
    )?;
    let (int, num) = ("a non-negative integer", "a number");
    let dim = key::<usize>(r, case, &v, "dim", int);
    let bottleneck = key::<usize>(r, case, &v, "bottleneck", int);
    let text_dim = key::<usize>(r, case, &v, "text_dim", int);
    let taps = key::<usize>(r, case, &v, "taps", "the number of taps");
    let tau = key::<f64>(r, case, &v, "tau", num);
    let map_size = key::<usize>(r, case, &v, "map_size", int);
    let variant = key::<Variant>(
        r,
        case,
        &v,
        "variant",
        "a variant name (full, single_adapter, ...)",
    );
    let loss =
        key::<FixtureLossWeights>(r, case, &v, "loss_weights", "{aware, seg, global, route}");
    let lr = key::<f64>(r, case, &v, "lr", num);
    let betas = key::<[f64; 2]>(r, case, &v, "betas", "two numbers");
    let eps = key::<f64>(r, case, &v, "eps", num);
    let weight_decay = key::<f64>(r, case, &v, "weight_decay", num);
    let warmup_steps = key::<usize>(r, case, &v, "warmup_steps", int);
    let steps = key::<usize>(r, case, &v, "steps", int);
    let grid = key::<[usize; 2]>(r, case, &v, "grid", "[h, w], the patch grid");
    // Optional: the fixtures made before the corrected protocol existed are reference ones.
    let protocol = match v.get("protocol") {
        None => Some(Protocol::Reference),
        Some(_) => key::<Protocol>(r, case, &v, "protocol", "reference or corrected"),
    };
    let loss = loss?;
    let method = MethodConfig {
        dim: dim?,
        bottleneck: bottleneck?,
        text_dim: text_dim?,
        taps: (0..taps?).collect(),
        tau: tau?,
        map_size: map_size?,
        variant: variant?,
        protocol: protocol?,
        loss_weights: LossWeights {
            aware: loss.aware,
            seg: loss.seg,
            global: loss.global,
            route: loss.route,
        },
    };
    if let Err(e) = method.validate() {
        r.fail(case, CONFIG, &e.to_string());
        return None;
    }
    let [beta1, beta2] = betas?;
    let optim = OptimConfig {
        lr: lr?,
        betas: [beta1, beta2],
        eps: eps?,
        weight_decay: weight_decay?,
        // The fixture gives the warmup in steps; the trainer takes it as such.
        warmup: 0.0,
    };
    Some(Fixture {
        method,
        optim,
        warmup_steps: warmup_steps?,
        steps: steps?,
        grid: grid?,
    })
}

/// Checks that step `s`'s inputs are present with the shapes the config gives (batch size B is
/// that of `step{s}.label`).
fn check_batch(r: &mut Report, case: &Case, file: &TensorFile, s: usize, fx: &Fixture) -> bool {
    let m = &fx.method;
    let Some(label) = r.required(case, file, &format!("step{s}.label"), Dtype::I64, &["B"]) else {
        return false;
    };
    let b = label.shape[0];
    let n = fx.grid[0] * fx.grid[1];
    let mut wanted: Vec<(String, Vec<usize>, &[&str])> = Vec::new();
    for t in 0..m.n_taps() {
        wanted.push((format!("step{s}.cls.{t}"), vec![b, m.dim], &["B", "D"]));
        wanted.push((
            format!("step{s}.patches.{t}"),
            vec![b, n, m.dim],
            &["B", "h*w", "D"],
        ));
    }
    wanted.push((
        format!("step{s}.text"),
        vec![b, m.text_dim, 2],
        &["B", "E", "2"],
    ));
    let side = m.map_size;
    wanted.push((
        format!("step{s}.mask"),
        vec![b, side, side],
        &["B", "S", "S"],
    ));
    let mut ok = true;
    for (name, shape, dims) in wanted {
        ok &= r
            .required(case, file, &name, Dtype::F32, dims)
            .is_some_and(|t| r.shape_is(case, BATCHES, &name, &t.shape, &shape));
    }
    ok
}

fn batch(file: &TensorFile, s: usize, fx: &Fixture, device: &Device) -> Batch {
    let t = |name: String| &file.tensors[&name];
    let taps = fx.method.n_taps();
    Batch {
        cls: (0..taps)
            .map(|i| t(format!("step{s}.cls.{i}")).to_tensor::<2>(device))
            .collect(),
        patches: (0..taps)
            .map(|i| t(format!("step{s}.patches.{i}")).to_tensor::<3>(device))
            .collect(),
        grid: fx.grid,
        text: t(format!("step{s}.text")).to_tensor::<3>(device),
        labels: t(format!("step{s}.label")).to_int_tensor::<1>(device),
        masks: t(format!("step{s}.mask")).to_tensor::<3>(device),
    }
}

/// Compares one step output; `loss.total` is required, the other outputs are optional.
#[allow(clippy::too_many_arguments)]
fn compare<const D: usize>(
    r: &mut Report,
    case: &Case,
    name: &str,
    dims: &[&str],
    got: Tensor<D>,
    want: &TensorFile,
    tol: Tolerance,
) {
    let w = if name.ends_with(".loss.total") {
        r.required(case, want, name, Dtype::F32, dims)
    } else {
        r.optional(case, want, name, Dtype::F32, dims)
    };
    if let Some(w) = w {
        let got = HostTensor::from_tensor(got);
        r.close(
            case,
            EXPECTED,
            name,
            &got.shape,
            &got.to_f32_vec(),
            &w.shape,
            &w.to_f32_vec(),
            tol,
        );
    }
}

/// Runs `case` on every implementation the test device has: on the CPU both the CPU kernels
/// and burn's ops (`Kernels::Burn`, which GPU devices always run).
fn run_case(r: &mut Report, case: &Case) {
    let device = test_device().autodiff();
    let cpu = device.clone().inner() == Device::flex();
    let configured = Kernels::configured();
    run_case_on(r, case, &device, configured);
    if cpu && !matches!(configured, Kernels::Burn) {
        let burn = Case {
            label: format!("burn-ops:{}", case.label),
            dir: case.dir.clone(),
        };
        run_case_on(r, &burn, &device, Kernels::Burn);
    }
}

fn run_case_on(r: &mut Report, case: &Case, device: &Device, kernels: Kernels) {
    let device = device.clone();
    let fx = read_config(r, case);
    let init = r.read_tensors(case, INIT, "the parameters before the first step");
    let batches = r.read_tensors(case, BATCHES, "the inputs of every step");
    let expected = r.read_tensors(
        case,
        EXPECTED,
        "the losses of every step and the final parameters",
    );
    let (Some(fx), Some(init), Some(batches), Some(expected)) = (fx, init, batches, expected)
    else {
        return;
    };
    let model = match from_named(&fx.method, &init.tensors, &init.path, &device) {
        Ok(m) => m,
        Err(e) => return r.fail(case, INIT, &e.to_string()),
    };
    // Every required tensor before any work: a broken case fails in one pass, listing them all.
    let mut ok = true;
    for s in 0..fx.steps {
        ok &= check_batch(r, case, &batches, s, &fx);
        let total = format!("step{s}.loss.total");
        ok &= r
            .required(case, &expected, &total, Dtype::F32, &["1"])
            .is_some();
    }
    for key in key_table(&fx.method).keys() {
        let (name, shape) = (format!("final.{}", key.name), &key.shape);
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
        ok &= r
            .required(case, &expected, &name, Dtype::F32, &dims)
            .is_some_and(|t| r.shape_is(case, EXPECTED, &name, &t.shape, shape));
    }
    if !ok {
        return;
    }
    let mut trainer = Trainer::on(model, fx.optim.clone(), fx.warmup_steps, kernels);
    for s in 0..fx.steps {
        let b = batch(&batches, s, &fx, &device);
        let (losses, out) = trainer.step_with_output(&b);
        for (name, t) in [
            ("aware", losses.aware),
            ("seg", losses.seg),
            ("global", losses.global),
            ("route", losses.route),
            ("total", losses.total),
        ] {
            compare(
                r,
                case,
                &format!("step{s}.loss.{name}"),
                &["1"],
                t,
                &expected,
                MAPS,
            );
        }
        let per_sample = ["B"];
        compare(
            r,
            case,
            &format!("step{s}.w_normal"),
            &per_sample,
            out.w_normal,
            &expected,
            MAPS,
        );
        compare(
            r,
            case,
            &format!("step{s}.w_anomaly"),
            &per_sample,
            out.w_anomaly,
            &expected,
            MAPS,
        );
        let maps = ["B", "S", "S"];
        compare(
            r,
            case,
            &format!("step{s}.anomaly_map"),
            &maps,
            out.anomaly_map,
            &expected,
            MAPS,
        );
        compare(
            r,
            case,
            &format!("step{s}.global"),
            &["B", "2"],
            out.global,
            &expected,
            MAPS,
        );
    }
    let finals: BTreeMap<String, HostTensor> =
        ava_dino::model::checkpoint::named_params(&trainer.model)
            .into_iter()
            .collect();
    let want: Vec<&String> = expected
        .tensors
        .keys()
        .filter(|k| k.starts_with("final."))
        .collect();
    r.check(
        case,
        EXPECTED,
        &format!("final.* count {} == {}", want.len(), finals.len()),
        want.len() == finals.len(),
    );
    for name in want {
        let key = name.trim_start_matches("final.");
        let w = &expected.tensors[name];
        match finals.get(key) {
            Some(g) => {
                r.close(
                    case,
                    EXPECTED,
                    name,
                    &g.shape,
                    &g.to_f32_vec(),
                    &w.shape,
                    &w.to_f32_vec(),
                    PARAMS,
                );
            }
            None => r.fail(
                case,
                EXPECTED,
                &format!("{name} (model has no such parameter)"),
            ),
        }
    }
}

#[test]
fn train_step_matches_pytorch() {
    let mut report = Report::new(KIND);
    for case in cases(KIND) {
        run_case(&mut report, &case);
    }
    report.finish();
}

/// docs/fixtures.md, kind `train_step`: total losses and final parameters alone pass (the other
/// step outputs are skipped); each required key or tensor missing fails.
#[test]
fn train_step_fixture_contract() {
    let s = Scratch::new(KIND);
    let optional = [
        "loss.aware",
        "loss.seg",
        "loss.global",
        "loss.route",
        "w_normal",
        "w_anomaly",
        "anomaly_map",
        "global",
    ];
    let is_optional = |n: &str| {
        n.strip_prefix("step")
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(_, what)| optional.contains(&what))
    };
    s.copy("rect_grid", "minimal")
        .remove_tensors(EXPECTED, is_optional)
        .edit_json(CONFIG, |o| {
            for k in ["protocol", "seed", "batch"] {
                o.remove(k).unwrap();
            }
        });
    s.copy("rect_grid", "no_lr").remove_key(CONFIG, "lr");
    s.copy("rect_grid", "no_total")
        .remove_tensors(EXPECTED, |n| n == "step1.loss.total");
    s.copy("rect_grid", "no_final")
        .remove_tensors(EXPECTED, |n| n == "final.text_projection.weight");
    s.copy("rect_grid", "no_mask")
        .remove_tensors(BATCHES, |n| n == "step0.mask");
    s.copy("rect_grid", "no_init_param")
        .remove_tensors(INIT, |n| n == "prompt_adapter.1.fc2.0.weight");
    let run = s.run("train_step_matches_pytorch");

    let skipped: Vec<String> = (0..2)
        .flat_map(|s| optional.map(|o| format!("{EXPECTED} step{s}.{o}")))
        .collect();
    run.assert_passes(
        "minimal",
        &skipped.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    run.assert_same_as_committed("minimal", "rect_grid");
    run.assert_fails("no_lr", &["config.json lr missing"]);
    run.assert_fails(
        "no_total",
        &["expected.safetensors step1.loss.total missing", "f32 [1]"],
    );
    run.assert_fails(
        "no_final",
        &["final.text_projection.weight missing", "f32 [32,24]"],
    );
    run.assert_fails(
        "no_mask",
        &["batches.safetensors step0.mask missing", "f32 [B,S,S]"],
    );
    run.assert_fails(
        "no_init_param",
        &["init.safetensors", "prompt_adapter.1.fc2.0.weight"],
    );
}
