//! The reference losses (`tools/loss.py`, `train.py`), each returning a `[1]` tensor.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// `FocalLoss()` of the reference: works on **probabilities** `[B, 2, S, S]` against a binary
/// mask `[B, S, S]`; gamma 2, one-hot clamped to `[1e-5, 1 - 1e-5]`,
/// `pt = sum(onehot * p) + 1e-5`, mean of `-(1 - pt)^2 log pt`.
pub fn focal(prob: Tensor<4>, mask: Tensor<3>) -> Tensor<1> {
    const SMOOTH: f64 = 1e-5;
    let [b, c, s1, s2] = prob.dims();
    assert_eq!(c, 2, "focal: two channels expected");
    let p0 = prob.clone().narrow(1, 0, 1).reshape([b, s1, s2]);
    let p1 = prob.narrow(1, 1, 1).reshape([b, s1, s2]);
    let on1 = mask.clone().clamp(SMOOTH, 1.0 - SMOOTH);
    let on0 = mask.neg().add_scalar(1.0).clamp(SMOOTH, 1.0 - SMOOTH);
    let pt = (on0 * p0 + on1 * p1).add_scalar(SMOOTH);
    let one_minus = pt.clone().neg().add_scalar(1.0);
    (one_minus.clone() * one_minus * pt.log()).neg().mean()
}

/// `BinaryDiceLoss`: per sample `(2 sum(p m) + 1) / (sum p + sum m + 1)`, loss `1 - mean`.
/// `pred`, `mask` `[B, S, S]`.
pub fn dice(pred: Tensor<3>, mask: Tensor<3>) -> Tensor<1> {
    let [b, s1, s2] = pred.dims();
    let p = pred.reshape([b, s1 * s2]);
    let m = mask.reshape([b, s1 * s2]);
    let inter = (p.clone() * m.clone()).sum_dim(1);
    let d = (inter.mul_scalar(2.0).add_scalar(1.0)) / (p.sum_dim(1) + m.sum_dim(1)).add_scalar(1.0);
    d.mean().neg().add_scalar(1.0)
}

/// Focal + dice on the anomaly channel: the segmentation loss of one map `[B, 2, S, S]`.
pub fn map_loss(prob: Tensor<4>, mask: Tensor<3>) -> Tensor<1> {
    let [b, _, s1, s2] = prob.dims();
    let p1 = prob.clone().narrow(1, 1, 1).reshape([b, s1, s2]);
    focal(prob, mask.clone()) + dice(p1, mask)
}

/// `F.cross_entropy(logits [B, 2], y)` with `y` as 0/1 floats `[B]`, mean over the batch.
pub fn cross_entropy(logits: Tensor<2>, y: Tensor<1>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let ls = log_softmax(logits, 1);
    let l0 = ls.clone().narrow(1, 0, 1).reshape([b]);
    let l1 = ls.narrow(1, 1, 1).reshape([b]);
    (y.clone().neg().add_scalar(1.0) * l0 + y * l1).mean().neg()
}

/// Routing loss `MSE(w_n, 1 - y) + MSE(w_a, y)` on tap-averaged weights `[B]`.
pub fn routing(w_normal: Tensor<1>, w_anomaly: Tensor<1>, y: Tensor<1>) -> Tensor<1> {
    let dn = w_normal - y.clone().neg().add_scalar(1.0);
    let da = w_anomaly - y;
    (dn.clone() * dn).mean() + (da.clone() * da).mean()
}
