//! The engine's whole durable state as one plain value, at a log position:
//! what a snapshot holds, what replay builds, what the server starts on.
//!
//! Replay applies log records to an `Image` (the ledger's events through
//! `Ledger::apply`, the code that applies them live), and a snapshot is an
//! `Image` written to a file. Recovery is therefore one path whatever it
//! starts from: an empty image or a snapshot's, then the log after it.
//! `install` hands the result to the live directory, idempotency store and
//! wallet actors.

use crate::directory::{Client, Customer, Directory, DirectoryRecord, KeyHash};
use crate::funding::{Funding, FundingImage};
use crate::http::idempotency::{Fingerprint, IdempotencyStore, Restored, StoredAnswer};
use crate::journal::Record;
use crate::webhooks::WebhookConfig;
use serde::{Deserialize, Serialize};
use settle_engine::message::implied_in_flight;
use settle_engine::msgpack::{self, Reader};
use settle_engine::wallet::pack;
use settle_engine::{
    ClientId, CustomerId, Decimal, Direction, EngineConfig, Ledger, StateDigest, WalletId,
    WalletState, digest,
};
use settle_snapshots::Lsn;
use settle_snapshots::snapshot::{
    AssetTotals, FORMAT_VERSION, SnapshotError, SnapshotFile, SnapshotHeader, SnapshotWriter,
    Summary,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Wallets per snapshot section: sections are encoded and decoded in
/// parallel, and a section is the unit a bad checksum names.
const WALLETS_PER_SECTION: usize = 2_048;

/// Idempotency records per section.
const RECORDS_PER_SECTION: usize = 16_384;

/// The engine's durable state after the record at `position`.
#[derive(Debug)]
pub struct Image {
    /// The LSN of the last record applied (0: none).
    pub position: Lsn,
    pub ledger: Ledger,
    pub clients: BTreeMap<ClientId, ClientEntry>,
    pub customers: BTreeMap<CustomerId, Customer>,
    pub idempotency: HashMap<(ClientId, String), IdempotencyEntry>,
    /// Pay-in addresses, webhooks and the webhook outbox (derived from the
    /// wallets' events and the delivery marks, as live).
    pub funding: Funding,
    /// The packed bytes each wallet had in the snapshot this image was
    /// loaded from, with its event count then, in id order: `install`
    /// hands them to the actors as they are, instead of packing every
    /// wallet again, for each wallet whose count is unchanged (every change
    /// to a wallet is an event, and each event bumps it).
    packed: Vec<PackedWallet>,
}

/// An iterator that knows its length (a flattened one does not), so that
/// `Ledger::restore` sizes its tables once.
struct Counted<I> {
    inner: I,
    left: usize,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        self.left = self.left.saturating_sub(1);
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// A wallet's bytes in a snapshot (see `Image::packed`).
#[derive(Debug)]
struct PackedWallet {
    id: WalletId,
    sequence: u64,
    bytes: Box<[u8]>,
}

/// A wallet handed to the live engine: its state, and its packed bytes when
/// they are at hand already (so the actors need not pack it again).
pub type InstalledWallet = (Box<WalletState>, Option<Box<[u8]>>);

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
        body: String,
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

/// A section, decoded.
enum Decoded {
    Other(Section),
    Wallets(Vec<(WalletState, PackedWallet)>),
}

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
            idempotency: HashMap::new(),
            funding,
            packed: Vec::new(),
        }
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
                for e in &events {
                    if e.wallet() != wallet {
                        return Err(format!(
                            "an event of {} in a record of {wallet}",
                            e.wallet()
                        ));
                    }
                    self.ledger.apply(e).map_err(|e| e.to_string())?;
                }
                // Webhook notices follow from the events, as they did live.
                self.funding.replayed(&self.ledger, wallet, &events);
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
                let entry = IdempotencyEntry {
                    client,
                    key: key.clone(),
                    fingerprint,
                    at,
                    outcome: IdempotencyOutcome::Claimed { ids },
                };
                self.idempotency.insert((client, key), entry);
            }
            Record::Forget { client, key } => {
                self.idempotency.remove(&(client, key));
            }
            Record::Answer {
                client,
                key,
                fingerprint,
                at,
                status,
                body,
            } => {
                let entry = IdempotencyEntry {
                    client,
                    key: key.clone(),
                    fingerprint,
                    at,
                    outcome: IdempotencyOutcome::Answered { status, body },
                };
                self.idempotency.insert((client, key), entry);
            }
        }
        self.position = lsn;
        Ok(())
    }

    /// Drops idempotency records older than `ttl_ms` at `now_ms` (a
    /// snapshot need not carry what no retry can use any more).
    pub fn expire_idempotency(&mut self, now_ms: i64, ttl_ms: i64) {
        self.idempotency
            .retain(|_, e| now_ms.saturating_sub(e.at) < ttl_ms);
    }

    /// The state digest (wallets and the messages in flight between them),
    /// as `GET /v1/admin/digest` computes it on a live engine.
    pub fn digest(&self) -> Result<StateDigest, ImageError> {
        let by_id: BTreeMap<WalletId, &WalletState> =
            self.ledger.wallets().map(|w| (w.id, w)).collect();
        let in_flight = implied_in_flight(&by_id);
        digest::digest(by_id.values().copied(), in_flight.iter())
            .map_err(|e| ImageError(format!("digest of the state: {e}")))
    }

    /// Counts and the conservation audit, for a snapshot's header.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            wallets: self.ledger.wallets().len() as u64,
            ..Summary::default()
        };
        // Counted by status first: no string per wallet.
        let mut statuses: BTreeMap<&'static str, u64> = BTreeMap::new();
        for w in self.ledger.wallets() {
            summary.transactions += w.txns().len() as u64;
            *statuses.entry(w.status.as_str()).or_default() += 1;
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
        let units = |v: i128, scale: u32| {
            Decimal::try_from_i128_with_scale(v, scale).unwrap_or(Decimal::MAX)
        };
        summary.assets = self
            .ledger
            .audit()
            .into_iter()
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
            .collect();
        summary
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
            summary: self.summary(),
        };
        let mut writer = SnapshotWriter::create(dir, &header)?;
        let clients: Vec<ClientEntry> = self.clients.values().cloned().collect();
        let customers: Vec<Customer> = self.customers.values().cloned().collect();
        writer.section(&encode(&Section::Clients(clients))?)?;
        writer.section(&encode(&Section::Customers(customers))?)?;
        let mut records: Vec<&IdempotencyEntry> = self.idempotency.values().collect();
        // Oldest first, as the store expires them.
        records.sort_by_key(|e| (e.at, e.client, &e.key));
        for chunk in records.chunks(RECORDS_PER_SECTION) {
            let chunk: Vec<IdempotencyEntry> = chunk.iter().map(|e| (*e).clone()).collect();
            writer.section(&encode(&Section::Idempotency(chunk))?)?;
        }
        writer.section(&encode(&Section::Funding(self.funding.export()))?)?;
        let wallets: Vec<&WalletState> = self.ledger.wallets().collect();
        // Rounds of two sections, one per core, written in order.
        for round in wallets.chunks(WALLETS_PER_SECTION * 2) {
            let (a, b) = round.split_at(round.len().min(WALLETS_PER_SECTION));
            let (a, b) = std::thread::scope(|s| {
                let other = s.spawn(|| encode_wallets(b));
                let mine = encode_wallets(a);
                (mine, other.join())
            });
            writer.section(&a)?;
            match b {
                Ok(bytes) if !bytes.is_empty() => writer.section(&bytes)?,
                Ok(_) => {}
                Err(_) => return Err(ImageError("a snapshot encoder thread panicked".into())),
            }
        }
        Ok(writer.finish()?)
    }

    /// The image a checked snapshot file holds. Sections are decoded on
    /// two threads; the wallets must restore a consistent ledger, and the
    /// content must match the header's counts and totals.
    pub fn from_snapshot(file: &SnapshotFile, config: EngineConfig) -> Result<Self, ImageError> {
        let n = file.sections();
        let decode_part = |part: usize| -> Result<Vec<Decoded>, ImageError> {
            (part..n)
                .step_by(2)
                .map(|i| decode_section(file, i))
                .collect()
        };
        let (even, odd) = std::thread::scope(|s| {
            let odd = s.spawn(|| decode_part(1));
            (decode_part(0), odd.join())
        });
        let odd = odd.map_err(|_| ImageError("a snapshot decoder thread panicked".into()))??;
        let mut image = Image::empty(config.clone());
        image.position = file.header.position;
        let mut wallet_sections = Vec::new();
        // Back in file order (even and odd sections interleave), so that the
        // packed bytes stay in id order for `install`.
        let mut odd = odd.into_iter();
        for even in even? {
            for section in std::iter::once(even).chain(odd.next()) {
                match section {
                    Decoded::Other(Section::Clients(list)) => image
                        .clients
                        .extend(list.into_iter().map(|c| (c.client.id, c))),
                    Decoded::Other(Section::Customers(list)) => {
                        image.customers.extend(list.into_iter().map(|c| (c.id, c)));
                    }
                    Decoded::Other(Section::Idempotency(list)) => image
                        .idempotency
                        .extend(list.into_iter().map(|e| ((e.client, e.key.clone()), e))),
                    Decoded::Other(Section::Funding(funding)) => image.funding.import(funding),
                    Decoded::Wallets(list) => wallet_sections.push(list),
                }
            }
        }
        // Streamed into the ledger section by section: no vector of every
        // state in between (each would be ~330 MB of fresh pages at 1M).
        let total = wallet_sections.iter().map(Vec::len).sum();
        image.packed.reserve(total);
        let packed = &mut image.packed;
        let wallets = wallet_sections.into_iter().flatten().map(|(state, p)| {
            packed.push(p);
            state
        });
        let wallets = Counted {
            inner: wallets,
            left: total,
        };
        image.ledger = Ledger::restore(config, wallets).map_err(|e| {
            ImageError(format!(
                "{}: the wallets do not form a consistent state: {e}",
                file.path.display()
            ))
        })?;
        let summary = image.summary();
        if summary.wallets != file.header.summary.wallets
            || summary.assets != file.header.summary.assets
        {
            return Err(ImageError(format!(
                "{}: the content does not match the header's counts and totals",
                file.path.display()
            )));
        }
        Ok(image)
    }

    /// Hands the state to the live engine: the directory (clients, keys,
    /// customers, and the indexes the wallets imply), the idempotency store
    /// (records past their TTL at `now_ms` are dropped), the funding rails
    /// (into an empty `Funding`), and the wallets, returned for the actors.
    pub fn install(
        self,
        directory: &Directory,
        idempotency: &IdempotencyStore,
        funding: &Funding,
        now_ms: i64,
    ) -> Vec<InstalledWallet> {
        funding.import(self.funding.export());
        for ClientEntry { client, key_hash } in self.clients.into_values() {
            directory.apply(&DirectoryRecord::ClientCreated { client, key_hash });
        }
        for customer in self.customers.into_values() {
            directory.apply(&DirectoryRecord::CustomerCreated { customer });
        }
        let mut records: Vec<IdempotencyEntry> = self.idempotency.into_values().collect();
        records.sort_by_key(|e| e.at);
        for e in records {
            let restored = match e.outcome {
                IdempotencyOutcome::Claimed { ids } => Restored::Claim(ids),
                IdempotencyOutcome::Answered { status, body } => Restored::Answer(StoredAnswer {
                    status,
                    body: body.into_bytes(),
                }),
            };
            idempotency.restore(e.client, &e.key, e.fingerprint, e.at, now_ms, restored);
        }
        // One pass, each state moved once. The ledger and the packed bytes
        // are both in id order: a merge, no lookups.
        let mut packed = self.packed.into_iter().peekable();
        let mut out = Vec::with_capacity(self.ledger.wallets().len());
        for state in self.ledger.into_boxed_wallets() {
            index(directory, &state);
            while packed.next_if(|p| p.id < state.id).is_some() {}
            let bytes = packed
                .next_if(|p| p.id == state.id)
                .filter(|p| p.sequence == state.sequence)
                .map(|p| p.bytes);
            out.push((state, bytes));
        }
        out
    }
}

