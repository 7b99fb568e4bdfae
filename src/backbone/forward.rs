//! The backbone's forward: picks the implementation of the blocks (the CPU kernels of
//! [`super::cpu`] where they apply, burn's ops of [`super::vit`] everywhere else) and turns the
//! tapped hidden states into features. Kept apart from both so that neither imports the other
//! back.

use burn::tensor::Tensor;

use super::cpu::{self, Kernels};
use super::vit::{DinoV3, TapFeatures};

/// What runs where the CPU kernels do not apply (another device, autodiff, bf16/f16).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Elsewhere {
    /// burn's ops.
    Burn,
    /// Nothing: a panic (an explicit `Kernels::Cpu` in tests and benchmarks).
    Panic,
}

impl DinoV3 {
    /// What runs this model's blocks on `device` under the process's choice
    /// ([`Kernels::configured`]): the CPU kernels' instruction set (`avx512`, `avx2`,
    /// `portable`) or `burn`. Provenance records it.
    pub fn kernels_name(&self, device: &burn::tensor::Device) -> &'static str {
        cpu::effective_kernels(Kernels::configured(), device, self.dtype())
    }

    /// [`DinoV3::kernels_name`] up to what changes numbers: `kernels` (every instruction set
    /// gives the same bits) or `burn`. Part of the feature shards' identity: the two round
    /// differently.
    pub fn kernels_family(&self, device: &burn::tensor::Device) -> &'static str {
        match self.kernels_name(device) {
            "burn" => "burn",
            _ => "kernels",
        }
    }

    /// Bytes of the linear weights packed for the CPU kernels so far: held beside the burn
    /// tensors, as much again as those weights once the kernels have run every block (0
    /// before, and on any other path). [`super::cpu::packed`] says why both stay.
    pub fn packed_weight_bytes(&self) -> usize {
        self.packed.bytes()
    }

    /// Tap features for `taps` (0-based block indices, any order, repeats allowed), in that order.
    /// Computes in the weights' dtype ([`DinoV3::with_precision`]); the features are f32.
    ///
    /// `pixel_values`: `[B, C, H, W]`, H and W multiples of the patch size. Only the blocks up to
    /// the deepest tap run, on the implementation `AVA_DINO_CPU_KERNELS` chose for the process
    /// ([`Kernels::configured`]): the CPU kernels where they apply, burn's ops elsewhere
    /// ([`cpu::effective_kernels`] names which). Panics on input that [`DinoV3::check_input`]
    /// rejects; call it first with untrusted shapes.
    pub fn forward_taps(&self, pixel_values: Tensor<4>, taps: &[usize]) -> Vec<TapFeatures> {
        self.forward(pixel_values, taps, Kernels::configured(), Elsewhere::Burn)
    }

    /// [`DinoV3::forward_taps`] on the chosen implementation of the blocks. `Kernels::Cpu`
    /// panics where the CPU kernels do not apply; `Kernels::Auto` runs burn there.
    pub fn forward_taps_with(
        &self,
        pixel_values: Tensor<4>,
        taps: &[usize],
        kernels: Kernels,
    ) -> Vec<TapFeatures> {
        let elsewhere = match kernels {
            Kernels::Cpu(_) => Elsewhere::Panic,
            _ => Elsewhere::Burn,
        };
        self.forward(pixel_values, taps, kernels, elsewhere)
    }

    fn forward(
        &self,
        pixel_values: Tensor<4>,
        taps: &[usize],
        kernels: Kernels,
        elsewhere: Elsewhere,
    ) -> Vec<TapFeatures> {
        if let Err(e) = self.check_input(pixel_values.dims(), taps) {
            panic!("DinoV3::forward_taps: {e}");
        }
        let hidden = match kernels.resolved() {
            Kernels::Cpu(isa) => match cpu::tap_hidden(self, &pixel_values, taps, isa) {
                Ok(hidden) => hidden,
                Err(e) if elsewhere == Elsewhere::Panic => {
                    panic!("DinoV3: the CPU kernels do not apply: {e}")
                }
                Err(_) => self.tap_hidden(pixel_values, taps),
            },
            _ => self.tap_hidden(pixel_values, taps),
        };
        taps.iter()
            .map(|t| self.tap_features(hidden[t].clone()))
            .collect()
    }
}
