//! The CLIP text transformer as a burn module: token + position embeddings, pre-LN blocks with
//! causal multi-head attention, final LayerNorm, pooling at the first end-of-text token (the
//! arg-max id, as `CLIP.encode_text` does), `text_projection`. Frozen: inference only.
//!
//! The fields are named as HF `CLIPTextModelWithProjection`'s tensors (`text_model.encoder.layers.
//! 0.self_attn.q_proj.weight`), so [`crate::io::named`] maps the module to and from HF names
//! directly. The tensors are listed once, in [`key_table`], which drives the checks of a loaded
//! file, saving and the seeded random weights; the loader maps other layouts onto those names.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ClipTextConfig;
use super::{Activation, TextError};
use crate::io::named::{LinearWeights, from_named, to_named};
use crate::io::{HostTensor, Init, KeyTable, TensorFile, sha256_hex};
use crate::rng::SplitMix64;

/// `text_model.embeddings`.
#[derive(Module, Debug)]
pub struct Embeddings {
    /// `[V, W]`.
    pub token_embedding: Embedding,
    /// `[C, W]`.
    pub position_embedding: Embedding,
}

/// `self_attn` of one layer: `[W] -> [W]` projections.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
}

/// `mlp`: `[W] -> [M] -> [W]`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

/// One pre-LN residual block.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: SelfAttention,
    pub layer_norm1: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm2: LayerNorm,
}

/// `text_model.encoder`.
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

/// `text_model`.
#[derive(Module, Debug)]
pub struct TextTransformer {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
}

/// The CLIP text tower with its projection.
#[derive(Module, Debug)]
pub struct ClipText {
    pub text_model: TextTransformer,
    /// `[W] -> [E]`, no bias.
    pub text_projection: Linear,
    #[module(skip)]
    config: ClipTextConfig,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    weights_hash: String,
    #[module(skip)]
    device: Device,
}

/// Every tensor of a model with `config`: HF name, PyTorch shape, random init (LayerNorm gains
/// ~U(0.5, 1.5), biases and embeddings ~N(0, 0.02), matrices ~N(0, 1/fan_in)), in the order
/// random weights are drawn.
pub fn key_table(config: &ClipTextConfig) -> KeyTable {
    let (w, m) = (config.hidden_size, config.intermediate_size);
    let small = Init::Normal { std: 0.02 };
    let gain = Init::Uniform64 { lo: 0.5, hi: 1.5 };
    let matrix = |fan_in: usize| Init::Normal {
        std: 1.0 / (fan_in as f64).sqrt(),
    };
    let mut t = KeyTable::new();
    let e = "text_model.embeddings";
    t.push(
        format!("{e}.token_embedding.weight"),
        vec![config.vocab_size, w],
        small,
    );
    t.push(
        format!("{e}.position_embedding.weight"),
        vec![config.max_position_embeddings, w],
        small,
    );
    t.push("text_model.final_layer_norm.weight", vec![w], gain);
    t.push("text_model.final_layer_norm.bias", vec![w], small);
    t.push(
        "text_projection.weight",
        vec![config.projection_dim, w],
        matrix(w),
    );
    for i in 0..config.num_hidden_layers {
        let p = format!("text_model.encoder.layers.{i}.");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            t.push(format!("{p}self_attn.{proj}.weight"), vec![w, w], matrix(w));
            t.push(format!("{p}self_attn.{proj}.bias"), vec![w], small);
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            t.push(format!("{p}{ln}.weight"), vec![w], gain);
            t.push(format!("{p}{ln}.bias"), vec![w], small);
        }
        t.push(format!("{p}mlp.fc1.weight"), vec![m, w], matrix(w));
        t.push(format!("{p}mlp.fc1.bias"), vec![m], small);
        t.push(format!("{p}mlp.fc2.weight"), vec![w, m], matrix(m));
        t.push(format!("{p}mlp.fc2.bias"), vec![w], small);
    }
    t
}

