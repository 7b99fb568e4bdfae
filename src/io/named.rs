//! A burn module's parameters as named host tensors in PyTorch's conventions, and back.
//!
//! A parameter's name is its field path in the module (`blocks.0.attn.qkv.weight`, vectors
//! numbered from 0) with burn's conventions turned into PyTorch's: an `nn::Linear` weight is
//! `[in, out]` in burn and `[out, in]` in PyTorch (transposed here both ways), an
//! `nn::LayerNorm`'s `gamma`/`beta` are PyTorch's `weight`/`bias`. A model whose field names
//! differ from its file names passes a `rename` from the one to the other.
//!
//! Loading goes into a *skeleton*: the model built with lazy (never materialized) parameters of
//! the right shapes, each of which is replaced by its named tensor. So a model's key table (what
//! a file must hold) and its module (where each tensor goes) are tied by names, not by order.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use super::host::HostTensor;

/// The path of the parameter being visited, and how its PyTorch form differs from burn's.
#[derive(Default)]
struct PathStack {
    /// `(field name, type of the struct holding it)` from the root down.
    stack: Vec<(String, String)>,
}

impl PathStack {
    fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_string(), container.to_string()));
    }

    fn exit(&mut self) {
        self.stack.pop();
    }

    /// The PyTorch name of the current parameter, and whether PyTorch stores it transposed.
    fn current(&self) -> (String, bool) {
        let Some((leaf, container)) = self.stack.last() else {
            return (String::new(), false);
        };
        let leaf = match (container.as_str(), leaf.as_str()) {
            ("Struct:LayerNorm", "gamma") => "weight",
            ("Struct:LayerNorm", "beta") => "bias",
            _ => leaf,
        };
        let mut parts: Vec<&str> = self.stack[..self.stack.len() - 1]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        parts.push(leaf);
        let transposed = container == "Struct:Linear" && leaf == "weight";
        (parts.join("."), transposed)
    }
}

struct Collector<'a> {
    path: PathStack,
    rename: &'a dyn Fn(&str) -> String,
    out: BTreeMap<String, HostTensor>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, transposed) = self.path.current();
        let host = HostTensor::from_tensor(param.val());
        let host = if transposed { host.transposed() } else { host };
        self.out.insert((self.rename)(&name), host);
    }
}

/// Every float parameter of `module` by its file name (`rename` of its PyTorch-convention path),
/// in PyTorch layout.
pub fn to_named<M: Module>(
    module: &M,
    rename: &dyn Fn(&str) -> String,
) -> BTreeMap<String, HostTensor> {
    let mut c = Collector {
        path: PathStack::default(),
        rename,
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// How a loaded `nn::Linear` weight (`[out, in]` in the file, `[in, out]` for burn) is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearWeights {
    /// Transposed on the host into a contiguous `[in, out]` tensor.
    Contiguous,
    /// The file's `[out, in]` data unmoved, seen through a transposed view (no copy at load;
    /// the matmul then runs on a strided operand, which rounds differently).
    View,
}

struct Loader<'a> {
    path: PathStack,
    rename: &'a dyn Fn(&str) -> String,
    linear: LinearWeights,
    tensors: &'a mut BTreeMap<String, HostTensor>,
    device: &'a Device,
    problems: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (path, transposed) = self.path.current();
        let name = (self.rename)(&path);
        let Some(host) = self.tensors.remove(&name) else {
            self.problems.push(format!("missing `{name}`"));
            return param;
        };
        let mut want: Vec<usize> = param.lazy_shape().dims::<D>().to_vec();
        if transposed {
            want.reverse();
        }
        if host.shape != want {
            self.problems.push(format!(
                "`{name}` has shape {:?}, expected {want:?}",
                host.shape
            ));
            return param;
        }
        let tensor = match (transposed, self.linear) {
            (false, _) => host.into_tensor::<D>(self.device),
            (true, LinearWeights::Contiguous) => host.transposed().into_tensor::<D>(self.device),
            (true, LinearWeights::View) => host.into_tensor::<D>(self.device).transpose(),
        };
        Param::from_tensor(tensor)
    }
}

