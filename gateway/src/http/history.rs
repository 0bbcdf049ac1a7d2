//! A wallet's transaction history: filters, sort, pages, and a cursor that
//! stays put while new transactions arrive.
//!
//! The order is total: the sort keys, then the id (in the direction of the
//! first key). Sort fields never change after a transaction is created
//! (`createdAt`, `amount`, `sequence`), so "after the cursor's record in
//! this order" is the same set of records whatever arrives meanwhile; new
//! ones fall before the first page, never into a later one.
//!
//! A wallet's list holds its own records and the transfers toward it that
//! have not arrived (`incoming`: the source's record, seen from here).
//! When such a transfer arrives, the wallet's own record (created then)
//! replaces it, with its own `createdAt` and `sequence`; a cursor that
//! named the source's record says so (`SOURCE_MARK`) and keeps its place
//! by the source's record, whose keys never change.

use crate::http::app::App;
use crate::http::handlers::wallets::query_params;
use crate::http::handlers::{owned_wallet, read};
use crate::http::json::{exact_decimal, format_time, parse_time};
use crate::http::reply::{ApiError, Reply};
use crate::http::search::{self, Field, Value};
use crate::http::views::{TxnView, direction, txn_kind};
use crate::incoming::as_destination_sees;
use serde::Serialize;
use settle_engine::{
    AssetCode, AssetRegistry, ClientId, ConversionTerms, Decimal, Direction, Timestamp, Txn, TxnId,
    WalletId,
};
use std::cmp::Ordering;

const SORT_FIELDS: &[Field] = &[
    Field::time("createdAt"),
    Field::decimal("amount"),
    Field::decimal("sequence"),
];

const DEFAULT_SORT: &str = "createdAt:DESC";

/// Ends a cursor whose record was the source's (a transfer toward this
/// wallet that had not arrived). Not a character of an id.
const SOURCE_MARK: &str = ".src";

const PARAMS: &[&str] = &[
    "asset",
    "type",
    "status",
    "direction",
    "createdFrom",
    "createdTo",
    "minAmount",
    "maxAmount",
    "sortBy",
    "offset",
    "limit",
    "after",
];

const TYPES: &[&str] = &["credit", "debit", "reservation", "transfer", "conversion"];
const STATUSES: &[&str] = &[
    "pending",
    "settled",
    "rejected",
    "awaiting_funds",
    "cancelled",
    "expired",
    "held",
    "captured",
    "released",
    "returned",
];

/// The filters of one request; `None` lets everything through.
#[derive(Debug, Default)]
struct Filter {
    asset: Option<AssetCode>,
    kind: Option<String>,
    status: Option<String>,
    direction: Option<String>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    min: Option<Decimal>,
    max: Option<Decimal>,
}

impl Filter {
    /// Whether `t`, a record listed by `wallet`, passes. `asset`,
    /// `minAmount`, `maxAmount` and `direction` look at the money that
    /// moved in this wallet (`sides`), together: one side must pass them
    /// all.
    fn admits(&self, wallet: WalletId, t: &Txn) -> bool {
        self.kind.as_deref().is_none_or(|k| k == txn_kind(t.kind))
            && self
                .status
                .as_deref()
                .is_none_or(|s| s == t.status.as_str())
            && self.from.is_none_or(|f| t.created_at >= f)
            && self.to.is_none_or(|to| t.created_at <= to)
            && {
                let (first, second) = sides(wallet, t);
                self.admits_side(&first) || second.is_some_and(|s| self.admits_side(&s))
            }
    }

    fn admits_side(&self, side: &Side) -> bool {
        self.direction
            .as_deref()
            .is_none_or(|d| side.direction.map(direction) == Some(d))
            && self.asset.is_none_or(|a| a == side.asset)
            && self.min.is_none_or(|m| side.amount >= m)
            && self.max.is_none_or(|m| side.amount <= m)
    }
}

/// Money a record moved in the wallet that lists it, one way.
struct Side {
    direction: Option<Direction>,
    asset: AssetCode,
    amount: Decimal,
}

