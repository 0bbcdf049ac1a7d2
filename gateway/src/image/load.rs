//! Loading a snapshot file into an `Image`, wallets kept packed.
//!
//! Every check the eager load made (decode every wallet, `Ledger::restore`,
//! the header's counts and totals) is made here without building the
//! states: each wallet's bytes are scanned (`pack::scan` refuses what
//! `pack::decode` refuses), and the scan feeds what the checks need:
//!
//! - wallet ids, which must not repeat;
//! - the transactions each wallet created, which must not repeat across
//!   wallets (`Ledger::restore`'s creators);
//! - the audit's sums per asset, for the header's totals;
//! - the transfers toward other wallets not yet funded (`Incoming`);
//! - whether a wallet awaits receipts: only those wallets, and the
//!   destinations of their transfers, are decoded, to put in flight the
//!   messages the states imply (`message::implied_by`).
//!
//! A snapshot read from disk as it is loaded (`from_stream`) leaves its
//! bulk there: each wallet is kept as where its bytes are and their
//! CRC32C, each idempotency record as its key, time and place (see
//! `stored` and `records`). One read whole (`from_snapshot`) is kept in
//! memory.

use super::records::{OnDisk, Records};
use super::scratch::Place;
use super::stored::{Packed, Scanned, Stored, StoredWallet};
use super::{Image, ImageError, PACKED_WALLETS, Section, asset_totals};
use crate::incoming::Incoming;
use settle_engine::audit::Tally;
use settle_engine::message::implied_by;
use settle_engine::msgpack::Reader;
use settle_engine::wallet::pack::{self, Sink};
use settle_engine::{
    Asset, AssetCode, Decimal, EngineConfig, Ledger, TxnId, WalletId, WalletState, wallet::Flows,
};
use settle_snapshots::snapshot::{SnapshotFile, SnapshotHeader, SnapshotReread, SnapshotStream};
use std::borrow::Cow;
use std::path::Path;

/// One section, read.
enum Decoded {
    Other(Section),
    Wallets(Vec<StoredWallet>),
    /// Idempotency records left in the file: the section's body offset and
    /// length, and each record's key and time.
    Records(u64, usize, Vec<OnDisk>),
}

/// What one of the two loading threads read: its sections in file order,
/// and its share of the scans' findings.
struct Part {
    /// Each with its index in the file.
    sections: Vec<(usize, Decoded)>,
    /// (transaction, creating wallet), sorted by transaction.
    creators: Vec<(TxnId, WalletId)>,
    scanned: Scanned,
    /// The wallets awaiting a receipt.
    awaiting: Vec<WalletId>,
    /// The transfers toward other wallets that have not left their source.
    incoming: Incoming,
}

/// What a scan hands on: the audit's sums and the transactions the
/// wallet created (its id filled in after the scan).
struct Scanning<'a> {
    creators: &'a mut Vec<(TxnId, WalletId)>,
    tally: &'a mut Tally,
    /// Outbound items not funded (`incoming::seeds`): `Incoming`'s, once
    /// the wallet's id is known.
    unfunded: &'a mut Vec<settle_engine::Txn>,
}

impl Sink for Scanning<'_> {
    fn book(&mut self, asset: Asset, cash: Decimal) {
        self.tally.book(asset, cash);
    }

    fn flows(&mut self, asset: AssetCode, flows: &Flows) {
        self.tally.flows(asset, flows);
    }

    fn txn(&mut self, txn: &settle_engine::Txn) {
        if !txn.is_inbound_record() {
            self.creators.push((txn.id, WalletId::from_u128(0)));
        }
        if crate::incoming::seeds(txn) {
            self.unfunded.push(txn.clone());
        }
    }
}

/// One section's raw bytes, borrowed from a file in memory or read from
/// a stream.
struct Raw<'a> {
    index: usize,
    offset: u64,
    bytes: Cow<'a, [u8]>,
}

impl Image {
    /// The image a checked snapshot file holds (in memory: offline tools,
    /// tests). See `load`.
    pub fn from_snapshot(file: &SnapshotFile, config: EngineConfig) -> Result<Self, ImageError> {
        let sections = (0..file.sections()).map(|i| {
            let bytes = file
                .section_bytes(i)
                .ok_or_else(|| ImageError(format!("{}: no section {i}", file.path.display())))?;
            Ok(Raw {
                index: i,
                offset: file.section_offset(i).unwrap_or(0),
                bytes: Cow::Borrowed(bytes),
            })
        });
        load(&file.path, &file.header, sections, None, config)
    }