/// Fills `skeleton`'s parameters with the tensors of `tensors` named as [`to_named`] names them,
/// taking them out of the map (f32 data moves into the model uncopied), `nn::Linear` weights
/// held as `linear` says. Returns the problems (missing names, wrong shapes) if any parameter
/// could not be filled.
pub fn from_named<M: Module>(
    skeleton: M,
    tensors: &mut BTreeMap<String, HostTensor>,
    rename: &dyn Fn(&str) -> String,
    linear: LinearWeights,
    device: &Device,
) -> Result<M, Vec<String>> {
    let mut loader = Loader {
        path: PathStack::default(),
        rename,
        linear,
        tensors,
        device,
        problems: Vec::new(),
    };
    let module = skeleton.map(&mut loader);
    if loader.problems.is_empty() {
        Ok(module)
    } else {
        Err(loader.problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct Inner {
        proj: Linear,
        norm: LayerNorm,
    }

    #[derive(Module, Debug)]
    struct Outer {
        layers: Vec<Inner>,
        scale: Param<Tensor<1>>,
    }

    fn skeleton(dev: &Device) -> Outer {
        Outer {
            layers: (0..2)
                .map(|_| Inner {
                    proj: LinearConfig::new(3, 2).init(dev),
                    norm: LayerNormConfig::new(2).init(dev),
                })
                .collect(),
            scale: burn::nn::Initializer::Zeros.init([4], dev),
        }
    }

    fn rename(p: &str) -> String {
        p.replace("scale", "scale.gamma")
    }

    #[test]
    fn names_follow_pytorch_and_round_trip() {
        let dev = Device::flex();
        let mut named = BTreeMap::new();
        for i in 0..2 {
            let w: Vec<f32> = (0..6).map(|k| (10 * i + k) as f32).collect();
            named.insert(
                format!("layers.{i}.proj.weight"),
                HostTensor::f32(vec![2, 3], w),
            );
            for (k, v) in [
                ("proj.bias", 0.5),
                ("norm.weight", 2.0),
                ("norm.bias", -1.0),
            ] {
                named.insert(
                    format!("layers.{i}.{k}"),
                    HostTensor::f32(vec![2], vec![v; 2]),
                );
            }
        }
        named.insert(
            "scale.gamma".into(),
            HostTensor::f32(vec![4], vec![0.25; 4]),
        );
        for linear in [LinearWeights::Contiguous, LinearWeights::View] {
            let mut taken = named.clone();
            let m = from_named(skeleton(&dev), &mut taken, &rename, linear, &dev).unwrap();
            assert!(taken.is_empty());
            // burn's Linear weight is [in, out]: row 0 of PyTorch's [out, in] is column 0.
            let w = HostTensor::from_tensor(m.layers[1].proj.weight.val());
            assert_eq!(w.shape, vec![3, 2]);
            assert_eq!(w.as_f32().unwrap(), &[10.0, 13.0, 11.0, 14.0, 12.0, 15.0]);
            assert_eq!(to_named(&m, &rename), named);
        }
    }

    #[test]
    fn missing_and_misshapen_tensors_are_listed() {
        let dev = Device::flex();
        let mut named = BTreeMap::new();
        named.insert(
            "layers.0.proj.weight".to_string(),
            HostTensor::f32(vec![3, 2], vec![0.0; 6]),
        );
        let problems = from_named(
            skeleton(&dev),
            &mut named,
            &rename,
            LinearWeights::View,
            &dev,
        )
        .unwrap_err();
        assert_eq!(
            problems[0],
            "`layers.0.proj.weight` has shape [3, 2], expected [2, 3]"
        );
        assert!(
            problems.contains(&"missing `scale.gamma`".to_string()),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 1 + 8);
    }
}
