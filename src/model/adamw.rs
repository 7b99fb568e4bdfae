//! AdamW on the host for f32 parameters on the flex device: the update of PyTorch's
//! `torch.optim.AdamW` (its single-tensor CPU path) in one pass over each parameter.
//!
//! burn's AdamW runs about ten tensor operations per parameter, each a pass over memory with a
//! fresh allocation; over the adapters' 28.3M parameters that was a third of a training step on
//! the CPU. Same function; the state (step count, first and second moments per parameter) is
//! kept in host memory and saved by [`HostAdamW::to_bytes`] for an exact resume.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::cpu::Isa;
use crate::cpu::host::HostF32;
use crate::cpu::isa::on_isa;

const MAGIC: &[u8; 8] = b"AVADAMW1";

/// One parameter's state.
#[derive(Debug, Clone, PartialEq)]
struct Moments {
    step: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// AdamW with PyTorch's update order; see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct HostAdamW {
    /// The instruction set the update loop is compiled for (the same bits on each).
    isa: Isa,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    state: BTreeMap<u64, Moments>,
}

/// A state that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("optimizer state: {0}")]
pub struct StateError(String);

impl HostAdamW {
    /// AdamW with `betas`, `eps` and decoupled `weight_decay` (the YAML `optim` section's),
    /// its loop compiled for `isa`.
    pub fn new(betas: [f64; 2], eps: f64, weight_decay: f64, isa: Isa) -> Self {
        Self {
            isa,
            betas,
            eps,
            weight_decay,
            state: BTreeMap::new(),
        }
    }

    /// A fresh optimizer with this one's hyperparameters and instruction set.
    pub fn hyper(&self) -> Self {
        Self::new(self.betas, self.eps, self.weight_decay, self.isa)
    }

    /// The instruction set of the update loop.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// One update with learning rate `lr` of every parameter `grads` holds.
    pub fn step<M: Module>(&mut self, lr: f64, model: M, mut grads: GradientsParams) -> M {
        let mut mapper = Mapper {
            opt: self,
            lr,
            grads: &mut grads,
        };
        model.map(&mut mapper)
    }

    /// PyTorch's `_single_tensor_adamw` on one parameter, element by element in its order:
    /// `p *= 1 - lr·wd`; `m = lerp(m, g, 1 - β₁)`; `v = v·β₂ + (1 - β₂)·g·g`;
    /// `p += -(lr / (1 - β₁ᵗ)) · m / (√v / √(1 - β₂ᵗ) + eps)`, scalars in f64 cast to f32.
    ///
    /// Reads the parameter from `p` and the gradient from `g_out`, and writes the updated
    /// parameter over the gradient: one pass over memory and no allocation (the gradient's
    /// buffer becomes the new parameter's).
    fn update(&self, lr: f64, p: &[f32], g_out: &mut [f32], st: &mut Moments) {
        use rayon::prelude::*;
        st.step += 1;
        let [b1, b2] = self.betas;
        let t = st.step as i32;
        let decay = (1.0 - lr * self.weight_decay) as f32;
        let w1 = (1.0 - b1) as f32;
        let (b2f, w2) = (b2 as f32, (1.0 - b2) as f32);
        let step_size = -(lr / (1.0 - b1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
        let eps = self.eps as f32;
        const CHUNK: usize = 1 << 14;
        let isa = self.isa;
        g_out
            .par_chunks_mut(CHUNK)
            .zip(p.par_chunks(CHUNK))
            .zip(st.m.par_chunks_mut(CHUNK))
            .zip(st.v.par_chunks_mut(CHUNK))
            .for_each(|(((out, p), m), v)| {
                on_isa(isa, || {
                    for k in 0..p.len() {
                        let (gk, mut pk) = (out[k], p[k] * decay);
                        // torch.lerp: weight < 0.5 → start + weight·(end − start).
                        let mk = if w1 < 0.5 {
                            m[k] + w1 * (gk - m[k])
                        } else {
                            gk - (gk - m[k]) * (1.0 - w1)
                        };
                        let vk = v[k] * b2f + w2 * gk * gk;
                        pk += step_size * (mk / (vk.sqrt() / bc2_sqrt + eps));
                        (out[k], m[k], v[k]) = (pk, mk, vk);
                    }
                })
            });
    }

    /// The state as bytes: magic, count, then per parameter its id, step, length, m and v
    /// (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend((self.state.len() as u64).to_le_bytes());
        for (id, st) in &self.state {
            out.extend(id.to_le_bytes());
            out.extend(st.step.to_le_bytes());
            out.extend((st.m.len() as u64).to_le_bytes());
            for x in st.m.iter().chain(&st.v) {
                out.extend(x.to_le_bytes());
            }
        }
        out
    }

    /// [`HostAdamW::to_bytes`] read back into `fresh` (an optimizer with no state yet).
    pub fn from_bytes(fresh: Self, bytes: &[u8]) -> Result<Self, StateError> {
        let bad = |m: &str| StateError(m.to_string());
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], StateError> {
            let s = bytes
                .get(at..at + n)
                .ok_or_else(|| bad("truncated (the run directory's state file is damaged)"))?;
            at += n;
            Ok(s)
        };
        if take(8)? != MAGIC {
            return Err(bad(
                "not a host AdamW state (written by another optimizer or another version)",
            ));
        }
        let u64_at = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let count = u64_at(take(8)?);
        let mut opt = fresh;
        for _ in 0..count {
            let id = u64_at(take(8)?);
            let step = u64_at(take(8)?);
            let len = u64_at(take(8)?) as usize;
            let raw = take(len.checked_mul(8).ok_or_else(|| bad("length overflows"))?)?;
            let vals: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            let (m, v) = vals.split_at(len);
            opt.state.insert(
                id,
                Moments {
                    step,
                    m: m.to_vec(),
                    v: v.to_vec(),
                },
            );
        }
        if at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(opt)
    }
}

