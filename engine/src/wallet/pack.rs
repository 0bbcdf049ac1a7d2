//! The packed form of a wallet: positional MessagePack, written and read by
//! hand. One encoding serves two uses:
//!
//! - a passivated wallet's bytes in memory (`actor::WalletShared`), and
//! - a wallet inside a snapshot's wallet section (the gateway's `image`),
//!
//! so that start-up hands a snapshot's bytes to the actors as they are,
//! with no second encoding. Why positional and by hand: named-field
//! MessagePack through serde spent most of a wallet's 8 µs of load time
//! matching field names and parsing decimals from text; this form is a
//! quarter of the size and decodes in well under a microsecond.
//!
//! Layout (every "record" is a MessagePack array of exactly these fields;
//! "id" is bin 16, the ULID's u128 big-endian; "code" a small integer,
//! see the `*_code` functions; "asset" the code's text; `?` = nil or value):
//!
//! ```text
//! wallet   = [id, spec, settings, status code, status_reason str?, sequence uint,
//!             created_at int, updated_at int, [book*], [flows*], [txn*],
//!             [[at int, txn id]*], [[txn id, asset, decimal]*]]
//! spec     = [client id, kind code, customer id?, [[asset, scale uint]*], single_asset bool]
//! settings = [name str?, description str?, is_favourite bool]
//! book     = [asset, scale uint, cash, reserved, pending, queued, unconfirmed_out
//!             (decimals), [[txn id, amount decimal]*]]
//! flows    = [asset, credited, debited, sent, received, converted_in, converted_out]
//!             (i128: an int, or bin 16 big-endian when it does not fit 64 bits)
//! txn      = [id, kind code, status code, asset, amount decimal, direction code?,
//!             counterparty id?, extra?, sequence uint, created_at int, updated_at int]
//! extra    = [captured decimal?, [buy asset, buy_amount, rate]?, expires_at int?,
//!             [reference str?, metadata str?]?]
//! decimal  = [scale | (negative << 7), magnitude uint, or bin 12 (LE 96-bit) past 64 bits]
//! ```
//!
//! Maps are written in key order and must read back in strictly ascending
//! key order (no key can be lost or doubled). Any change to this layout
//! changes the snapshot format: bump `FORMAT_VERSION` in `settle-snapshots`.

use super::history::History;
use super::{AssetBook, AssetMap, Flows, QueuedItem, WalletKind, WalletSettings, WalletSpec};
use super::{WalletState, WalletStatus};
use crate::asset::{Asset, AssetCode};
use crate::ids::{ClientId, CustomerId, Timestamp, TxnId, WalletId};
use crate::msgpack::{self as mp, DecodeError, Reader};
use crate::txn::{ConversionTerms, Direction, Txn, TxnExtra, TxnInfo, TxnKind, TxnStatus};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Appends the packed form of `state` to `out`.
pub fn encode(state: &WalletState, out: &mut Vec<u8>) {
    mp::write_array_len(out, 13);
    write_id(out, state.id.ulid().0);
    mp::write_array_len(out, 5);
    write_id(out, state.spec.client.ulid().0);
    mp::write_uint(out, wallet_kind_code(state.spec.kind).into());
    write_opt(out, state.spec.customer, |o, c| write_id(o, c.ulid().0));
    mp::write_array_len(out, state.spec.assets.len());
    for a in &state.spec.assets {
        mp::write_array_len(out, 2);
        mp::write_str(out, a.code.as_str());
        mp::write_uint(out, a.scale.into());
    }
    mp::write_bool(out, state.spec.single_asset);
    mp::write_array_len(out, 3);
    write_opt(out, state.settings.name.as_deref(), mp::write_str);
    write_opt(out, state.settings.description.as_deref(), mp::write_str);
    mp::write_bool(out, state.settings.is_favourite);
    mp::write_uint(out, wallet_status_code(state.status).into());
    write_opt(out, state.status_reason.as_deref(), mp::write_str);
    mp::write_uint(out, state.sequence);
    mp::write_int(out, state.created_at.millis());
    mp::write_int(out, state.updated_at.millis());
    mp::write_array_len(out, state.books.len());
    for b in state.books.values() {
        mp::write_array_len(out, 8);
        mp::write_str(out, b.asset.code.as_str());
        mp::write_uint(out, b.asset.scale.into());
        for d in [b.cash, b.reserved, b.pending, b.queued, b.unconfirmed_out] {
            write_decimal(out, d);
        }
        mp::write_array_len(out, b.queue.len());
        for item in &b.queue {
            mp::write_array_len(out, 2);
            write_id(out, item.txn.ulid().0);
            write_decimal(out, item.amount);
        }
    }
    mp::write_array_len(out, state.flows.len());
    for (code, f) in &state.flows {
        mp::write_array_len(out, 7);
        mp::write_str(out, code.as_str());
        for v in [
            f.credited,
            f.debited,
            f.sent,
            f.received,
            f.converted_in,
            f.converted_out,
        ] {
            write_i128(out, v);
        }
    }
    mp::write_array_len(out, state.txns.len());
    for t in state.txns.iter() {
        write_txn(out, t);
    }
    mp::write_array_len(out, state.expiries.len());
    for (at, txn) in &state.expiries {
        mp::write_array_len(out, 2);
        mp::write_int(out, at.millis());
        write_id(out, txn.ulid().0);
    }
    mp::write_array_len(out, state.awaiting_receipt.len());
    for (txn, (asset, amount)) in &state.awaiting_receipt {
        mp::write_array_len(out, 3);
        write_id(out, txn.ulid().0);
        mp::write_str(out, asset.as_str());
        write_decimal(out, *amount);
    }
}

