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

/// `--device` of the commands that run an experiment: its `device` key from the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceOverride {
    /// Backend to run on, over the experiment's `device` key (the same as `--set device=NAME`):
    /// cpu, wgpu, vulkan, cuda.
    #[arg(long, value_name = "NAME", value_parser = parse_backend)]
    pub device: Option<Backend>,
}

impl DeviceOverride {
    /// `overrides` with `device=NAME` appended (the last override of a key wins).
    pub fn with(&self, overrides: &[String]) -> Vec<String> {
        let mut all = overrides.to_vec();
        all.extend(self.device.map(|d| format!("device={d}")));
        all
    }
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse()
}

impl DeviceArg {
    pub fn select(&self) -> anyhow::Result<Device> {
        Ok(ava_dino::device::select(self.device)?)
    }
}
