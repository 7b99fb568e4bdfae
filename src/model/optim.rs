//! AdamW on the adapters with the reference's linear warmup, and the training step.
//!
//! The backbones are not part of [`AvaDino`], so they get neither gradients nor optimizer state.
//! burn's AdamW defaults differ from PyTorch's (eps 1e-5, weight decay 1e-4): both are set here.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::{ModuleRecord, RecordError};
use burn::tensor::Bytes;

use super::adamw::HostAdamW;
use super::method::{AvaDino, Batch, LossValues, Losses, MethodOutput};
use crate::cpu::Kernels;

/// AdamW with decoupled weight decay and a linear warmup (the YAML `optim` section; reference:
/// lr 1e-4, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, warmup 3 % of the steps).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Warmup as a fraction of the total optimizer steps: `int(warmup x total)` steps.
    pub warmup: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
            warmup: 0.03,
        }
    }
}

/// `LambdaLR(lambda s: s / max(1, warmup) if s < warmup else 1)` stepped after each update:
/// the update number `s` (0-based) runs with this factor, so the first update has LR 0.
pub fn warmup_factor(step: usize, warmup_steps: usize) -> f64 {
    if step < warmup_steps {
        step as f64 / warmup_steps.max(1) as f64
    } else {
        1.0
    }
}

impl OptimConfig {
    /// Warmup length in updates for a run of `total_steps` (the reference: `int(0.03 * total)`).
    pub fn warmup_steps(&self, total_steps: usize) -> usize {
        (self.warmup * total_steps as f64) as usize
    }

    /// Learning rate of update number `step` (0-based) with `warmup_steps` of warmup.
    pub fn lr_at(&self, step: usize, warmup_steps: usize) -> f64 {
        self.lr * warmup_factor(step, warmup_steps)
    }

    fn build_burn(&self) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_beta_1(self.betas[0] as f32)
            .with_beta_2(self.betas[1] as f32)
            .with_epsilon(self.eps as f32)
            .with_weight_decay(self.weight_decay as f32)
            .init()
    }
}

/// AdamW on the host where the CPU kernels run ([`AvaDino::params_isa`]'s rule on the model's
/// parameters), burn's elsewhere (GPU devices, other dtypes, `AVA_DINO_CPU_KERNELS=burn`).
enum Optimizer {
    Host(HostAdamW),
    Burn(ModuleOptimizer),
}

impl Optimizer {
    fn for_model(model: &AvaDino, config: &OptimConfig, kernels: Kernels) -> Self {
        match model.params_isa(kernels) {
            Some(isa) => Self::Host(HostAdamW::new(
                config.betas,
                config.eps,
                config.weight_decay,
                isa,
            )),
            None => Self::Burn(config.build_burn()),
        }
    }

    fn step(&mut self, lr: f64, model: AvaDino, grads: GradientsParams) -> AvaDino {
        match self {
            Self::Host(o) => o.step(lr, model, grads),
            Self::Burn(o) => o.step(lr, model, grads),
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        match self {
            Self::Host(o) => Ok(o.to_bytes()),
            Self::Burn(o) => Ok(o.into_bytes()?.to_vec()),
        }
    }

    /// This optimizer with the state `bytes` ([`Optimizer::to_bytes`]).
    fn restored(self, bytes: Vec<u8>) -> Result<Self, RecordError> {
        Ok(match self {
            Self::Host(o) => Self::Host(
                HostAdamW::from_bytes(o.hyper(), &bytes)
                    .map_err(|e| RecordError::Validation(e.to_string()))?,
            ),
            Self::Burn(o) => Self::Burn(o.from_bytes(Bytes::from_bytes_vec(bytes))?),
        })
    }
}

/// Model + AdamW + warmup schedule. Build the model on an autodiff device
/// (`Device::flex().autodiff()`); evaluate with [`Trainer::valid`] on the plain device.
pub struct Trainer {
    pub model: AvaDino,
    pub config: OptimConfig,
    /// Warmup length in updates (see [`OptimConfig::warmup_steps`]).
    pub warmup_steps: usize,
    optim: Optimizer,
    /// Which implementation runs the steps (the process's `AVA_DINO_CPU_KERNELS` unless a test
    /// asks for one).
    kernels: Kernels,
    steps_done: usize,
}

impl Trainer {
    pub fn new(model: AvaDino, config: OptimConfig, warmup_steps: usize) -> Self {
        Self::on(model, config, warmup_steps, Kernels::configured())
    }

    /// [`Trainer::new`] on the implementation `kernels` chooses (`Kernels::Burn`: burn's ops
    /// and AdamW on every device).
    pub fn on(model: AvaDino, config: OptimConfig, warmup_steps: usize, kernels: Kernels) -> Self {
        let optim = Optimizer::for_model(&model, &config, kernels);
        Self {
            model,
            config,
            warmup_steps,
            optim,
            kernels,
            steps_done: 0,
        }
    }

    /// Optimizer updates done so far (the scheduler's step count).
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// Learning rate the next update will use.
    pub fn next_lr(&self) -> f64 {
        self.config.lr_at(self.steps_done, self.warmup_steps)
    }

    /// One update; returns the losses of the forward before it (detached).
    pub fn step(&mut self, batch: &Batch) -> Losses {
        self.step_with_output(batch).0
    }

