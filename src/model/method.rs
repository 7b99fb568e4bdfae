//! The AVA-DINO trainable part: modules, forward over taps, losses.
//!
//! Shapes: B batch, L taps, D feature width, E text width, N = h*w patches, S map side.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, TensorData};

use super::adapter::{Adapter, linear_t};
use super::config::MethodConfig;
use super::fused;
use super::heads::{aacm, cross_modal_map, global_logits, l2_normalize, pair_prompts};
use super::loss;
use super::routing::{Gate, text_routing};
use super::upsample::Upsampler;
use crate::cpu::host::HostF32;
use crate::cpu::{Isa, Kernels};

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

/// One training batch, on the trainer's (autodiff) device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Per tap `[B, D]`.
    pub cls: Vec<Tensor<2>>,
    /// Per tap `[B, h*w, D]`.
    pub patches: Vec<Tensor<3>>,
    /// `[h, w]`.
    pub grid: [usize; 2],
    /// `[B, E, 2]`, column 0 normal.
    pub text: Tensor<3>,
    /// `[B]`, 1 = anomalous.
    pub labels: Tensor<1, Int>,
    /// `[B, S, S]`.
    pub masks: Tensor<3>,
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
        self.try_forward_on(cls, patches, grid, text, Kernels::configured())
    }

    /// [`AvaDino::try_forward`] on the implementation `kernels` chooses (tests compare them).
    pub fn try_forward_on(
        &self,
        cls: &[Tensor<2>],
        patches: &[Tensor<3>],
        grid: [usize; 2],
        text: Tensor<3>,
        kernels: Kernels,
    ) -> Result<MethodOutput, ModelError> {
        let b = self.check(cls, patches, grid, &text)?;
        let r = self.route(cls, text, b);
        // The CPU kernels record no graph: on an autodiff device the forward stays burn's
        // (training on the CPU kernels goes through `loss_and_grads`).
        let fused = self
            .fused_isa(patches, kernels)
            .filter(|_| !patches[0].device().is_autodiff());
        let (maps, aacm) = match fused {
            Some(isa) => {
                let sh = self.shapes(b, grid);
                let host = HostInputs::new(self, patches, &r);
                let m = fused::forward(isa, &sh, &host.heads());
                let device = patches[0].device();
                (
                    map_tensor(m.maps, &sh, &device),
                    map_tensor(m.aacm, &sh, &device),
                )
            }
            None => self.maps_burn(patches, grid, &r),
        };
        Ok(self.assemble(b, r, maps, aacm))
    }

    /// The text side, the routing and the CLS branch: everything but the patch branch.
    fn route(&self, cls: &[Tensor<2>], text: Tensor<3>, b: usize) -> Routed {
        let c = &self.config;
        let e = c.text_dim;
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
        let mut taps = Vec::with_capacity(c.n_taps());
        for (t, x) in cls.iter().enumerate() {
            let x = x.clone();
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
            let global = global_logits(cls_f.clone(), text_proj.clone());
            taps.push(RoutedTap { w, cls_f, global });
        }
        Routed { text_proj, taps }
    }

    /// The patch branch on burn's ops: tap-averaged cross-modal maps and AACM `[B, 2, S, S]`.
    fn maps_burn(
        &self,
        patches: &[Tensor<3>],
        grid: [usize; 2],
        r: &Routed,
    ) -> (Tensor<4>, Tensor<4>) {
        let up = Upsampler::new(grid, self.config.map_size, &patches[0].device());
        let mut maps = Vec::with_capacity(patches.len());
        let mut aacms = Vec::with_capacity(patches.len());
        for (t, (p, tap)) in patches.iter().zip(&r.taps).enumerate() {
            let p_f = self.fuse(
                p.clone(),
                &self.patch_normal[t],
                tap.w.clone().map(|w| (&self.patch_anomaly[t], w)),
            );
            maps.push(cross_modal_map(p_f.clone(), r.text_proj.clone(), &up));
            aacms.push(aacm(p_f, tap.cls_f.clone(), &up));
        }
        let mean4 = |v: Vec<Tensor<4>>| Tensor::stack::<5>(v, 0).mean_dim(0).squeeze_dim::<4>(0);
        (mean4(maps), mean4(aacms))
    }

    /// Tap averages of the routed parts, with the maps, as the output.
    fn assemble(&self, b: usize, r: Routed, maps: Tensor<4>, aacm: Tensor<4>) -> MethodOutput {
        let device = maps.device();
        let global = Tensor::stack::<3>(r.taps.iter().map(|t| t.global.clone()).collect(), 0)
            .mean_dim(0)
            .squeeze_dim::<2>(0);
        let tap_weights: Vec<Tensor<2>> = r.taps.into_iter().filter_map(|t| t.w).collect();
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
        MethodOutput {
            anomaly_map,
            maps,
            aacm,
            global,
            w_normal,
            w_anomaly,
            tap_weights,
        }
    }

    /// The instruction set of the CPU kernels when the patch branch runs on them: the
    /// parameters' rule ([`AvaDino::params_isa`]) and the features on the flex device too
    /// (with or without autodiff), in f32.
    pub fn fused_isa(&self, patches: &[Tensor<3>], kernels: Kernels) -> Option<Isa> {
        let p = patches.first()?;
        let on_flex_f32 = p.dtype() == DType::F32 && p.device().inner() == Device::flex();
        self.params_isa(kernels).filter(|_| on_flex_f32)
    }

    /// The CPU kernels' instruction set when they run on this model's parameters: f32 on the
    /// flex device (with or without autodiff) and `kernels` (the process's is
    /// `AVA_DINO_CPU_KERNELS`, the backbone's switch) not `burn`. Then the trainer updates
    /// them with [`super::adamw::HostAdamW`].
    pub fn params_isa(&self, kernels: Kernels) -> Option<Isa> {
        let Kernels::Cpu(isa) = kernels.resolved() else {
            return None;
        };
        let p = self.text_projection.val();
        (p.dtype() == DType::F32 && p.device().inner() == Device::flex()).then_some(isa)
    }

    fn shapes(&self, b: usize, grid: [usize; 2]) -> fused::Shapes {
        fused::Shapes {
            batch: b,
            grid,
            dim: self.config.dim,
            bottleneck: self.config.bottleneck,
            map: self.config.map_size,
        }
    }

    /// Losses from the loss terms, weighted as the configuration says.
    fn combine(
        &self,
        aware: Tensor<1>,
        seg: Tensor<1>,
        global: Tensor<1>,
        route: Tensor<1>,
    ) -> Losses {
        let w = &self.config.loss_weights;
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

    /// The losses of a batch and the gradients of `share x` the objective, with the detached
    /// output. On the CPU kernels (see [`AvaDino::fused_isa`]) the patch branch and the map
    /// losses run forward and backward in host memory ([`fused::train`]); their gradients
    /// reach burn's graph of the small rest (text side, routing, CLS branch, global and routing
    /// losses) as `Σ ⟨x, ∂/∂x⟩` terms on the values they read, so one backward pass gives those
    /// parameters' gradients. Elsewhere it is burn's forward and backward.
    ///
    /// `share`: `None` for a whole batch (the objective itself), `Some(f)` for a micro-batch.
    pub fn loss_and_grads(
        &self,
        batch: &Batch,
        share: Option<f64>,
    ) -> (Losses, MethodOutput, GradientsParams) {
        self.loss_and_grads_on(batch, share, Kernels::configured())
    }

    /// [`AvaDino::loss_and_grads`] on the implementation `kernels` chooses (tests compare the
    /// two in one process).
    pub fn loss_and_grads_on(
        &self,
        batch: &Batch,
        share: Option<f64>,
        kernels: Kernels,
    ) -> (Losses, MethodOutput, GradientsParams) {
        let (cls, patches, grid) = (&batch.cls, &batch.patches, batch.grid);
        let scale = |t: Tensor<1>| match share {
            Some(f) => t.mul_scalar(f),
            None => t,
        };
        let Some(isa) = self.fused_isa(patches, kernels) else {
            let out = self.forward(cls, patches, grid, batch.text.clone());
            let losses = self.losses(&out, batch.labels.clone(), batch.masks.clone());
            let grads = scale(losses.total.clone()).backward();
            let grads = GradientsParams::from_grads(grads, self);
            return (losses.detach(), out.detach(), grads);
        };
        let b = self
            .check(cls, patches, grid, &batch.text)
            .unwrap_or_else(|e| panic!("{e}"));
        let r = self.route(cls, batch.text.clone(), b);
        let sh = self.shapes(b, grid);
        let f = share.unwrap_or(1.0) as f32;
        let lw = &self.config.loss_weights;
        let masks = HostF32::new(batch.masks.clone());
        let host = HostInputs::new(self, patches, &r);
        let (m, g) = fused::train(
            isa,
            &sh,
            &host.heads(),
            &fused::Targets {
                masks: masks.f32(),
                aware: (lw.aware * f as f64) as f32,
                seg: (lw.seg * f as f64) as f32,
            },
        );
        drop(host);
        let device = batch.text.device();
        let inner = device.clone().inner();
        let y = batch.labels.clone().float();
        let out = self.assemble(
            b,
            r.clone(),
            map_tensor(m.maps, &sh, &inner).autodiff(),
            map_tensor(m.aacm, &sh, &inner).autodiff(),
        );
        let global = loss::cross_entropy(out.global.clone(), y.clone());
        let route = loss::routing(out.w_normal.clone(), out.w_anomaly.clone(), y);
        let value = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &device);
        let losses = self.combine(value(g.aware), value(g.seg), global, route);
        // The host gradients enter the graph as constants: Σ ⟨x, g⟩ has gradient g at x.
        let inner_product = |x: Tensor<3>, gr: Vec<f32>| -> Tensor<1> {
            let dims = x.dims();
            (x * Tensor::<3>::from_data(TensorData::new(gr, dims), &device)).sum()
        };
        let rw = self.config.route_weight();
        let mut small = losses.global.clone().mul_scalar(lw.global);
        if rw != 0.0 {
            small = small + losses.route.clone().mul_scalar(rw);
        }
        let mut objective = scale(small);
        objective = objective + inner_product(r.text_proj.clone(), g.text);
        let mut adapter_grads = Vec::new();
        for (t, (tap, tg)) in r.taps.iter().zip(g.taps).enumerate() {
            let d = tap.cls_f.dims();
            objective =
                objective + inner_product(tap.cls_f.clone().reshape([d[0], d[1], 1]), tg.cls);
            adapter_grads.push((&self.patch_normal[t], tg.normal));
            if let (Some(w), Some((ag, dw))) = (&tap.w, tg.anomaly) {
                let d = w.dims();
                objective = objective + inner_product(w.clone().reshape([d[0], d[1], 1]), dw);
                adapter_grads.push((&self.patch_anomaly[t], ag));
            }
        }
        let mut grads = GradientsParams::from_grads(objective.backward(), self);
        for (a, ag) in adapter_grads {
            let reg = |grads: &mut GradientsParams, p: &Param<Tensor<2>>, v: Vec<f32>| {
                let dims = p.val().dims();
                grads.register(
                    p.id,
                    Tensor::<2>::from_data(TensorData::new(v, dims), &inner),
                );
            };
            reg(&mut grads, &a.fc1, ag.fc1);
            reg(&mut grads, &a.fc2, ag.fc2);
        }
        (losses.detach(), out.detach(), grads)
    }

    /// The reference losses. `labels` `[B]` (0 normal, 1 anomalous), `masks` `[B, S, S]`
    /// (binarized here at `> 0.5` as `ava_dino_forward` does).
    pub fn losses(&self, out: &MethodOutput, labels: Tensor<1, Int>, masks: Tensor<3>) -> Losses {
        let m = masks.greater_elem(0.5).float();
        let y = labels.float();
        let aware = loss::map_loss(out.aacm.clone(), m.clone());
        let seg = loss::map_loss(out.maps.clone(), m);
        let global = loss::cross_entropy(out.global.clone(), y.clone());
        let route = loss::routing(out.w_normal.clone(), out.w_anomaly.clone(), y);
        self.combine(aware, seg, global, route)
    }
}

