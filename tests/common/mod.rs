//! Test support shared by the integration tests (not part of the library).
//!
//! Each test binary includes this with `mod common;` and uses what it needs.
#![allow(dead_code)]

pub mod alloc;
pub mod device;
pub mod parity;
