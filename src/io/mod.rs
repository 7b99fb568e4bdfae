//! File plumbing shared by every room: atomic writes and safetensors tensor files.

pub mod atomic;
pub mod tensors;

pub use atomic::{write_atomic, write_atomic_with};
pub use tensors::{HostData, HostTensor, TensorFile, TensorFileError};
