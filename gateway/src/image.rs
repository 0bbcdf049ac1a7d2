//! The engine's whole durable state as one plain value, at a log position:
//! what a snapshot holds, what replay builds, what the server starts on.
//!
//! Replay applies log records to an `Image` (the ledger's events through
//! `Ledger::apply`, the code that applies them live), and a snapshot is an
//! `Image` written to a file. Recovery is therefore one path whatever it
//! starts from: an empty image or a snapshot's, then the log after it.
//! `install` hands the result to the live directory, idempotency store and
//! wallet actors.
//!
//! An image loaded from a snapshot keeps the snapshot's wallets packed
//! (`stored`): checked, not decoded. Its ledger holds only the wallets
//! decoded since (those the log's tail touched, and any it opened), plus
//! the messages in flight and the creators of every transaction; reads of
//! the whole state (`summary`, `digest`, `write_snapshot`, `install`) go
//! through both, in id order, and `decode_all` gives the eager form.

use crate::answer_body::AnswerBody;
use crate::directory::{Client, Customer, Directory, DirectoryRecord, KeyHash};
use crate::funding::{Funding, FundingImage};
use crate::http::idempotency::{Fingerprint, IdempotencyStore, Restored, StoredAnswer};
use crate::incoming::Incoming;
use crate::journal::Record;
use crate::webhooks::WebhookConfig;
use serde::{Deserialize, Serialize};
use settle_engine::audit::{AssetAudit, Tally};
use settle_engine::wallet::pack::{self, Outline};
use settle_engine::{
    ClientId, CustomerId, Decimal, EngineConfig, Ledger, StateDigest, WalletId, WalletState,
};
use settle_snapshots::Lsn;
use settle_snapshots::snapshot::{
    AssetTotals, FORMAT_VERSION, SnapshotError, SnapshotHeader, SnapshotWriter, Summary,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

mod encode;
mod load;
mod records;
mod scratch;
mod stored;

use encode::{WalletRef, encode_wallets};
use records::Records;
use scratch::Scratch;
use stored::Stored;

/// Wallets per snapshot section: sections are encoded and decoded in
/// parallel, and a section is the unit a bad checksum names.
const WALLETS_PER_SECTION: usize = 2_048;

/// Idempotency records per section.
const RECORDS_PER_SECTION: usize = 16_384;

/// Decoded wallets an image holds before it packs those the log has not
/// touched lately (`Image::spill`). Why: a replay from an empty image (the
/// first snapshot, or recovery without one) would otherwise decode every
/// wallet the log ever opened, ~1 KB each plus what it grew to; a million
/// wallets made the first snapshot's copy of the state 2.5 GB beside the
/// live one's. Packed, a wallet costs its place in the scratch file (or
/// its bytes, ~200 B for a funded wallet, without one). 16,384 decoded
/// wallets are ~25 MB; 65,536 (~100 MB) kept a snapshot of a million
/// wallets over 2 GiB resident, and more spills cost little (each merges
/// 40 bytes per stored wallet).
pub const SPILL_AT: usize = 16_384;

/// The engine's durable state after the record at `position`.
#[derive(Debug)]
pub struct Image {
    /// The LSN of the last record applied (0: none).
    pub position: Lsn,
    /// The wallets decoded (all of them, unless loaded from a snapshot:
    /// see `stored`), the messages in flight, every transaction's creator.
    ledger: Ledger,
    pub clients: BTreeMap<ClientId, ClientEntry>,
    pub customers: BTreeMap<CustomerId, Customer>,
    /// The idempotency records (a snapshot's kept in its file: `Records`).
    idempotency: Records,
    /// Pay-in addresses, webhooks and the webhook outbox (derived from the
    /// wallets' events and the delivery marks, as live).
    pub funding: Funding,
    /// The transfers toward each wallet that have not reached it: seeded
    /// from the snapshot's records, then kept from the log's events as
    /// live (`incoming`). Derived: never written.
    incoming: Incoming,
    /// The snapshot's wallets not decoded: their checked packed bytes (or
    /// where they are in its file), in id order. `install` hands them to the actors as they are (every
    /// change to a wallet is an event, and a wallet with an event in the
    /// log's tail was taken out and decoded first).
    stored: Stored,
    /// Decoded wallets beyond which `spill` packs them again.
    spill_at: usize,
    /// The wallets the log touched since the last spill: kept decoded by
    /// the next one (a wallet in use is likely touched again).
    touched: HashSet<WalletId, foldhash::fast::RandomState>,
}

/// A wallet handed to the live engine: its state (decoded, because the
/// log's tail changed it or it is new), or a snapshot's packed bytes with
/// their outline, never decoded.
#[derive(Debug)]
pub enum InstalledWallet {
    Live(Box<WalletState>),
    Packed(Outline, Box<[u8]>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    pub client: Client,
    pub key_hash: KeyHash,
}

/// An idempotency record as the log and snapshots carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub client: ClientId,
    pub key: String,
    pub fingerprint: Fingerprint,
    /// When the request was first seen (ms), for expiry.
    pub at: i64,
    pub outcome: IdempotencyOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyOutcome {
    /// Claimed with these ids, never answered (the process stopped).
    Claimed {
        ids: Vec<u128>,
    },
    Answered {
        status: u16,
        body: AnswerBody,
    },
}

/// One section of a snapshot file (named-field MessagePack).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Section {
    Clients(Vec<ClientEntry>),
    Customers(Vec<Customer>),
    Idempotency(Vec<IdempotencyEntry>),
    Funding(FundingImage),
}

/// The key of a wallet section: `{"packed_wallets": [bin, ...]}`, each
/// element one wallet in the packed form of `settle_engine::wallet::pack`
/// (see ARCHITECTURE.md, "Snapshots", for why not named fields there).
const PACKED_WALLETS: &str = "packed_wallets";

/// Why an image could not be built, read or written.
#[derive(Debug)]
pub struct ImageError(pub String);

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImageError {}

impl From<SnapshotError> for ImageError {
    fn from(e: SnapshotError) -> Self {
        ImageError(e.to_string())
    }
}

impl Image {
    /// The state before the first record.
    pub fn empty(config: EngineConfig) -> Self {
        // The webhook settings only time deliveries; the image never
        // delivers (the live `Funding` it is installed into does).
        let funding = Funding::new(WebhookConfig::default(), config.assets.clone());
        Image {
            position: 0,
            ledger: Ledger::new(config),
            clients: BTreeMap::new(),
            customers: BTreeMap::new(),
            idempotency: Records::default(),
            funding,
            incoming: Incoming::default(),
            stored: Stored::default(),
            spill_at: SPILL_AT,
            touched: HashSet::default(),
        }
    }

    /// Packs wallets again once more than `limit` (at least 1) are decoded,
    /// instead of `SPILL_AT` (tests: spills after a few records).
    pub fn with_spill_at(mut self, limit: usize) -> Self {
        self.spill_at = limit.max(1);
        self
    }

    /// Replay spills into scratch files in `dir` (the snapshot directory:
    /// see `image::scratch`) from now on, instead of holding in memory the
    /// wallets it packs again and the records beyond a few thousand.
    pub fn spill_into(&mut self, dir: &Path) {
        self.stored.spill_into(Scratch::new(dir));
        self.idempotency.spill_into(Scratch::new(dir));
    }

    /// The state `ledger` holds, before any record (a ledger built in
    /// memory: benches, tests).
    pub fn from_ledger(ledger: Ledger) -> Self {
        let mut image = Image::empty(ledger.config().clone());
        for w in ledger.wallets() {
            for t in w.txns() {
                image.incoming.seed(w.id, t);
            }
        }
        image.ledger = ledger;
        image
    }

    /// Takes the index of transfers toward each wallet, as replay left it
    /// (to hand to the live gateway with `install`'s wallets).
    pub fn take_incoming(&mut self) -> Incoming {
        std::mem::take(&mut self.incoming)
    }

    /// The ledger: the messages in flight, and the wallets decoded so far
    /// (all of them only after `decode_all`).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// How many idempotency records the state holds.
    pub fn idempotency_len(&self) -> usize {
        self.idempotency.len()
    }

    /// The idempotency record of `client` and `key`, if the state holds one.
    pub fn idempotency_record(
        &self,
        client: ClientId,
        key: &str,
    ) -> Option<Result<IdempotencyEntry, ImageError>> {
        self.idempotency.get(client, key)
    }

    /// How many wallets the state holds.
    pub fn wallet_count(&self) -> usize {
        self.ledger.wallets().len() + self.stored.len()
    }

    /// Decodes every wallet still packed into the ledger (the eager form:
    /// offline checks, tests). Messages in flight are kept as tracked.
    pub fn decode_all(&mut self) -> Result<(), ImageError> {
        let ids: Vec<_> = self.stored.iter().map(|w| w.id).collect();
        for id in ids {
            self.take(id)?;
        }
        Ok(())
    }

    /// Every invariant of the engine (`Ledger::check_invariants`), on the
    /// whole state: decodes every wallet first.
    pub fn check_invariants(&mut self) -> Result<(), String> {
        self.decode_all().map_err(|e| e.to_string())?;
        self.ledger.check_invariants()
    }

    /// Moves a stored wallet into the ledger, decoded (if it is stored).
    fn take(&mut self, wallet: WalletId) -> Result<(), ImageError> {
        match self.stored.take(wallet) {
            None => Ok(()),
            Some(Err(e)) => Err(ImageError(format!(
                "the snapshot's wallet cannot be read: {e}"
            ))),
            Some(Ok(state)) => self
                .ledger
                .adopt(Box::new(state))
                .map_err(|e| ImageError(e.to_string())),
        }
    }

    /// Every wallet, decoded or stored, in id order.
    fn wallets(&self) -> impl Iterator<Item = WalletRef<'_>> {
        let mut live = self.ledger.wallets().peekable();
        let mut stored = self.stored.iter().peekable();
        std::iter::from_fn(move || match (live.peek(), stored.peek()) {
            (Some(l), Some(s)) if s.id < l.id => stored.next().map(WalletRef::Stored),
            (Some(_), _) => live.next().map(WalletRef::Live),
            (None, _) => stored.next().map(WalletRef::Stored),
        })
    }

    /// Applies the record at `lsn`. Records must come in log order, each
    /// once (the caller replays from `position + 1`).
    pub fn apply(&mut self, lsn: Lsn, record: Record) -> Result<(), String> {
        if lsn != self.position + 1 {
            return Err(format!(
                "record {lsn} does not follow position {}",
                self.position
            ));
        }
        match record {
            Record::Events { wallet, events } => {
                // A snapshot's wallet is decoded when the log first touches
                // it (an opening of it then fails as a second opening).
                self.take(wallet).map_err(|e| e.to_string())?;
                for e in &events {
                    if e.wallet() != wallet {
                        return Err(format!(
                            "an event of {} in a record of {wallet}",
                            e.wallet()
                        ));
                    }
                    // The ledger knows the creators of the wallets it holds;
                    // those of the wallets still packed are the snapshot's.
                    if let Some(txn) = e.created_txn()
                        && let Some(other) = self.stored.creator(txn)
                    {
                        return Err(format!("{txn} created by {other} and {wallet}"));
                    }
                    self.ledger.apply(e).map_err(|e| e.to_string())?;
                }
                // Webhook notices follow from the events, as they did live,
                // and so does the index of transfers toward each wallet.
                self.funding.replayed(&self.ledger, wallet, &events);
                if Incoming::touched_by(&events) {
                    let state = self.ledger.wallet(wallet);
                    self.incoming.observe(wallet, &events, |txn| {
                        state.and_then(|s| s.txn(txn)).cloned()
                    });
                }
                self.touched.insert(wallet);
                if self.ledger.wallets().len() > self.spill_at {
                    self.spill();
                }
            }
            Record::Funding(r) => self.funding.apply(&r),
            Record::Directory(DirectoryRecord::ClientCreated { client, key_hash }) => {
                self.clients
                    .insert(client.id, ClientEntry { client, key_hash });
            }
            Record::Directory(DirectoryRecord::CustomerCreated { customer }) => {
                self.customers.insert(customer.id, customer);
            }
            // Indexes the wallets themselves record (`install` rebuilds them).
            Record::Directory(
                DirectoryRecord::WalletOpened { .. } | DirectoryRecord::TxnCreated { .. },
            ) => {}
            Record::Claim {
                client,
                key,
                fingerprint,
                at,
                ids,
            } => {
                self.idempotency.insert(IdempotencyEntry {
                    client,
                    key,
                    fingerprint,
                    at,
                    outcome: IdempotencyOutcome::Claimed { ids },
                });
            }
            Record::Forget { client, key } => {
                self.idempotency.remove(client, &key);
            }
            Record::Answer {
                client,
                key,
                fingerprint,
                at,
                status,
                body,
            } => {
                self.idempotency.insert(IdempotencyEntry {
                    client,
                    key,
                    fingerprint,
                    at,
                    outcome: IdempotencyOutcome::Answered { status, body },
                });
            }
        }
        self.position = lsn;
        Ok(())
    }

    /// Packs the decoded wallets the log did not touch since the last
    /// spill back into `stored` (all of them, if those are fewer than half
    /// the limit: the wallets in use outnumber it, and each spill must free
    /// enough that spills stay rare). A packed wallet is decoded again when
    /// the log next touches it (`take`), as a snapshot's is; what it
    /// created stays known to the ledger (`Ledger::release`).
    fn spill(&mut self) {
        let mut idle: Vec<WalletId> = self
            .ledger
            .wallets()
            .map(|w| w.id)
            .filter(|id| !self.touched.contains(id))
            .collect();
        if idle.len() < self.spill_at.div_ceil(2) {
            idle = self.ledger.wallets().map(|w| w.id).collect();
        }
        self.touched.clear();
        // In id order, as `put_back` needs: the ledger's order.
        let packed: Vec<(WalletId, Box<[u8]>)> = idle
            .into_iter()
            .filter_map(|id| self.ledger.release(id))
            .map(|state| (state.id, pack::to_bytes(&state).into()))
            .collect();
        tracing::debug!(wallets = packed.len(), "replay packed idle wallets");
        self.stored.put_back(packed);
    }

    /// Drops idempotency records older than `ttl_ms` at `now_ms` (a
    /// snapshot need not carry what no retry can use any more).
    pub fn expire_idempotency(&mut self, now_ms: i64, ttl_ms: i64) {
        self.idempotency.retain_fresh(now_ms, ttl_ms);
    }

    /// The state digest (wallets and the messages in flight between them),
    /// as `GET /v1/admin/digest` computes it on a live engine. Stored
    /// wallets are decoded for it one at a time, on two threads.
    pub fn digest(&self) -> Result<StateDigest, ImageError> {
        let wallets: Vec<WalletRef<'_>> = self.wallets().collect();
        encode::digest(&wallets, &self.stored, self.ledger.in_flight())
    }

    /// Counts and the conservation audit, for a snapshot's header.
    pub fn summary(&self) -> Result<Summary, ImageError> {
        let mut summary = Summary {
            wallets: self.wallet_count() as u64,
            ..Summary::default()
        };
        // Counted by status first: no string per wallet.
        let mut statuses: BTreeMap<&'static str, u64> = BTreeMap::new();
        for w in self.ledger.wallets() {
            summary.transactions += w.txn_count() as u64;
            *statuses.entry(w.status.as_str()).or_default() += 1;
        }
        let assets = &self.ledger.config().assets;
        let stored = self
            .stored
            .scanned(assets)
            .map_err(|e| ImageError(format!("a stored wallet does not scan: {e}")))?;
        summary.transactions += stored.txns;
        for (status, n) in stored.statuses {
            *statuses.entry(status).or_default() += n;
        }
        summary.wallet_statuses = statuses
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        summary
            .counts
            .insert("clients".into(), self.clients.len() as u64);
        summary
            .counts
            .insert("customers".into(), self.customers.len() as u64);
        summary
            .counts
            .insert("idempotency_records".into(), self.idempotency.len() as u64);
        summary.counts.insert(
            "messages_in_flight".into(),
            self.ledger.in_flight().len() as u64,
        );
        let mut tally = stored.tally;
        let mut live = Tally::new(assets);
        for w in self.ledger.wallets() {
            live.wallet(w);
        }
        for m in self.ledger.in_flight() {
            live.message(m);
        }
        tally.merge(live);
        summary.assets = asset_totals(tally.finish());
        Ok(summary)
    }

    /// Writes the image as snapshot `id` into `dir` (atomically: see
    /// `SnapshotWriter`). Sections are encoded on two threads.
    pub fn write_snapshot(
        &self,
        dir: &Path,
        id: &str,
        created_at_ms: i64,
    ) -> Result<(PathBuf, u64), ImageError> {
        let header = SnapshotHeader {
            version: FORMAT_VERSION,
            id: id.to_owned(),
            position: self.position,
            created_at_ms,
            summary: self.summary()?,
        };
        let mut writer = SnapshotWriter::create(dir, &header)?;
        let clients: Vec<ClientEntry> = self.clients.values().cloned().collect();
        let customers: Vec<Customer> = self.customers.values().cloned().collect();
        writer.section(&encode(&Section::Clients(clients))?)?;
        writer.section(&encode(&Section::Customers(customers))?)?;
        // Oldest first, as the store expires them; read from the previous
        // file one section at a time.
        let mut chunk = Vec::with_capacity(RECORDS_PER_SECTION);
        for entry in self.idempotency.in_order() {
            chunk.push(entry?);
            if chunk.len() == RECORDS_PER_SECTION {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(RECORDS_PER_SECTION));
                writer.section(&encode(&Section::Idempotency(full))?)?;
            }
        }
        if !chunk.is_empty() {
            writer.section(&encode(&Section::Idempotency(chunk))?)?;
        }
        writer.section(&encode(&Section::Funding(self.funding.export()))?)?;
        let wallets: Vec<WalletRef<'_>> = self.wallets().collect();
        // Rounds of two sections, one per core, written in order.
        for round in wallets.chunks(WALLETS_PER_SECTION * 2) {
            let (a, b) = round.split_at(round.len().min(WALLETS_PER_SECTION));
            let stored = &self.stored;
            let (a, b) = std::thread::scope(|s| {
                let other = s.spawn(|| encode_wallets(b, stored));
                let mine = encode_wallets(a, stored);
                (mine, other.join())
            });
            writer.section(&a?)?;
            match b {
                Ok(bytes) => {
                    let bytes = bytes?;
                    if !bytes.is_empty() {
                        writer.section(&bytes)?;
                    }
                }
                Err(_) => return Err(ImageError("a snapshot encoder thread panicked".into())),
            }
        }
        Ok(writer.finish()?)
    }

    /// Hands the state to the live engine: the directory (clients, keys,
    /// customers, and the indexes the wallets imply), the idempotency store
    /// (records past their TTL at `now_ms` are dropped), the funding rails
    /// (into an empty `Funding`), and the wallets, returned for the actors.
    /// Fails only if a part kept in the snapshot file no longer reads as it
    /// did.
    pub fn install(
        self,
        directory: &Directory,
        idempotency: &IdempotencyStore,
        funding: &Funding,
        now_ms: i64,
    ) -> Result<Vec<InstalledWallet>, ImageError> {
        funding.import(self.funding.export());
        for ClientEntry { client, key_hash } in self.clients.into_values() {
            directory.apply(&DirectoryRecord::ClientCreated { client, key_hash });
        }
        for customer in self.customers.into_values() {
            directory.apply(&DirectoryRecord::CustomerCreated { customer });
        }
        for e in self.idempotency.in_order() {
            let e = e?;
            let restored = match e.outcome {
                IdempotencyOutcome::Claimed { ids } => Restored::Claim(ids),
                // Kept as the live store keeps answers: a body from a
                // file is plain text (~470 B for a wallet's answer, ~100
                // compressed; a million of them make the difference).
                IdempotencyOutcome::Answered { status, body } => Restored::Answer(StoredAnswer {
                    status,
                    body: body.compact(),
                }),
            };
            idempotency.restore(e.client, &e.key, e.fingerprint, e.at, now_ms, restored);
        }
        // The creators of the snapshot's transactions, then the ledger's:
        // those of the wallets decoded, and of those replay packed again
        // (a taken wallet's twice: the same entries).
        for &(txn, wallet) in self.stored.creators() {
            directory.apply(&DirectoryRecord::TxnCreated { txn, wallet });
        }
        for (txn, wallet) in self.ledger.creators() {
            directory.apply(&DirectoryRecord::TxnCreated { txn, wallet });
        }
        // One pass in id order, each state moved once: a merge of the
        // decoded wallets and the stored ones, no lookups.
        let mut out = Vec::with_capacity(self.ledger.wallets().len() + self.stored.len());
        let mut stored = self.stored.into_wallets().peekable();
        let packed = |stored: Result<(Outline, Box<[u8]>), String>| {
            let (outline, bytes) = stored
                .map_err(|e| ImageError(format!("the snapshot's wallet cannot be read: {e}")))?;
            directory.apply(&DirectoryRecord::WalletOpened {
                wallet: outline.id,
                client: outline.client,
            });
            Ok::<_, ImageError>(InstalledWallet::Packed(outline, bytes))
        };
        for state in self.ledger.into_boxed_wallets() {
            // An error sorts first: it is returned at once.
            while let Some(next) =
                stored.next_if(|w| w.as_ref().map_or(true, |(o, _)| o.id < state.id))
            {
                out.push(packed(next)?);
            }
            index(directory, &state);
            out.push(InstalledWallet::Live(state));
        }
        for next in stored {
            out.push(packed(next)?);
        }
        Ok(out)
    }
}

