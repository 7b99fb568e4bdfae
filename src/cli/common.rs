//! Arguments shared by several subcommands.

use ava_dino::device::Backend;
use burn::tensor::Device;

/// `--device cpu|wgpu|vulkan|cuda`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArg {
    /// Backend to run on. GPU backends need the matching cargo feature and a real GPU.
    #[arg(long, default_value = "cpu", value_parser = parse_backend)]
    pub device: Backend,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse()
}

impl DeviceArg {
    pub fn select(&self) -> anyhow::Result<Device> {
        Ok(ava_dino::device::select(self.device)?)
    }
}
