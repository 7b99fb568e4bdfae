//! Parity of `train.shuffle: torch` with PyTorch's `DataLoader(shuffle=True)` (kind `torch_order`,
//! contract in docs/fixtures.md, fixtures from `scripts/gen_torch_order.py`).
//!
//! `orders.json`: `n`, `seed` and `epochs` (per epoch, the indices in the order the loader yields
//! them) are required; `base_seeds` and `sampler_seeds` (per epoch, the int64 seeds drawn from the
//! default generator) are optional; `batch_size` and `torch_version` are informational. Every
//! comparison is exact.

mod common;

use ava_dino::data::torch_order::TorchLoader;
use common::parity::contract::Scratch;
use common::parity::{Case, Report, cases};

const FILE: &str = "orders.json";

/// A JSON array of integers, or a failure line naming the key.
fn ints(report: &mut Report, case: &Case, key: &str, v: &serde_json::Value) -> Option<Vec<i64>> {
    let parsed = v
        .as_array()
        .and_then(|a| a.iter().map(|x| x.as_i64()).collect::<Option<Vec<_>>>());
    if parsed.is_none() {
        report.fail(case, FILE, &format!("{key} is not an array of integers"));
    }
    parsed
}

fn run_case(report: &mut Report, case: &Case) {
    let Some(json) = report.read_json(case, FILE, "the loader's orders") else {
        return;
    };
    let n = report.required_key(case, FILE, &json, "n", "the dataset size");
    let seed = report.required_key(case, FILE, &json, "seed", "the torch.manual_seed argument");
    let epochs = report.required_key(
        case,
        FILE,
        &json,
        "epochs",
        "per epoch, the indices in order",
    );
    let (Some(n), Some(seed), Some(epochs)) = (n, seed, epochs) else {
        return;
    };
    let (Some(n), Some(seed), Some(epochs)) = (n.as_u64(), seed.as_u64(), epochs.as_array()) else {
        report.fail(
            case,
            FILE,
            "n and seed must be non-negative integers, epochs an array",
        );
        return;
    };
    let mut loader = TorchLoader::new(n as usize, seed);
    let mut drawn = Vec::new();
    for (e, want) in epochs.iter().enumerate() {
        let Some(want) = ints(report, case, &format!("epochs[{e}]"), want) else {
            return;
        };
        match loader.next_epoch() {
            Ok((order, seeds)) => {
                let got: Vec<i64> = order.iter().map(|&i| i as i64).collect();
                report.exact(case, FILE, &format!("epochs[{e}]"), &got, &want);
                drawn.push(seeds);
            }
            Err(e) => return report.fail(case, FILE, &e.to_string()),
        }
    }
    for key in ["base_seeds", "sampler_seeds"] {
        let Some(v) = json.get(key) else {
            report.skip(case, FILE, key);
            continue;
        };
        let Some(want) = ints(report, case, key, v) else {
            continue;
        };
        let got: Vec<i64> = drawn
            .iter()
            .map(|s| {
                if key == "base_seeds" {
                    s.base
                } else {
                    s.sampler
                }
            })
            .collect();
        report.exact(case, FILE, key, &got, &want);
    }
}

#[test]
fn torch_order_matches_pytorch() {
    let mut report = Report::new("torch_order");
    for case in cases("torch_order") {
        run_case(&mut report, &case);
    }
    report.finish();
}

/// docs/fixtures.md, kind `torch_order`: only the required fields pass; each required one missing
/// fails; a wrong order fails with the first index that differs.
#[test]
fn torch_order_fixture_contract() {
    let s = Scratch::new("torch_order");
    s.copy("n137_s42", "minimal")
        .remove_key(FILE, "base_seeds")
        .remove_key(FILE, "sampler_seeds")
        .remove_key(FILE, "batch_size")
        .remove_key(FILE, "torch_version");
    s.copy("n7_s0", "no_seed").remove_key(FILE, "seed");
    s.copy("n7_s0", "no_epochs").remove_key(FILE, "epochs");
    s.copy("n7_s0", "other_seed").edit_json(FILE, |o| {
        o.insert("seed".into(), 1.into());
    });
    s.copy("n7_s0", "no_file").remove_file(FILE);
    let run = s.run("torch_order_matches_pytorch");

    run.assert_passes(
        "minimal",
        &["orders.json base_seeds", "orders.json sampler_seeds"],
    );
    run.assert_same_as_committed("minimal", "n137_s42");
    run.assert_fails("no_seed", &["orders.json seed missing"]);
    run.assert_fails("no_epochs", &["orders.json epochs missing"]);
    run.assert_fails("other_seed", &["orders.json epochs[0]", "first_diff@"]);
    run.assert_fails("no_file", &["orders.json missing (required file"]);
}