/// The header's per-asset totals, from the audit's rows (assets with any
/// money or flow).
fn asset_totals(rows: Vec<AssetAudit>) -> Vec<AssetTotals> {
    let units =
        |v: i128, scale: u32| Decimal::try_from_i128_with_scale(v, scale).unwrap_or(Decimal::MAX);
    rows.into_iter()
        .filter(|a| a.credited != 0 || a.cash != 0 || a.in_flight != 0 || a.converted_in != 0)
        .map(|a| AssetTotals {
            asset: a.asset.to_string(),
            cash: units(a.cash, a.scale),
            in_flight: units(a.in_flight, a.scale),
            external_credits: units(a.credited, a.scale),
            external_debits: units(a.debited, a.scale),
            converted_in: units(a.converted_in, a.scale),
            converted_out: units(a.converted_out, a.scale),
            conserved: a.ok(),
        })
        .collect()
}

fn encode(section: &Section) -> Result<Vec<u8>, ImageError> {
    rmp_serde::to_vec_named(section)
        .map_err(|e| ImageError(format!("cannot encode a snapshot section: {e}")))
}

/// The directory's index of a client's wallets (ids sort in creation
/// order). Where each transaction was created comes from the ledger's
/// creators, which know the wallets replay packed again too.
fn index(directory: &Directory, w: &WalletState) {
    directory.apply(&DirectoryRecord::WalletOpened {
        wallet: w.id,
        client: w.spec.client,
    });
}

#[cfg(test)]
mod tests;
