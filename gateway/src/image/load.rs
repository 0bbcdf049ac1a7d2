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
    Asset, AssetCode, AssetRegistry, Decimal, EngineConfig, Ledger, TxnId, WalletId, WalletState,
    wallet::Flows,
};
use settle_snapshots::snapshot::SnapshotFile;

/// One section, read.
enum Decoded {
    Other(Section),
    Wallets(Vec<StoredWallet>),
}

/// What one of the two loading threads read: its sections in file order,
/// and its share of the scans' findings.
struct Part {
    sections: Vec<Decoded>,
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

impl Image {
    /// The image a checked snapshot file holds. Sections are read on two
    /// threads; the wallets must form a consistent ledger (as
    /// `Ledger::restore` checks), and the content must match the header's
    /// counts and totals. Wallets stay packed (see `stored`).
    pub fn from_snapshot(file: &SnapshotFile, config: EngineConfig) -> Result<Self, ImageError> {
        let n = file.sections();
        let assets = &config.assets;
        let read_part = |part: usize| read_part(file, assets, part, n);
        let (even, odd) = std::thread::scope(|s| {
            let odd = s.spawn(|| read_part(1));
            (read_part(0), odd.join())
        });
        let odd = odd.map_err(|_| ImageError("a snapshot decoder thread panicked".into()))??;
        let even = even?;
        let bad = |e: String| {
            ImageError(format!(
                "{}: the wallets do not form a consistent state: {e}",
                file.path.display()
            ))
        };
        let creators = merge_creators(even.creators, odd.creators).map_err(bad)?;
        let mut tally = even.tally;
        tally.merge(odd.tally);
        let mut image = Image::empty(config.clone());
        image.position = file.header.position;
        // Back in file order (even and odd sections interleave), so that the
        // wallets stay in id order.
        let mut wallets: Vec<StoredWallet> = Vec::new();
        let mut odd = odd.sections.into_iter();
        for even in even.sections {
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
                    Decoded::Wallets(list) if wallets.is_empty() => wallets = list,
                    Decoded::Wallets(list) => wallets.extend(list),
                }
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
        if wallets.len() as u64 != file.header.summary.wallets
            || asset_totals(with_messages.finish()) != file.header.summary.assets
        {
            return Err(ImageError(format!(
                "{}: the content does not match the header's counts and totals",
                file.path.display()
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
}

/// Reads sections `part, part + 2, ...` of `n`.
fn read_part(
    file: &SnapshotFile,
    assets: &AssetRegistry,
    part: usize,
    n: usize,
) -> Result<Part, ImageError> {
    let mut out = Part {
        sections: Vec::new(),
        creators: Vec::new(),
        tally: Tally::new(assets),
    };
    for i in (part..n).step_by(2) {
        let section = read_section(file, i, &mut out)?;
        out.sections.push(section);
    }
    // Sorted here, on this thread; the two halves are merged after.
    out.creators.sort_unstable_by_key(|c| c.0);
    Ok(out)
}

/// Reads section `i` of `file`: packed wallets scanned by hand, anything
/// else decoded through serde. Errors name the file, the section, its byte
/// offset and the wallet's index in it.
fn read_section(file: &SnapshotFile, i: usize, part: &mut Part) -> Result<Decoded, ImageError> {
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
