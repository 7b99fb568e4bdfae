//! Parity of the AVA-DINO training step with the PyTorch reference (`scripts/gen_train_step.py`):
//! losses, routing weights, maps and global logits at every step, parameters after all steps.

mod common;

use std::collections::BTreeMap;

use ava_dino::io::{HostTensor, TensorFile};
use ava_dino::model::checkpoint::from_named;
use ava_dino::model::{Batch, LossWeights, MethodConfig, OptimConfig, Trainer};
use burn::tensor::{Device, Tensor};
use common::parity::{Case, Report, Tolerance, cases};

const KIND: &str = "train_step";
const MAPS: Tolerance = Tolerance::rel(1e-5);
const PARAMS: Tolerance = Tolerance::abs(1e-6);

struct Fixture {
    method: MethodConfig,
    optim: OptimConfig,
    warmup_steps: usize,
    steps: usize,
    grid: [usize; 2],
}

fn read_config(case: &Case) -> Result<Fixture, String> {
    let path = case.dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let u = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| format!("{}: `{k}` missing", path.display()))
            .map(|x| x as usize)
    };
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("{}: `{k}` missing", path.display()))
    };
    let method = MethodConfig {
        dim: u("dim")?,
        bottleneck: u("bottleneck")?,
        text_dim: u("text_dim")?,
        taps: (0..u("taps")?).collect(),
        tau: f("tau")?,
        map_size: u("map_size")?,
        variant: serde_json::from_value(v["variant"].clone()).map_err(|e| e.to_string())?,
        protocol: serde_json::from_value(v.get("protocol").cloned().unwrap_or("reference".into()))
            .map_err(|e| e.to_string())?,
        loss_weights: serde_json::from_value::<LossWeights>(v["loss_weights"].clone())
            .map_err(|e| e.to_string())?,
    };
    let betas = v["betas"].as_array().ok_or("betas missing")?;
    let optim = OptimConfig {
        lr: f("lr")?,
        betas: [betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap()],
        eps: f("eps")?,
        weight_decay: f("weight_decay")?,
        // The fixture gives the warmup in steps; the trainer takes it as such.
        warmup: 0.0,
    };
    let warmup_steps = u("warmup_steps")?;
    let grid = v["grid"].as_array().ok_or("grid missing")?;
    let grid = [
        grid[0].as_u64().unwrap() as usize,
        grid[1].as_u64().unwrap() as usize,
    ];
    Ok(Fixture {
        method,
        optim,
        warmup_steps,
        steps: u("steps")?,
        grid,
    })
}

fn batch(file: &TensorFile, s: usize, fx: &Fixture, device: &Device) -> Result<Batch, String> {
    let e = |e: ava_dino::io::TensorFileError| e.to_string();
    let taps = fx.method.n_taps();
    Ok(Batch {
        cls: (0..taps)
            .map(|t| file.tensor::<2>(&format!("step{s}.cls.{t}"), device))
            .collect::<Result<_, _>>()
            .map_err(e)?,
        patches: (0..taps)
            .map(|t| file.tensor::<3>(&format!("step{s}.patches.{t}"), device))
            .collect::<Result<_, _>>()
            .map_err(e)?,
        grid: fx.grid,
        text: file
            .tensor::<3>(&format!("step{s}.text"), device)
            .map_err(e)?,
        labels: file
            .i64(&format!("step{s}.label"), 1)
            .map_err(e)?
            .to_int_tensor::<1>(device),
        masks: file
            .tensor::<3>(&format!("step{s}.mask"), device)
            .map_err(e)?,
    })
}

fn compare<const D: usize>(
    r: &mut Report,
    case: &Case,
    name: &str,
    got: Tensor<D>,
    want: &TensorFile,
    tol: Tolerance,
) {
    let got = HostTensor::from_tensor(got);
    match want.f32(name, D) {
        Ok(w) => {
            r.close(
                case,
                "expected.safetensors",
                name,
                &got.shape,
                &got.to_f32_vec(),
                &w.shape,
                &w.to_f32_vec(),
                tol,
            );
        }
        Err(err) => r.fail(case, "expected.safetensors", &format!("{name} ({err})")),
    }
}

fn run_case(r: &mut Report, case: &Case) -> Result<(), String> {
    let fx = read_config(case)?;
    let device = Device::flex().autodiff();
    let init = TensorFile::read(case.dir.join("init.safetensors")).map_err(|e| e.to_string())?;
    let batches =
        TensorFile::read(case.dir.join("batches.safetensors")).map_err(|e| e.to_string())?;
    let expected =
        TensorFile::read(case.dir.join("expected.safetensors")).map_err(|e| e.to_string())?;
    let model =
        from_named(&fx.method, &init.tensors, &init.path, &device).map_err(|e| e.to_string())?;
    let mut trainer = Trainer::new(model, fx.optim.clone(), fx.warmup_steps);
    for s in 0..fx.steps {
        let b = batch(&batches, s, &fx, &device)?;
        let (losses, out) = trainer.step_with_output(&b);
        for (name, t) in [
            ("aware", losses.aware),
            ("seg", losses.seg),
            ("global", losses.global),
            ("route", losses.route),
            ("total", losses.total),
        ] {
            compare(r, case, &format!("step{s}.loss.{name}"), t, &expected, MAPS);
        }
        compare(
            r,
            case,
            &format!("step{s}.w_normal"),
            out.w_normal,
            &expected,
            MAPS,
        );
        compare(
            r,
            case,
            &format!("step{s}.w_anomaly"),
            out.w_anomaly,
            &expected,
            MAPS,
        );
        compare(
            r,
            case,
            &format!("step{s}.anomaly_map"),
            out.anomaly_map,
            &expected,
            MAPS,
        );
        compare(
            r,
            case,
            &format!("step{s}.global"),
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
        "expected.safetensors",
        &format!("final.* count {} == {}", want.len(), finals.len()),
        want.len() == finals.len(),
    );
    for name in want {
        let key = name.trim_start_matches("final.");
        let w = expected
            .f32(name, expected.tensors[name].shape.len())
            .map_err(|e| e.to_string())?;
        match finals.get(key) {
            Some(g) => {
                r.close(
                    case,
                    "expected.safetensors",
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
                "expected.safetensors",
                &format!("{name} (model has no such parameter)"),
            ),
        }
    }
    Ok(())
}

#[test]
fn train_step_matches_pytorch() {
    let mut report = Report::new(KIND);
    for case in cases(KIND) {
        if let Err(e) = run_case(&mut report, &case) {
            report.fail(&case, "case", &e);
        }
    }
    report.finish();
}
