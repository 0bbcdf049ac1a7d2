//! Customers and wallets (API.md "Customers and wallets").

use crate::directory::{Customer, CustomerKind, DirectoryRecord, MAX_NAME_LEN};
use crate::http::app::{App, Cx};
use crate::http::handlers::{client_name, owned_wallet, read};
use crate::http::json::{format_time, parse_body};
use crate::http::reply::{ApiError, Reply};
use crate::http::search::{self, Field, Value};
use crate::http::views::{BalancesView, CustomerView, TxnView, WalletView, wallet_kind};
use crate::journal::Record;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use settle_engine::wallet::SettingsPatch;
use settle_engine::{
    AssetCode, ClientId, CustomerId, Op, WalletId, WalletKind, WalletSettings, WalletState,
    WalletStatus,
};

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CustomerBody {
    name: String,
    #[serde(rename = "type")]
    kind: CustomerKind,
    ccy_code: Option<String>,
    assets: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
enum KindField {
    Customer,
    ClientAdmin,
    General,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WalletBody {
    ccy_code: Option<String>,
    assets: Option<Vec<String>>,
    name: Option<String>,
    description: Option<String>,
    customer_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<KindField>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsBody {
    is_favourite: Option<bool>,
    name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
enum StatusField {
    Active,
    Restricted,
    Suspended,
    Closed,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StatusBody {
    status: StatusField,
    reason: Option<String>,
}

/// `ccyCode` or `assets`: exactly one. Returns the codes and whether the
/// wallet is a single-asset one. With neither, `default` (customers get USD).
fn assets_of(
    ccy_code: Option<String>,
    assets: Option<Vec<String>>,
    default: Option<&str>,
) -> Result<(Vec<AssetCode>, bool), ApiError> {
    let code = |field: &str, t: &str| {
        AssetCode::new(t).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_asset",
                format!("{field}: {e}"),
            )
        })
    };
    match (ccy_code, assets, default) {
        (Some(_), Some(_), _) => Err(ApiError::invalid_request(
            "give either ccyCode (a single-asset wallet) or assets, not both",
        )),
        (Some(c), None, _) => Ok((vec![code("ccyCode", &c)?], true)),
        (None, Some(list), _) => {
            if list.is_empty() {
                return Err(ApiError::invalid_request("assets: list at least one asset"));
            }
            let codes = list
                .iter()
                .map(|t| code("assets", t))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((codes, false))
        }
        (None, None, Some(d)) => Ok((vec![code("ccyCode", d)?], true)),
        (None, None, None) => Err(ApiError::invalid_request(
            "give ccyCode (a single-asset wallet) or assets",
        )),
    }
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_request(format!(
            "{field}: must not be empty"
        )));
    }
    if name.len() > max {
        return Err(ApiError::invalid_request(format!(
            "{field}: at most {max} bytes"
        )));
    }
    Ok(())
}

async fn open(app: &App, op: Op) -> Result<WalletId, ApiError> {
    let wallet = op.wallet();
    let client = match &op {
        Op::OpenWallet { client, .. } => *client,
        _ => return Err(ApiError::internal("open() needs OpenWallet")),
    };
    app.gateway.open_wallet(op).await?;
    app.directory
        .apply(&DirectoryRecord::WalletOpened { wallet, client });
    Ok(wallet)
}

fn wallet_reply(
    app: &App,
    client: ClientId,
    wallet: WalletId,
    status: StatusCode,
) -> Result<Reply, ApiError> {
    let name = client_name(app, client);
    let view = read(app, wallet, |w| WalletView::new(w, &name))?;
    Ok(Reply::data(status, &view))
}

pub async fn create_customer(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let client = cx.client;
    let b: CustomerBody = parse_body(body)?;
    check_name("name", &b.name, MAX_NAME_LEN)?;
    let (assets, single_asset) = assets_of(b.ccy_code, b.assets, Some("USD"))?;
    let now = app.now();
    let customer = CustomerId::from_ulid(cx.mint(app));
    let wallet = WalletId::from_ulid(cx.mint(app));
    cx.claim(app)?;
    open(
        app,
        Op::OpenWallet {
            wallet,
            client,
            kind: WalletKind::Customer,
            customer: Some(customer),
            assets,
            single_asset,
            settings: WalletSettings::default(),
        },
    )
    .await?;
    let record = Customer {
        id: customer,
        client,
        name: b.name,
        kind: b.kind,
        wallet,
        created_at: now,
    };
    let created = DirectoryRecord::CustomerCreated {
        customer: record.clone(),
    };
    app.log(&Record::Directory(created.clone())).await?;
    app.directory.apply(&created);
    Ok(Reply::data(
        StatusCode::CREATED,
        &CustomerView::new(&record),
    ))
}

