//! A model's key table: every tensor it holds, by the name its files give it, with its PyTorch
//! shape and its seeded random initialization.
//!
//! Each model writes its table once (DINOv3 in `backbone::load`, CLIP text in `text::load`, the
//! AVA-DINO adapters in `model::checkpoint`); the table drives the checks of a loaded file
//! ([`KeyTable::check`]), the expected shapes, and random weights ([`KeyTable::random`]), and
//! [`super::named`] ties its names to the module's fields for loading and saving.

use std::collections::BTreeMap;
use std::fmt;

use super::host::HostTensor;
use crate::rng::SplitMix64;

/// How a key's random values are drawn. The host draws use one [`SplitMix64`] in table order, so
/// a table and a seed give the same weights everywhere.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `lo + (hi - lo) * u` in f32, `u` from [`SplitMix64::next_f32`] (24 bits, [0, 1)).
    Uniform { lo: f32, hi: f32 },
    /// `(lo + (hi - lo) * u) as f32`, `u` from [`SplitMix64::uniform`] (53 bits, (0, 1]).
    Uniform64 { lo: f64, hi: f64 },
    /// `(std * z) as f32`, `z` from [`SplitMix64::normal`].
    Normal { std: f64 },
    /// PyTorch `nn.Linear`'s default, uniform in `±1/sqrt(fan_in)`: `(lo + (hi - lo) * u) as
    /// f32`, `u` from [`SplitMix64::uniform`]. Drawn on the host like every other init, never by
    /// a device's generator, so a seed gives the same weights on every backend.
    Torch { fan_in: usize },
}

/// One tensor of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    /// PyTorch shape (`Linear` weights `[out, in]`).
    pub shape: Vec<usize>,
    pub init: Init,
}

/// What is wrong with one tensor of a file, against a [`KeyTable`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeyProblem {
    Missing {
        name: String,
        shape: Vec<usize>,
    },
    Unexpected {
        name: String,
    },
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    NotFloat {
        name: String,
    },
    NonFinite {
        name: String,
    },
}

impl KeyProblem {
    /// The tensor the problem is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Missing { name, .. }
            | Self::Unexpected { name }
            | Self::Shape { name, .. }
            | Self::NotFloat { name }
            | Self::NonFinite { name } => name,
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { name, shape } => write!(f, "missing `{name}` {shape:?}"),
            Self::Unexpected { name } => write!(f, "unexpected `{name}`"),
            Self::Shape {
                name,
                found,
                expected,
            } => write!(f, "`{name}` has shape {found:?}, expected {expected:?}"),
            Self::NotFloat { name } => write!(f, "`{name}` is not a float tensor"),
            Self::NonFinite { name } => write!(f, "`{name}` holds NaN or infinite values"),
        }
    }
}

/// The tensors of a model, in a fixed order (the order random values are drawn in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyTable {
    keys: Vec<Key>,
}

