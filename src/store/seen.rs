//! The set of post fingerprints seen so far. In shards, so that a checkpoint reads it a shard at a
//! time (a short read lock each) while the writer goes on adding to it.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

/// Shards: at ten million posts, about 160k fingerprints each, read in well under a millisecond.
pub(crate) const SHARDS: usize = 64;

type Shard = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Post fingerprints (see [`super::layout::post_hash`]). They are already uniformly distributed
/// hashes: each shard hashes them with the identity, and the shard is chosen by middle bits that
/// neither the table's bucket (low bits) nor its tag (top bits) uses.
pub(crate) struct SeenSet {
    shards: Vec<Shard>,
}

impl Default for SeenSet {
    fn default() -> SeenSet {
        SeenSet { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

fn shard_of(hash: u64) -> usize {
    ((hash >> 32) as usize) % SHARDS
}

impl SeenSet {
    pub fn contains(&self, hash: &u64) -> bool {
        self.shards[shard_of(*hash)].contains(hash)
    }

    pub fn insert(&mut self, hash: u64) -> bool {
        self.shards[shard_of(hash)].insert(hash)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(HashSet::len).sum()
    }

    /// The fingerprints of one shard (`i < SHARDS`).
    pub(crate) fn shard(&self, i: usize) -> impl Iterator<Item = &u64> {
        self.shards[i].iter()
    }
}

impl Extend<u64> for SeenSet {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, iter: I) {
        for h in iter {
            self.insert(h);
        }
    }
}

#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