/// The money a record moved in `wallet`, the side it sorts by first: a
/// conversion's buy side where it came in from another wallet, its sell
/// side where it went out to one, both (sell, then buy) where it stayed
/// within `wallet`; anything else's own. The filter and `sortBy=amount`
/// agree on it.
fn sides(wallet: WalletId, t: &Txn) -> (Side, Option<Side>) {
    let sell = |direction| Side {
        direction,
        asset: t.asset,
        amount: t.amount,
    };
    let buy = |c: &ConversionTerms| Side {
        direction: Some(Direction::In),
        asset: c.buy_asset,
        amount: c.buy_amount,
    };
    match t.conversion() {
        Some(c) if t.direction == Some(Direction::In) => (buy(c), None),
        Some(c) if t.counterparty.is_none_or(|to| to == wallet) => {
            (sell(Some(Direction::Out)), Some(buy(c)))
        }
        _ => (sell(t.direction), None),
    }
}

fn one_of(param: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value) {
        return Ok(value.to_owned());
    }
    let shown: String = value.chars().take(64).collect();
    Err(ApiError::invalid_query(format!(
        "{param}: '{shown}' is not one of {}",
        allowed.join(", ")
    )))
}

/// An asset the engine knows: a filter on any other is a mistake, not an
/// empty list (400 `unknown_asset`, as `queue?asset=` answers). One the
/// engine knows and the wallet does not hold lists nothing.
fn known_asset(assets: &AssetRegistry, text: &str) -> Result<AssetCode, ApiError> {
    let code = AssetCode::new(text).map_err(|e| ApiError::invalid_query(format!("asset: {e}")))?;
    match assets.get(code) {
        Some(_) => Ok(code),
        None => Err(ApiError::new(
            hyper::StatusCode::BAD_REQUEST,
            "unknown_asset",
            format!("asset: {code} is not an asset of this engine"),
        )),
    }
}

fn parse_filter(
    assets: &AssetRegistry,
    p: &std::collections::BTreeMap<String, String>,
) -> Result<Filter, ApiError> {
    let amount = |param: &str| {
        p.get(param)
            .map(|v| {
                let shown: String = v.chars().take(64).collect();
                match exact_decimal(v) {
                    Some(d) if d.is_sign_negative() && !d.is_zero() => Err(
                        ApiError::invalid_query(format!("{param}: '{shown}' is negative")),
                    ),
                    Some(d) => Ok(d),
                    None => Err(ApiError::invalid_query(format!(
                        "{param}: '{shown}' is not a decimal amount"
                    ))),
                }
            })
            .transpose()
    };
    let time = |param: &str| {
        p.get(param)
            .map(|v| parse_time(param, v).map_err(|e| ApiError::invalid_query(e.message)))
            .transpose()
    };
    Ok(Filter {
        asset: p.get("asset").map(|a| known_asset(assets, a)).transpose()?,
        kind: p
            .get("type")
            .map(|v| one_of("type", v, TYPES))
            .transpose()?,
        status: p
            .get("status")
            .map(|v| one_of("status", v, STATUSES))
            .transpose()?,
        direction: p
            .get("direction")
            .map(|v| one_of("direction", v, &["in", "out"]))
            .transpose()?,
        from: time("createdFrom")?,
        to: time("createdTo")?,
        min: amount("minAmount")?,
        max: amount("maxAmount")?,
    })
}

