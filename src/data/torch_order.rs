//! The order in which `torch.utils.data.DataLoader(dataset, batch_size=B, shuffle=True)` yields a
//! dataset's items, epoch after epoch, after `torch.manual_seed(seed)` (`train.shuffle: torch`):
//! what the authors' `train.py` trains on, so that a run can take its batches in their order.
//!
//! Every step follows PyTorch's source and is checked against PyTorch itself
//! (`tests/parity_torch_order.rs`, fixtures from `scripts/gen_torch_order.py`):
//!
//! 1. `torch.manual_seed(seed)` reseeds the default CPU generator: an MT19937 with
//!    `init_genrand(seed & 0xffffffff)` (`at::mt19937`, `CPUGeneratorImpl::set_current_seed`).
//! 2. Each `iter(loader)` builds a `_BaseDataLoaderIter`, whose constructor draws `_base_seed`
//!    (`torch.empty((), dtype=torch.int64).random_()`) from the default generator. With
//!    `num_workers=0` it is never used; with workers it only seeds them. Either way it is consumed.
//! 3. On the first batch `RandomSampler.__iter__` draws its own seed the same way, seeds a fresh
//!    `torch.Generator()` with it and yields `torch.randperm(n, generator=g)`. (Its second
//!    `randperm(n)[:0]` draws from that fresh generator only and changes nothing.)
//! 4. An int64 `random_()` is `random64() % 2^63`, where `random64()` joins two 32-bit outputs,
//!    the first as the high word (`CPUGeneratorImpl::random64`, `uniform_int` in
//!    `TransformationHelper.h`).
//! 5. `randperm_cpu` for `n < 2^32 / 20`: start from `0..n`, then for `i` in `0..n-1` swap `i`
//!    with `i + random() % (n - i)`, `random()` being one 32-bit output.
//!
//! So each epoch consumes exactly four 32-bit outputs of the default generator. The harness
//! assumes nothing else draws from it between `manual_seed` and the first epoch, nor between
//! epochs (docs/fidelity.md says what in the authors' `train.py` does, and how the wrapper
//! reseeds).

use super::mt19937::Mt19937;

/// The largest dataset `randperm_cpu` shuffles with the algorithm above; beyond it PyTorch
/// switches to another one that is not reproduced here.
pub const MAX_ITEMS: usize = (u32::MAX / 20) as usize;

/// Why an order cannot be reproduced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TorchOrderError {
    #[error(
        "train.shuffle: torch reproduces torch.randperm for fewer than {MAX_ITEMS} items, the training set has {n}; use train.shuffle: seeded"
    )]
    TooManyItems { n: usize },
}

/// A PyTorch CPU generator (`torch.Generator()` / the default one).
#[derive(Debug, Clone)]
pub struct TorchGenerator {
    mt: Mt19937,
}

impl TorchGenerator {
    /// `g.manual_seed(seed)`: only the low 32 bits reach the engine.
    pub fn manual_seed(seed: u64) -> Self {
        Self {
            mt: Mt19937::init_genrand(seed as u32),
        }
    }

    /// `CPUGeneratorImpl::random()`: one 32-bit output.
    pub fn random(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `CPUGeneratorImpl::random64()`: two outputs, the first one high.
    pub fn random64(&mut self) -> u64 {
        let hi = self.random() as u64;
        let lo = self.random() as u64;
        (hi << 32) | lo
    }

    /// `torch.empty((), dtype=torch.int64).random_(generator=self).item()`.
    pub fn random_int64(&mut self) -> i64 {
        (self.random64() % (1u64 << 63)) as i64
    }

    /// `torch.randperm(n, generator=self).tolist()`.
    pub fn randperm(&mut self, n: usize) -> Result<Vec<usize>, TorchOrderError> {
        if n >= MAX_ITEMS {
            return Err(TorchOrderError::TooManyItems { n });
        }
        let mut r: Vec<usize> = (0..n).collect();
        for i in 0..n.saturating_sub(1) {
            let z = self.random() as usize % (n - i);
            r.swap(i, z + i);
        }
        Ok(r)
    }
}

/// The seeds one epoch of the loader drew, for comparison with PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeeds {
    /// `_BaseDataLoaderIter._base_seed`.
    pub base: i64,
    /// The seed `RandomSampler.__iter__` gave its fresh generator.
    pub sampler: i64,
}

/// A `DataLoader(shuffle=True)` over `n` items, its default generator seeded with
/// `torch.manual_seed(seed)` and otherwise untouched.
#[derive(Debug, Clone)]
pub struct TorchLoader {
    default: TorchGenerator,
    n: usize,
}

impl TorchLoader {
    pub fn new(n: usize, seed: u64) -> Self {
        Self {
            default: TorchGenerator::manual_seed(seed),
            n,
        }
    }

    /// The next epoch's order (the batches, concatenated) and the seeds it drew.
    pub fn next_epoch(&mut self) -> Result<(Vec<usize>, EpochSeeds), TorchOrderError> {
        if self.n >= MAX_ITEMS {
            return Err(TorchOrderError::TooManyItems { n: self.n });
        }
        let base = self.default.random_int64();
        let sampler = self.default.random_int64();
        let order = TorchGenerator::manual_seed(sampler as u64).randperm(self.n)?;
        Ok((order, EpochSeeds { base, sampler }))
    }
}

/// The order of epoch `epoch` (0-based) of `n` items after `torch.manual_seed(seed)`: the earlier
/// epochs are replayed, so a resumed training continues with the order it would have had.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Result<Vec<usize>, TorchOrderError> {
    let mut loader = TorchLoader::new(n, seed);
    for _ in 0..epoch {
        loader.next_epoch()?;
    }
    Ok(loader.next_epoch()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_low_32_bits_of_a_seed_count() {
        let a = epoch_order(50, 42, 1).unwrap();
        assert_eq!(a, epoch_order(50, 42 + (1 << 32), 1).unwrap());
        assert_ne!(a, epoch_order(50, 43, 1).unwrap());
    }

    #[test]
    fn epochs_replay_the_loader() {
        let mut loader = TorchLoader::new(9, 3);
        for e in 0..3 {
            let (order, _) = loader.next_epoch().unwrap();
            assert_eq!(order, epoch_order(9, 3, e).unwrap());
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..9).collect::<Vec<_>>());
        }
        assert_eq!(epoch_order(1, 3, 2).unwrap(), vec![0]);
        assert!(epoch_order(0, 3, 0).unwrap().is_empty());
    }

    #[test]
    fn too_large_a_set_is_an_error() {
        let err = TorchGenerator::manual_seed(0)
            .randperm(MAX_ITEMS)
            .unwrap_err();
        assert!(err.to_string().contains("train.shuffle: seeded"), "{err}");
    }
}