/// The packed form of `state`, in a buffer of its own.
pub fn to_bytes(state: &WalletState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode(state, &mut out);
    out
}

/// Decodes bytes that hold exactly one packed wallet.
pub fn decode(bytes: &[u8]) -> Result<WalletState, DecodeError> {
    let mut r = Reader::new(bytes);
    let state = read(&mut r)?;
    r.finish()?;
    Ok(state)
}

/// Reads one packed wallet from `r`.
pub fn read(r: &mut Reader<'_>) -> Result<WalletState, DecodeError> {
    r.record(13, "a wallet")?;
    let id = WalletId::from_u128(read_id(r)?);
    r.record(5, "a wallet's spec")?;
    let client = ClientId::from_u128(read_id(r)?);
    let kind = wallet_kind(r)?;
    let customer = read_opt(r, |r| read_id(r).map(CustomerId::from_u128))?;
    let n = r.array_len()?;
    let mut assets = Vec::with_capacity(n);
    for _ in 0..n {
        assets.push(read_asset(r)?);
    }
    let spec = WalletSpec {
        client,
        kind,
        customer,
        assets,
        single_asset: r.bool()?,
    };
    r.record(3, "a wallet's settings")?;
    let settings = WalletSettings {
        name: read_opt(r, read_string)?,
        description: read_opt(r, read_string)?,
        is_favourite: r.bool()?,
    };
    let status = wallet_status(r)?;
    let status_reason = read_opt(r, read_string)?;
    let sequence = r.u64()?;
    let created_at = Timestamp::from_millis(r.i64()?);
    let updated_at = Timestamp::from_millis(r.i64()?);
    let n = r.array_len()?;
    let mut books = Vec::with_capacity(n);
    for _ in 0..n {
        books.push(read_book(r)?);
    }
    let books = AssetMap::from_sorted(books).ok_or_else(|| r.error("books out of order"))?;
    let n = r.array_len()?;
    let mut flows = Vec::with_capacity(n);
    for _ in 0..n {
        flows.push(read_flows(r)?);
    }
    let flows = AssetMap::from_sorted(flows).ok_or_else(|| r.error("flows out of order"))?;
    let n = r.array_len()?;
    let mut txns = Vec::with_capacity(n);
    for _ in 0..n {
        txns.push(read_txn(r)?);
    }
    let txns = History::from_sorted(txns).ok_or_else(|| r.error("transactions out of order"))?;
    let n = r.array_len()?;
    let mut expiries = Vec::with_capacity(n);
    for _ in 0..n {
        expiries.push(read_expiry(r)?);
    }
    if !expiries.windows(2).all(|w| w[0] < w[1]) {
        return Err(r.error("expiries out of order"));
    }
    let expiries: BTreeSet<_> = expiries.into_iter().collect();
    let n = r.array_len()?;
    let mut awaiting = Vec::with_capacity(n);
    for _ in 0..n {
        awaiting.push(read_receipt(r)?);
    }
    let awaiting_receipt = sorted_map(awaiting).ok_or_else(|| r.error("receipts out of order"))?;
    Ok(WalletState {
        id,
        spec,
        settings,
        status,
        status_reason,
        sequence,
        created_at,
        updated_at,
        books,
        flows,
        txns,
        expiries,
        awaiting_receipt,
    })
}

