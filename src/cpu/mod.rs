//! The CPU kernels shared by the backbone's blocks (`backbone::cpu`) and the adapters' patch
//! branch (`model::fused`): the blocked GEMM and its micro-kernels, vector math, the
//! instruction sets and the process's choice among them (`AVA_DINO_CPU_KERNELS`), and host views
//! of flex tensors. Every instruction set computes the same bits (see `backbone::cpu` for how).

pub mod choice;
pub mod gemm;
pub mod host;
pub mod isa;
pub mod kernel;
pub mod math;

pub use choice::{Kernels, KernelsError, effective_kernels};
pub use isa::Isa;
