//! Which instruction set the CPU kernels run with, detected once per process.

use std::sync::OnceLock;

/// Instruction set of the CPU kernels. Every variant computes the same function; they differ in
/// speed and in f32 rounding (fused multiply-add or not), which the parity tolerance covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 AVX-512F intrinsics: the 6x64 micro-kernel holds its tile in 24 zmm registers.
    Avx512,
    /// The portable kernels compiled with AVX2 + FMA enabled (x86-64 without AVX-512).
    Avx2,
    /// Plain Rust, any target: correct everywhere, not fast.
    Portable,
}

impl Isa {
    /// The fastest variant this CPU runs (cached).
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            *Isa::available()
                .first()
                .expect("Portable is always available")
        })
    }

    /// Every variant this CPU runs, fastest first (tests compare them against each other).
    pub fn available() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                out.push(Isa::Avx2);
            }
        }
        out.push(Isa::Portable);
        out
    }
}
