//! Run-time device choice (`--device cpu|wgpu|vulkan|cuda`).
//!
//! burn 0.22 picks the backend from the `Device` value. `Device::default()` would silently land on
//! Mesa's CPU rasterizer (llvmpipe) when a wgpu build finds no GPU, so the device is always built
//! from an explicit choice here, and a GPU choice that finds no real GPU is an error, unless
//! [`ALLOW_SOFTWARE_ENV`] opts in: then a software adapter (Mesa's lavapipe/llvmpipe) is used,
//! which runs the GPU backends' compute kernels on the CPU (`scripts/gpu-parity.sh`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// The backend a run asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust `flex` CPU backend (f32).
    #[default]
    Cpu,
    /// wgpu with automatic graphics API (needs the `wgpu` cargo feature).
    Wgpu,
    /// wgpu pinned to Vulkan (needs the `vulkan` cargo feature).
    Vulkan,
    /// CUDA (needs the `cuda` cargo feature; see the README on why it is not built here).
    Cuda,
}

impl Backend {
    pub const ALL: [Backend; 4] = [Backend::Cpu, Backend::Wgpu, Backend::Vulkan, Backend::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Cuda => "cuda",
        }
    }

    /// Whether this binary was compiled with the cargo feature the backend needs.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown device `{s}`: expected one of cpu, wgpu, vulkan, cuda"))
    }
}

/// Why a requested device cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "--device {0}: this binary was built without the `{0}` cargo feature; rebuild with \
         `cargo build --release --features {0}` (see README, GPU backends)"
    )]
    NotCompiled(Backend),
    #[error(
        "--device {0}: no GPU adapter found; check the driver (and for Vulkan the loader + ICD), or use --device cpu"
    )]
    NoAdapter(Backend),
    #[error(
        "--device {backend}: the only adapter is the software rasterizer `{name}` (a CPU emulating a GPU, \
         far slower than --device cpu); no real GPU is visible - check the driver or use --device cpu \
         (to check GPU kernels on it anyway, set {ALLOW_SOFTWARE_ENV}=1)"
    )]
    SoftwareRasterizer { backend: Backend, name: String },
    #[error(
        "--device cuda: no CUDA toolkit headers at {0}: kernels are compiled at run time by NVRTC \
         against <CUDA_PATH>/include; install the CUDA toolkit or set CUDA_PATH to it"
    )]
    NoCudaHeaders(String),
}

/// Environment variable that lets a GPU backend run on a software adapter (`1`, `true` or `yes`).
pub const ALLOW_SOFTWARE_ENV: &str = "AVA_DINO_ALLOW_SOFTWARE_ADAPTER";

/// Whether the value of [`ALLOW_SOFTWARE_ENV`] opts in.
pub fn software_allowed(value: Option<&str>) -> bool {
    value.is_some_and(|v| ["1", "true", "yes"].contains(&v.trim().to_ascii_lowercase().as_str()))
}

/// Names of software adapters that wgpu may offer in place of a GPU.
const SOFTWARE_ADAPTERS: [&str; 4] = ["llvmpipe", "lavapipe", "swiftshader", "softpipe"];

/// Whether an adapter name is a software rasterizer.
pub fn is_software_adapter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SOFTWARE_ADAPTERS.iter().any(|s| lower.contains(s))
}

/// The name the device's adapter gives itself (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`),
/// when a GPU backend is compiled in and reports one; `None` for the CPU.
pub fn adapter_name(device: &Device) -> Option<String> {
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    {
        device.identity().map(|i| i.name.clone())
    }
    #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
    {
        let _ = device;
        None
    }
}

/// The device in words for provenance: the adapter's own name on a GPU backend, else the CPU
/// backend (`cpu (flex)`).
pub fn describe(device: &Device) -> String {
    adapter_name(device).unwrap_or_else(|| "cpu (flex)".into())
}