    /// One update; returns the losses and the outputs of the forward before it (detached).
    pub fn step_with_output(&mut self, batch: &Batch) -> (Losses, MethodOutput) {
        let (losses, out, grads) = self.model.loss_and_grads_on(batch, None, self.kernels);
        let lr = self.next_lr();
        // Modules are shallow handles: the clone costs nothing and the step returns the new one.
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.steps_done += 1;
        (losses, out)
    }

    /// One update over a batch of `total` samples handed over as micro-batches (their sizes sum
    /// to `total`), built one at a time by `micro`: see [`accumulated_gradients`]. Returns the
    /// batch's losses and each sample's tap-averaged anomaly weight, in order.
    pub fn step_micro<E>(
        &mut self,
        total: usize,
        micro: impl Iterator<Item = Result<Batch, E>>,
    ) -> Result<(LossValues, Vec<f32>), E> {
        let (grads, values, w) = accumulated_gradients(&self.model, total, micro, self.kernels)?;
        let lr = self.next_lr();
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.steps_done += 1;
        Ok((values, w))
    }

    /// The exact training state as two buffers: the module as burnpack (which keeps parameter
    /// ids) and the AdamW moments keyed by those ids (burn's record, or [`HostAdamW::to_bytes`]). With [`Trainer::resume`] a run continues as if
    /// it had never stopped.
    pub fn state_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), RecordError> {
        let model = self.model.clone().into_record().into_bytes()?;
        let optim = self.optim.to_bytes()?;
        Ok((model.to_vec(), optim))
    }

    /// Rebuilds a trainer from [`Trainer::state_bytes`]; `template` is a freshly built model of
    /// the same configuration on the training device, `steps_done` the updates already made.
    pub fn resume(
        template: AvaDino,
        config: OptimConfig,
        warmup_steps: usize,
        model_bytes: Vec<u8>,
        optim_bytes: Vec<u8>,
        steps_done: usize,
    ) -> Result<Self, RecordError> {
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes))?;
        let model = template.try_load_record(record)?;
        let kernels = Kernels::configured();
        let optim = Optimizer::for_model(&model, &config, kernels).restored(optim_bytes)?;
        Ok(Self {
            model,
            config,
            warmup_steps,
            optim,
            kernels,
            steps_done,
        })
    }

    /// The model on the plain (non-autodiff) device, for evaluation.
    pub fn valid(&self) -> AvaDino {
        self.model.valid()
    }
}

/// The gradients of a batch of `total` samples from its micro-batches, built one at a time by
/// `micro` (so only one micro-batch's activations are alive), with the batch's losses and each
/// sample's tap-averaged anomaly weight.
///
/// Every loss term is a mean over samples of equal weight (focal over `B x S x S` pixels, dice
/// and cross-entropy and the routing MSE over `B` per-sample terms), so the batch's loss is
/// `sum over micro-batches of (size / total) x loss(micro-batch)`: each micro-batch's gradient
/// is weighted by its share and summed, giving the whole batch's gradient within f32 rounding
/// (`tests/model_training.rs` compares them). A single micro-batch holding the whole batch is
/// today's one backward pass, bit for bit (its weight 1 is never applied).
pub fn accumulated_gradients<E>(
    model: &AvaDino,
    total: usize,
    micro: impl Iterator<Item = Result<Batch, E>>,
    kernels: Kernels,
) -> Result<(GradientsParams, LossValues, Vec<f32>), E> {
    let mut acc = GradientsAccumulator::<AvaDino>::new();
    let mut sums = [0f64; 5];
    let mut w = Vec::with_capacity(total);
    let mut seen = 0;
    for batch in micro {
        let batch = batch?;
        let size = batch.labels.dims()[0];
        seen += size;
        let share = size as f64 / total as f64;
        // A single micro-batch holding the whole batch is the objective itself (weight 1 never
        // applied).
        let (losses, out, grads) =
            model.loss_and_grads_on(&batch, (size != total).then_some(share), kernels);
        acc.accumulate(model, grads);
        let v = losses.values();
        for (s, x) in sums
            .iter_mut()
            .zip([v.aware, v.seg, v.global, v.route, v.total])
        {
            *s += share * x as f64;
        }
        w.extend(
            out.w_anomaly
                .detach()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
    }
    assert_eq!(seen, total, "micro-batches must sum to the batch");
    let [aware, seg, global, route, total_loss] = sums.map(|s| s as f32);
    let values = LossValues {
        aware,
        seg,
        global,
        route,
        total: total_loss,
    };
    Ok((acc.grads(), values, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_matches_lambda_lr() {
        // LambdaLR evaluates the lambda at the scheduler's step count: 0 before the first update.
        assert_eq!(warmup_factor(0, 3), 0.0);
        assert_eq!(warmup_factor(1, 3), 1.0 / 3.0);
        assert_eq!(warmup_factor(2, 3), 2.0 / 3.0);
        assert_eq!(warmup_factor(3, 3), 1.0);
        assert_eq!(
            warmup_factor(0, 0),
            1.0,
            "no warmup: full LR from the start"
        );
        let c = OptimConfig::default();
        assert_eq!(c.warmup_steps(100), 3);
        assert_eq!(c.warmup_steps(10 * 136), 40); // 10 epochs of VisA at batch 16
        assert_eq!(c.lr_at(2, 4), 0.5e-4);
    }
}