/// What a packed wallet is, without its state: the facts a passivated
/// wallet's `WalletShared` publishes, and a snapshot's load keeps beside
/// the bytes (see `scan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outline {
    pub id: WalletId,
    pub client: ClientId,
    /// The enabled assets' codes, in the spec's order.
    pub assets: Box<[AssetCode]>,
    pub status: WalletStatus,
    pub sequence: u64,
    /// How many transaction records the wallet holds.
    pub txns: usize,
    /// When its timer must next fire (`WalletState::next_expiry`).
    pub next_expiry: Option<Timestamp>,
    /// Whether a transfer it sent awaits its receipt.
    pub awaits_receipt: bool,
}

impl Outline {
    /// The outline of a state (what `scan` of its packed bytes gives).
    pub fn of(state: &WalletState) -> Self {
        Outline {
            id: state.id,
            client: state.spec.client,
            assets: state.spec.assets.iter().map(|a| a.code).collect(),
            status: state.status,
            sequence: state.sequence,
            txns: state.txns.len(),
            next_expiry: state.next_expiry(),
            awaits_receipt: !state.awaiting_receipt.is_empty(),
        }
    }
}

/// Told what a scanned wallet holds, value by value (nothing is kept).
pub trait Sink {
    /// One book: its asset and cash.
    fn book(&mut self, _asset: Asset, _cash: Decimal) {}
    /// One asset's flow counters.
    fn flows(&mut self, _asset: AssetCode, _flows: &Flows) {}
    /// One transaction record.
    fn txn(&mut self, _txn: &Txn) {}
}

/// A sink that keeps nothing.
impl Sink for () {}

/// Checks bytes that hold exactly one packed wallet as `decode` does (every
/// field, code, scale, length and key order: what `decode` refuses, this
/// refuses), without building the state: books, flows
/// and transactions pass through `sink` one at a time, on the stack. Why:
/// loading a snapshot of a million wallets need not build a million states
/// (~1 KB each of fresh memory) only to check and then drop them.
pub fn scan(bytes: &[u8], sink: &mut impl Sink) -> Result<Outline, DecodeError> {
    let mut r = Reader::new(bytes);
    let outline = walk(&mut r, sink)?;
    r.finish()?;
    Ok(outline)
}