/// Builds the device for `backend`, refusing GPU backends without a real GPU.
pub fn select(backend: Backend) -> Result<Device, DeviceError> {
    if !backend.compiled() {
        return Err(DeviceError::NotCompiled(backend));
    }
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        #[allow(unreachable_patterns)]
        _ => select_gpu(backend),
    }
}

#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
fn select_gpu(backend: Backend) -> Result<Device, DeviceError> {
    use burn::tensor::DeviceType;
    let kind = match backend {
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => DeviceType::Wgpu,
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => DeviceType::Vulkan,
        #[cfg(feature = "cuda")]
        Backend::Cuda => DeviceType::Cuda,
        _ => return Err(DeviceError::NotCompiled(backend)),
    };
    // Probing a device can panic inside the runtime when no adapter exists; turn that into the
    // error the user needs instead of a worker-thread backtrace.
    let found = std::panic::catch_unwind(|| {
        let devices = Device::enumerate(kind).into_vec();
        devices
            .into_iter()
            .map(|d| {
                let name = d.identity().map(|i| (i.name.clone(), i.physical.is_some()));
                (d, name)
            })
            .collect::<Vec<_>>()
    })
    .map_err(|_| DeviceError::NoAdapter(backend))?;
    let mut software = None;
    for (device, identity) in found {
        match identity {
            Some((name, physical)) if !physical || is_software_adapter(&name) => {
                software.get_or_insert((device, name));
            }
            _ => {
                #[cfg(feature = "cuda")]
                if backend == Backend::Cuda {
                    cuda_headers()?;
                }
                return Ok(device);
            }
        }
    }
    let allowed = software_allowed(std::env::var(ALLOW_SOFTWARE_ENV).ok().as_deref());
    match software {
        Some((device, name)) if allowed => {
            eprintln!(
                "warning: --device {backend} runs on the software adapter `{name}` ({ALLOW_SOFTWARE_ENV} is set): \
                 GPU kernels computed on the CPU, for checking numerics, not for speed"
            );
            Ok(device)
        }
        Some((_, name)) => Err(DeviceError::SoftwareRasterizer { backend, name }),
        None => Err(DeviceError::NoAdapter(backend)),
    }
}

/// The CUDA C++ path compiles every kernel with NVRTC against the toolkit's headers, and cubecl
/// panics inside a worker thread when it finds none: check first.
#[cfg(feature = "cuda")]
fn cuda_headers() -> Result<(), DeviceError> {
    let root = cubecl_cuda::install::cuda_path();
    match &root {
        Some(r) if r.join("include").is_dir() => Ok(()),
        Some(r) => Err(DeviceError::NoCudaHeaders(
            r.join("include").display().to_string(),
        )),
        None => Err(DeviceError::NoCudaHeaders(
            "$CUDA_PATH, /usr/local/cuda, /opt/cuda or /usr".into(),
        )),
    }
}

#[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
fn select_gpu(backend: Backend) -> Result<Device, DeviceError> {
    Err(DeviceError::NotCompiled(backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_backend_name() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert!("tpu".parse::<Backend>().unwrap_err().contains("cpu, wgpu"));
    }

    #[test]
    fn software_adapters_are_recognized() {
        assert!(is_software_adapter("llvmpipe (LLVM 15.0.6, 256 bits)"));
        assert!(is_software_adapter("Lavapipe"));
        assert!(!is_software_adapter("NVIDIA H200"));
    }

    #[test]
    fn software_adapter_needs_an_explicit_opt_in() {
        for yes in ["1", "true", "YES", " 1 "] {
            assert!(software_allowed(Some(yes)), "{yes:?}");
        }
        for no in [
            None,
            Some(""),
            Some("0"),
            Some("false"),
            Some("no"),
            Some("2"),
        ] {
            assert!(!software_allowed(no), "{no:?}");
        }
    }

    #[test]
    fn cpu_is_always_available() {
        assert!(select(Backend::Cpu).is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn uncompiled_gpu_backend_is_a_clear_error() {
        let msg = select(Backend::Cuda).unwrap_err().to_string();
        assert!(msg.contains("--features cuda"), "{msg}");
    }
}