/// The module of `config` with lazy (never materialized) parameters, to be filled by name.
fn skeleton(
    config: ClipTextConfig,
    activation: Activation,
    weights_hash: String,
    device: &Device,
) -> ClipText {
    let (w, m) = (config.hidden_size, config.intermediate_size);
    let lazy = Initializer::Zeros;
    let linear = |i: usize, o: usize| {
        LinearConfig::new(i, o)
            .with_initializer(lazy.clone())
            .init(device)
    };
    let embedding = |n: usize| {
        EmbeddingConfig::new(n, w)
            .with_initializer(lazy.clone())
            .init(device)
    };
    let norm = || {
        LayerNormConfig::new(w)
            .with_epsilon(config.layer_norm_eps)
            .init(device)
    };
    let layer = || EncoderLayer {
        self_attn: SelfAttention {
            q_proj: linear(w, w),
            k_proj: linear(w, w),
            v_proj: linear(w, w),
            out_proj: linear(w, w),
        },
        layer_norm1: norm(),
        mlp: Mlp {
            fc1: linear(w, m),
            fc2: linear(m, w),
        },
        layer_norm2: norm(),
    };
    let text_model = TextTransformer {
        embeddings: Embeddings {
            token_embedding: embedding(config.vocab_size),
            position_embedding: embedding(config.max_position_embeddings),
        },
        encoder: Encoder {
            layers: (0..config.num_hidden_layers).map(|_| layer()).collect(),
        },
        final_layer_norm: norm(),
    };
    let text_projection = LinearConfig::new(w, config.projection_dim)
        .with_bias(false)
        .with_initializer(lazy)
        .init(device);
    ClipText {
        text_model,
        text_projection,
        config,
        activation,
        weights_hash,
        device: device.clone(),
    }
}

/// Field paths are HF names already.
fn hf_name(path: &str) -> String {
    path.to_string()
}

impl ClipText {
    /// Builds the model from HF-named tensors (PyTorch orientation: Linear weights [out, in]),
    /// which move into it. Missing, unexpected or misshapen keys are one error listing every
    /// problem.
    pub fn from_hf_tensors(
        config: ClipTextConfig,
        activation: Activation,
        mut tensors: BTreeMap<String, HostTensor>,
        weights_hash: String,
        source: &Path,
        device: &Device,
    ) -> Result<Self, TextError> {
        config.validate().map_err(|reason| TextError::Config {
            path: source.to_path_buf(),
            reason,
        })?;
        let keys_err = |mut problems: Vec<String>| {
            let n = problems.len();
            problems.truncate(12);
            let more = if n > 12 {
                format!(" (+{} more)", n - 12)
            } else {
                String::new()
            };
            TextError::Keys {
                path: source.to_path_buf(),
                problems: format!("{}{more}", problems.join("; ")),
            }
        };
        let problems = key_table(&config).check(&tensors, true);
        if !problems.is_empty() {
            return Err(keys_err(problems.iter().map(|p| p.to_string()).collect()));
        }
        let model = skeleton(config, activation, weights_hash, device);
        // Linear weights stay in PyTorch's storage (see `layer_norm` for why the numerics matter).
        from_named(model, &mut tensors, &hf_name, LinearWeights::View, device).map_err(keys_err)
    }

    /// Seeded random weights drawn from [`key_table`]: the embedded default when no real CLIP
    /// weights are given. The same seed and config give the same model.
    pub fn random(config: ClipTextConfig, seed: u64, device: &Device) -> Result<Self, TextError> {
        let source = Path::new("<random>");
        config.validate().map_err(|reason| TextError::Config {
            path: source.to_path_buf(),
            reason,
        })?;
        let mut rng = SplitMix64(seed ^ 0xC11F_7E47);
        let tensors = key_table(&config).random(&mut rng);
        let hash = sha256_hex(format!("random-v1:{seed}:{}", config.to_hf_json()).as_bytes());
        Self::from_hf_tensors(config, Activation::Gelu, tensors, hash, source, device)
    }

    /// The same weights run with another activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// SHA-256 of the weights file (or of seed + config for random weights): the cache key.
    pub fn weights_hash(&self) -> &str {
        &self.weights_hash
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights in HF layout (PyTorch orientation), e.g. to save.
    pub fn to_hf_tensors(&self) -> TensorFile {
        TensorFile {
            path: "model.safetensors".into(),
            tensors: to_named(self, &hf_name),
        }
    }

    /// Writes `dir/config.json` (with `hidden_act` = this model's activation) and
    /// `dir/model.safetensors` in HF `CLIPTextModelWithProjection` layout, atomically.
    pub fn save_hf(&self, dir: &Path) -> Result<(), TextError> {
        let mut cfg = self.config.clone();
        cfg.hidden_act = self.activation;
        let cfg_path = dir.join("config.json");
        crate::io::write_atomic(&cfg_path, cfg.to_hf_json().as_bytes()).map_err(|source| {
            TextError::Write {
                path: cfg_path,
                source,
            }
        })?;
        self.to_hf_tensors().write(dir.join("model.safetensors"))?;
        Ok(())
    }

    /// Projected text features (not normalized) of token ids.
    ///
    /// `ids`: [B, S] with S <= context length, ids < vocab; each row is pooled at its first
    /// largest id (the end-of-text token for CLIP-tokenized rows). Returns [B, E].
    ///
    /// Only the first `max pooled position + 1` tokens are run: under the causal mask later
    /// tokens cannot reach the pooled one, so this is exact and saves ~4x on short prompts.
    pub fn encode(&self, ids: Tensor<2, Int>) -> Result<Tensor<2>, TextError> {
        let [b, s] = ids.dims();
        let host = ids
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| TextError::Ids(format!("{e:?}")))?;
        self.encode_host(&host, b, s)
    }

