//! The CLIP text transformer: token + position embeddings, pre-LN blocks with causal multi-head
//! attention, final LayerNorm, pooling at the first end-of-text token (the arg-max id, as
//! `CLIP.encode_text` does), `text_projection`. Frozen: plain tensors, no autodiff state.
//!
//! Weights enter through one table of HF names ([`ClipText::from_hf_tensors`]); the loader maps
//! other layouts onto it, and the random initializer builds the same table.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::ClipTextConfig;
use super::{Activation, TextError};
use crate::io::{HostTensor, TensorFile};
use crate::rng::SplitMix64;

/// A dense layer stored as burn uses it: `weight` [in, out], `y = x W + b`.
#[derive(Clone, Debug)]
struct Linear {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    /// `x` [N, in] -> [N, out].
    fn forward2(&self, x: Tensor<2>) -> Tensor<2> {
        let y = x.matmul(self.weight.clone());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze::<2>(),
            None => y,
        }
    }

    /// `x` [B, L, in] -> [B, L, out].
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, l, i] = x.dims();
        let y = self.forward2(x.reshape([b * l, i]));
        let o = y.dims()[1];
        y.reshape([b, l, o])
    }
}

#[derive(Clone, Debug)]
struct LayerNorm {
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    /// Normalizes the last axis of `x` [B, L, W] (biased variance, as PyTorch).
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) / (var + self.eps).sqrt();
        normed * self.gamma.clone().unsqueeze::<3>() + self.beta.clone().unsqueeze::<3>()
    }
}