/// `read`'s walk, keeping only the outline. Keep the two in step: the
/// property test `scan_refuses_what_decode_refuses` holds them to it.
fn walk(r: &mut Reader<'_>, sink: &mut impl Sink) -> Result<Outline, DecodeError> {
    r.record(13, "a wallet")?;
    let id = WalletId::from_u128(read_id(r)?);
    r.record(5, "a wallet's spec")?;
    let client = ClientId::from_u128(read_id(r)?);
    wallet_kind(r)?;
    read_opt(r, read_id)?;
    let n = r.array_len()?;
    let mut assets = Vec::with_capacity(n);
    for _ in 0..n {
        assets.push(read_asset(r)?.code);
    }
    r.bool()?;
    r.record(3, "a wallet's settings")?;
    read_opt(r, |r| r.str())?;
    read_opt(r, |r| r.str())?;
    r.bool()?;
    let status = wallet_status(r)?;
    read_opt(r, |r| r.str())?;
    let sequence = r.u64()?;
    r.i64()?;
    r.i64()?;
    let n = r.array_len()?;
    let mut last: Option<AssetCode> = None;
    for _ in 0..n {
        let (code, book) = read_book(r)?;
        if last.is_some_and(|l| l >= code) {
            return Err(r.error("books out of order"));
        }
        last = Some(code);
        sink.book(book.asset, book.cash);
    }
    let n = r.array_len()?;
    let mut last: Option<AssetCode> = None;
    for _ in 0..n {
        let (code, flows) = read_flows(r)?;
        if last.is_some_and(|l| l >= code) {
            return Err(r.error("flows out of order"));
        }
        last = Some(code);
        sink.flows(code, &flows);
    }
    let txns = r.array_len()?;
    let mut last: Option<TxnId> = None;
    for _ in 0..txns {
        let t = read_txn(r)?;
        if last.is_some_and(|l| l >= t.id) {
            return Err(r.error("transactions out of order"));
        }
        last = Some(t.id);
        sink.txn(&t);
    }
    let n = r.array_len()?;
    let mut first = None;
    let mut last = None;
    for _ in 0..n {
        let e = read_expiry(r)?;
        if last.is_some_and(|l| l >= e) {
            return Err(r.error("expiries out of order"));
        }
        first = first.or(Some(e.0));
        last = Some(e);
    }
    let awaiting = r.array_len()?;
    let mut last: Option<TxnId> = None;
    for _ in 0..awaiting {
        let (txn, _) = read_receipt(r)?;
        if last.is_some_and(|l| l >= txn) {
            return Err(r.error("receipts out of order"));
        }
        last = Some(txn);
    }
    Ok(Outline {
        id,
        client,
        assets: assets.into_boxed_slice(),
        status,
        sequence,
        txns,
        next_expiry: first,
        awaits_receipt: awaiting > 0,
    })
}

fn read_asset(r: &mut Reader<'_>) -> Result<Asset, DecodeError> {
    r.record(2, "an asset")?;
    let code = read_code(r)?;
    Ok(Asset {
        code,
        scale: read_scale(r)?,
    })
}

fn read_book(r: &mut Reader<'_>) -> Result<(AssetCode, AssetBook), DecodeError> {
    r.record(8, "a book")?;
    let code = read_code(r)?;
    let asset = Asset {
        code,
        scale: read_scale(r)?,
    };
    let [cash, reserved, pending, queued, unconfirmed_out] = [
        read_decimal(r)?,
        read_decimal(r)?,
        read_decimal(r)?,
        read_decimal(r)?,
        read_decimal(r)?,
    ];
    let q = r.array_len()?;
    let mut queue = VecDeque::with_capacity(q);
    for _ in 0..q {
        r.record(2, "a queued item")?;
        queue.push_back(QueuedItem {
            txn: TxnId::from_u128(read_id(r)?),
            amount: read_decimal(r)?,
        });
    }
    Ok((
        code,
        AssetBook {
            asset,
            cash,
            reserved,
            pending,
            queued,
            unconfirmed_out,
            queue,
        },
    ))
}

fn read_flows(r: &mut Reader<'_>) -> Result<(AssetCode, Flows), DecodeError> {
    r.record(7, "flows")?;
    let code = read_code(r)?;
    Ok((
        code,
        Flows {
            credited: read_i128(r)?,
            debited: read_i128(r)?,
            sent: read_i128(r)?,
            received: read_i128(r)?,
            converted_in: read_i128(r)?,
            converted_out: read_i128(r)?,
        },
    ))
}

fn read_expiry(r: &mut Reader<'_>) -> Result<(Timestamp, TxnId), DecodeError> {
    r.record(2, "an expiry")?;
    let at = Timestamp::from_millis(r.i64()?);
    Ok((at, TxnId::from_u128(read_id(r)?)))
}

fn read_receipt(r: &mut Reader<'_>) -> Result<(TxnId, (AssetCode, Decimal)), DecodeError> {
    r.record(3, "a transfer awaiting its receipt")?;
    let txn = TxnId::from_u128(read_id(r)?);
    let asset = read_code(r)?;
    Ok((txn, (asset, read_decimal(r)?)))
}

