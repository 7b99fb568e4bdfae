//! AVA-DINO reproduction harness.
//!
//! Rooms, one job each (see `docs/` and the README for the map):
//! - [`backbone`]: frozen DINOv3 ViT image features;
//! - [`text`]: CLIP text tower, tokenizer, prompt ensemble and its cache;
//! - [`model`]: adapters, routing, heads, losses, optimizer, checkpoints;
//! - [`data`]: dataset registry, loaders, preprocessing, synthetic twins;
//! - [`image`]: image decoders, Pillow's mode conversions and resize;
//! - [`metrics`]: AUROC, AP, F1-max, AUPRO on plain slices;
//! - [`engine`]: how a job is computed: features, training, streamed evaluation;
//! - [`runner`]: which jobs run where: validation, locks, skipping, `--force`, Slurm;
//! - [`experiment`]: what a run is: YAML experiments, overrides, jobs, run directories, records;
//! - [`report`]: tables and charts;
//! - [`io`], [`device`], [`build_info`]: shared plumbing (the last: what this binary is).

pub mod backbone;
pub mod build_info;
pub mod cpu;
pub mod data;
pub mod device;
pub mod engine;
pub mod experiment;
pub mod image;
pub mod io;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod report;
pub mod rng;
pub mod runner;
pub mod text;
