//! Which implementation runs the backbone's blocks: [`Kernels`], chosen for the whole process
//! by `AVA_DINO_CPU_KERNELS` ([`Kernels::configured`]), and what actually runs on a given device
//! and dtype ([`effective_kernels`]).

use std::ffi::OsString;
use std::sync::OnceLock;

use burn::tensor::{DType, Device};

use super::isa::Isa;

/// The environment variable that chooses the kernels.
pub const KERNELS_ENV: &str = "AVA_DINO_CPU_KERNELS";

/// Which implementation runs the transformer blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The CPU kernels with the fastest instruction set this CPU has, where they apply (flex
    /// device, f32 weights), else burn.
    Auto,
    /// burn's tensor ops on any device.
    Burn,
    /// The CPU kernels with this instruction set. [`DinoV3::forward_taps`] runs burn where they
    /// do not apply; [`DinoV3::forward_taps_with`] panics there (tests and benchmarks use it to
    /// compare implementations).
    ///
    /// [`DinoV3::forward_taps`]: crate::backbone::DinoV3::forward_taps
    /// [`DinoV3::forward_taps_with`]: crate::backbone::DinoV3::forward_taps_with
    Cpu(Isa),
}

/// `AVA_DINO_CPU_KERNELS` holds a value this CPU cannot run, or no known value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KernelsError {
    #[error("{KERNELS_ENV}={value}: this CPU has no {needs}; use one of {choices}")]
    Unavailable {
        value: String,
        needs: &'static str,
        choices: String,
    },
    #[error("{KERNELS_ENV}={value}: unknown value; use one of {choices}")]
    Unknown { value: String, choices: String },
}

impl Kernels {
    /// The choice of `AVA_DINO_CPU_KERNELS` (`auto`, `avx512`, `avx2`, `portable` or `burn`,
    /// any case); unset or empty is `auto`.
    pub fn from_env() -> Result<Kernels, KernelsError> {
        Kernels::from_value(std::env::var_os(KERNELS_ENV), &Isa::available())
    }

    /// The process-wide choice: [`Kernels::from_env`], read once.
    ///
    /// # Panics
    /// On a value [`Kernels::from_env`] refuses, with its message. The binary checks the
    /// variable before any command runs, so users meet the message, not the panic.
    pub fn configured() -> Kernels {
        static CHOICE: OnceLock<Kernels> = OnceLock::new();
        *CHOICE.get_or_init(|| Kernels::from_env().unwrap_or_else(|e| panic!("{e}")))
    }

    /// [`Kernels::from_env`] on a value of the variable, for a CPU that runs `available`.
    pub fn from_value(value: Option<OsString>, available: &[Isa]) -> Result<Kernels, KernelsError> {
        let Some(value) = value else {
            return Ok(Kernels::Auto);
        };
        let Some(text) = value.to_str() else {
            return Err(KernelsError::Unknown {
                value: value.to_string_lossy().into_owned(),
                choices: choices(available),
            });
        };
        Kernels::parse(text, available)
    }

    /// One value of `AVA_DINO_CPU_KERNELS`, for a CPU that runs `available`.
    pub fn parse(value: &str, available: &[Isa]) -> Result<Kernels, KernelsError> {
        let lower = value.trim().to_ascii_lowercase();
        let kernels = match lower.as_str() {
            "" | "auto" => return Ok(Kernels::Auto),
            "burn" => return Ok(Kernels::Burn),
            name => match Isa::ALL.into_iter().find(|isa| isa.name() == name) {
                Some(isa) => Kernels::Cpu(isa),
                None => {
                    return Err(KernelsError::Unknown {
                        value: value.to_owned(),
                        choices: choices(available),
                    });
                }
            },
        };
        if let Kernels::Cpu(isa) = kernels
            && let Err(e) = isa.check(available)
        {
            return Err(KernelsError::Unavailable {
                value: value.to_owned(),
                needs: e.0.needs(),
                choices: choices(available),
            });
        }
        Ok(kernels)
    }

    /// `Auto` as what it means on this CPU, `Cpu(Isa::detect())`; the others unchanged.
    pub fn resolved(self) -> Kernels {
        match self {
            Kernels::Auto => Kernels::Cpu(Isa::detect()),
            other => other,
        }
    }

    /// `avx512`, `avx2`, `portable` or `burn` (`Auto` is named by what it resolves to).
    pub fn name(self) -> &'static str {
        match self.resolved() {
            Kernels::Cpu(isa) => isa.name(),
            _ => "burn",
        }
    }
}

