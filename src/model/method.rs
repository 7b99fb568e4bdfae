//! The AVA-DINO trainable part: modules, forward over taps, losses.
//!
//! Shapes: B batch, L taps, D feature width, E text width, N = h*w patches, S map side.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

use super::adapter::{Adapter, linear_t};
use super::config::MethodConfig;
use super::heads::{aacm, cross_modal_map, global_logits, l2_normalize, pair_prompts};
use super::loss;
use super::routing::{Gate, text_routing};
use super::upsample::Upsampler;

/// The trainable modules (names follow the reference checkpoint, see `checkpoint::key_table`;
/// constructors `AvaDino::new` / `try_new` are in `checkpoint`, with the table they draw from).
#[derive(Module, Debug)]
pub struct AvaDino {
    /// Per tap, `cls_token_adapter_normal` (`D -> b -> D`).
    pub cls_normal: Vec<Adapter>,
    /// Per tap, `cls_token_adapter_anomaly`; empty for `single_adapter`.
    pub cls_anomaly: Vec<Adapter>,
    pub patch_normal: Vec<Adapter>,
    pub patch_anomaly: Vec<Adapter>,
    /// `prompt_adapter.{0,1}` (`E -> E -> E`; only the hidden output is used).
    pub prompt: Vec<Adapter>,
    /// `text_projection.weight` `[D, E]`.
    pub text_projection: Param<Tensor<2>>,
    /// Per tap routing gate; only for `learnable_routing`.
    pub gates: Vec<Gate>,
    #[module(skip)]
    pub config: MethodConfig,
}

/// What one forward pass gives.
#[derive(Debug, Clone)]
pub struct MethodOutput {
    /// Tap-averaged cross-modal anomaly channel `[B, S, S]` (the pixel score).
    pub anomaly_map: Tensor<3>,
    /// Tap-averaged cross-modal map `[B, 2, S, S]` (softmax over channels).
    pub maps: Tensor<4>,
    /// Tap-averaged AACM `[B, 2, S, S]`.
    pub aacm: Tensor<4>,
    /// Tap-averaged global logits `[B, 2]`.
    pub global: Tensor<2>,
    /// Tap-averaged routing weights `[B]` (1 and 0 for `single_adapter`).
    pub w_normal: Tensor<1>,
    pub w_anomaly: Tensor<1>,
    /// Per tap routing weights `[B, 2]` (empty for `single_adapter`).
    pub tap_weights: Vec<Tensor<2>>,
}

impl MethodOutput {
    /// The same output cut from the autodiff graph.
    pub fn detach(self) -> Self {
        Self {
            anomaly_map: self.anomaly_map.detach(),
            maps: self.maps.detach(),
            aacm: self.aacm.detach(),
            global: self.global.detach(),
            w_normal: self.w_normal.detach(),
            w_anomaly: self.w_anomaly.detach(),
            tap_weights: self.tap_weights.into_iter().map(|t| t.detach()).collect(),
        }
    }
}

/// The four loss terms and the weighted total, each `[1]`.
#[derive(Debug, Clone)]
pub struct Losses {
    pub aware: Tensor<1>,
    pub seg: Tensor<1>,
    pub global: Tensor<1>,
    pub route: Tensor<1>,
    pub total: Tensor<1>,
}

/// Loss values on the host.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    pub aware: f32,
    pub seg: f32,
    pub global: f32,
    pub route: f32,
    pub total: f32,
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN)
}

impl Losses {
    pub fn detach(self) -> Self {
        Self {
            aware: self.aware.detach(),
            seg: self.seg.detach(),
            global: self.global.detach(),
            route: self.route.detach(),
            total: self.total.detach(),
        }
    }

    pub fn values(&self) -> LossValues {
        LossValues {
            aware: scalar(&self.aware),
            seg: scalar(&self.seg),
            global: scalar(&self.global),
            route: scalar(&self.route),
            total: scalar(&self.total),
        }
    }
}

/// Inputs that do not fit the model's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model input: {0}")]
    Input(String),
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
}

