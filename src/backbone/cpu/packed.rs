//! The backbone's linear weights packed once per model for [`gemm_packed`], instead of once
//! per product: [`PackCache`], held by the model and shared by its clones.
//!
//! Why a cache keyed by the weight's storage and not a pack at load: the model is a burn
//! `Module`, whose `map` (casts, device moves, record loads) carries this field over unchanged
//! while replacing the tensors. Each entry keeps the weight it was packed from (a clone of the
//! flex tensor: one more reference to the same storage, no copy) and is used only while the
//! model's weight is still that storage; otherwise it is packed again. Holding the reference
//! also keeps the storage from being freed and its address reused by another weight. Packing
//! is lazy, so only a model whose blocks run on the CPU kernels (flex device, f32) pays for it.
//!
//! Memory: the packed copy is as large as the weights (rounded up to whole 64-column panels;
//! ViT-L/16's `n` are multiples of 64, so exactly 1.2 GB), and the burn tensors stay alive
//! beside it (the burn path, casts and exports read them), so the CPU path holds the linear
//! weights twice. `engine::cost::fixed_memory` counts the second copy.
//!
//! [`gemm_packed`]: super::gemm::gemm_packed

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::gemm::PackedB;
use super::kernel::NR;
use crate::cpu::host::HostF32;

/// Bytes of a whole model's packed copy: per block qkv `[D, 3D]`, proj `[D, D]`, fc1
/// `[D, F]` and fc2 `[F, D]` (`[K, N]`), each `N` rounded up to whole `NR`-column panels, as
/// [`PackedB`] allocates them.
pub fn model_bytes(width: usize, mlp: usize, depth: usize) -> u64 {
    let cols = |n: usize| n.div_ceil(NR) * NR;
    let (d, f) = (width, mlp);
    let floats = d * (cols(3 * d) + cols(d) + cols(f)) + f * cols(d);
    (depth * floats * 4) as u64
}

/// One weight packed, with the weight it was packed from.
pub struct PackedLinear {
    source: HostF32,
    pub b: PackedB,
}

impl PackedLinear {
    /// Whether this was packed from `w`'s storage (the same allocation, the same extent).
    fn is_of(&self, w: &HostF32) -> bool {
        let (a, b) = (self.source.f32(), w.f32());
        a.as_ptr() == b.as_ptr() && a.len() == b.len()
    }
}

/// Packed weights by slot (the caller numbers them: block `i`'s four linears are `4i..4i+4`).
/// Clones share the entries; a slot is packed at most once per distinct weight.
#[derive(Clone, Default)]
pub struct PackCache(Arc<Mutex<Vec<Option<Arc<PackedLinear>>>>>);

impl PackCache {
    /// The packed `[k, n]` weight `w` for `slot`: the cached one if it was packed from `w`'s
    /// storage, else packed now and cached (replacing a stale one).
    ///
    /// The lock is never held while packing: the packing runs on the rayon pool, and a thread
    /// waiting in it may steal a task that asks this cache again. Two threads that miss the
    /// same slot at once both pack it (the same values); the last one stays.
    pub(super) fn get(&self, slot: usize, w: &HostF32, k: usize, n: usize) -> Arc<PackedLinear> {
        if let Some(Some(p)) = self.lock().get(slot)
            && p.is_of(w)
        {
            return p.clone();
        }
        let packed = Arc::new(PackedLinear {
            source: w.clone(),
            b: PackedB::new(w.f32(), k, n),
        });
        let mut slots = self.lock();
        if slots.len() <= slot {
            slots.resize(slot + 1, None);
        }
        slots[slot] = Some(packed.clone());
        packed
    }

    /// Bytes of the packed copies held.
    pub fn bytes(&self) -> usize {
        self.lock().iter().flatten().map(|p| p.b.bytes()).sum()
    }

    /// Drops every packed copy (they are packed again on the next use).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The entries held, by slot (tests check that a forward reuses them).
    #[cfg(test)]
    pub(super) fn entries(&self) -> Vec<Option<*const PackedLinear>> {
        self.lock()
            .iter()
            .map(|p| p.as_ref().map(Arc::as_ptr))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Arc<PackedLinear>>>> {
        // Every write replaces a whole slot: the data is consistent even after a panic.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for PackCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.lock();
        f.debug_struct("PackCache")
            .field("packed", &slots.iter().flatten().count())
            .finish()
    }
}
