//! Pay-in addresses and pay-ins (API.md "Funding rails and notifications").

use crate::funding::FundingRecord;
use crate::funding::addresses::{self, AddressKind, PayinAddress};
use crate::funding::payins::{self, PayinBody};
use crate::http::app::{App, Cx};
use crate::http::handlers::money::{mint_txn, txn_answer};
use crate::http::handlers::{owned_wallet, read};
use crate::http::json::{format_time, parse_body};
use crate::http::reply::{ApiError, Reply};
use crate::journal::Record;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use settle_engine::{AssetCode, ClientId, PayinAddressId, WalletStatus};
use std::sync::Arc;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddressBody {
    #[serde(rename = "type")]
    kind: AddressKind,
    /// Which of the wallet's assets pay-ins credit (default: its first).
    asset: Option<String>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct AddressView<'a> {
    id: String,
    wallet_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    asset: AssetCode,
    routing_code_type: &'a str,
    routing_code: &'a str,
    account_number: &'a str,
    status: &'static str,
    created_at: String,
}

impl<'a> AddressView<'a> {
    /// Its wallet's `suspended` or `closed` while the wallet is: pay-ins to
    /// it are refused then (409 `wallet_suspended`, `wallet_closed`).
    fn new(app: &App, a: &'a PayinAddress) -> Self {
        let status = match app.gateway.status_of(a.wallet) {
            Some(WalletStatus::Suspended) => "suspended",
            Some(WalletStatus::Closed) => "closed",
            _ => "active",
        };
        Self {
            id: a.id.to_string(),
            wallet_id: a.wallet.to_string(),
            kind: a.kind.as_str(),
            asset: a.asset,
            routing_code_type: &a.routing_code_type,
            routing_code: &a.routing_code,
            account_number: &a.account_number,
            status,
            created_at: format_time(a.created_at),
        }
    }
}

#[derive(Serialize, Debug)]
struct Count {
    count: usize,
}

/// Tries before giving up on finding a free account number (each try has
/// a fresh id; a collision of 12 digits is rare, of 16 in a row unheard of).
const ISSUE_TRIES: usize = 16;

pub async fn create_address(app: &App, cx: &Cx, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, cx.client, id)?;
    let b: AddressBody = parse_body(body)?;
    let (held, status) = read(app, wallet, |w| {
        let held: Vec<AssetCode> = w.spec.assets.iter().map(|a| a.code).collect();
        (held, w.status)
    })?;
    let asset = match b.asset {
        Some(text) => {
            let code = AssetCode::new(&text).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_asset",
                    format!("asset: {e}"),
                )
            })?;
            if app.gateway.assets().get(code).is_none() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_asset",
                    format!("asset: {code} is not an asset of this engine"),
                ));
            }
            if !held.contains(&code) {
                return Err(ApiError::invalid_request(format!(
                    "asset: the wallet does not hold {code}"
                )));
            }
            code
        }
        None => *held
            .first()
            .ok_or_else(|| ApiError::internal(format!("wallet {wallet} holds no asset")))?,
    };
    if status == WalletStatus::Closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wallet_closed",
            format!("wallet {wallet} is closed; it takes no pay-ins"),
        ));
    }
    for _ in 0..ISSUE_TRIES {
        let id = PayinAddressId::from_ulid(cx.mint(app));
        // A retry after a crash, with the claimed id: answer what was issued.
        if let Some(existing) = app.funding.address(id) {
            return Ok(Reply::data(
                StatusCode::CREATED,
                &AddressView::new(app, &existing),
            ));
        }
        let (routing_code_type, routing_code, account_number) =
            addresses::details(id, b.kind, asset);
        let address = PayinAddress {
            id,
            wallet,
            client: cx.client,
            kind: b.kind,
            asset,
            routing_code_type,
            routing_code,
            account_number,
            created_at: app.now(),
        };
        cx.claim(app)?;
        if !app.funding.issue(address.clone()) {
            continue;
        }
        // Reserved in memory first (so two requests never take one number),
        // acknowledged only once durable.
        let reply = Reply::data(StatusCode::CREATED, &AddressView::new(app, &address));
        let record = Record::Funding(FundingRecord::AddressIssued { address });
        if let Err(e) = app.log(&record).await {
            app.funding.unissue(id);
            return Err(e);
        }
        return Ok(reply);
    }
    Err(ApiError::unavailable(
        "no free account number was found; retry",
    ))
}

pub fn list_addresses(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let wallet = owned_wallet(app, client, id)?;
    let list = app.funding.addresses_of(wallet);
    let views: Vec<AddressView<'_>> = list.iter().map(|a| AddressView::new(app, a)).collect();
    Ok(Reply::list(&views, &Count { count: views.len() }))
}

/// An address of this client; another client's is as absent as an unknown one.
fn owned_address(app: &App, client: ClientId, id: &str) -> Result<Arc<PayinAddress>, ApiError> {
    let shown: String = id.chars().take(64).collect();
    let not_found = || ApiError::not_found(format!("pay-in address {shown}"));
    let pia: PayinAddressId = id.parse().map_err(|_| not_found())?;
    match app.funding.address(pia) {
        Some(a) if a.client == client => Ok(a),
        _ => Err(not_found()),
    }
}

pub fn get_address(app: &App, client: ClientId, id: &str) -> Result<Reply, ApiError> {
    let a = owned_address(app, client, id)?;
    Ok(Reply::data(StatusCode::OK, &AddressView::new(app, &a)))
}

/// A bank's notice of money arriving: a pending credit on the wallet.
pub async fn payin(app: &App, cx: &Cx, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let address = owned_address(app, cx.client, id)?;
    let b: PayinBody = parse_body(body)?;
    let op = payins::credit_op(&address, mint_txn(app, cx), b)?;
    cx.claim(app)?;
    let result = app.gateway.execute(op).await;
    let (status, view) = txn_answer(app, address.wallet, true, result)?;
    Ok(Reply::data(status, &view))
}