/// One tap's routed parts: routing weights `[B, 2]` (dual variants), fused normalised CLS
/// `[B, D]`, global logits `[B, 2]`.
#[derive(Debug, Clone)]
struct RoutedTap {
    w: Option<Tensor<2>>,
    cls_f: Tensor<2>,
    global: Tensor<2>,
}

/// Everything of a forward but the patch branch.
#[derive(Debug, Clone)]
struct Routed {
    /// `T~` transposed, `[B, 2, D]`.
    text_proj: Tensor<3>,
    taps: Vec<RoutedTap>,
}

/// `[B, 2, S, S]` from host values.
fn map_tensor(v: Vec<f32>, sh: &fused::Shapes, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v, [sh.batch, 2, sh.map, sh.map]), device)
}

/// The host values the CPU kernels read (borrowed from flex's storage where possible).
struct HostInputs {
    text: HostF32,
    patches: Vec<HostF32>,
    normal: Vec<[HostF32; 2]>,
    anomaly: Vec<[HostF32; 2]>,
    w: Vec<HostF32>,
    cls: Vec<HostF32>,
}

impl HostInputs {
    fn new(model: &AvaDino, patches: &[Tensor<3>], r: &Routed) -> Self {
        let weights = |a: &Adapter| [HostF32::new(a.fc1.val()), HostF32::new(a.fc2.val())];
        let dual = r.taps.iter().all(|t| t.w.is_some()) && model.config.variant.dual();
        Self {
            text: HostF32::new(r.text_proj.clone()),
            patches: patches.iter().map(|p| HostF32::new(p.clone())).collect(),
            normal: model.patch_normal.iter().map(weights).collect(),
            anomaly: if dual {
                model.patch_anomaly.iter().map(weights).collect()
            } else {
                Vec::new()
            },
            w: r.taps
                .iter()
                .filter_map(|t| t.w.clone().map(HostF32::new))
                .collect(),
            cls: r
                .taps
                .iter()
                .map(|t| HostF32::new(t.cls_f.clone()))
                .collect(),
        }
    }

    fn heads(&self) -> fused::Heads<'_> {
        fn aw(w: &[HostF32; 2]) -> fused::AdapterW<'_> {
            fused::AdapterW {
                fc1: w[0].f32(),
                fc2: w[1].f32(),
            }
        }
        fused::Heads {
            text: self.text.f32(),
            taps: (0..self.patches.len())
                .map(|t| fused::TapIn {
                    patches: self.patches[t].f32(),
                    normal: aw(&self.normal[t]),
                    anomaly: self.anomaly.get(t).map(|a| (aw(a), self.w[t].f32())),
                    cls: self.cls[t].f32(),
                })
                .collect(),
        }
    }
}