fn sort_value(wallet: WalletId, t: &Txn, i: usize) -> Value {
    match i {
        0 => Value::Time(t.created_at.millis()),
        1 => Value::Decimal(sides(wallet, t).0.amount),
        2 => Value::Decimal(Decimal::from(t.sequence)),
        _ => Value::Null,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    sort_by: String,
    offset: usize,
    limit: usize,
    count: usize,
    total_count: usize,
    next_cursor: Option<String>,
    timestamp: String,
}

pub fn list(app: &App, client: ClientId, id: &str, query: Option<&str>) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let p = query_params(query, PARAMS)?;
    let filter = parse_filter(app.gateway.assets(), &p)?;
    let get = |k: &str| p.get(k).map(String::as_str);
    let sort_by = get("sortBy")
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(DEFAULT_SORT);
    let s = search::parse(
        SORT_FIELDS,
        None,
        Some(sort_by),
        get("offset"),
        get("limit"),
    )
    .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    let after = get("after").map(Cursor::parse).transpose()?;
    // Ties break by id, in the direction of the first key.
    let ids_descending = s.sort.first().is_some_and(|k| k.descending);
    let order = |a: &Txn, b: &Txn| -> Ordering {
        let by_id = if ids_descending {
            b.id.cmp(&a.id)
        } else {
            a.id.cmp(&b.id)
        };
        s.compare(|i| sort_value(wallet, a, i), |i| sort_value(wallet, b, i))
            .then(by_id)
    };
    let assets = app.gateway.assets();
    // Read before the wallet's own state, not under it: one state's lock
    // at a time.
    let incoming = app.gateway.incoming(wallet);
    let source_cursor = match after {
        Some(Cursor::Source(id)) if !incoming.iter().any(|t| t.id == id) => {
            source_record(app, wallet, id)?
        }
        _ => None,
    };
    let (page, total, next_cursor) = read(app, wallet, |w| {
        let not_arrived = |t: &&Txn| w.txn(t.id).is_none();
        let mut matched: Vec<&Txn> = w
            .txns()
            .chain(incoming.iter().filter(not_arrived))
            .filter(|t| filter.admits(wallet, t))
            .collect();
        matched.sort_by(|a, b| order(a, b));
        let total = matched.len();
        let start = match after {
            Some(c) => {
                let in_incoming = incoming.iter().find(|t| t.id == c.id());
                let cursor = match c {
                    Cursor::Own(id) => w.txn(id).or(in_incoming),
                    Cursor::Source(_) => in_incoming.or(source_cursor.as_ref()),
                }
                .ok_or_else(|| {
                    ApiError::invalid_query("after: not a cursor of this wallet's history")
                })?;
                matched.partition_point(|t| order(t, cursor) != Ordering::Greater)
            }
            None => 0,
        };
        let from = start.saturating_add(s.offset).min(total);
        let to = from.saturating_add(s.limit).min(total);
        let shown = matched.get(from..to).unwrap_or(&[]);
        let page: Vec<TxnView> = shown
            .iter()
            .map(|t| TxnView::new(assets, wallet, t, w.queue_position(t.id)))
            .collect();
        let next_cursor = match shown.last() {
            Some(last) if to < total => Some(match w.txn(last.id) {
                Some(_) => last.id.to_string(),
                None => format!("{}{SOURCE_MARK}", last.id),
            }),
            _ => None,
        };
        Ok::<_, ApiError>((page, total, next_cursor))
    })??;
    let meta = Meta {
        sort_by: s.sort_by.clone(),
        offset: s.offset,
        limit: s.limit,
        count: page.len(),
        total_count: total,
        next_cursor,
        timestamp: format_time(app.now()),
    };
    Ok(Reply::list(&page, &meta))
}

/// Where a page ends: the id of its last record, the source's record of a
/// transfer that had not arrived marked as such (see the module's note).
#[derive(Clone, Copy, Debug)]
enum Cursor {
    Own(TxnId),
    Source(TxnId),
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ApiError> {
        let (id, source) = match text.strip_suffix(SOURCE_MARK) {
            Some(id) => (id, true),
            None => (text, false),
        };
        let id: TxnId = id.parse().map_err(|_| {
            ApiError::invalid_query("after: not a cursor this API gave (meta.nextCursor)")
        })?;
        Ok(if source {
            Cursor::Source(id)
        } else {
            Cursor::Own(id)
        })
    }

    fn id(self) -> TxnId {
        match self {
            Cursor::Own(id) | Cursor::Source(id) => id,
        }
    }
}

/// The source's record of a transfer toward `wallet`, as `wallet` listed
/// it before it arrived: where a `Source` cursor keeps its place once the
/// transfer has left the incoming index.
fn source_record(app: &App, wallet: WalletId, txn: TxnId) -> Result<Option<Txn>, ApiError> {
    let Some(source) = app.directory.wallet_of_txn(txn) else {
        return Ok(None);
    };
    let record = read(app, source, |s| s.txn(txn).cloned())?;
    Ok(record
        .filter(|t| t.counterparty == Some(wallet))
        .map(|t| as_destination_sees(&t, source)))
}
