//! Feature extraction and cache, training and evaluation loops, run orchestration.

pub mod features;
pub mod train;