    /// [`encode`](Self::encode) on row-major host ids [b, s].
    pub fn encode_host(&self, ids: &[i64], b: usize, s: usize) -> Result<Tensor<2>, TextError> {
        if ids.len() != b * s || b == 0 || s == 0 {
            return Err(TextError::Ids(format!(
                "expected a non-empty [B, S] batch, got {} ids for [{b}, {s}]",
                ids.len()
            )));
        }
        if s > self.config.max_position_embeddings {
            return Err(TextError::Ids(format!(
                "sequence length {s} exceeds the context length {}",
                self.config.max_position_embeddings
            )));
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id < 0 || id as usize >= self.config.vocab_size)
        {
            return Err(TextError::Ids(format!(
                "token id {bad} is outside the vocabulary [0, {})",
                self.config.vocab_size
            )));
        }
        let pooled = pooled_positions(ids, s);
        let len = pooled.iter().max().unwrap() + 1;
        let mut kept = Vec::with_capacity(b * len);
        for row in ids.chunks(s) {
            kept.extend_from_slice(&row[..len]);
        }
        let hidden = self.hidden_states(kept, b, len);
        let w = self.config.hidden_size;
        let rows: Vec<i64> = pooled
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * len + p) as i64)
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &self.device);
        let pooled = hidden.reshape([b * len, w]).select(0, index);
        Ok(self.text_projection.forward(pooled))
    }

    /// Final-LayerNormed hidden states [b, len, W] of checked ids.
    fn hidden_states(&self, ids: Vec<i64>, b: usize, len: usize) -> Tensor<3> {
        let m = &self.text_model;
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, len]), &self.device);
        let tokens = m.embeddings.token_embedding.forward(ids);
        let positions = m
            .embeddings
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, len)
            .unsqueeze::<3>();
        let mut x = tokens + positions;
        let mask = causal_mask(len, &self.device);
        for layer in &m.encoder.layers {
            x = self.layer(layer, x, &mask);
        }
        self.layer_norm(&m.final_layer_norm, x)
    }

    /// `ln` over the last axis of `x` [B, L, W], PyTorch's formula step by step (biased
    /// variance). Text features are cached on disk by weights hash, activation and class word,
    /// not by code version, so their bits must not move: burn's fused `LayerNorm::forward` and
    /// a contiguous copy of the Linear weights each round differently (1e-7 relative) from the
    /// computation every cached feature and recorded result comes from.
    fn layer_norm(&self, ln: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) / (var + self.config.layer_norm_eps).sqrt();
        let y = normed * ln.gamma.val().unsqueeze::<3>();
        match &ln.beta {
            Some(beta) => y + beta.val().unsqueeze::<3>(),
            None => y,
        }
    }

    /// One residual block on `x` [B, L, W].
    fn layer(&self, layer: &EncoderLayer, x: Tensor<3>, mask: &Tensor<4>) -> Tensor<3> {
        let [b, l, w] = x.dims();
        let (h, d) = (self.config.num_attention_heads, self.config.head_dim());
        let att = &layer.self_attn;
        let y = self.layer_norm(&layer.layer_norm1, x.clone());
        // [B, L, W] -> [B, H, L, d]
        let heads = |t: Tensor<3>| t.reshape([b, l, h, d]).swap_dims(1, 2);
        let q = heads(att.q_proj.forward(y.clone())).mul_scalar((d as f64).powf(-0.5));
        let k = heads(att.k_proj.forward(y.clone()));
        let v = heads(att.v_proj.forward(y));
        let scores = q.matmul(k.swap_dims(2, 3)) + mask.clone();
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, l, w]);
        let x = x + att.out_proj.forward(ctx);
        let y = layer
            .mlp
            .fc1
            .forward(self.layer_norm(&layer.layer_norm2, x.clone()));
        let y = match self.activation {
            Activation::Gelu => gelu(y),
            Activation::QuickGelu => y.clone() * sigmoid(y.mul_scalar(1.702)),
        };
        x + layer.mlp.fc2.forward(y)
    }
}

/// Additive causal mask [1, 1, L, L]: 0 on and below the diagonal, -inf above.
fn causal_mask(len: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 1, len, len]), device)
}