fn encode(section: &Section) -> Result<Vec<u8>, ImageError> {
    rmp_serde::to_vec_named(section)
        .map_err(|e| ImageError(format!("cannot encode a snapshot section: {e}")))
}

/// One section of wallets (empty bytes for no wallets): a named-field map
/// whose one entry holds each wallet's packed bytes.
fn encode_wallets(wallets: &[&WalletState]) -> Vec<u8> {
    if wallets.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(wallets.len() * 192);
    msgpack::write_map_len(&mut out, 1);
    msgpack::write_str(&mut out, PACKED_WALLETS);
    msgpack::write_array_len(&mut out, wallets.len());
    let mut one = Vec::with_capacity(256);
    for w in wallets {
        one.clear();
        pack::encode(w, &mut one);
        msgpack::write_bin(&mut out, &one);
    }
    out
}

/// Decodes section `i` of `file`: packed wallets by hand, anything else
/// through serde. Errors name the file, the section and the byte.
fn decode_section(file: &SnapshotFile, i: usize) -> Result<Decoded, ImageError> {
    let bytes = file
        .section_bytes(i)
        .ok_or_else(|| ImageError(format!("{}: no section {i}", file.path.display())))?;
    let mut r = Reader::new(bytes);
    let is_wallets = r.map_len().ok() == Some(1) && r.str().ok() == Some(PACKED_WALLETS);
    if !is_wallets {
        return Ok(Decoded::Other(file.section::<Section>(i)?));
    }
    let bad = |what: String| {
        ImageError(format!(
            "{}: section {i} (at byte {}): {what}",
            file.path.display(),
            file.section_offset(i).unwrap_or(0)
        ))
    };
    let n = r.array_len().map_err(|e| bad(e.to_string()))?;
    let mut wallets = Vec::with_capacity(n);
    for k in 0..n {
        let one = r
            .bin()
            .map_err(|e| bad(format!("wallet {k} is not framed: {e}")))?;
        let state =
            pack::decode(one).map_err(|e| bad(format!("wallet {k} does not decode: {e}")))?;
        let packed = PackedWallet {
            id: state.id,
            sequence: state.sequence,
            bytes: one.into(),
        };
        wallets.push((state, packed));
    }
    r.finish()
        .map_err(|e| bad(format!("after its {n} wallets: {e}")))?;
    Ok(Decoded::Wallets(wallets))
}

/// The directory's indexes that a wallet itself records: its client's
/// wallets (ids sort in creation order) and where each transaction was
/// created (not the inbound record of a transfer).
fn index(directory: &Directory, w: &WalletState) {
    directory.apply(&DirectoryRecord::WalletOpened {
        wallet: w.id,
        client: w.spec.client,
    });
    for t in w.txns() {
        let inbound = t.direction == Some(Direction::In) && t.counterparty.is_some();
        if !inbound {
            directory.apply(&DirectoryRecord::TxnCreated {
                txn: t.id,
                wallet: w.id,
            });
        }
    }
}

#[cfg(test)]
mod tests;
