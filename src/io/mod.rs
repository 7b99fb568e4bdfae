//! File plumbing shared by every room: atomic writes, locks, safetensors tensor files, PyTorch
//! `.pth`.

pub mod atomic;
pub mod lock;
pub mod pth;
pub mod tensors;

pub use atomic::{sweep_temps, sync_dir, write_atomic, write_atomic_with, write_new};
pub use lock::{FileLock, lock, try_lock};
pub use pth::{PthError, PthValue, read_pth, write_pth};
pub use tensors::{HostData, HostTensor, TensorFile, TensorFileError};
