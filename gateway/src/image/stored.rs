//! A snapshot's wallets kept as their packed bytes, not decoded.
//!
//! Why: a million decoded `WalletState`s are ~1 KB each of fresh memory
//! (books, flows, a tree of boxed transactions), and building them was most
//! of a snapshot's load; yet recovery hands every wallet to its actor
//! passivated, as these very bytes, and the log's tail touches few of them.
//! So a load checks each wallet's bytes without building it (`pack::scan`),
//! keeps the bytes with their outline, and decodes a wallet only when a log
//! record touches it (`Stored::take`, which moves it into the image's
//! ledger) or when the whole state must be read (digest, invariants).
//! Replay puts wallets it has not touched lately back here, packed
//! (`Stored::put_back`, from `Image::spill`).

use settle_engine::audit::Tally;
use settle_engine::msgpack::DecodeError;
use settle_engine::wallet::pack::{self, Outline};
use settle_engine::{AssetRegistry, TxnId, WalletId, WalletState};

/// One wallet of a snapshot.
#[derive(Debug)]
pub(super) struct StoredWallet {
    pub outline: Outline,
    /// `None` once the wallet was taken (decoded into the ledger).
    pub bytes: Option<Box<[u8]>>,
}

/// The snapshot's wallets not decoded yet, and what the load learnt from
/// all of them.
#[derive(Debug, Default)]
pub(super) struct Stored {
    /// Every wallet of the snapshot, and those put back since, in strictly
    /// ascending id order.
    wallets: Vec<StoredWallet>,
    /// The transactions the snapshot's wallets created (not those put
    /// back: the image's ledger keeps theirs) (their records
    /// other than transfers' inbound ones), in strictly ascending id order:
    /// the creators `Ledger::restore` would have indexed, so that a
    /// transaction the log's tail creates is still checked against every
    /// one the snapshot holds, and for the directory's index at install.
    creators: Vec<(TxnId, WalletId)>,
    /// Wallets not taken.
    left: usize,
    /// The audit's sums over the wallets not taken, while known (from the
    /// load; a wallet taken makes it stale, and `tally` scans again).
    tally: Option<Tally>,
}

impl Stored {
    /// From a load's wallets and creators, both sorted and free of
    /// duplicates (the caller checked), and their tally.
    pub fn new(wallets: Vec<StoredWallet>, creators: Vec<(TxnId, WalletId)>, tally: Tally) -> Self {
        Stored {
            left: wallets.len(),
            wallets,
            creators,
            tally: Some(tally),
        }
    }

    /// Wallets not taken.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Takes wallet `id` out, decoded (`None`: not here).
    pub fn take(&mut self, id: WalletId) -> Option<Result<WalletState, DecodeError>> {
        let i = self
            .wallets
            .binary_search_by_key(&id, |w| w.outline.id)
            .ok()?;
        let bytes = self.wallets.get_mut(i)?.bytes.take()?;
        self.left -= 1;
        self.tally = None;
        Some(pack::decode(&bytes))
    }

    /// Keeps decoded wallets packed again (`Image::spill`): `wallets`, in
    /// strictly ascending id order, none of them among those not taken
    /// (each is new, or was taken). One merge pass, which also drops the
    /// places of wallets taken.
    pub fn put_back(&mut self, wallets: Vec<(Outline, Box<[u8]>)>) {
        if wallets.is_empty() {
            return;
        }
        let old = std::mem::take(&mut self.wallets);
        let mut merged = Vec::with_capacity(self.left + wallets.len());
        let mut old = old.into_iter().filter(|w| w.bytes.is_some()).peekable();
        for (outline, bytes) in wallets {
            while let Some(w) = old.next_if(|w| w.outline.id < outline.id) {
                merged.push(w);
            }
            // A wallet both here and put back would be two states of one
            // wallet; the caller's contract rules it out, and the one put
            // back is the newer.
            debug_assert!(old.peek().is_none_or(|w| w.outline.id != outline.id));
            old.next_if(|w| w.outline.id == outline.id);
            merged.push(StoredWallet {
                outline,
                bytes: Some(bytes),
            });
        }
        merged.extend(old);
        self.left = merged.len();
        self.wallets = merged;
        self.tally = None;
    }

    /// The wallet of the snapshot that created `txn`, if one did (taken or
    /// not: a taken wallet keeps its transactions).
    pub fn creator(&self, txn: TxnId) -> Option<WalletId> {
        let i = self.creators.binary_search_by_key(&txn, |c| c.0).ok()?;
        self.creators.get(i).map(|c| c.1)
    }

    /// Every (transaction, creator) of the snapshot's wallets.
    pub fn creators(&self) -> &[(TxnId, WalletId)] {
        &self.creators
    }

    /// The wallets not taken, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Outline, &[u8])> {
        self.wallets
            .iter()
            .filter_map(|w| w.bytes.as_deref().map(|b| (&w.outline, b)))
    }

    /// Gives up the wallets not taken, in id order.
    pub fn into_wallets(self) -> impl Iterator<Item = (Outline, Box<[u8]>)> {
        self.wallets
            .into_iter()
            .filter_map(|w| w.bytes.map(|b| (w.outline, b)))
    }

    /// The audit's sums over the wallets not taken: as the load found them,
    /// or scanned again (on two threads) once a wallet was taken.
    pub fn tally(&self, assets: &AssetRegistry) -> Result<Tally, DecodeError> {
        if let Some(tally) = &self.tally {
            return Ok(tally.clone());
        }
        let half = self.wallets.len() / 2;
        let (a, b) = self.wallets.split_at(half);
        let scan = |part: &[StoredWallet]| {
            let mut tally = Tally::new(assets);
            for bytes in part.iter().filter_map(|w| w.bytes.as_deref()) {
                pack::scan(bytes, &mut tally)?;
            }
            Ok::<_, DecodeError>(tally)
        };
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| scan(b));
            (scan(a), other.join())
        });
        let mut tally = a?;
        match b {
            Ok(b) => tally.merge(b?),
            Err(_) => {
                return Err(DecodeError {
                    offset: 0,
                    reason: "a scanning thread panicked".to_owned(),
                });
            }
        }
        Ok(tally)
    }
}
