//! The backbone's forward: picks the implementation of the blocks (the CPU kernels of
//! [`super::cpu`] where they apply, burn's ops of [`super::vit`] everywhere else) and turns the
//! tapped hidden states into features. Kept apart from both so that neither imports the other
//! back.

use burn::tensor::Tensor;

use super::cpu::{self, Isa, Kernels};
use super::vit::{DinoV3, TapFeatures};

impl DinoV3 {
    /// Which implementation runs this model's blocks on `device`: `kernels` (ours: the flex
    /// device with f32 weights; every instruction set gives the same bits) or `burn` (any other
    /// device or dtype). Part of the feature shards' identity: the two round differently.
    pub fn kernels_family(&self, device: &burn::tensor::Device) -> &'static str {
        if *device == burn::tensor::Device::flex() && self.dtype() == burn::tensor::DType::F32 {
            "kernels"
        } else {
            "burn"
        }
    }

    /// Tap features for `taps` (0-based block indices, any order, repeats allowed), in that order.
    /// Computes in the weights' dtype ([`DinoV3::with_precision`]); the features are f32.
    ///
    /// `pixel_values`: `[B, C, H, W]`, H and W multiples of the patch size. Only the blocks up to
    /// the deepest tap run, on the CPU kernels where they apply ([`Kernels::Auto`]). Panics on
    /// input that [`DinoV3::check_input`] rejects; call it first with untrusted shapes.
    pub fn forward_taps(&self, pixel_values: Tensor<4>, taps: &[usize]) -> Vec<TapFeatures> {
        self.forward_taps_with(pixel_values, taps, Kernels::Auto)
    }

    /// [`DinoV3::forward_taps`] on the chosen implementation of the blocks.
    pub fn forward_taps_with(
        &self,
        pixel_values: Tensor<4>,
        taps: &[usize],
        kernels: Kernels,
    ) -> Vec<TapFeatures> {
        if let Err(e) = self.check_input(pixel_values.dims(), taps) {
            panic!("DinoV3::forward_taps: {e}");
        }
        let hidden = match kernels {
            Kernels::Burn => self.tap_hidden(pixel_values, taps),
            Kernels::Auto => cpu::tap_hidden(self, &pixel_values, taps, Isa::detect())
                .unwrap_or_else(|_| self.tap_hidden(pixel_values, taps)),
            Kernels::Cpu(isa) => cpu::tap_hidden(self, &pixel_values, taps, isa)
                .unwrap_or_else(|e| panic!("DinoV3: the CPU kernels do not apply: {e}")),
        };
        taps.iter()
            .map(|t| self.tap_features(hidden[t].clone()))
            .collect()
    }
}