pub fn get_customer(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let shown: String = id.chars().take(64).collect();
    let not_found = || ApiError::not_found(format!("customer {shown}"));
    let cid: CustomerId = id.parse().map_err(|_| not_found())?;
    let c = app.directory.customer(cid).ok_or_else(not_found)?;
    if c.client != client {
        return Err(not_found());
    }
    Ok(Reply::data(StatusCode::OK, &CustomerView::new(&c)))
}

pub async fn create_wallet(app: &App, cx: &Cx, body: &[u8]) -> Result<Reply, ApiError> {
    let client = cx.client;
    let b: WalletBody = parse_body(body)?;
    let (assets, single_asset) = assets_of(b.ccy_code, b.assets, None)?;
    if let Some(n) = &b.name {
        check_name("name", n, WalletSettings::MAX_NAME_LEN)?;
    }
    if b.description
        .as_ref()
        .is_some_and(|d| d.len() > WalletSettings::MAX_DESCRIPTION_LEN)
    {
        return Err(ApiError::invalid_request(format!(
            "description: at most {} bytes",
            WalletSettings::MAX_DESCRIPTION_LEN
        )));
    }
    let customer = match &b.customer_id {
        Some(id) => {
            let shown: String = id.chars().take(64).collect();
            let cid: CustomerId = id
                .parse()
                .map_err(|e| ApiError::invalid_request(format!("customerId: {e}")))?;
            match app.directory.customer(cid) {
                Some(c) if c.client == client => Some(cid),
                _ => return Err(ApiError::not_found(format!("customer {shown}"))),
            }
        }
        None => None,
    };
    let kind = match (b.kind, customer) {
        (Some(KindField::Customer), None) => {
            return Err(ApiError::invalid_request(
                "type: a customer wallet needs customerId",
            ));
        }
        (Some(KindField::ClientAdmin | KindField::General), Some(_)) => {
            return Err(ApiError::invalid_request(
                "customerId: only a customer wallet belongs to a customer",
            ));
        }
        (Some(KindField::Customer), Some(_)) | (None, Some(_)) => WalletKind::Customer,
        (Some(KindField::ClientAdmin), None) => WalletKind::ClientAdmin,
        (Some(KindField::General), None) | (None, None) => WalletKind::General,
    };
    let wallet = WalletId::from_ulid(cx.mint(app));
    cx.claim(app)?;
    open(
        app,
        Op::OpenWallet {
            wallet,
            client,
            kind,
            customer,
            assets,
            single_asset,
            settings: WalletSettings {
                name: b.name,
                description: b.description,
                is_favourite: false,
            },
        },
    )
    .await?;
    wallet_reply(app, client, wallet, StatusCode::CREATED)
}

/// By id, or by currency code: the client's oldest single-asset wallet in it.
pub fn get(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    if id.starts_with(WalletId::PREFIX) {
        let wallet = owned_wallet(app, client, id)?;
        return wallet_reply(app, client, wallet, StatusCode::OK);
    }
    let shown: String = id.chars().take(64).collect();
    let not_found = || ApiError::not_found(format!("wallet {shown}"));
    let code = AssetCode::new(id).map_err(|_| not_found())?;
    for wallet in app.directory.wallets_of(client) {
        let matches = read(app, wallet, |w| {
            w.spec.single_asset && w.spec.assets.first().is_some_and(|a| a.code == code)
        })?;
        if matches {
            return wallet_reply(app, client, wallet, StatusCode::OK);
        }
    }
    Err(not_found())
}

pub async fn settings(
    app: &App,
    client: ClientId,
    id: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let b: SettingsBody = parse_body(body)?;
    if let Some(n) = &b.name {
        check_name("name", n, WalletSettings::MAX_NAME_LEN)?;
    }
    app.gateway
        .execute(Op::UpdateSettings {
            wallet,
            patch: SettingsPatch {
                name: b.name,
                description: b.description,
                is_favourite: b.is_favourite,
            },
        })
        .await?;
    wallet_reply(app, client, wallet, StatusCode::OK)
}

pub async fn status(app: &App, client: ClientId, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let b: StatusBody = parse_body(body)?;
    let status = match b.status {
        StatusField::Active => WalletStatus::Active,
        StatusField::Restricted => WalletStatus::Restricted,
        StatusField::Suspended => WalletStatus::Suspended,
        StatusField::Closed => WalletStatus::Closed,
    };
    app.gateway
        .execute(Op::SetStatus {
            wallet,
            status,
            reason: b.reason,
        })
        .await?;
    wallet_reply(app, client, wallet, StatusCode::OK)
}

pub fn balance(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let view = read(app, wallet, BalancesView::new)?;
    Ok(Reply::data(StatusCode::OK, &view))
}

/// The query string's parameters, decoded. A parameter given twice is
/// refused rather than one of the two silently chosen.
pub fn query_params(
    query: Option<&str>,
    allowed: &[&str],
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut params = std::collections::BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            let shown: String = k.chars().take(64).collect();
            return Err(ApiError::invalid_query(format!(
                "unknown query parameter '{shown}' (allowed: {})",
                allowed.join(", ")
            )));
        }
        if params.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::invalid_query(format!(
                "query parameter '{k}' is given more than once"
            )));
        }
    }
    Ok(params)
}

