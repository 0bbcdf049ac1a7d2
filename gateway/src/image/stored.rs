//! A snapshot's wallets kept as their packed bytes, not decoded; loaded
//! from a file, kept in that file.
//!
//! Why packed: a million decoded `WalletState`s are ~1 KB each of fresh
//! memory (books, flows, a tree of boxed transactions), and building them
//! was most of a snapshot's load; yet recovery hands every wallet to its
//! actor passivated, as these very bytes, and the log's tail touches few of
//! them. So a load checks each wallet's bytes without building it
//! (`pack::scan`) and decodes a wallet only when a log record touches it
//! (`Stored::take`, which moves it into the image's ledger) or when the
//! whole state must be read (digest, invariants, a snapshot's sections).
//! Replay puts wallets it has not touched lately back here, packed
//! (`Stored::put_back`, from `Image::spill`): into a scratch file, if the
//! image has a directory for one (`image::scratch`), else in memory.
//!
//! Why in the file: the snapshotter builds its image beside the live
//! state, and a million wallets' bytes with their outlines were ~350 MB of
//! that second copy (BENCHMARKS.md). A wallet loaded from a file is kept as
//! where its bytes are and their CRC32C (32 bytes), and read again (and
//! checked again) when it is used.

use super::scratch::{Place, Scratch};
use settle_engine::audit::Tally;
use settle_engine::wallet::pack::{self, Outline};
use settle_engine::{AssetRegistry, TxnId, WalletId, WalletState};
use settle_snapshots::snapshot::SnapshotReread;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One wallet of a snapshot.
#[derive(Debug)]
pub(super) struct StoredWallet {
    pub id: WalletId,
    /// `None` once the wallet was taken (decoded into the ledger).
    pub bytes: Option<Packed>,
}

/// A wallet handed on: its outline and packed bytes.
pub(super) type PackedWallet = (Outline, Box<[u8]>);

/// Where a stored wallet's packed bytes are.
#[derive(Debug)]
pub(super) enum Packed {
    /// In memory: from a snapshot read whole, or packed again by replay
    /// without a scratch file.
    Memory(Box<[u8]>),
    /// In the snapshot file the image was loaded from.
    File(Place),
    /// In the scratch file, packed again by replay.
    Scratch(Place),
}

/// What a pass over the stored wallets finds, for a snapshot's summary.
#[derive(Clone, Debug)]
pub(super) struct Scanned {
    /// The audit's sums.
    pub tally: Tally,
    /// Wallets by status.
    pub statuses: BTreeMap<&'static str, u64>,
    /// Transaction records.
    pub txns: u64,
}

impl Scanned {
    pub fn new(assets: &AssetRegistry) -> Self {
        Scanned {
            tally: Tally::new(assets),
            statuses: BTreeMap::new(),
            txns: 0,
        }
    }

    /// Counts one wallet's outline (its sums went to `tally` as it was
    /// scanned).
    pub fn count(&mut self, outline: &Outline) {
        *self.statuses.entry(outline.status.as_str()).or_default() += 1;
        self.txns += outline.txns as u64;
    }

    pub fn merge(&mut self, other: Scanned) {
        self.tally.merge(other.tally);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.txns += other.txns;
    }
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
    /// The summary's figures over the wallets not taken, while known (from
    /// the load; a wallet taken or put back makes them stale, and
    /// `scanned` reads every wallet again).
    scanned: Option<Scanned>,
    /// The file `Packed::File` bytes are in.
    file: Option<SnapshotReread>,
    /// Where wallets put back go, if anywhere but memory.
    scratch: Option<Scratch>,
}

impl Stored {
    /// From a load's wallets and creators, both sorted and free of
    /// duplicates (the caller checked), what their scan found, and the
    /// file their bytes are in (if any are).
    pub fn new(
        wallets: Vec<StoredWallet>,
        creators: Vec<(TxnId, WalletId)>,
        scanned: Scanned,
        file: Option<SnapshotReread>,
    ) -> Self {
        Stored {
            left: wallets.len(),
            wallets,
            creators,
            scanned: Some(scanned),
            file,
            scratch: None,
        }
    }

    /// Wallets put back from now on go to a scratch file in `dir`.
    pub fn spill_into(&mut self, scratch: Scratch) {
        self.scratch = Some(scratch);
    }

    /// Wallets not taken.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Wallet `id`, if it is here (taken or not).
    pub fn get(&self, id: WalletId) -> Option<&StoredWallet> {
        self.wallets.get(self.index_of(id)?)
    }