/// A map from entries in strictly ascending key order (bulk-built: no
/// rebalancing); `None` if they are not.
fn sorted_map<K: Ord, V>(entries: Vec<(K, V)>) -> Option<BTreeMap<K, V>> {
    entries
        .windows(2)
        .all(|w| w[0].0 < w[1].0)
        .then(|| entries.into_iter().collect())
}

fn write_txn(out: &mut Vec<u8>, t: &Txn) {
    mp::write_array_len(out, 11);
    write_id(out, t.id.ulid().0);
    mp::write_uint(out, txn_kind_code(t.kind).into());
    mp::write_uint(out, txn_status_code(t.status).into());
    mp::write_str(out, t.asset.as_str());
    write_decimal(out, t.amount);
    write_opt(out, t.direction, |o, d| {
        mp::write_uint(o, direction_code(d).into());
    });
    write_opt(out, t.counterparty, |o, c| write_id(o, c.ulid().0));
    write_opt(out, t.extra_fields(), |o, e| {
        mp::write_array_len(o, 4);
        write_opt(o, e.captured, write_decimal);
        write_opt(o, e.conversion.as_ref(), |o, c| {
            mp::write_array_len(o, 3);
            mp::write_str(o, c.buy_asset.as_str());
            write_decimal(o, c.buy_amount);
            write_decimal(o, c.rate);
        });
        write_opt(o, e.expires_at, |o, at| mp::write_int(o, at.millis()));
        write_opt(o, e.info.as_ref(), |o, i| {
            mp::write_array_len(o, 2);
            write_opt(o, i.reference.as_deref(), mp::write_str);
            write_opt(o, i.metadata.as_deref(), mp::write_str);
        });
    });
    mp::write_uint(out, t.sequence);
    mp::write_int(out, t.created_at.millis());
    mp::write_int(out, t.updated_at.millis());
}

fn read_txn(r: &mut Reader<'_>) -> Result<Txn, DecodeError> {
    r.record(11, "a transaction")?;
    let id = TxnId::from_u128(read_id(r)?);
    let kind = txn_kind(r)?;
    let status = txn_status(r)?;
    let asset = read_code(r)?;
    let amount = read_decimal(r)?;
    let direction = read_opt(r, direction)?;
    let counterparty = read_opt(r, |r| read_id(r).map(WalletId::from_u128))?;
    let extra = read_opt(r, |r| {
        r.record(4, "a transaction's extra fields")?;
        Ok(Box::new(TxnExtra {
            captured: read_opt(r, read_decimal)?,
            conversion: read_opt(r, |r| {
                r.record(3, "conversion terms")?;
                Ok(ConversionTerms {
                    buy_asset: read_code(r)?,
                    buy_amount: read_decimal(r)?,
                    rate: read_decimal(r)?,
                })
            })?,
            expires_at: read_opt(r, |r| r.i64().map(Timestamp::from_millis))?,
            info: read_opt(r, |r| {
                r.record(2, "a transaction's info")?;
                Ok(TxnInfo {
                    reference: read_opt(r, read_string)?,
                    metadata: read_opt(r, read_string)?,
                })
            })?,
        }))
    })?;
    let sequence = r.u64()?;
    let created_at = Timestamp::from_millis(r.i64()?);
    let mut t = Txn::new(id, kind, status, asset, amount, sequence, created_at);
    t.direction = direction;
    t.counterparty = counterparty;
    t.updated_at = Timestamp::from_millis(r.i64()?);
    t.set_extra_fields(extra);
    Ok(t)
}

// Fields.

fn write_opt<T>(out: &mut Vec<u8>, v: Option<T>, f: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        Some(v) => f(out, v),
        None => mp::write_nil(out),
    }
}

fn read_opt<'a, T>(
    r: &mut Reader<'a>,
    f: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if r.nil() { Ok(None) } else { f(r).map(Some) }
}

fn write_id(out: &mut Vec<u8>, id: u128) {
    mp::write_bin(out, &id.to_be_bytes());
}

fn read_id(r: &mut Reader<'_>) -> Result<u128, DecodeError> {
    let bytes = r.bin()?;
    <[u8; 16]>::try_from(bytes)
        .map(u128::from_be_bytes)
        .map_err(|_| r.error(format!("an id of {} bytes, expected 16", bytes.len())))
}

