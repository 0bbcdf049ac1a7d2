//! Wallet id to slot, sharded so that routers on different wallets rarely
//! meet on a lock.

use crate::shards::{IdHash, Shards};
use parking_lot::RwLock;
use ractor::ActorRef;
use settle_engine::WalletId;
use settle_engine::actor::{WalletMsg, WalletShared};
use std::collections::HashMap;
use std::sync::Arc;

/// One wallet in the registry: its shared state, and its actor while active.
#[derive(Debug)]
pub(crate) struct Slot {
    pub shared: Arc<WalletShared>,
    pub actor: Option<ActorRef<WalletMsg>>,
}

pub(crate) type Shard = RwLock<HashMap<WalletId, Slot, IdHash>>;

#[derive(Debug)]
pub(crate) struct Registry {
    shards: Shards<Shard>,
}

impl Registry {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: Shards::new(shards, |_| {
                RwLock::new(HashMap::with_hasher(IdHash::default()))
            }),
        }
    }

    pub fn shard(&self, wallet: WalletId) -> &Shard {
        self.shards.of(&wallet)
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
