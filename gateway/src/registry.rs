//! Wallet id to slot, sharded so that routers on different wallets rarely
//! meet on a lock.

use parking_lot::RwLock;
use ractor::ActorRef;
use settle_engine::WalletId;
use settle_engine::actor::{WalletMsg, WalletShared};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// One wallet in the registry: its shared state, and its actor while active.
#[derive(Debug)]
pub(crate) struct Slot {
    pub shared: Arc<WalletShared>,
    pub actor: Option<ActorRef<WalletMsg>>,
}

pub(crate) type Shard = RwLock<HashMap<WalletId, Slot, IdHash>>;

/// The hash of wallet ids: every routed message hashes its wallet twice
/// (shard, then slot), and SipHash showed in profiles. foldhash is keyed per
/// instance (ids are minted by the gateway, so a fast keyed hash suffices).
pub(crate) type IdHash = foldhash::fast::RandomState;

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    /// Picks the shard; the shards' maps use other keys, so that the ids in
    /// one shard do not share their low hash bits.
    hasher: IdHash,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| RwLock::new(HashMap::with_hasher(IdHash::default())))
                .collect(),
            hasher: IdHash::default(),
        }
    }

    pub fn shard(&self, wallet: WalletId) -> &Shard {
        let h = self.hasher.hash_one(wallet);
        // The modulo is below `shards.len()`, so it fits a usize.
        let i = usize::try_from(h % self.shards.len() as u64).unwrap_or(0);
        &self.shards[i]
    }

    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter()
    }

    /// The shared state of one wallet.
    pub fn shared(&self, wallet: WalletId) -> Option<Arc<WalletShared>> {
        self.shard(wallet)
            .read()
            .get(&wallet)
            .map(|s| Arc::clone(&s.shared))
    }

    /// Every wallet's shared state, in id order.
    pub fn all(&self) -> Vec<Arc<WalletShared>> {
        let mut all: Vec<Arc<WalletShared>> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .values()
                    .map(|slot| Arc::clone(&slot.shared))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_unstable_by_key(|s| s.id);
        all
    }
}
