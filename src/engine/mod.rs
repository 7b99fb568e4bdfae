//! Feature extraction and cache, training and evaluation loops, run orchestration.

pub mod evaluate;
pub mod features;
pub mod train;