fn read_string(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    r.str().map(str::to_owned)
}

fn read_code(r: &mut Reader<'_>) -> Result<AssetCode, DecodeError> {
    let text = r.str()?;
    AssetCode::new(text).map_err(|e| r.error(e.to_string()))
}

fn read_scale(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let scale = r.u8()?;
    if u32::from(scale) > Decimal::MAX_SCALE {
        return Err(r.error(format!("scale {scale} is past {}", Decimal::MAX_SCALE)));
    }
    Ok(scale.into())
}

/// Exact, sign of zero included: the scale and sign in one small integer,
/// then the 96-bit magnitude.
fn write_decimal(out: &mut Vec<u8>, d: Decimal) {
    let raw = d.serialize();
    let flags = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let scale = (flags >> 16) & 0xff;
    let negative = flags >> 31;
    mp::write_array_len(out, 2);
    mp::write_uint(out, u64::from(scale | (negative << 7)));
    let mut magnitude = [0u8; 16];
    magnitude[..12].copy_from_slice(&raw[4..16]);
    let magnitude = u128::from_le_bytes(magnitude);
    match u64::try_from(magnitude) {
        Ok(small) => mp::write_uint(out, small),
        Err(_) => mp::write_bin(out, &raw[4..16]),
    }
}

fn read_decimal(r: &mut Reader<'_>) -> Result<Decimal, DecodeError> {
    r.record(2, "a decimal")?;
    let head = r.u8()?;
    let scale = head & 0x7f;
    if u32::from(scale) > Decimal::MAX_SCALE {
        return Err(r.error(format!("a decimal of scale {scale}")));
    }
    let mut raw = [0u8; 16];
    let flags = (u32::from(scale) << 16) | (u32::from(head >> 7) << 31);
    raw[..4].copy_from_slice(&flags.to_le_bytes());
    if r.next_is_bin() {
        let bytes = r.bin()?;
        if bytes.len() != 12 {
            return Err(r.error("a decimal's magnitude is not 12 bytes"));
        }
        raw[4..].copy_from_slice(bytes);
    } else {
        raw[4..12].copy_from_slice(&r.u64()?.to_le_bytes());
    }
    Ok(Decimal::deserialize(raw))
}

fn write_i128(out: &mut Vec<u8>, v: i128) {
    match i64::try_from(v) {
        Ok(small) => mp::write_int(out, small),
        Err(_) => mp::write_bin(out, &v.to_be_bytes()),
    }
}

fn read_i128(r: &mut Reader<'_>) -> Result<i128, DecodeError> {
    if r.next_is_bin() {
        let bytes = r.bin()?;
        <[u8; 16]>::try_from(bytes)
            .map(i128::from_be_bytes)
            .map_err(|_| r.error("a 128-bit integer is not 16 bytes"))
    } else {
        r.i128()
    }
}

// Codes of the enums. Fixed forever for this format: never renumber.

fn wallet_kind_code(k: WalletKind) -> u8 {
    match k {
        WalletKind::Customer => 0,
        WalletKind::ClientAdmin => 1,
        WalletKind::General => 2,
    }
}

fn wallet_kind(r: &mut Reader<'_>) -> Result<WalletKind, DecodeError> {
    match r.u8()? {
        0 => Ok(WalletKind::Customer),
        1 => Ok(WalletKind::ClientAdmin),
        2 => Ok(WalletKind::General),
        c => Err(r.error(format!("wallet kind {c}"))),
    }
}

fn wallet_status_code(s: WalletStatus) -> u8 {
    match s {
        WalletStatus::Active => 0,
        WalletStatus::Restricted => 1,
        WalletStatus::Suspended => 2,
        WalletStatus::Closed => 3,
    }
}

fn wallet_status(r: &mut Reader<'_>) -> Result<WalletStatus, DecodeError> {
    match r.u8()? {
        0 => Ok(WalletStatus::Active),
        1 => Ok(WalletStatus::Restricted),
        2 => Ok(WalletStatus::Suspended),
        3 => Ok(WalletStatus::Closed),
        c => Err(r.error(format!("wallet status {c}"))),
    }
}

