//! `ava-dino text`: CLIP text features, either of given token ids (`text_embeds`) or the reference
//! prompt ensemble of class words (`ensemble.<word>.normal` / `.anomaly`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ava_dino::io::{HostTensor, TensorFile};
use ava_dino::text::{Activation, ClipText, ClipTextConfig, TextFeatureCache, load_text_encoder};

use super::common::DeviceArg;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// CLIP weights: a directory (HF config.json + model.safetensors, or openai.safetensors) or a
    /// weights file (.safetensors or a plain .pt state dict; OpenAI or HF layout).
    #[arg(long, required_unless_present = "random", conflicts_with = "random")]
    pub clip: Option<PathBuf>,
    /// Use seeded random weights of the ViT-L/14-336 shape instead of real ones (the embedded
    /// default: runs anywhere, means nothing).
    #[arg(long, value_name = "SEED")]
    pub random: Option<u64>,
    /// A safetensors file holding `input_ids` i64 [B, S<=77]; writes `text_embeds` f32 [B, E]
    /// (projected, not normalized).
    #[arg(
        long,
        conflicts_with = "class_word",
        required_unless_present = "class_word"
    )]
    pub input: Option<PathBuf>,
    /// Class words whose 420-prompt ensemble to encode; writes `ensemble.<word>.normal` and
    /// `.anomaly` f32 [E]. A word asked twice is served from the cache.
    #[arg(long, num_args = 1..)]
    pub class_word: Vec<String>,
    /// MLP activation. The reference runs erf GELU (`gelu`) on weights trained with QuickGELU;
    /// `quick_gelu` is standard CLIP. HF configs say `quick_gelu`; this flag wins.
    #[arg(long, default_value = "gelu")]
    pub activation: Activation,
    /// Directory of the on-disk text-feature cache (keyed by weights hash, activation, class word).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let device = args.device.select()?;
    let model = match (&args.clip, args.random) {
        (Some(path), _) => load_text_encoder(path, args.activation, &device)
            .with_context(|| format!("loading CLIP text weights from {}", path.display()))?,
        (None, Some(seed)) => {
            eprintln!(
                "text: RANDOM ViT-L/14-336 text weights (seed {seed}), not CLIP: features are meaningless"
            );
            ClipText::random(ClipTextConfig::vitl14_336(), seed, &device)?
                .with_activation(args.activation)
        }
        (None, None) => unreachable!("clap requires --clip or --random"),
    };
    let source = args.clip.as_ref().map_or_else(
        || format!("random seed {}", args.random.unwrap()),
        |p| p.display().to_string(),
    );
    eprintln!(
        "text: weights {source} (sha256 {}), activation {}",
        &model.weights_hash()[..16],
        model.activation()
    );

    // Outputs say which activation and weights made them.
    let mut out = TensorFile::new(&args.out);
    let meta = |s: &str| HostTensor::u8(vec![s.len()], s.as_bytes().to_vec());
    out.insert("activation", meta(model.activation().name()));
    out.insert("weights_sha256", meta(model.weights_hash()));
    if let Some(input) = &args.input {
        let file = TensorFile::read(input)?;
        let ids = file.i64("input_ids", 2)?;
        let feats = model.encode_host(ids.as_i64().unwrap(), ids.shape[0], ids.shape[1])?;
        out.insert("text_embeds", HostTensor::from_tensor(feats));
    } else {
        let cache = TextFeatureCache::new(model, args.cache_dir.clone());
        for word in &args.class_word {
            let f = cache.get_or_compute(word)?;
            out.insert(
                format!("ensemble.{word}.normal"),
                HostTensor::f32(vec![f.normal.len()], f.normal),
            );
            out.insert(
                format!("ensemble.{word}.anomaly"),
                HostTensor::f32(vec![f.anomaly.len()], f.anomaly),
            );
        }
        let s = cache.stats();
        eprintln!(
            "text: cache computed={} memory_hits={} disk_hits={}",
            s.computed, s.memory_hits, s.disk_hits
        );
    }
    out.write(&args.out)?;
    eprintln!("text: wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