    fn index_of(&self, id: WalletId) -> Option<usize> {
        self.wallets.binary_search_by_key(&id, |w| w.id).ok()
    }

    /// The packed bytes of `w` (read from the file, and checked again, if
    /// they are there).
    pub fn bytes<'a>(&'a self, w: &'a StoredWallet) -> Result<Cow<'a, [u8]>, String> {
        match &w.bytes {
            None => Err(format!("wallet {} was taken", w.id)),
            Some(Packed::Memory(bytes)) => Ok(Cow::Borrowed(bytes)),
            Some(Packed::File(at)) => {
                let Some(file) = &self.file else {
                    return Err(format!("wallet {} is in a file not kept", w.id));
                };
                file.bytes(at.offset, at.len as usize, at.crc)
                    .map(Cow::Owned)
                    .map_err(|e| format!("wallet {}: {e}", w.id))
            }
            Some(Packed::Scratch(at)) => {
                let Some(scratch) = &self.scratch else {
                    return Err(format!("wallet {} is in a scratch file not kept", w.id));
                };
                scratch
                    .read(*at)
                    .map(Cow::Owned)
                    .map_err(|e| format!("wallet {}: {e}", w.id))
            }
        }
    }

    /// The packed bytes of `wallets` (in id order), as `bytes` gives them,
    /// but neighbours in the snapshot file read with one `pread` (a
    /// section's wallets follow each other there): one call per wallet
    /// made reading a million of them at start-up seconds slower. Each
    /// wallet's bytes are still checked against its own CRC32C.
    pub fn bytes_of<'a>(
        &'a self,
        wallets: &[&'a StoredWallet],
    ) -> Result<Vec<Cow<'a, [u8]>>, String> {
        let mut out: Vec<Cow<'a, [u8]>> = Vec::with_capacity(wallets.len());
        let mut i = 0;
        while let Some(w) = wallets.get(i) {
            let (Some(Packed::File(first)), Some(file)) = (&w.bytes, &self.file) else {
                out.push(self.bytes(w)?);
                i += 1;
                continue;
            };
            // The run: file places each starting at most a bin header
            // (5 bytes) after the last one ends.
            let mut end = first.offset + u64::from(first.len);
            let mut run = vec![*first];
            while let Some(Some(Packed::File(next))) = wallets.get(i + run.len()).map(|w| &w.bytes)
            {
                if next.offset < end || next.offset - end > 5 || run.len() >= 4_096 {
                    break;
                }
                end = next.offset + u64::from(next.len);
                run.push(*next);
            }
            let span = usize::try_from(end - first.offset).map_err(|e| e.to_string())?;
            let bytes = file
                .span(first.offset, span)
                .map_err(|e| format!("wallet {}: {e}", w.id))?;
            for (k, at) in run.iter().enumerate() {
                let from = usize::try_from(at.offset - first.offset).map_err(|e| e.to_string())?;
                let one = bytes.get(from..from + at.len as usize).unwrap_or_default();
                file.check(at.offset, one, at.crc).map_err(|e| {
                    let id = wallets.get(i + k).map_or(w.id, |w| w.id);
                    format!("wallet {id}: {e}")
                })?;
                out.push(Cow::Owned(one.to_vec()));
            }
            i += run.len();
        }
        Ok(out)
    }

    /// Wallet `w`, decoded.
    pub fn decode(&self, w: &StoredWallet) -> Result<WalletState, String> {
        let bytes = self.bytes(w)?;
        pack::decode(&bytes).map_err(|e| format!("{} does not decode: {e}", w.id))
    }

    /// Takes wallet `id` out, decoded (`None`: not here, or taken).
    pub fn take(&mut self, id: WalletId) -> Option<Result<WalletState, String>> {
        let i = self.index_of(id)?;
        let w = self.wallets.get(i)?;
        w.bytes.as_ref()?;
        let state = self.decode(w);
        if let Some(w) = self.wallets.get_mut(i) {
            w.bytes = None;
        }
        self.left -= 1;
        self.scanned = None;
        Some(state)
    }

    /// Keeps decoded wallets packed again (`Image::spill`): `wallets`, in
    /// strictly ascending id order, none of them among those not taken
    /// (each is new, or was taken). One merge pass, which also drops the
    /// places of wallets taken.
    pub fn put_back(&mut self, wallets: Vec<(WalletId, Box<[u8]>)>) {
        if wallets.is_empty() {
            return;
        }
        let wallets = self.spill(wallets);
        let old = std::mem::take(&mut self.wallets);
        let mut merged = Vec::with_capacity(self.left + wallets.len());
        let mut old = old.into_iter().filter(|w| w.bytes.is_some()).peekable();
        for (id, packed) in wallets {
            while let Some(w) = old.next_if(|w| w.id < id) {
                merged.push(w);
            }
            // A wallet both here and put back would be two states of one
            // wallet; the caller's contract rules it out, and the one put
            // back is the newer.
            debug_assert!(old.peek().is_none_or(|w| w.id != id));
            old.next_if(|w| w.id == id);
            merged.push(StoredWallet {
                id,
                bytes: Some(packed),
            });
        }
        merged.extend(old);
        self.left = merged.len();
        self.wallets = merged;
        self.scanned = None;
    }

    /// `wallets` written to the scratch file, if there is one and it takes
    /// them; else kept in memory (a full disk slows nothing down: it costs
    /// memory, as before there was a scratch file).
    fn spill(&mut self, wallets: Vec<(WalletId, Box<[u8]>)>) -> Vec<(WalletId, Packed)> {
        if let Some(scratch) = &mut self.scratch {
            let parts: Vec<&[u8]> = wallets.iter().map(|(_, b)| &**b).collect();
            match scratch.write(&parts) {
                Ok(places) => {
                    return wallets
                        .iter()
                        .zip(places)
                        .map(|((id, _), at)| (*id, Packed::Scratch(at)))
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(%e, "replay keeps the wallets it packs in memory");
                    self.scratch = None;
                }
            }
        }
        wallets
            .into_iter()
            .map(|(id, bytes)| (id, Packed::Memory(bytes)))
            .collect()
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
    pub fn iter(&self) -> impl Iterator<Item = &StoredWallet> {
        self.wallets.iter().filter(|w| w.bytes.is_some())
    }

    /// Gives up the wallets not taken, in id order, each with its outline
    /// (scanned again) and its bytes in memory.
    pub fn into_wallets(self) -> impl Iterator<Item = Result<PackedWallet, String>> {
        let Stored {
            wallets,
            file,
            scratch,
            ..
        } = self;
        let holder = Stored {
            file,
            scratch,
            ..Stored::default()
        };
        let left: Vec<StoredWallet> = wallets.into_iter().filter(|w| w.bytes.is_some()).collect();
        let mut at = 0;
        let mut ready = Vec::new().into_iter();
        // A chunk at a time, so that neighbours are read together.
        std::iter::from_fn(move || {
            loop {
                if let Some(next) = ready.next() {
                    return Some(next);
                }
                let chunk: Vec<&StoredWallet> = left.get(at..)?.iter().take(2_048).collect();
                if chunk.is_empty() {
                    return None;
                }
                at += chunk.len();
                let batch: Vec<Result<PackedWallet, String>> = match holder.bytes_of(&chunk) {
                    Ok(list) => chunk
                        .iter()
                        .zip(list)
                        .map(|(w, bytes)| {
                            let bytes: Box<[u8]> = bytes.into_owned().into();
                            let outline = pack::scan(&bytes, &mut ())
                                .map_err(|e| format!("{} does not decode: {e}", w.id))?;
                            Ok((outline, bytes))
                        })
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                ready = batch.into_iter();
            }
        })
    }

    /// The summary's figures over the wallets not taken: as the load found
    /// them, or every wallet read and scanned again (on two threads) once
    /// one was taken or put back.
    pub fn scanned(&self, assets: &AssetRegistry) -> Result<Scanned, String> {
        if let Some(scanned) = &self.scanned {
            return Ok(scanned.clone());
        }
        let half = self.wallets.len() / 2;
        let (a, b) = self.wallets.split_at(half);
        let scan = |part: &[StoredWallet]| {
            let mut found = Scanned::new(assets);
            for w in part.iter().filter(|w| w.bytes.is_some()) {
                let bytes = self.bytes(w)?;
                let outline = pack::scan(&bytes, &mut found.tally)
                    .map_err(|e| format!("{} does not scan: {e}", w.id))?;
                found.count(&outline);
            }
            Ok::<_, String>(found)
        };
        let (a, b) = std::thread::scope(|s| {
            let other = s.spawn(|| scan(b));
            (scan(a), other.join())
        });
        let mut found = a?;
        match b {
            Ok(b) => found.merge(b?),
            Err(_) => return Err("a scanning thread panicked".to_owned()),
        }
        Ok(found)
    }
}
