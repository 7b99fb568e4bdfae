//! Python's `random.seed(int)` + `random.shuffle` (MT19937), needed to reproduce the reference's
//! seeded Kvasir split bit for bit.

use super::mt19937::{Mt19937, N};

/// CPython's `random.Random` (its Mersenne Twister, seeded CPython's way).
pub struct PyRandom {
    mt: Mt19937,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer seed (CPython `init_by_array` on its 32-bit words).
    pub fn new(seed: u64) -> Self {
        let mut key: Vec<u32> = Vec::new();
        let mut s = seed;
        loop {
            key.push(s as u32);
            s >>= 32;
            if s == 0 {
                break;
            }
        }
        let mut mt = Mt19937::init_genrand(19_650_218);
        let st = mt.state_mut();
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = st[i - 1] ^ (st[i - 1] >> 30);
            st[i] = (st[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                st[0] = st[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = st[i - 1] ^ (st[i - 1] >> 30);
            st[i] = (st[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                st[0] = st[N - 1];
                i = 1;
            }
        }
        st[0] = 0x8000_0000;
        Self { mt }
    }

    fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `random._randbelow(n)` for `1 <= n < 2^32` (rejection sampling on `getrandbits(bit_length(n))`).
    pub fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(x)` in place.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u32 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_cpython_shuffle() {
        // CPython 3.11: random.seed(42); l = list(range(10)); random.shuffle(l)
        let mut l: Vec<u32> = (0..10).collect();
        PyRandom::new(42).shuffle(&mut l);
        assert_eq!(l, vec![7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
    }

    #[test]
    fn kvasir_subset_matches_reference_listing() {
        // docs/data.md (Kvasir): sorted(l[850:]) after seed(42) shuffle of range(1000) starts/ends so.
        let mut l: Vec<u32> = (0..1000).collect();
        PyRandom::new(42).shuffle(&mut l);
        let mut t = l[850..].to_vec();
        t.sort();
        assert_eq!(t.len(), 150);
        assert_eq!(&t[..6], &[6, 25, 27, 30, 32, 44]);
        assert_eq!(&t[144..], &[982, 983, 986, 990, 992, 994]);
    }
}