const TXN_KINDS: [TxnKind; 5] = [
    TxnKind::Credit,
    TxnKind::Debit,
    TxnKind::Reservation,
    TxnKind::Transfer,
    TxnKind::Conversion,
];

const TXN_STATUSES: [TxnStatus; 10] = [
    TxnStatus::Pending,
    TxnStatus::Settled,
    TxnStatus::Rejected,
    TxnStatus::AwaitingFunds,
    TxnStatus::Cancelled,
    TxnStatus::Expired,
    TxnStatus::Held,
    TxnStatus::Captured,
    TxnStatus::Released,
    TxnStatus::Returned,
];

fn txn_kind_code(k: TxnKind) -> u8 {
    match k {
        TxnKind::Credit => 0,
        TxnKind::Debit => 1,
        TxnKind::Reservation => 2,
        TxnKind::Transfer => 3,
        TxnKind::Conversion => 4,
    }
}

fn txn_kind(r: &mut Reader<'_>) -> Result<TxnKind, DecodeError> {
    let c = r.u8()?;
    TXN_KINDS
        .get(usize::from(c))
        .copied()
        .ok_or_else(|| r.error(format!("transaction kind {c}")))
}

fn txn_status_code(s: TxnStatus) -> u8 {
    match s {
        TxnStatus::Pending => 0,
        TxnStatus::Settled => 1,
        TxnStatus::Rejected => 2,
        TxnStatus::AwaitingFunds => 3,
        TxnStatus::Cancelled => 4,
        TxnStatus::Expired => 5,
        TxnStatus::Held => 6,
        TxnStatus::Captured => 7,
        TxnStatus::Released => 8,
        TxnStatus::Returned => 9,
    }
}

fn txn_status(r: &mut Reader<'_>) -> Result<TxnStatus, DecodeError> {
    let c = r.u8()?;
    TXN_STATUSES
        .get(usize::from(c))
        .copied()
        .ok_or_else(|| r.error(format!("transaction status {c}")))
}

fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