impl KeyTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a key.
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>, init: Init) {
        self.keys.push(Key {
            name: name.into(),
            shape,
            init,
        });
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn get(&self, name: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Total number of elements (the parameter count).
    pub fn numel(&self) -> usize {
        self.keys
            .iter()
            .map(|k| k.shape.iter().product::<usize>())
            .sum()
    }

    /// Everything wrong with `tensors` against the table: in table order the missing, misshapen
    /// or non-float tensors (and, with `finite`, those holding NaN or infinities), then the
    /// unexpected ones by name.
    pub fn check(&self, tensors: &BTreeMap<String, HostTensor>, finite: bool) -> Vec<KeyProblem> {
        let mut problems = Vec::new();
        for key in &self.keys {
            let name = key.name.clone();
            match tensors.get(&key.name) {
                None => problems.push(KeyProblem::Missing {
                    name,
                    shape: key.shape.clone(),
                }),
                Some(t) if t.shape != key.shape => problems.push(KeyProblem::Shape {
                    name,
                    found: t.shape.clone(),
                    expected: key.shape.clone(),
                }),
                Some(t) => match t.as_f32() {
                    None => problems.push(KeyProblem::NotFloat { name }),
                    Some(v) if finite && v.iter().any(|x| !x.is_finite()) => {
                        problems.push(KeyProblem::NonFinite { name })
                    }
                    Some(_) => {}
                },
            }
        }
        let known: std::collections::HashSet<&str> =
            self.keys.iter().map(|k| k.name.as_str()).collect();
        problems.extend(
            tensors
                .keys()
                .filter(|k| !known.contains(k.as_str()))
                .map(|name| KeyProblem::Unexpected { name: name.clone() }),
        );
        problems
    }

    /// A random tensor for every key, drawn from `rng` in table order (on the host: the same
    /// values whichever device the model then lives on).
    pub fn random(&self, rng: &mut SplitMix64) -> BTreeMap<String, HostTensor> {
        self.keys
            .iter()
            .map(|key| {
                let n: usize = key.shape.iter().product();
                let shape = key.shape.clone();
                let t = match key.init {
                    Init::Uniform { lo, hi } => HostTensor::f32(
                        shape,
                        (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect(),
                    ),
                    Init::Uniform64 { lo, hi } => HostTensor::f32(
                        shape,
                        (0..n)
                            .map(|_| (lo + (hi - lo) * rng.uniform()) as f32)
                            .collect(),
                    ),
                    Init::Normal { std } => HostTensor::f32(
                        shape,
                        (0..n).map(|_| (std * rng.normal()) as f32).collect(),
                    ),
                    Init::Torch { fan_in } => {
                        let bound = 1.0 / (fan_in as f64).sqrt();
                        HostTensor::f32(
                            shape,
                            (0..n)
                                .map(|_| (-bound + 2.0 * bound * rng.uniform()) as f32)
                                .collect(),
                        )
                    }
                };
                (key.name.clone(), t)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> KeyTable {
        let mut t = KeyTable::new();
        t.push("a.weight", vec![2, 3], Init::Uniform { lo: -1.0, hi: 1.0 });
        t.push("a.bias", vec![2], Init::Normal { std: 0.5 });
        t.push("g", vec![2], Init::Uniform64 { lo: 0.5, hi: 1.5 });
        t.push("lin.weight", vec![4, 16], Init::Torch { fan_in: 16 });
        t
    }

    #[test]
    fn random_is_seeded_and_in_range() {
        let a = table().random(&mut SplitMix64(1));
        assert_eq!(a, table().random(&mut SplitMix64(1)));
        assert_ne!(a, table().random(&mut SplitMix64(2)));
        assert!(
            a["a.weight"]
                .as_f32()
                .unwrap()
                .iter()
                .all(|x| (-1.0..1.0).contains(x))
        );
        assert!(
            a["g"]
                .as_f32()
                .unwrap()
                .iter()
                .all(|x| (0.5..=1.5).contains(x))
        );
        assert!(
            a["lin.weight"]
                .as_f32()
                .unwrap()
                .iter()
                .all(|x| (-0.25..0.25).contains(x))
        );
        assert_eq!(table().numel(), 74);
        assert!(table().check(&a, true).is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut m = table().random(&mut SplitMix64(0));
        m.remove("g");
        m.insert("a.bias".into(), HostTensor::f32(vec![3], vec![0.0; 3]));
        m.insert("zz".into(), HostTensor::f32(vec![1], vec![0.0]));
        m.insert(
            "a.weight".into(),
            HostTensor::f32(vec![2, 3], vec![0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]),
        );
        let text: Vec<String> = table()
            .check(&m, true)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "`a.weight` holds NaN or infinite values",
                "`a.bias` has shape [3], expected [2]",
                "missing `g` [2]",
                "unexpected `zz`",
            ]
        );
        // Without the finiteness check a NaN is accepted; an integer tensor is never.
        m.insert("a.weight".into(), HostTensor::i64(vec![2, 3], vec![0; 6]));
        assert_eq!(
            table().check(&m, false)[0],
            KeyProblem::NotFloat {
                name: "a.weight".into()
            }
        );
    }
}