/// One pre-LN residual block.
#[derive(Clone, Debug)]
struct Block {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The CLIP text tower with its projection.
#[derive(Clone, Debug)]
pub struct ClipText {
    config: ClipTextConfig,
    activation: Activation,
    /// [V, W]
    token_embedding: Tensor<2>,
    /// [C, W]
    position_embedding: Tensor<2>,
    blocks: Vec<Block>,
    final_ln: LayerNorm,
    /// [W, E], used as `x P` (OpenAI orientation).
    projection: Tensor<2>,
    weights_hash: String,
    device: Device,
}

/// The HF names of every tensor a model with `config` holds, with their PyTorch shapes.
pub fn hf_key_shapes(config: &ClipTextConfig) -> Vec<(String, Vec<usize>)> {
    let (w, m) = (config.hidden_size, config.intermediate_size);
    let mut keys = vec![
        (
            "text_model.embeddings.token_embedding.weight".to_string(),
            vec![config.vocab_size, w],
        ),
        (
            "text_model.embeddings.position_embedding.weight".to_string(),
            vec![config.max_position_embeddings, w],
        ),
        ("text_model.final_layer_norm.weight".to_string(), vec![w]),
        ("text_model.final_layer_norm.bias".to_string(), vec![w]),
        (
            "text_projection.weight".to_string(),
            vec![config.projection_dim, w],
        ),
    ];
    for i in 0..config.num_hidden_layers {
        let p = format!("text_model.encoder.layers.{i}.");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            keys.push((format!("{p}self_attn.{proj}.weight"), vec![w, w]));
            keys.push((format!("{p}self_attn.{proj}.bias"), vec![w]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            keys.push((format!("{p}{ln}.weight"), vec![w]));
            keys.push((format!("{p}{ln}.bias"), vec![w]));
        }
        keys.push((format!("{p}mlp.fc1.weight"), vec![m, w]));
        keys.push((format!("{p}mlp.fc1.bias"), vec![m]));
        keys.push((format!("{p}mlp.fc2.weight"), vec![w, m]));
        keys.push((format!("{p}mlp.fc2.bias"), vec![w]));
    }
    keys
}

impl ClipText {
    /// Builds the model from HF-named tensors (PyTorch orientation: Linear weights [out, in]).
    /// Missing, unexpected or mis-shaped keys are one error listing every problem.
    pub fn from_hf_tensors(
        config: ClipTextConfig,
        activation: Activation,
        tensors: &BTreeMap<String, HostTensor>,
        weights_hash: String,
        source: &Path,
        device: &Device,
    ) -> Result<Self, TextError> {
        config.validate().map_err(|reason| TextError::Config {
            path: source.to_path_buf(),
            reason,
        })?;
        let expected = hf_key_shapes(&config);
        let mut problems = Vec::new();
        for (k, shape) in &expected {
            match tensors.get(k) {
                None => problems.push(format!("missing `{k}` {shape:?}")),
                Some(t) if &t.shape != shape => {
                    problems.push(format!("`{k}` has shape {:?}, expected {shape:?}", t.shape))
                }
                Some(t) if t.as_f32().is_none() => {
                    problems.push(format!("`{k}` is not a float tensor"))
                }
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(k, _)| k.as_str()).collect();
        for k in tensors.keys().filter(|k| !known.contains(k.as_str())) {
            problems.push(format!("unexpected `{k}`"));
        }
        if !problems.is_empty() {
            let n = problems.len();
            problems.truncate(12);
            let more = if n > 12 {
                format!(" (+{} more)", n - 12)
            } else {
                String::new()
            };
            return Err(TextError::Keys {
                path: source.to_path_buf(),
                problems: format!("{}{more}", problems.join("; ")),
            });
        }
        let t1 = |k: &str| tensors[k].to_tensor::<1>(device);
        let t2 = |k: &str| tensors[k].to_tensor::<2>(device);
        let linear = |p: &str| Linear {
            weight: t2(&format!("{p}.weight")).transpose(),
            bias: Some(t1(&format!("{p}.bias"))),
        };
        let ln = |p: &str| LayerNorm {
            gamma: t1(&format!("{p}.weight")),
            beta: t1(&format!("{p}.bias")),
            eps: config.layer_norm_eps,
        };
        let blocks = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("text_model.encoder.layers.{i}.");
                Block {
                    ln1: ln(&format!("{p}layer_norm1")),
                    q: linear(&format!("{p}self_attn.q_proj")),
                    k: linear(&format!("{p}self_attn.k_proj")),
                    v: linear(&format!("{p}self_attn.v_proj")),
                    out: linear(&format!("{p}self_attn.out_proj")),
                    ln2: ln(&format!("{p}layer_norm2")),
                    fc1: linear(&format!("{p}mlp.fc1")),
                    fc2: linear(&format!("{p}mlp.fc2")),
                }
            })
            .collect();
        Ok(Self {
            token_embedding: t2("text_model.embeddings.token_embedding.weight"),
            position_embedding: t2("text_model.embeddings.position_embedding.weight"),
            blocks,
            final_ln: ln("text_model.final_layer_norm"),
            projection: t2("text_projection.weight").transpose(),
            config,
            activation,
            weights_hash,
            device: device.clone(),
        })
    }

    /// Seeded random weights with non-trivial statistics (LayerNorm gains ~U(0.5, 1.5), biases
    /// ~N(0, 0.02), matrices ~N(0, 1/fan_in), embeddings ~N(0, 0.02)): the embedded default
    /// when no real CLIP weights are given. The same seed and config give the same model.
    pub fn random(config: ClipTextConfig, seed: u64, device: &Device) -> Result<Self, TextError> {
        let source = Path::new("<random>");
        config.validate().map_err(|reason| TextError::Config {
            path: source.to_path_buf(),
            reason,
        })?;
        let mut rng = SplitMix64(seed ^ 0xC11F_7E47);
        let mut tensors = BTreeMap::new();
        for (k, shape) in hf_key_shapes(&config) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if k.contains("layer_norm") && k.ends_with("weight") {
                (0..n).map(|_| (0.5 + rng.uniform()) as f32).collect()
            } else if k.ends_with("bias") || k.contains("embedding") {
                (0..n).map(|_| (0.02 * rng.normal()) as f32).collect()
            } else {
                let std = 1.0 / (shape[1] as f64).sqrt();
                (0..n).map(|_| (std * rng.normal()) as f32).collect()
            };
            tensors.insert(k, HostTensor::f32(shape, values));
        }
        let hash = crate::text::load::sha256_hex(
            format!("random-v1:{seed}:{}", config.to_hf_json()).as_bytes(),
        );
        Self::from_hf_tensors(config, Activation::Gelu, &tensors, hash, source, device)
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
        let mut f = TensorFile::new("model.safetensors");
        let mut put = |k: String, t: HostTensor| f.insert(k, t);
        let host2 = |t: &Tensor<2>| HostTensor::from_tensor(t.clone());
        let host1 = |t: &Tensor<1>| HostTensor::from_tensor(t.clone());
        put(
            "text_model.embeddings.token_embedding.weight".into(),
            host2(&self.token_embedding),
        );
        put(
            "text_model.embeddings.position_embedding.weight".into(),
            host2(&self.position_embedding),
        );
        put(
            "text_model.final_layer_norm.weight".into(),
            host1(&self.final_ln.gamma),
        );
        put(
            "text_model.final_layer_norm.bias".into(),
            host1(&self.final_ln.beta),
        );
        put(
            "text_projection.weight".into(),
            host2(&self.projection.clone().transpose()),
        );
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("text_model.encoder.layers.{i}.");
            for (name, l) in [
                ("self_attn.q_proj", &b.q),
                ("self_attn.k_proj", &b.k),
                ("self_attn.v_proj", &b.v),
                ("self_attn.out_proj", &b.out),
                ("mlp.fc1", &b.fc1),
                ("mlp.fc2", &b.fc2),
            ] {
                put(
                    format!("{p}{name}.weight"),
                    host2(&l.weight.clone().transpose()),
                );
                put(
                    format!("{p}{name}.bias"),
                    host1(l.bias.as_ref().expect("CLIP linears have biases")),
                );
            }
            for (name, n) in [("layer_norm1", &b.ln1), ("layer_norm2", &b.ln2)] {
                put(format!("{p}{name}.weight"), host1(&n.gamma));
                put(format!("{p}{name}.bias"), host1(&n.beta));
            }
        }
        f
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
        // First arg-max per row (torch.argmax returns the first occurrence).
        let pooled: Vec<usize> = ids
            .chunks(s)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(0, |best, (j, &v)| if v > row[best] { j } else { best })
            })
            .collect();
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
        Ok(pooled.matmul(self.projection.clone()))
    }

    /// Final-LayerNormed hidden states [b, len, W] of checked ids.
    fn hidden_states(&self, ids: Vec<i64>, b: usize, len: usize) -> Tensor<3> {
        let w = self.config.hidden_size;
        let index = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * len]), &self.device);
        let tokens = self
            .token_embedding
            .clone()
            .select(0, index)
            .reshape([b, len, w]);
        let positions = self
            .position_embedding
            .clone()
            .narrow(0, 0, len)
            .unsqueeze::<3>();
        let mut x = tokens + positions;
        let mask = causal_mask(len, &self.device);
        for block in &self.blocks {
            x = self.block(block, x, &mask);
        }
        self.final_ln.forward(x)
    }

    /// One residual block on `x` [B, L, W].
    fn block(&self, blk: &Block, x: Tensor<3>, mask: &Tensor<4>) -> Tensor<3> {
        let [b, l, w] = x.dims();
        let (h, d) = (self.config.num_attention_heads, self.config.head_dim());
        let y = blk.ln1.forward(x.clone());
        // [B, L, W] -> [B, H, L, d]
        let heads = |t: Tensor<3>| t.reshape([b, l, h, d]).swap_dims(1, 2);
        let q = heads(blk.q.forward(y.clone())).mul_scalar((d as f64).powf(-0.5));
        let k = heads(blk.k.forward(y.clone()));
        let v = heads(blk.v.forward(y));
        let scores = q.matmul(k.swap_dims(2, 3)) + mask.clone();
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, l, w]);
        let x = x + blk.out.forward(ctx);
        let y = blk.fc1.forward(blk.ln2.forward(x.clone()));
        let y = match self.activation {
            Activation::Gelu => gelu(y),
            Activation::QuickGelu => y.clone() * sigmoid(y.mul_scalar(1.702)),
        };
        x + blk.fc2.forward(y)
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
            &f.tensors,
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
            &t,
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