fn direction(r: &mut Reader<'_>) -> Result<Direction, DecodeError> {
    match r.u8()? {
        0 => Ok(Direction::In),
        1 => Ok(Direction::Out),
        c => Err(r.error(format!("direction {c}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_match_their_tables() {
        for (i, k) in TXN_KINDS.iter().enumerate() {
            assert_eq!(usize::from(txn_kind_code(*k)), i);
        }
        for (i, s) in TXN_STATUSES.iter().enumerate() {
            assert_eq!(usize::from(txn_status_code(*s)), i);
        }
    }

    fn decimal_round_trip(d: Decimal) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        write_decimal(&mut out, d);
        let back =
            read_decimal(&mut Reader::new(&out)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Bit for bit: scale and the sign of zero too.
        prop_assert_eq!(back.serialize(), d.serialize());
        Ok(())
    }

    proptest! {
        #[test]
        fn decimals_round_trip_exactly(m in any::<i128>(), scale in 0u32..=28, neg in any::<bool>()) {
            let m = m % (1i128 << 96);
            if let Ok(mut d) = Decimal::try_from_i128_with_scale(m, scale) {
                if m == 0 {
                    d.set_sign_negative(neg);
                }
                decimal_round_trip(d)?;
            }
        }

        #[test]
        fn i128s_round_trip(v in any::<i128>(), small in any::<i64>()) {
            for v in [v, i128::from(small), i128::MIN, i128::MAX] {
                let mut out = Vec::new();
                write_i128(&mut out, v);
                prop_assert_eq!(read_i128(&mut Reader::new(&out)).ok(), Some(v));
            }
        }
    }

    /// A wallet with something in every part of the layout: two assets,
    /// settings, a pending credit, a held reservation and a queued transfer
    /// with expiries, a transfer awaiting its receipt.
    fn rich_wallet() -> WalletState {
        use crate::{Command, EngineConfig, IfInsufficient, Ledger, Op};
        let mut ledger = Ledger::new(EngineConfig::default());
        let mut events = Vec::new();
        let at = Timestamp::from_millis(1_700_000_000_000);
        let code = |c: &str| AssetCode::new(c).unwrap_or_else(|e| panic!("{e}"));
        let w = |i: u128| WalletId::from_u128(i);
        let t = |i: u128| TxnId::from_u128(i);
        let ops = [
            Op::OpenWallet {
                wallet: w(1),
                client: ClientId::from_u128(1),
                kind: WalletKind::General,
                customer: Some(CustomerId::from_u128(4)),
                assets: vec![code("USD"), code("EUR")],
                single_asset: false,
                settings: WalletSettings {
                    name: Some("ops".into()),
                    description: Some("a wallet with everything".into()),
                    is_favourite: true,
                },
            },
            Op::OpenWallet {
                wallet: w(2),
                client: ClientId::from_u128(1),
                kind: WalletKind::Customer,
                customer: None,
                assets: vec![code("USD")],
                single_asset: true,
                settings: WalletSettings::default(),
            },
            Op::Credit {
                wallet: w(1),
                txn: t(1),
                asset: code("USD"),
                amount: Decimal::new(100_000, 2),
                pending: false,
                info: TxnInfo {
                    reference: Some("ref".into()),
                    metadata: None,
                },
            },
            Op::Credit {
                wallet: w(1),
                txn: t(2),
                asset: code("EUR"),
                amount: Decimal::new(5_000, 2),
                pending: true,
                info: TxnInfo::default(),
            },
            Op::Reserve {
                wallet: w(1),
                txn: t(3),
                asset: code("USD"),
                amount: Decimal::new(2_500, 2),
                expires_at: Some(Timestamp::from_millis(1_800_000_000_000)),
                info: TxnInfo::default(),
            },
            Op::Transfer {
                from: w(1),
                to: w(2),
                txn: t(4),
                asset: code("USD"),
                amount: Decimal::new(1_000, 2),
                if_insufficient: IfInsufficient::Queue,
                expires_at: None,
                info: TxnInfo::default(),
            },
            Op::Transfer {
                from: w(1),
                to: w(2),
                txn: t(5),
                asset: code("USD"),
                amount: Decimal::new(900_000, 2),
                if_insufficient: IfInsufficient::Queue,
                expires_at: Some(Timestamp::from_millis(1_900_000_000_000)),
                info: TxnInfo::default(),
            },
        ];
        for op in ops {
            ledger
                .execute(&Command { at, op }, &mut events)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        ledger
            .wallet(w(1))
            .cloned()
            .unwrap_or_else(|| panic!("no wallet"))
    }

    #[test]
    fn the_scan_refuses_exactly_what_decode_refuses() {
        let state = rich_wallet();
        assert!(state.awaiting_receipt().next().is_some());
        assert!(state.next_expiry().is_some());
        let bytes = to_bytes(&state);
        assert_eq!(scan(&bytes, &mut ()), Ok(Outline::of(&state)));
        // Every byte, set to values that break tags, lengths, codes,
        // scales and orders, or change nothing structural.
        for at in 0..bytes.len() {
            let b = bytes[at];
            for value in [
                0x00,
                0x01,
                0x7f,
                0x90,
                0xc0,
                0xc1,
                0xcc,
                0xff,
                b ^ 0x01,
                b ^ 0x80,
            ] {
                let mut bad = bytes.clone();
                bad[at] = value;
                let decoded = decode(&bad);
                let scanned = scan(&bad, &mut ());
                assert_eq!(
                    scanned.is_ok(),
                    decoded.is_ok(),
                    "byte {at} set to {value:#04x}: scan {scanned:?}, decode {:?}",
                    decoded.as_ref().map(|_| ())
                );
                if let Ok(state) = decoded {
                    assert_eq!(scanned, Ok(Outline::of(&state)));
                }
            }
        }
        // Cut short anywhere: refused by both.
        for end in 0..bytes.len() {
            assert!(scan(&bytes[..end], &mut ()).is_err());
        }
    }

    #[test]
    fn extreme_decimals_round_trip() -> Result<(), TestCaseError> {
        for d in [
            Decimal::MAX,
            Decimal::MIN,
            Decimal::ZERO,
            Decimal::new(-1, 28),
        ] {
            decimal_round_trip(d)?;
        }
        Ok(())
    }
}
