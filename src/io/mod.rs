//! File plumbing shared by every room: atomic writes, safetensors tensor files, PyTorch `.pth`.

pub mod atomic;
pub mod pth;
pub mod tensors;

pub use atomic::{write_atomic, write_atomic_with};
pub use pth::{PthError, PthValue, read_pth, write_pth};
pub use tensors::{HostData, HostTensor, TensorFile, TensorFileError};
