//! The tensor parity tests (dinov3, clip_text, train_step) and the untrained model's agreement
//! with the CPU kernels (backend_agreement) gathered into one test binary, built
//! only with a GPU backend feature: a GPU machine without Rust runs this one carried executable
//! (`scripts/device/h200.sh`). The tests are the same files, included, not copies; the device
//! comes from `AVA_DINO_TEST_DEVICE` (tests/common/device.rs).
#![cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]

#[path = "backend_agreement.rs"]
mod backend_agreement;
#[path = "parity_clip_text.rs"]
mod parity_clip_text;
#[path = "parity_dinov3.rs"]
mod parity_dinov3;
#[path = "parity_train_step.rs"]
mod parity_train_step;
