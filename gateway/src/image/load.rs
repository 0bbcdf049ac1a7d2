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
//! - whether a wallet awaits receipts: only those wallets, and the
//!   destinations of their transfers, are decoded, to put in flight the
//!   messages the states imply (`message::implied_by`).

use super::stored::{Stored, StoredWallet};
use super::{Image, ImageError, PACKED_WALLETS, Section, asset_totals};
use settle_engine::audit::Tally;
use settle_engine::message::implied_by;
use settle_engine::msgpack::Reader;
use settle_engine::wallet::pack::{self, Sink};
use settle_engine::{
    Asset, AssetCode, Decimal, EngineConfig, Ledger, TxnId, WalletId, WalletState, wallet::Flows,
};
use settle_snapshots::snapshot::{SnapshotFile, SnapshotHeader, SnapshotStream};
use std::borrow::Cow;
use std::path::Path;

/// One section, read.
enum Decoded {
    Other(Section),
    Wallets(Vec<StoredWallet>),
}

/// What one of the two loading threads read: its sections in file order,
/// and its share of the scans' findings.
struct Part {
    /// Each with its index in the file.
    sections: Vec<(usize, Decoded)>,
    /// (transaction, creating wallet), sorted by transaction.
    creators: Vec<(TxnId, WalletId)>,
    tally: Tally,
}

/// What a scan hands on: the audit's sums and the transactions the
/// wallet created (its id filled in after the scan).
struct Scanning<'a> {
    creators: &'a mut Vec<(TxnId, WalletId)>,
    tally: &'a mut Tally,
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
        load(&file.path, &file.header, sections, config)
    }

    /// The image a snapshot holds, read from disk as it is built: the file
    /// is never held whole (a million wallets' file is ~1 GB, beside the
    /// state a snapshot or recovery is building). The stream checks every
    /// frame as it comes and the footer at the end; nothing is returned
    /// unless the whole file checked out.
    pub fn from_stream(
        mut stream: SnapshotStream,
        config: EngineConfig,
    ) -> Result<Self, ImageError> {
        let path = stream.path.clone();
        let header = stream.header.clone();
        let sections = std::iter::from_fn(|| stream.next_section().transpose()).map(|section| {
            let s = section?;
            Ok(Raw {
                index: s.index,
                offset: s.offset,
                bytes: Cow::Owned(s.bytes),
            })
        });
        load(&path, &header, sections, config)
    }
}

/// Builds the image from `sections` in file order, decoded on two threads
/// while this one reads: the wallets must form a consistent ledger (as
/// `Ledger::restore` checks), and the content must match the header's
/// counts and totals. Wallets stay packed (see `stored`).
fn load<'a>(
    path: &Path,
    header: &SnapshotHeader,
    sections: impl Iterator<Item = Result<Raw<'a>, ImageError>>,
    config: EngineConfig,
) -> Result<Image, ImageError> {
    let assets = &config.assets;
    // A few sections ahead of the decoders at most: memory stays bounded
    // by the sections in hand, not by the file.
    let (tx, rx) = crossbeam_channel::bounded::<Raw<'a>>(2);
    let (fed, first, second) = std::thread::scope(|s| {
        let decode = |rx: crossbeam_channel::Receiver<Raw<'a>>| {
            let mut part = Part {
                sections: Vec::new(),
                creators: Vec::new(),
                tally: Tally::new(assets),
            };
            for raw in rx.iter() {
                let section = read_section(path, &raw, &mut part)?;
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
    let mut tally = first.tally;
    tally.merge(second.tally);
    let mut image = Image::empty(config.clone());
    image.position = header.position;
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
            Decoded::Other(Section::Idempotency(list)) => image
                .idempotency
                .extend(list.into_iter().map(|e| ((e.client, e.key.clone()), e))),
            Decoded::Other(Section::Funding(funding)) => image.funding.import(funding),
            Decoded::Wallets(list) if wallets.is_empty() => wallets = list,
            Decoded::Wallets(list) => wallets.extend(list),
        }
    }
    // Written in id order; sorted here all the same (linear if so), as
    // `Ledger::restore` did, and refused if an id repeats.
    wallets.sort_unstable_by_key(|w| w.outline.id);
    if let Some(pair) = wallets
        .windows(2)
        .find(|p| p[0].outline.id == p[1].outline.id)
    {
        return Err(bad(format!("{} appears twice", pair[0].outline.id)));
    }
    let in_flight = implied(&wallets).map_err(bad)?;
    // The header's totals count the money in flight too; the tally kept
    // for `summary` is of the stored wallets alone.
    let mut with_messages = tally.clone();
    for m in &in_flight {
        with_messages.message(m);
    }
    if wallets.len() as u64 != header.summary.wallets
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
    image.stored = Stored::new(wallets, creators, tally);
    Ok(image)
}

/// Reads one section: packed wallets scanned by hand, anything else
/// decoded through serde. Errors name the file, the section, its byte
/// offset and the wallet's index in it.
fn read_section(path: &Path, raw: &Raw<'_>, part: &mut Part) -> Result<Decoded, ImageError> {
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
        return rmp_serde::from_slice::<Section>(bytes)
            .map(Decoded::Other)
            .map_err(|e| bad(format!("does not decode: {e}")));
    }
    let n = r.array_len().map_err(|e| bad(e.to_string()))?;
    let mut wallets = Vec::with_capacity(n);
    for k in 0..n {
        let one = r
            .bin()
            .map_err(|e| bad(format!("wallet {k} is not framed: {e}")))?;
        let first = part.creators.len();
        let mut sink = Scanning {
            creators: &mut part.creators,
            tally: &mut part.tally,
        };
        let outline = pack::scan(one, &mut sink)
            .map_err(|e| bad(format!("wallet {k} does not decode: {e}")))?;
        // The wallet's id is known once scanned: fill it in.
        for c in part.creators.iter_mut().skip(first) {
            c.1 = outline.id;
        }
        wallets.push(StoredWallet {
            outline,
            bytes: Some(one.into()),
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
/// receipt, and their transfers' destinations, are decoded.
fn implied(wallets: &[StoredWallet]) -> Result<Vec<settle_engine::Message>, String> {
    let decode = |w: &StoredWallet| -> Result<WalletState, String> {
        let bytes = w.bytes.as_deref().unwrap_or_default();
        pack::decode(bytes).map_err(|e| format!("{} does not decode: {e}", w.outline.id))
    };
    let sources = wallets
        .iter()
        .filter(|w| w.outline.awaits_receipt)
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let at_destination = |to: WalletId, txn: TxnId| {
        let Ok(i) = wallets.binary_search_by_key(&to, |w| w.outline.id) else {
            return Ok(None);
        };
        let Some(w) = wallets.get(i) else {
            return Ok(None);
        };
        Ok(decode(w)?.txn(txn).map(|t| t.status))
    };
    implied_by(sources.iter(), at_destination)
}
