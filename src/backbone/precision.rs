//! Compute precision of the frozen backbone (`backbone.dtype`, `ava-dino features --dtype`).
//!
//! `f32` is the default: it is what the parity fixtures and the reference use. `bf16` and `f16`
//! cast every weight of [`DinoV3`], as PyTorch's `model.to(dtype)` does, and
//! [`DinoV3::forward_taps`] then runs in that dtype (patch embedding, matrix products, attention,
//! LayerNorm, GELU; on CUDA the bf16/f16 matrix products run on tensor cores). Pixels are cast on
//! entry and the tap features leave in f32 (the final norm's output is cast before the patch
//! standardization), so callers always see f32. The error against f32 is measured in
//! `docs/DEVIATIONS.md`.
//!
//! Not every device computes in every dtype: wgpu's WGSL has no bf16, and Vulkan's SPIR-V allows
//! bf16 only in conversions and cooperative matrices. [`DinoV3::with_precision`] asks the device
//! (`Device::supports_dtype`) and refuses instead of computing garbage.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, FloatDType, Tensor};

use super::DinoV3;

/// The dtype the backbone computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit float (reference, parity).
    #[default]
    F32,
    /// bfloat16 (8-bit exponent, 8-bit significand).
    Bf16,
    /// IEEE half (5-bit exponent, 11-bit significand).
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The burn float dtype.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    /// The precision of a tensor dtype, if it is one of ours.
    pub fn of(dtype: DType) -> Option<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| DType::from(p.dtype()) == dtype)
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown dtype `{s}`: expected one of f32, bf16, f16"))
    }
}

/// Why the backbone cannot run at a precision on its device.
#[derive(Debug, thiserror::Error)]
pub enum PrecisionError {
    #[error(
        "backbone dtype {precision}: the device {device} cannot compute in {precision} \
         (wgpu has no bf16; Vulkan only converts it); use f32, or f16 where the device has it, \
         or the cuda backend"
    )]
    Unsupported {
        precision: Precision,
        device: String,
    },
}

/// Casts every float parameter of a module.
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

impl DinoV3 {
    /// The dtype of the weights, which is the dtype the forward computes in.
    pub fn dtype(&self) -> DType {
        self.patch_bias.val().dtype()
    }

    /// The model with every weight cast to `precision` (a no-op for the current one).
    pub fn with_precision(self, precision: Precision) -> Result<Self, PrecisionError> {
        let device = self.patch_bias.val().device();
        if !device.supports_dtype(precision.dtype()) {
            return Err(PrecisionError::Unsupported {
                precision,
                device: format!("{device:?}"),
            });
        }
        let mut cast = self.map(&mut CastParams(precision.dtype()));
        // The packed weights belong to the uncast ones: start afresh rather than keep both
        // alive until the next CPU forward notices.
        cast.packed = Default::default();
        Ok(cast)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::DinoV3Config;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(Precision::of(p.dtype().into()), Some(p));
        }
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .contains("f32, bf16, f16")
        );
        assert_eq!(Precision::default(), Precision::F32);
    }

    /// Every weight changes dtype, the features stay f32, and the bf16 features stay close to the
    /// f32 ones: each op is rounded to an 8-bit significand (relative step 2^-8 = 0.4 %), so the
    /// relative L2 error of the features lies between that order and 0.
    #[test]
    fn bf16_backbone_computes_in_bf16_and_returns_f32() {
        let device = Device::flex();
        let config = DinoV3Config::like_vitl16(32, 2, 2, 8, 2);
        let model = DinoV3::random(&config, 7, &device);
        let pixels = Tensor::<4>::random([1, 3, 32, 48], Distribution::Normal(0.0, 1.0), &device);
        let want = model.forward_taps(pixels.clone(), &[0, 1]);
        let model = model
            .with_precision(Precision::Bf16)
            .expect("flex has bf16");
        assert_eq!(model.dtype(), DType::BF16);
        let got = model.forward_taps(pixels, &[0, 1]);
        for (g, w) in got.into_iter().zip(want) {
            assert_eq!(g.normed.dtype(), DType::F32);
            assert_eq!(g.patches.dtype(), DType::F32);
            let diff = (g.normed.clone() - w.normed.clone()).powf_scalar(2.0).sum();
            let norm = w.normed.powf_scalar(2.0).sum();
            let rel = (diff / norm).sqrt().into_scalar::<f32>();
            assert!(rel > 0.0 && rel < 2e-2, "relative error {rel}");
        }
    }
}
