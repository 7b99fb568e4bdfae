//! File plumbing shared by every room: atomic writes, locks, hashing, safetensors tensor files,
//! PyTorch `.pth`, the one weights reader over both ([`read_weights`]), and model key tables with
//! the mapping between burn modules and named tensors; the free space of disks.

pub mod atomic;
pub mod dtype;
pub mod hash;
pub mod host;
pub mod keys;
pub mod lock;
pub mod named;
pub mod pth;
pub mod space;
pub mod tensors;
pub mod weights;

pub use atomic::{create_temp, sweep_temps, sync_dir, write_atomic, write_atomic_with, write_new};
pub use dtype::FileDtype;
pub use hash::{sha256_file, sha256_file_cached, sha256_hex};
pub use host::{HostData, HostTensor};
pub use keys::{Init, Key, KeyProblem, KeyTable};
pub use lock::{FileLock, lock, lock_shared, try_lock};
pub use pth::{PthError, PthValue, read_pth, write_pth};
pub use tensors::{TensorFile, TensorFileError};
pub use weights::{WeightsError, read_weights};
