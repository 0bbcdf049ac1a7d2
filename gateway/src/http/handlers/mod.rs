//! Handlers: one module per part of API.md, and the lookups they share
//! (every lookup enforces tenancy: another client's object is not found).
//!
//! - `admin`: clients, audit, snapshots, metrics (admin key).
//! - `wallets`: customers and wallets, their reads and settings.
//! - `money`: credits, debits, reservations, transfers, conversions and
//!   the actions on transactions; `batch` runs many of them in one request.
//! - `funding`: pay-in addresses and pay-ins; `webhooks`: endpoints.

pub mod admin;
pub mod batch;
pub mod funding;
pub mod money;
pub mod wallets;
pub mod webhooks;

use crate::http::app::{App, Cx, Request};
use crate::http::reply::{ApiError, Reply};
use crate::http::router::Route;
use settle_engine::{ClientId, TxnId, WalletId, WalletState};

/// Runs a client's request.
pub async fn client(app: &App, cx: &Cx, route: Route, req: &Request) -> Result<Reply, ApiError> {
    let client = cx.client;
    let body = &req.body[..];
    match route {
        Route::CreateCustomer => wallets::create_customer(app, cx, body).await,
        Route::GetCustomer(id) => wallets::get_customer(app, client, &id),
        Route::CreateWallet => wallets::create_wallet(app, cx, body).await,
        Route::ListWallets => wallets::list(app, client, req.query.as_deref()),
        Route::GetWallet(id) => wallets::get(app, client, &id),
        Route::WalletSettings(id) => wallets::settings(app, client, &id, body).await,
        Route::WalletStatus(id) => wallets::status(app, client, &id, body).await,
        Route::WalletBalance(id) => wallets::balance(app, client, &id),
        Route::WalletTransactions(id) => {
            crate::http::history::list(app, client, &id, req.query.as_deref())
        }
        Route::WalletQueue(id) => wallets::queue(app, client, &id, req.query.as_deref()),
        Route::Credit(id) => money::credit(app, cx, &id, body).await,
        Route::Debit(id) => money::debit(app, cx, &id, body).await,
        Route::Reserve(id) => money::reserve(app, cx, &id, body).await,
        Route::Transfer => money::transfer(app, cx, body).await,
        Route::Convert => money::convert(app, cx, body).await,
        Route::GetTransaction(id) => money::get(app, client, &id),
        Route::Settle(id) => money::action(app, cx, &id, money::Action::Settle, body).await,
        Route::Reject(id) => money::action(app, cx, &id, money::Action::Reject, body).await,
        Route::Capture(id) => money::action(app, cx, &id, money::Action::Capture, body).await,
        Route::Release(id) => money::action(app, cx, &id, money::Action::Release, body).await,
        Route::Cancel(id) => money::action(app, cx, &id, money::Action::Cancel, body).await,
        Route::Batch => batch::run(app, cx, body).await,
        Route::CreatePayinAddress(id) => funding::create_address(app, cx, &id, body).await,
        Route::ListPayinAddresses(id) => funding::list_addresses(app, client, &id),
        Route::GetPayinAddress(id) => funding::get_address(app, client, &id),
        Route::Payin(id) => funding::payin(app, cx, &id, body).await,
        Route::CreateWebhook => webhooks::create(app, cx, body).await,
        Route::ListWebhooks => webhooks::list(app, client),
        Route::DeleteWebhook(id) => webhooks::delete(app, client, &id).await,
        Route::Healthz
        | Route::Metrics
        | Route::CreateClient
        | Route::CreateSnapshot
        | Route::ListSnapshots
        | Route::Audit
        | Route::Digest => Err(ApiError::internal(format!(
            "route {route:?} reached the client handlers"
        ))),
    }
}

/// A wallet of this client, from an id in the path. A malformed id is as
/// absent as an unknown one.
pub fn owned_wallet(app: &App, client: ClientId, id: &str) -> Result<WalletId, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| wallet_not_found(id))?;
    owned(app, client, wallet)
}

/// A wallet of this client, from an id in a body field: malformed is a bad
/// request, unknown (or another client's) is not found.
pub fn owned_wallet_field(
    app: &App,
    client: ClientId,
    field: &str,
    id: &str,
) -> Result<WalletId, ApiError> {
    let wallet: WalletId = id
        .parse()
        .map_err(|e| ApiError::invalid_request(format!("{field}: {e}")))?;
    owned(app, client, wallet)
}

fn owned(app: &App, client: ClientId, wallet: WalletId) -> Result<WalletId, ApiError> {
    match app.gateway.client_of(wallet) {
        Some(owner) if owner == client => Ok(wallet),
        _ => Err(wallet_not_found(wallet)),
    }
}

fn wallet_not_found(id: impl std::fmt::Display) -> ApiError {
    let shown: String = id.to_string().chars().take(64).collect();
    ApiError::not_found(format!("wallet {shown}"))
}

/// A transaction of this client, and the wallet it was created at.
pub fn owned_txn(app: &App, client: ClientId, id: &str) -> Result<(TxnId, WalletId), ApiError> {
    let shown: String = id.chars().take(64).collect();
    let not_found = || ApiError::not_found(format!("transaction {shown}"));
    let txn: TxnId = id.parse().map_err(|_| not_found())?;
    let wallet = app.directory.wallet_of_txn(txn).ok_or_else(not_found)?;
    match app.gateway.client_of(wallet) {
        Some(owner) if owner == client => Ok((txn, wallet)),
        _ => Err(not_found()),
    }
}

/// Reads a wallet's state (without waking its actor).
pub fn read<R>(
    app: &App,
    wallet: WalletId,
    f: impl FnOnce(&WalletState) -> R,
) -> Result<R, ApiError> {
    app.gateway.read(wallet, f).map_err(ApiError::from)
}

/// The name of a client, for wallet views.
pub fn client_name(app: &App, client: ClientId) -> String {
    app.directory
        .client(client)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}