/// The position each row of `ids` (row-major, rows of `s`) is pooled at: its first largest id,
/// as `torch.argmax` picks it (the end-of-text token for CLIP-tokenized rows). The text tower
/// runs only the first `max + 1` positions of a batch, which is what the cost model counts.
pub fn pooled_positions(ids: &[i64], s: usize) -> Vec<usize> {
    ids.chunks(s)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > row[best] { j } else { best })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 40,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            max_position_embeddings: 77,
            projection_dim: 6,
            layer_norm_eps: 1e-5,
            hidden_act: Activation::Gelu,
        }
    }

    fn host(t: Tensor<2>) -> Vec<f32> {
        HostTensor::from_tensor(t).as_f32().unwrap().to_vec()
    }

    #[test]
    fn padding_after_the_end_token_and_batching_do_not_change_features() {
        let dev = Device::flex();
        let m = ClipText::random(tiny(), 3, &dev).unwrap();
        let mut a = vec![0i64; 77];
        a[..4].copy_from_slice(&[38, 5, 7, 39]);
        let mut b = a.clone();
        b[10] = 12; // content after the first end token
        let mut two = b.clone();
        two.extend_from_slice(
            &[38, 9, 39]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, 74))
                .collect::<Vec<_>>(),
        );
        let fa = host(m.encode_host(&a, 1, 77).unwrap());
        let fb = host(m.encode_host(&b, 1, 77).unwrap());
        let f2 = host(m.encode_host(&two, 2, 77).unwrap());
        assert_eq!(fa.len(), 6);
        for i in 0..6 {
            assert!(
                (fa[i] - fb[i]).abs() < 1e-5 && (fa[i] - f2[i]).abs() < 1e-5,
                "{fa:?} {fb:?} {f2:?}"
            );
        }
        assert!(
            fa.iter().any(|v| v.abs() > 1e-3),
            "features should be non-trivial: {fa:?}"
        );
        let as_tensor = Tensor::<2, Int>::from_data(TensorData::new(two.clone(), [2, 77]), &dev);
        assert_eq!(
            host(m.encode(as_tensor).unwrap()),
            f2,
            "encode(Tensor) and encode_host agree"
        );
        let q = host(
            m.clone()
                .with_activation(Activation::QuickGelu)
                .encode_host(&a, 1, 77)
                .unwrap(),
        );
        assert!(
            q.iter().zip(&fa).any(|(x, y)| (x - y).abs() > 1e-6),
            "activation must matter"
        );
    }

    #[test]
    fn bad_ids_are_errors_not_panics() {
        let dev = Device::flex();
        let m = ClipText::random(tiny(), 1, &dev).unwrap();
        assert!(
            m.encode_host(&[1, 40], 1, 2)
                .unwrap_err()
                .to_string()
                .contains("outside the vocabulary")
        );
        assert!(
            m.encode_host(&[1; 78], 1, 78)
                .unwrap_err()
                .to_string()
                .contains("context length")
        );
        assert!(m.encode_host(&[], 0, 77).is_err());
    }

    #[test]
    fn random_is_seeded_and_round_trips_through_hf_layout() {
        let dev = Device::flex();
        let a = ClipText::random(tiny(), 5, &dev).unwrap();
        let b = ClipText::random(tiny(), 5, &dev).unwrap();
        let c = ClipText::random(tiny(), 6, &dev).unwrap();
        assert_eq!(a.to_hf_tensors().tensors, b.to_hf_tensors().tensors);
        assert_ne!(a.to_hf_tensors().tensors, c.to_hf_tensors().tensors);
        assert_eq!(a.weights_hash(), b.weights_hash());
        assert_ne!(a.weights_hash(), c.weights_hash());
        let f = a.to_hf_tensors();
        let back = ClipText::from_hf_tensors(
            tiny(),
            Activation::Gelu,
            f.tensors.clone(),
            String::new(),
            Path::new("x"),
            &dev,
        )
        .unwrap();
        assert_eq!(back.to_hf_tensors().tensors, f.tensors);
    }

    #[test]
    fn key_problems_are_listed() {
        let dev = Device::flex();
        let mut t = ClipText::random(tiny(), 1, &dev)
            .unwrap()
            .to_hf_tensors()
            .tensors;
        t.remove("text_model.final_layer_norm.bias");
        t.insert(
            "text_model.extra".into(),
            HostTensor::f32(vec![1], vec![0.0]),
        );
        t.insert(
            "text_projection.weight".into(),
            HostTensor::f32(vec![8, 6], vec![0.0; 48]),
        );
        let msg = ClipText::from_hf_tensors(
            tiny(),
            Activation::Gelu,
            t,
            String::new(),
            Path::new("w.safetensors"),
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("w.safetensors")
                && msg.contains("missing `text_model.final_layer_norm.bias`"),
            "{msg}"
        );
        assert!(
            msg.contains("unexpected `text_model.extra`")
                && msg.contains("[8, 6], expected [6, 8]"),
            "{msg}"
        );
    }
}