pub fn queue(
    app: &App,
    client: ClientId,
    id: &str,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let params = query_params(query, &["asset"])?;
    let only = params
        .get("asset")
        .map(|a| {
            AssetCode::new(a).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_asset",
                    format!("asset: {e}"),
                )
            })
        })
        .transpose()?;
    let assets = app.gateway.assets();
    let items = read(app, wallet, |w| {
        if let Some(code) = only
            && w.book(code).is_none()
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_asset",
                format!("asset: wallet {wallet} holds no {code}"),
            ));
        }
        let mut items = Vec::new();
        for book in w.books().filter(|b| only.is_none_or(|c| c == b.asset.code)) {
            for (i, item) in book.queue().enumerate() {
                if let Some(t) = w.txn(item.txn) {
                    items.push(TxnView::new(assets, wallet, t, Some(i + 1)));
                }
            }
        }
        Ok(items)
    })??;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        count: usize,
        timestamp: String,
    }
    let meta = Meta {
        count: items.len(),
        timestamp: format_time(app.now()),
    };
    Ok(Reply::list(&items, &meta))
}

/// The fields `q` and `sortBy` may name, in `value_of`'s order.
const WALLET_FIELDS: &[Field] = &[
    Field::text("id"),
    Field::text("ccyCode"),
    Field::closed("status", &["active", "restricted", "suspended", "closed"]),
    Field::closed("type", &["customer", "client_admin", "general"]),
    Field::text("name"),
    Field::text("customerId"),
    Field::boolean("isFavourite"),
    Field::time("createdAt"),
    Field::decimal("balance.value"),
    Field::decimal("pendingBalance.value"),
];

/// A wallet's value of `WALLET_FIELDS[i]`.
fn value_of(w: &WalletState, i: usize) -> Value {
    let single = w
        .spec
        .single_asset
        .then(|| w.spec.assets.first().and_then(|a| w.balance(a.code)))
        .flatten();
    let text = |s: Option<String>| s.map_or(Value::Null, Value::Text);
    match i {
        0 => Value::Text(w.id.to_string()),
        1 => text(single.map(|b| b.asset.to_string())),
        2 => Value::Text(w.status.as_str().to_owned()),
        3 => Value::Text(wallet_kind(w.spec.kind).to_owned()),
        4 => text(w.settings.name.clone()),
        5 => text(w.spec.customer.map(|c| c.to_string())),
        6 => Value::Bool(w.settings.is_favourite),
        7 => Value::Time(w.created_at.millis()),
        8 => single.map_or(Value::Null, |b| Value::Decimal(b.available)),
        9 => single.map_or(Value::Null, |b| Value::Decimal(b.pending)),
        _ => Value::Null,
    }
}

pub fn list(app: &App, client: ClientId, query: Option<&str>) -> Result<Reply, ApiError> {
    let params = query_params(query, &["q", "sortBy", "offset", "limit"])?;
    let get = |k: &str| params.get(k).map(String::as_str);
    let s = search::parse(
        WALLET_FIELDS,
        get("q"),
        get("sortBy"),
        get("offset"),
        get("limit"),
    )
    .map_err(|e| ApiError::invalid_query(e.to_string()))?;
    let name = client_name(app, client);
    // Each wallet is read once; its view and its field values are kept.
    let mut rows: Vec<(Vec<Value>, WalletView)> = Vec::new();
    for wallet in app.directory.wallets_of(client) {
        let row = read(app, wallet, |w| {
            let values: Vec<Value> = (0..WALLET_FIELDS.len()).map(|i| value_of(w, i)).collect();
            s.matches(|i| values.get(i).cloned().unwrap_or(Value::Null))
                .then(|| (values, WalletView::new(w, &name)))
        })?;
        rows.extend(row);
    }
    // Ties (and no sortBy) keep the order of creation: ids are minted in order.
    rows.sort_by(|(a, av), (b, bv)| {
        s.compare(
            |i| a.get(i).cloned().unwrap_or(Value::Null),
            |i| b.get(i).cloned().unwrap_or(Value::Null),
        )
        .then_with(|| av.id.cmp(&bv.id))
    });
    let total = rows.len();
    let page: Vec<WalletView> = rows
        .into_iter()
        .skip(s.offset)
        .take(s.limit)
        .map(|(_, v)| v)
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        query: String,
        sort_by: String,
        offset: usize,
        limit: usize,
        count: usize,
        total_count: usize,
        timestamp: String,
    }
    let meta = Meta {
        query: s.query.clone(),
        sort_by: s.sort_by.clone(),
        offset: s.offset,
        limit: s.limit,
        count: page.len(),
        total_count: total,
        timestamp: format_time(app.now()),
    };
    Ok(Reply::list(&page, &meta))
}
