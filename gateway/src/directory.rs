//! The directory: who the clients are, their customers, which wallets each
//! client holds, and which wallet each transaction lives in.
//!
//! The ledger (wallet actors) knows money; the directory knows names and
//! tenancy. Every change to it is a `DirectoryRecord`, plain data applied by
//! `Directory::apply`, so that the write-ahead log can carry the records and
//! replay them (the same function runs live and on replay).

use crate::shards::{IdHash, Shards};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use settle_engine::{ClientId, CustomerId, Timestamp, TxnId, WalletId};
use std::collections::HashMap;
use std::sync::Arc;

/// The hash of a client's API key (BLAKE3). Only hashes are kept.
pub type KeyHash = [u8; 32];

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerKind {
    Individual,
    Business,
}

impl CustomerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerKind::Individual => "individual",
            CustomerKind::Business => "business",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub client: ClientId,
    pub name: String,
    pub kind: CustomerKind,
    /// The wallet provisioned with the customer.
    pub wallet: WalletId,
    pub created_at: Timestamp,
}

/// One change to the directory.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryRecord {
    ClientCreated {
        client: Client,
        key_hash: KeyHash,
    },
    CustomerCreated {
        customer: Customer,
    },
    /// A wallet was opened for a client (the ledger holds its state).
    WalletOpened {
        wallet: WalletId,
        client: ClientId,
    },
    /// A transaction was created at a wallet (the source, for a transfer).
    TxnCreated {
        txn: TxnId,
        wallet: WalletId,
    },
}

/// Bounds on what clients may create.
pub const MAX_NAME_LEN: usize = 200;

/// The transaction index: indexed on the hot path, from many connections
/// at once, so split into shards behind their own locks.
#[derive(Debug)]
struct TxnIndex(Shards<RwLock<HashMap<TxnId, WalletId, IdHash>>>);

impl TxnIndex {
    fn new(shards: usize) -> Self {
        Self(Shards::new(shards, |_| {
            RwLock::new(HashMap::with_hasher(IdHash::default()))
        }))
    }

    fn get(&self, txn: &TxnId) -> Option<WalletId> {
        self.0.of(txn).read().get(txn).copied()
    }

    fn insert(&self, txn: TxnId, wallet: WalletId) {
        self.0.of(&txn).write().insert(txn, wallet);
    }
}

#[derive(Debug)]
pub struct Directory {
    clients: RwLock<HashMap<ClientId, Arc<Client>>>,
    keys: RwLock<HashMap<KeyHash, ClientId>>,
    customers: RwLock<HashMap<CustomerId, Arc<Customer>>>,
    /// Each client's wallets in the order they were opened (oldest first).
    wallets: RwLock<HashMap<ClientId, Vec<WalletId>>>,
    txns: TxnIndex,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    pub fn new() -> Self {
        Self {
            clients: RwLock::default(),
            keys: RwLock::default(),
            customers: RwLock::default(),
            wallets: RwLock::default(),
            txns: TxnIndex::new(64),
        }
    }

    /// Applies one record. Applying a record twice changes nothing more
    /// (replay may meet a record the state already holds).
    pub fn apply(&self, record: &DirectoryRecord) {
        match record {
            DirectoryRecord::ClientCreated { client, key_hash } => {
                self.keys.write().insert(*key_hash, client.id);
                self.clients
                    .write()
                    .insert(client.id, Arc::new(client.clone()));
            }
            DirectoryRecord::CustomerCreated { customer } => {
                self.customers
                    .write()
                    .insert(customer.id, Arc::new(customer.clone()));
            }
            DirectoryRecord::WalletOpened { wallet, client } => {
                // Kept in id order, which is the order of opening (ids are
                // minted monotonic): appending is the common case.
                let mut wallets = self.wallets.write();
                let list = wallets.entry(*client).or_default();
                if let Err(at) = list.binary_search(wallet) {
                    list.insert(at, *wallet);
                }
            }
            DirectoryRecord::TxnCreated { txn, wallet } => self.txns.insert(*txn, *wallet),
        }
    }

    /// The client whose key hashes to `hash`. The hash is of a high-entropy
    /// key, so looking it up leaks nothing useful about any key; the map's
    /// own comparison of the 32 bytes is therefore not a timing oracle.
    pub fn client_by_key(&self, hash: &KeyHash) -> Option<ClientId> {
        self.keys.read().get(hash).copied()
    }

    pub fn client(&self, id: ClientId) -> Option<Arc<Client>> {
        self.clients.read().get(&id).cloned()
    }

    pub fn customer(&self, id: CustomerId) -> Option<Arc<Customer>> {
        self.customers.read().get(&id).cloned()
    }

    /// A client's wallets, oldest first.
    pub fn wallets_of(&self, client: ClientId) -> Vec<WalletId> {
        self.wallets
            .read()
            .get(&client)
            .cloned()
            .unwrap_or_default()
    }

    /// The wallet a transaction was created at.
    pub fn wallet_of_txn(&self, txn: TxnId) -> Option<WalletId> {
        self.txns.get(&txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_apply_and_re_apply_without_duplicates() {
        let d = Directory::new();
        let client = Client {
            id: ClientId::from_u128(1),
            name: "acme".into(),
            created_at: Timestamp::from_millis(5),
        };
        let rec = DirectoryRecord::ClientCreated {
            client: client.clone(),
            key_hash: [7; 32],
        };
        d.apply(&rec);
        d.apply(&rec);
        assert_eq!(d.client_by_key(&[7; 32]), Some(client.id));
        assert_eq!(d.client_by_key(&[8; 32]), None);
        let w = WalletId::from_u128(9);
        let opened = DirectoryRecord::WalletOpened {
            wallet: w,
            client: client.id,
        };
        d.apply(&opened);
        d.apply(&opened);
        assert_eq!(d.wallets_of(client.id), vec![w]);
        d.apply(&DirectoryRecord::TxnCreated {
            txn: TxnId::from_u128(3),
            wallet: w,
        });
        assert_eq!(d.wallet_of_txn(TxnId::from_u128(3)), Some(w));
    }
}