/// The values a CPU that runs `available` accepts, as the error messages list them.
fn choices(available: &[Isa]) -> String {
    let isas = Isa::ALL.into_iter().filter(|isa| available.contains(isa));
    std::iter::once("auto")
        .chain(isas.map(Isa::name))
        .chain(["burn"])
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the CPU kernels run on `device` with weights of `dtype`: only on the flex device
/// without autodiff (they read the weights in place from flex's storage and record no graph),
/// only in f32. `Err` says why not. [`super::tap_hidden`] asks this first, so what it decides
/// and what [`effective_kernels`] reports are one decision.
pub fn applies(device: &Device, dtype: DType) -> Result<(), &'static str> {
    if device.is_autodiff() || *device != Device::flex() {
        return Err("not the flex device without autodiff");
    }
    if dtype != DType::F32 {
        return Err("weights not f32");
    }
    Ok(())
}

/// The name of what runs the blocks with `kernels` on `device` with weights of `dtype`, as
/// [`DinoV3::forward_taps`](crate::backbone::DinoV3::forward_taps) runs them: the CPU kernels'
/// instruction set where they apply, else `burn`. Provenance records it.
pub fn effective_kernels(kernels: Kernels, device: &Device, dtype: DType) -> &'static str {
    match kernels.resolved() {
        Kernels::Cpu(isa) if applies(device, dtype).is_ok() => isa.name(),
        _ => "burn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Isa; 3] = Isa::ALL;
    const AVX2_CPU: [Isa; 2] = [Isa::Avx2, Isa::Portable];

    #[test]
    fn every_value_parses() {
        for (value, want) in [
            ("auto", Kernels::Auto),
            ("", Kernels::Auto),
            ("avx512", Kernels::Cpu(Isa::Avx512)),
            ("avx2", Kernels::Cpu(Isa::Avx2)),
            ("portable", Kernels::Cpu(Isa::Portable)),
            ("burn", Kernels::Burn),
            ("AVX2", Kernels::Cpu(Isa::Avx2)),
            (" burn ", Kernels::Burn),
        ] {
            assert_eq!(Kernels::parse(value, &ALL), Ok(want), "{value:?}");
        }
        assert_eq!(Kernels::from_value(None, &ALL), Ok(Kernels::Auto));
        assert_eq!(
            Kernels::from_value(Some("portable".into()), &[Isa::Portable]),
            Ok(Kernels::Cpu(Isa::Portable))
        );
    }

    #[test]
    fn a_variant_the_cpu_cannot_run_is_refused_by_name() {
        let err = Kernels::parse("avx512", &AVX2_CPU).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AVA_DINO_CPU_KERNELS=avx512: this CPU has no AVX-512F; use one of auto, avx2, portable, burn"
        );
        let err = Kernels::parse("avx2", &[Isa::Portable]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AVA_DINO_CPU_KERNELS=avx2: this CPU has no AVX2 with FMA; use one of auto, portable, burn"
        );
        assert_eq!(
            Kernels::parse("avx2", &AVX2_CPU),
            Ok(Kernels::Cpu(Isa::Avx2))
        );
    }

    #[test]
    fn an_unknown_value_is_refused_with_the_choices() {
        let err = Kernels::parse("fast", &ALL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AVA_DINO_CPU_KERNELS=fast: unknown value; use one of auto, avx512, avx2, portable, burn"
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let err = Kernels::from_value(Some(OsString::from_vec(vec![0x61, 0xff])), &AVX2_CPU)
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "AVA_DINO_CPU_KERNELS=a\u{fffd}: unknown value; use one of auto, avx2, portable, burn"
            );
        }
    }

    #[test]
    fn names_and_resolution() {
        assert_eq!(Kernels::Auto.resolved(), Kernels::Cpu(Isa::detect()));
        assert_eq!(Kernels::Auto.name(), Isa::detect().name());
        assert_eq!(Kernels::Burn.resolved(), Kernels::Burn);
        assert_eq!(Kernels::Burn.name(), "burn");
        for isa in ALL {
            assert_eq!(Kernels::Cpu(isa).resolved(), Kernels::Cpu(isa));
            // Every name parses back to its choice.
            assert_eq!(
                Kernels::parse(Kernels::Cpu(isa).name(), &ALL),
                Ok(Kernels::Cpu(isa))
            );
        }
    }

    #[test]
    fn the_kernels_apply_only_on_flex_in_f32() {
        let flex = Device::flex();
        assert_eq!(
            effective_kernels(Kernels::Cpu(Isa::Portable), &flex, DType::F32),
            "portable"
        );
        assert_eq!(
            effective_kernels(Kernels::Auto, &flex, DType::F32),
            Isa::detect().name()
        );
        assert_eq!(effective_kernels(Kernels::Burn, &flex, DType::F32), "burn");
        for dtype in [DType::F16, DType::BF16] {
            assert_eq!(effective_kernels(Kernels::Auto, &flex, dtype), "burn");
        }
        let autodiff = Device::flex().autodiff();
        assert_eq!(
            effective_kernels(Kernels::Auto, &autodiff, DType::F32),
            "burn"
        );
        assert!(
            applies(&autodiff, DType::F32)
                .unwrap_err()
                .contains("autodiff")
        );
    }
}
