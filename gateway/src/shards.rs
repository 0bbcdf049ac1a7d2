//! Lock striping: a fixed set of shards, each behind its own lock, picked
//! by a hash of the key, so that callers on different keys rarely meet on a
//! lock (the registry, the transaction index, the idempotency store).

use crossbeam_utils::CachePadded;
use std::hash::{BuildHasher, Hash};

/// The keyed hash for ids the gateway mints (wallets, transactions) and for
/// idempotency keys: fast, and keyed per instance. SipHash showed in the
/// routing profiles.
pub(crate) type IdHash = foldhash::fast::RandomState;

#[derive(Debug)]
pub(crate) struct Shards<T> {
    /// Each on cache lines of its own: a lock is written by every reader,
    /// and neighbours sharing its line would be fought over by cores that
    /// never meet on a key.
    shards: Box<[CachePadded<T>]>,
    /// Picks the shard; maps inside shards use other keys, so that the keys
    /// of one shard do not share their low hash bits.
    hasher: IdHash,
}

impl<T> Shards<T> {
    pub fn new(n: usize, make: impl FnMut(usize) -> T) -> Self {
        Self {
            shards: (0..n.max(1)).map(make).map(CachePadded::new).collect(),
            hasher: IdHash::default(),
        }
    }

    pub fn of<K: Hash + ?Sized>(&self, key: &K) -> &T {
        let h = self.hasher.hash_one(key);
        // The modulo is below `shards.len()`, so it fits a usize.
        let i = usize::try_from(h % self.shards.len() as u64).unwrap_or(0);
        &self.shards[i]
    }

    /// The shard for a key whose caller hashed it already (`hash` must be
    /// a keyed hash of the key). Picked from bit 32 up: a table of fewer
    /// than 2^32 buckets places keys by the low bits (and tags them by the
    /// top seven), so the keys of one shard still spread over its table.
    pub fn by_hash(&self, hash: u64) -> &T {
        let i = usize::try_from((hash >> 32) % self.shards.len() as u64).unwrap_or(0);
        &self.shards[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &**s)
    }
}