impl AvaDino {
    /// Number of trainable parameters (28.3M at full size).
    pub fn trainable_params(&self) -> usize {
        self.num_params()
    }

    /// One line for logs: variant, protocol, sizes and the trainable parameter count.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let digits = self.trainable_params().to_string();
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!(
            "AVA-DINO {} ({:?} protocol): taps {:?}, D={}, b={}, E={}, maps {}x{}: {grouped} trainable parameters",
            c.variant.name(),
            c.protocol,
            c.taps,
            c.dim,
            c.bottleneck,
            c.text_dim,
            c.map_size,
            c.map_size
        )
    }

    /// Forward over all taps.
    ///
    /// `cls`: per tap `[B, D]`; `patches`: per tap `[B, h*w, D]` (row-major grid); `grid`: `[h, w]`;
    /// `text`: `[B, E, 2]`, column 0 normal.
    ///
    /// # Panics
    /// If the shapes disagree with the configuration; [`AvaDino::try_forward`] returns an error instead.
    pub fn forward(
        &self,
        cls: &[Tensor<2>],
        patches: &[Tensor<3>],
        grid: [usize; 2],
        text: Tensor<3>,
    ) -> MethodOutput {
        self.try_forward(cls, patches, grid, text)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn check(
        &self,
        cls: &[Tensor<2>],
        patches: &[Tensor<3>],
        grid: [usize; 2],
        text: &Tensor<3>,
    ) -> Result<usize, ModelError> {
        let c = &self.config;
        let bad = |m: String| Err(ModelError::Input(m));
        if cls.len() != c.n_taps() || patches.len() != c.n_taps() {
            return bad(format!(
                "{} cls and {} patch tensors given, the model has {} taps ({:?})",
                cls.len(),
                patches.len(),
                c.n_taps(),
                c.taps
            ));
        }
        let [b, e, two] = text.dims();
        if e != c.text_dim || two != 2 {
            return bad(format!(
                "text is {:?}, expected [B, {}, 2]",
                [b, e, two],
                c.text_dim
            ));
        }
        for (t, (x, p)) in cls.iter().zip(patches).enumerate() {
            if x.dims() != [b, c.dim] {
                return bad(format!(
                    "cls of tap {t} is {:?}, expected [{b}, {}]",
                    x.dims(),
                    c.dim
                ));
            }
            if p.dims() != [b, grid[0] * grid[1], c.dim] {
                return bad(format!(
                    "patches of tap {t} are {:?}, expected [{b}, {}, {}] for grid {grid:?}",
                    p.dims(),
                    grid[0] * grid[1],
                    c.dim
                ));
            }
        }
        Ok(b)
    }

    /// `w_n * A_n(x) + w_a * A_a(x) + x` (dual) or `A(x) + x` (single), then L2-normalized.
    /// `w` is `[B, 2]` broadcast to x's rank.
    fn fuse<const R: usize>(
        &self,
        x: Tensor<R>,
        normal: &Adapter,
        anomaly: Option<(&Adapter, Tensor<2>)>,
    ) -> Tensor<R> {
        let y = match anomaly {
            None => normal.forward(x.clone()) + x,
            Some((anomaly, w)) => {
                let [b, _] = w.dims();
                let mut shape = [1usize; R];
                shape[0] = b;
                let wn = w.clone().narrow(1, 0, 1).reshape(shape);
                let wa = w.narrow(1, 1, 1).reshape(shape);
                wn * normal.forward(x.clone()) + wa * anomaly.forward(x.clone()) + x
            }
        };
        l2_normalize(y, R - 1)
    }

    pub fn try_forward(
        &self,
        cls: &[Tensor<2>],
        patches: &[Tensor<3>],
        grid: [usize; 2],
        text: Tensor<3>,
    ) -> Result<MethodOutput, ModelError> {
        let b = self.check(cls, patches, grid, &text)?;
        let c = &self.config;
        let (e, l) = (c.text_dim, c.n_taps());
        let device = text.device();
        let wp = self.text_projection.val();

        let t_n = text.clone().narrow(2, 0, 1).reshape([b, e]);
        let t_a = text.narrow(2, 1, 1).reshape([b, e]);
        let a0 = self.prompt[0].hidden(t_n.clone());
        let a1 = self.prompt[1].hidden(t_a.clone());
        let adjusted = pair_prompts(a0, a1, c.protocol);
        // T~ transposed: [B, 2, D].
        let text_proj = linear_t(adjusted.swap_dims(1, 2), wp.clone());
        // Routing uses Wp on the raw text features.
        let (tn_proj, ta_proj) = (linear_t(t_n, wp.clone()), linear_t(t_a, wp));
        let up = Upsampler::new(grid, c.map_size, &device);

        let mut maps = Vec::with_capacity(l);
        let mut aacms = Vec::with_capacity(l);
        let mut globals = Vec::with_capacity(l);
        let mut tap_weights = Vec::with_capacity(l);
        for t in 0..l {
            let (x, p) = (cls[t].clone(), patches[t].clone());
            let w = if !c.variant.dual() {
                None
            } else if let Some(gate) = self.gates.get(t) {
                Some(gate.forward(x.clone(), c.tau))
            } else {
                Some(text_routing(
                    x.clone(),
                    tn_proj.clone(),
                    ta_proj.clone(),
                    c.tau,
                ))
            };
            let cls_f = self.fuse(
                x,
                &self.cls_normal[t],
                w.clone().map(|w| (&self.cls_anomaly[t], w)),
            );
            let p_f = self.fuse(
                p,
                &self.patch_normal[t],
                w.clone().map(|w| (&self.patch_anomaly[t], w)),
            );
            maps.push(cross_modal_map(p_f.clone(), text_proj.clone(), &up));
            aacms.push(aacm(p_f, cls_f.clone(), &up));
            globals.push(global_logits(cls_f, text_proj.clone()));
            if let Some(w) = w {
                tap_weights.push(w);
            }
        }
        let mean4 = |v: Vec<Tensor<4>>| Tensor::stack::<5>(v, 0).mean_dim(0).squeeze_dim::<4>(0);
        let maps = mean4(maps);
        let aacm = mean4(aacms);
        let global = Tensor::stack::<3>(globals, 0)
            .mean_dim(0)
            .squeeze_dim::<2>(0);
        let (w_normal, w_anomaly) = if tap_weights.is_empty() {
            (Tensor::ones([b], &device), Tensor::zeros([b], &device))
        } else {
            let w = Tensor::stack::<3>(tap_weights.clone(), 0)
                .mean_dim(0)
                .squeeze_dim::<2>(0);
            (
                w.clone().narrow(1, 0, 1).reshape([b]),
                w.narrow(1, 1, 1).reshape([b]),
            )
        };
        let [_, _, s1, s2] = maps.dims();
        let anomaly_map = maps.clone().narrow(1, 1, 1).reshape([b, s1, s2]);
        Ok(MethodOutput {
            anomaly_map,
            maps,
            aacm,
            global,
            w_normal,
            w_anomaly,
            tap_weights,
        })
    }

    /// The reference losses. `labels` `[B]` (0 normal, 1 anomalous), `masks` `[B, S, S]`
    /// (binarized here at `> 0.5` as `ava_dino_forward` does).
    pub fn losses(&self, out: &MethodOutput, labels: Tensor<1, Int>, masks: Tensor<3>) -> Losses {
        let w = &self.config.loss_weights;
        let m = masks.greater_elem(0.5).float();
        let y = labels.float();
        let aware = loss::map_loss(out.aacm.clone(), m.clone());
        let seg = loss::map_loss(out.maps.clone(), m);
        let global = loss::cross_entropy(out.global.clone(), y.clone());
        let route = loss::routing(out.w_normal.clone(), out.w_anomaly.clone(), y);
        let mut total = aware.clone().mul_scalar(w.aware)
            + seg.clone().mul_scalar(w.seg)
            + global.clone().mul_scalar(w.global);
        let rw = self.config.route_weight();
        if rw != 0.0 {
            total = total + route.clone().mul_scalar(rw);
        }
        Losses {
            aware,
            seg,
            global,
            route,
            total,
        }
    }
}
