//! The 32-bit Mersenne Twister (MT19937) that both Python's `random` and PyTorch's CPU generator
//! run. One core, two seedings: CPython seeds it through `init_by_array` ([`super::pyrandom`]),
//! PyTorch through `init_genrand` on the low 32 bits of its seed ([`super::torch_order`]). Their
//! outputs are otherwise the same tempered words of the same state.

/// Words of state.
pub const N: usize = 624;
const M: usize = 397;

/// An MT19937 state and its read position.
#[derive(Debug, Clone)]
pub struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)` (Matsumoto and Nishimura, 2002): what `std::mt19937(seed)`,
    /// PyTorch's `at::mt19937(seed)` and CPython's first step of `init_by_array` compute.
    pub fn init_genrand(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    /// The raw state words, for seedings that rework them before the first draw
    /// (CPython's `init_by_array`).
    pub fn state_mut(&mut self) -> &mut [u32; N] {
        &mut self.state
    }

    /// The next tempered 32-bit word (`genrand_uint32`); regenerates all 624 words when spent.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.state[k] & 0x8000_0000) | (self.state[(k + 1) % N] & 0x7fff_ffff);
            let mut v = self.state[(k + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[k] = v;
        }
        self.index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_output() {
        // std::mt19937 default seed: the C++ standard requires the 10000th output to be 4123659995.
        let mut mt = Mt19937::init_genrand(5489);
        let first = mt.next_u32();
        assert_eq!(first, 3_499_211_612);
        let last = (1..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(last, Some(4_123_659_995));
    }
}
