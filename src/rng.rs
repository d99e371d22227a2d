//! SplitMix64: the one small, seedable generator (and its 64-bit finaliser) used wherever tagflow
//! needs reproducible pseudo-randomness (the demo stream, tests, the benchmark) or a stable hash of a
//! persisted identity. Written out here so that no stream or stored hash depends on an RNG crate.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
/// constants from Vigna's reference `splitmix64.c`). The state advances by the golden-ratio gamma and
/// each output is the state through a 64-bit finaliser. Period 2^64, passes BigCrush, one add and
/// two multiplies per output. Written out here so that the stream never depends on an RNG crate.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (`n > 0`) by Lemire's multiply-shift; the bias is below `n / 2^64`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The SplitMix64 finaliser (a variant of MurmurHash3's fmix64): also the hash of names and posts.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