    /// The image a snapshot holds, read from disk as it is built: the file
    /// is never held whole (a million wallets' file is ~1 GB, beside the
    /// state a snapshot or recovery is building), and its wallets and
    /// idempotency records stay in it, read again when used. The stream
    /// checks every frame as it comes and the footer at the end; nothing
    /// is returned unless the whole file checked out.
    pub fn from_stream(
        mut stream: SnapshotStream,
        config: EngineConfig,
    ) -> Result<Self, ImageError> {
        let path = stream.path.clone();
        let header = stream.header.clone();
        let file = stream.reread()?;
        let sections = std::iter::from_fn(|| stream.next_section().transpose()).map(|section| {
            let s = section?;
            Ok(Raw {
                index: s.index,
                offset: s.offset,
                bytes: Cow::Owned(s.bytes),
            })
        });
        load(&path, &header, sections, Some(file), config)
    }
}

/// Builds the image from `sections` in file order, decoded on two threads
/// while this one reads: the wallets must form a consistent ledger (as
/// `Ledger::restore` checks), and the content must match the header's
/// counts and totals. Wallets stay packed (see `stored`); with `file`, in
/// it, with the idempotency records.
fn load<'a>(
    path: &Path,
    header: &SnapshotHeader,
    sections: impl Iterator<Item = Result<Raw<'a>, ImageError>>,
    file: Option<SnapshotReread>,
    config: EngineConfig,
) -> Result<Image, ImageError> {
    let in_file = file.is_some();
    let assets = &config.assets;
    // A few sections ahead of the decoders at most: memory stays bounded
    // by the sections in hand, not by the file.
    let (tx, rx) = crossbeam_channel::bounded::<Raw<'a>>(2);
    let (fed, first, second) = std::thread::scope(|s| {
        let decode = |rx: crossbeam_channel::Receiver<Raw<'a>>| {
            let mut part = Part {
                sections: Vec::new(),
                creators: Vec::new(),
                scanned: Scanned::new(assets),
                awaiting: Vec::new(),
                incoming: Incoming::default(),
            };
            for raw in rx.iter() {
                let section = read_section(path, &raw, in_file, &mut part)?;
                part.sections.push((raw.index, section));
            }
            // Sorted here, on this thread; the two halves are merged after.
            part.creators.sort_unstable_by_key(|c| c.0);
            Ok::<_, ImageError>(part)
        };
        let rx2 = rx.clone();
        let second = s.spawn(move || decode(rx2));
        let first = s.spawn(move || decode(rx));
        let mut fed = Ok(());
        for raw in sections {
            match raw {
                // A decoder that stopped on an error says why at its join.
                Ok(raw) => {
                    if tx.send(raw).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    fed = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        (fed, first.join(), second.join())
    });
    fed?;
    let panicked = || ImageError("a snapshot decoder thread panicked".into());
    let first = first.map_err(|_| panicked())??;
    let second = second.map_err(|_| panicked())??;
    let bad = |e: String| {
        ImageError(format!(
            "{}: the wallets do not form a consistent state: {e}",
            path.display()
        ))
    };
    let creators = merge_creators(first.creators, second.creators).map_err(bad)?;
    let mut scanned = first.scanned;
    scanned.merge(second.scanned);
    let mut awaiting = first.awaiting;
    awaiting.extend(second.awaiting);
    let mut image = Image::empty(config.clone());
    image.incoming = first.incoming;
    image.incoming.merge(second.incoming);
    image.position = header.position;
    if let Some(file) = &file {
        image.idempotency = Records::in_file(file.clone());
    }
    // Back in file order (the two threads took sections as they came),
    // so that the wallets stay in id order.
    let mut sections = first.sections;
    sections.extend(second.sections);
    sections.sort_unstable_by_key(|(index, _)| *index);
    let mut wallets: Vec<StoredWallet> = Vec::new();
    for (_, section) in sections {
        match section {
            Decoded::Other(Section::Clients(list)) => image
                .clients
                .extend(list.into_iter().map(|c| (c.client.id, c))),
            Decoded::Other(Section::Customers(list)) => {
                image.customers.extend(list.into_iter().map(|c| (c.id, c)));
            }
            Decoded::Other(Section::Idempotency(list)) => {
                for e in list {
                    image.idempotency.insert(e);
                }
            }
            Decoded::Records(offset, len, list) => image.idempotency.in_section(offset, len, list),
            Decoded::Other(Section::Funding(funding)) => image.funding.import(funding),
            Decoded::Wallets(list) if wallets.is_empty() => wallets = list,
            Decoded::Wallets(list) => wallets.extend(list),
        }
    }
    image.idempotency.sort();
    // Written in id order; sorted here all the same (linear if so), as
    // `Ledger::restore` did, and refused if an id repeats.
    wallets.sort_unstable_by_key(|w| w.id);
    if let Some(pair) = wallets.windows(2).find(|p| p[0].id == p[1].id) {
        return Err(bad(format!("{} appears twice", pair[0].id)));
    }
    let count = wallets.len();
    let stored = Stored::new(wallets, creators, scanned.clone(), file);
    let in_flight = implied(&stored, &awaiting).map_err(bad)?;
    // The header's totals count the money in flight too; the tally kept
    // for `summary` is of the stored wallets alone.
    let mut with_messages = scanned.tally;
    for m in &in_flight {
        with_messages.message(m);
    }
    if count as u64 != header.summary.wallets
        || asset_totals(with_messages.finish()) != header.summary.assets
    {
        return Err(ImageError(format!(
            "{}: the content does not match the header's counts and totals",
            path.display()
        )));
    }
    image.ledger = Ledger::new(config);
    image
        .ledger
        .restore_in_flight(in_flight)
        .map_err(|e| bad(e.to_string()))?;
    image.stored = stored;
    Ok(image)
}

/// Reads one section: packed wallets scanned by hand, anything else
/// decoded through serde. Errors name the file, the section, its byte
/// offset and the wallet's index in it.
fn read_section(
    path: &Path,
    raw: &Raw<'_>,
    in_file: bool,
    part: &mut Part,
) -> Result<Decoded, ImageError> {
    let (i, bytes) = (raw.index, &*raw.bytes);
    let bad = |what: String| {
        ImageError(format!(
            "{}: section {i} (at byte {}): {what}",
            path.display(),
            raw.offset
        ))
    };
    let mut r = Reader::new(bytes);
    let is_wallets = r.map_len().ok() == Some(1) && r.str().ok() == Some(PACKED_WALLETS);
    if !is_wallets {
        let section = rmp_serde::from_slice::<Section>(bytes)
            .map_err(|e| bad(format!("does not decode: {e}")))?;
        return Ok(match section {
            // Each record's key and time, and where it is.
            Section::Idempotency(list) if in_file => Decoded::Records(
                raw.offset,
                bytes.len(),
                list.into_iter()
                    .map(|e| (e.client, e.key.into_boxed_str(), e.at))
                    .collect(),
            ),
            other => Decoded::Other(other),
        });
    }
    let n = r.array_len().map_err(|e| bad(e.to_string()))?;
    let mut wallets = Vec::with_capacity(n);
    let mut unfunded = Vec::new();
    for k in 0..n {
        let one = r
            .bin()
            .map_err(|e| bad(format!("wallet {k} is not framed: {e}")))?;
        let first = part.creators.len();
        let mut sink = Scanning {
            creators: &mut part.creators,
            tally: &mut part.scanned.tally,
            unfunded: &mut unfunded,
        };
        let outline = pack::scan(one, &mut sink)
            .map_err(|e| bad(format!("wallet {k} does not decode: {e}")))?;
        // The wallet's id is known once scanned: fill it in.
        for c in part.creators.iter_mut().skip(first) {
            c.1 = outline.id;
        }
        for t in unfunded.drain(..) {
            part.incoming.seed(outline.id, &t);
        }
        part.scanned.count(&outline);
        if outline.awaits_receipt {
            part.awaiting.push(outline.id);
        }
        let packed = if in_file {
            // Where the bytes are: they end where the reader now is.
            let start = r.position() - one.len();
            Packed::File(Place {
                offset: raw.offset + start as u64,
                len: u32::try_from(one.len())
                    .map_err(|_| bad(format!("wallet {k} is too large")))?,
                crc: crc32c::crc32c(one),
            })
        } else {
            Packed::Memory(one.into())
        };
        wallets.push(StoredWallet {
            id: outline.id,
            bytes: Some(packed),
        });
    }
    r.finish()
        .map_err(|e| bad(format!("after its {n} wallets: {e}")))?;
    Ok(Decoded::Wallets(wallets))
}

/// The two threads' creators, each sorted, as one sorted list; refused if
/// a transaction was created by two wallets (or twice by one).
fn merge_creators(
    a: Vec<(TxnId, WalletId)>,
    b: Vec<(TxnId, WalletId)>,
) -> Result<Vec<(TxnId, WalletId)>, String> {
    let mut out: Vec<(TxnId, WalletId)> = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        let Some(next) = next else { break };
        if let Some(last) = out.last()
            && last.0 == next.0
        {
            return Err(format!("{} created by {} and {}", next.0, last.1, next.1));
        }
        out.push(next);
    }
    Ok(out)
}

/// The messages in flight the wallets imply: only the wallets awaiting a
/// receipt (`awaiting`), and their transfers' destinations, are decoded.
fn implied(stored: &Stored, awaiting: &[WalletId]) -> Result<Vec<settle_engine::Message>, String> {
    let decode = |id: WalletId| -> Result<Option<WalletState>, String> {
        stored.get(id).map(|w| stored.decode(w)).transpose()
    };
    let mut sources: Vec<WalletState> = Vec::with_capacity(awaiting.len());
    for &id in awaiting {
        sources.extend(decode(id)?);
    }
    // In id order, as the wallets are: the messages come out in one order.
    sources.sort_unstable_by_key(|w| w.id);
    let at_destination =
        |to: WalletId, txn: TxnId| Ok(decode(to)?.and_then(|w| w.txn(txn).map(|t| t.status)));
    implied_by(sources.iter(), at_destination)
}