struct Mapper<'a> {
    opt: &'a mut HostAdamW,
    lr: f64,
    grads: &'a mut GradientsParams,
}

impl ModuleMapper for Mapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper): (ParamId, Tensor<D>, _) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let (device, dims) = (tensor.device(), tensor.dims());
        let old = HostF32::new(tensor);
        // The gradient's own buffer (no copy when the gradient is its only owner, as it is
        // once taken out of `grads`) receives the new values.
        let mut p: Vec<f32> = grad
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("an f32 gradient");
        let st = self.opt.state.entry(id.val()).or_insert_with(|| Moments {
            step: 0,
            m: vec![0.0; p.len()],
            v: vec![0.0; p.len()],
        });
        let mut st_taken = std::mem::replace(
            st,
            Moments {
                step: 0,
                m: Vec::new(),
                v: Vec::new(),
            },
        );
        assert_eq!(p.len(), old.f32().len(), "gradient and parameter sizes");
        self.opt.update(self.lr, old.f32(), &mut p, &mut st_taken);
        drop(old);
        self.opt.state.insert(id.val(), st_taken);
        let mut t = Tensor::<D>::from_data(TensorData::new(p, dims), &device);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's hyperparameters (`OptimConfig::default()`).
    fn fresh(isa: Isa) -> HostAdamW {
        HostAdamW::new([0.9, 0.999], 1e-8, 1e-2, isa)
    }

    fn state() -> HostAdamW {
        let mut o = fresh(Isa::detect());
        o.state.insert(
            7,
            Moments {
                step: 3,
                m: vec![0.5, -1.0, 2.0],
                v: vec![0.25, 1.0, 4.0],
            },
        );
        o.state.insert(
            2,
            Moments {
                step: 3,
                m: vec![1e-8],
                v: vec![f32::MIN_POSITIVE],
            },
        );
        o
    }

    #[test]
    fn state_round_trips_and_damage_is_an_error() {
        let o = state();
        let bytes = o.to_bytes();
        assert_eq!(
            HostAdamW::from_bytes(fresh(Isa::detect()), &bytes).unwrap(),
            o
        );
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            let e = HostAdamW::from_bytes(fresh(Isa::detect()), &bytes[..cut]).unwrap_err();
            assert!(e.to_string().starts_with("optimizer state:"), "{e}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(HostAdamW::from_bytes(fresh(Isa::detect()), &longer).is_err());
    }

    /// The update against PyTorch's `_single_tensor_adamw` formulas evaluated in f64.
    #[test]
    fn update_is_torchs_formula() {
        let o = fresh(Isa::detect());
        let (lr, b1, b2, eps, wd) = (1e-3, 0.9f64, 0.999f64, 1e-8, 1e-2);
        let mut p = vec![0.3f32, -0.7, 1.5];
        let g = [0.1f32, -2.0, 0.0];
        let mut st = Moments {
            step: 0,
            m: vec![0.0; 3],
            v: vec![0.0; 3],
        };
        let (mut pf, mut mf, mut vf) = (
            p.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            [0f64; 3],
            [0f64; 3],
        );
        for t in 1..=3 {
            let mut out = g.to_vec();
            o.update(lr, &p, &mut out, &mut st);
            p = out;
            for k in 0..3 {
                let gk = g[k] as f64;
                pf[k] *= 1.0 - lr * wd;
                mf[k] = b1 * mf[k] + (1.0 - b1) * gk;
                vf[k] = b2 * vf[k] + (1.0 - b2) * gk * gk;
                let denom = vf[k].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                pf[k] -= lr / (1.0 - b1.powi(t)) * mf[k] / denom;
            }
        }
        assert_eq!(st.step, 3);
        for k in 0..3 {
            assert!(
                (p[k] as f64 - pf[k]).abs() < 1e-6,
                "{k}: {} vs {}",
                p[k],
                pf[k]
            );
        }
    }

    /// The update gives the same bits whichever instruction set its loop is compiled for.
    #[test]
    fn every_isa_updates_to_the_same_bits() {
        let n = 40_000;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
            .collect();
        let run = |isa| {
            let o = fresh(isa);
            let mut p: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
            let mut st = Moments {
                step: 0,
                m: vec![0.0; n],
                v: vec![0.0; n],
            };
            for _ in 0..3 {
                let mut out = g.clone();
                o.update(1e-3, &p, &mut out, &mut st);
                p = out;
            }
            (p, st.m, st.v)
        };
        let want = run(Isa::Portable);
        for isa in Isa::available() {
            let got = run(isa);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0), "{isa:?} parameters");
            assert_eq!(bits(&got.1), bits(&want.1), "{isa:?} m");
            assert_eq!(bits(&got.2), bits(&want.2), "{isa:?} v");
        }
    }
}
