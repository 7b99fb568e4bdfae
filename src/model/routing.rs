//! Routing weights `[B, 2]` (column 0 normal): text-guided (reference) or a learnable gate.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use super::adapter::linear_t;
use super::heads::l2_normalize;

/// Text-guided routing: `softmax([n(cls)·n(Wp t_n), n(cls)·n(Wp t_a)] / tau)`.
///
/// `cls [B, D]`, `t_n_proj`, `t_a_proj [B, D]` = `Wp` applied to the **raw** text features.
pub fn text_routing(
    cls: Tensor<2>,
    t_n_proj: Tensor<2>,
    t_a_proj: Tensor<2>,
    tau: f64,
) -> Tensor<2> {
    let f = l2_normalize(cls, 1);
    let sn = (f.clone() * l2_normalize(t_n_proj, 1)).sum_dim(1);
    let sa = (f * l2_normalize(t_a_proj, 1)).sum_dim(1);
    softmax(Tensor::cat(vec![sn, sa], 1).div_scalar(tau), 1)
}

/// Learnable routing gate (ablation): `softmax((W n(cls) + b) / tau)`, `W [2, D]`, `b [2]`.
#[derive(Module, Debug)]
pub struct Gate {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Gate {
    /// `cls [B, D] -> [B, 2]`.
    pub fn forward(&self, cls: Tensor<2>, tau: f64) -> Tensor<2> {
        let logits = linear_t(l2_normalize(cls, 1), self.weight.val())
            + self.bias.val().unsqueeze_dim::<2>(0);
        softmax(logits.div_scalar(tau), 1)
    }
}
