//! The device tensor tests run on: `AVA_DINO_TEST_DEVICE=cpu|wgpu|vulkan|cuda`, default `cpu`
//! (burn's flex). A GPU choice goes through [`ava_dino::device::select`], so it needs the cargo
//! feature and a real GPU, or `AVA_DINO_ALLOW_SOFTWARE_ADAPTER=1` for Mesa's software adapter
//! (`scripts/gpu-parity.sh`).

use ava_dino::device::{Backend, adapter_name, select};
use burn::tensor::Device;

/// Environment variable naming the test device.
pub const TEST_DEVICE_ENV: &str = "AVA_DINO_TEST_DEVICE";

/// The backend [`TEST_DEVICE_ENV`] names (cpu when unset or empty).
pub fn test_backend() -> Backend {
    match std::env::var(TEST_DEVICE_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}={v}: {e}")),
        _ => Backend::Cpu,
    }
}

/// The test device; prints one `test device: <backend> (<adapter>)` line so logs say where the
/// numbers came from.
pub fn test_device() -> Device {
    let backend = test_backend();
    let device = select(backend).unwrap_or_else(|e| panic!("{TEST_DEVICE_ENV}={backend}: {e}"));
    let adapter = adapter_name(&device).unwrap_or_else(|| "burn flex".into());
    println!("test device: {backend} ({adapter})");
    device
}
