//! Which instruction set the CPU kernels run with, detected once per process, and the check
//! that keeps the safe entry points from running an instruction set the CPU does not have.

use std::sync::OnceLock;

/// Instruction set of the CPU kernels. Every variant computes the same function to the bit:
/// each product is one chain of fused multiply-adds in k order, the elementwise functions run
/// the same operations (fused where the AVX-512 code fuses), and the reductions use the same
/// lanes and the same tree (module docs of [`super`]). They differ only in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 AVX-512F intrinsics: the 6x64 micro-kernel holds its tile in 24 zmm registers.
    Avx512,
    /// The portable kernels compiled with AVX2 + FMA enabled (x86-64 without AVX-512).
    Avx2,
    /// Plain Rust, any target: correct everywhere. Its `mul_add` is one instruction where the
    /// target has fused multiply-add in its baseline (aarch64) and a libm `fmaf` call where it
    /// does not (x86-64 without `-C target-feature=+fma`): same bits, several times slower.
    Portable,
}

/// An instruction set that this CPU cannot run was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this CPU has no {}", .0.needs())]
pub struct Unsupported(pub Isa);

impl Isa {
    /// Every variant, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The fastest variant this CPU runs (cached).
    pub fn detect() -> Isa {
        *supported().first().expect("Portable is always available")
    }

    /// Every variant this CPU runs, fastest first (cached; tests compare them against each
    /// other).
    pub fn available() -> Vec<Isa> {
        supported().to_vec()
    }

    /// The name used by `AVA_DINO_CPU_KERNELS` and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// What the CPU needs to run this variant, in the words of the vendors' feature lists.
    pub fn needs(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512F",
            Isa::Avx2 => "AVX2 with FMA",
            Isa::Portable => "nothing",
        }
    }

    /// `Ok` when `available` (a CPU's list, [`Isa::available`] for this one) holds `self`.
    pub fn check(self, available: &[Isa]) -> Result<(), Unsupported> {
        if available.contains(&self) {
            Ok(())
        } else {
            Err(Unsupported(self))
        }
    }

    /// Panics unless this CPU runs `self`: called once by every safe entry point that takes an
    /// `Isa` (`gemm`, `attention`, `tap_hidden`), so that a safe call can never execute an
    /// instruction the CPU does not have. The variants a user can choose are checked before
    /// (`Kernels::from_env`), so only a programming error reaches this panic.
    #[track_caller]
    pub fn assert_supported(self) {
        if let Err(e) = self.check(supported()) {
            panic!("Isa::{self:?}: {e} (Isa::available() lists what it runs)");
        }
    }
}

/// This CPU's variants, fastest first, detected once.
fn supported() -> &'static [Isa] {
    static AVAILABLE: OnceLock<Vec<Isa>> = OnceLock::new();
    AVAILABLE.get_or_init(|| {
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
    })
}

/// Runs `f` compiled for `isa`'s vectors (`f` is inlined into a function with that target
/// feature). For elementwise loops whose results must not depend on it: such a loop may use
/// only IEEE adds, multiplies, divisions, square roots and comparisons (the compiler never fuses
/// or reorders them; no `mul_add`, no library calls that differ by target) and must write out
/// the order of every sum (as `model::fused::dot` does).
#[inline(always)]
pub fn on_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        isa.assert_supported();
        match isa {
            // SAFETY: the CPU runs `isa` (asserted above).
            Isa::Avx512 => return unsafe { avx512(f) },
            Isa::Avx2 => return unsafe { avx2(f) },
            Isa::Portable => {}
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_missing_from_the_cpu_is_refused_by_name() {
        let avx2_cpu = [Isa::Avx2, Isa::Portable];
        let err = Isa::Avx512.check(&avx2_cpu).unwrap_err();
        assert_eq!(err.to_string(), "this CPU has no AVX-512F");
        let err = Isa::Avx2.check(&[Isa::Portable]).unwrap_err();
        assert_eq!(err.to_string(), "this CPU has no AVX2 with FMA");
        assert_eq!(Isa::Avx2.check(&avx2_cpu), Ok(()));
        assert_eq!(Isa::Portable.check(&[Isa::Portable]), Ok(()));
    }

    #[test]
    fn this_cpu_runs_what_it_lists_and_portable_always() {
        let available = Isa::available();
        assert_eq!(available.last(), Some(&Isa::Portable));
        assert_eq!(Isa::detect(), available[0]);
        for isa in Isa::ALL {
            let listed = available.contains(&isa);
            assert_eq!(isa.check(&available).is_ok(), listed, "{isa:?}");
            if listed {
                isa.assert_supported();
            }
        }
    }
}
