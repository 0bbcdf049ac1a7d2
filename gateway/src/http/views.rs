//! What the API shows: the JSON shapes of API.md, built from engine state.
//! Amounts print at their asset's full scale; field names are camelCase.

use crate::directory::{Client, Customer};
use crate::http::json::{Text, Time, amount_text, format_amount, format_time, metadata_json};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use settle_engine::{
    AssetCode, AssetRegistry, Balance, Direction, Txn, TxnId, TxnKind, WalletId, WalletKind,
    WalletState,
};

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct BalanceView {
    pub asset: AssetCode,
    pub cash: String,
    pub reserved: String,
    pub pending: String,
    pub queued: String,
    pub committed: String,
    pub available: String,
}

impl BalanceView {
    pub fn new(b: &Balance, scale: u32) -> Self {
        let f = |d| format_amount(d, scale);
        Self {
            asset: b.asset,
            cash: f(b.cash),
            reserved: f(b.reserved),
            pending: f(b.pending),
            queued: f(b.queued),
            committed: f(b.committed),
            available: f(b.available),
        }
    }
}

/// A wallet's balances, in the order of its assets.
fn balances(w: &WalletState) -> Vec<BalanceView> {
    w.spec
        .assets
        .iter()
        .filter_map(|a| w.balance(a.code).map(|b| BalanceView::new(&b, a.scale)))
        .collect()
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CcyValue {
    pub ccy_code: AssetCode,
    pub value: String,
}

#[derive(Serialize, Debug)]
pub struct ClientRef {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WalletView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub status_reason: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub customer_id: Option<String>,
    pub client: ClientRef,
    pub assets: Vec<AssetCode>,
    pub balances: Vec<BalanceView>,
    pub is_favourite: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ccy_code: Option<AssetCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<CcyValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_balance: Option<CcyValue>,
    pub sequence: u64,
    pub created_at: String,
    pub updated_at: String,
}

pub fn wallet_kind(kind: WalletKind) -> &'static str {
    match kind {
        WalletKind::Customer => "customer",
        WalletKind::ClientAdmin => "client_admin",
        WalletKind::General => "general",
    }
}

impl WalletView {
    pub fn new(w: &WalletState, client_name: &str) -> Self {
        let balances = balances(w);
        let single = w.spec.single_asset.then(|| w.spec.assets.first()).flatten();
        let (ccy_code, balance, pending_balance) =
            match single.and_then(|a| w.balance(a.code).map(|b| (a, b))) {
                Some((a, b)) => (
                    Some(a.code),
                    Some(CcyValue {
                        ccy_code: a.code,
                        value: format_amount(b.available, a.scale),
                    }),
                    Some(CcyValue {
                        ccy_code: a.code,
                        value: format_amount(b.pending, a.scale),
                    }),
                ),
                None => (None, None, None),
            };
        Self {
            id: w.id.to_string(),
            kind: wallet_kind(w.spec.kind),
            status: w.status.as_str(),
            status_reason: w.status_reason.clone(),
            name: w.settings.name.clone(),
            description: w.settings.description.clone(),
            customer_id: w.spec.customer.map(|c| c.to_string()),
            client: ClientRef {
                id: w.spec.client.to_string(),
                name: client_name.to_owned(),
            },
            assets: w.spec.assets.iter().map(|a| a.code).collect(),
            balances,
            is_favourite: w.settings.is_favourite,
            ccy_code,
            balance,
            pending_balance,
            sequence: w.sequence,
            created_at: format_time(w.created_at),
            updated_at: format_time(w.updated_at),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct BalancesView {
    pub wallet_id: String,
    pub sequence: u64,
    pub balances: Vec<BalanceView>,
}

impl BalancesView {
    pub fn new(w: &WalletState) -> Self {
        Self {
            wallet_id: w.id.to_string(),
            sequence: w.sequence,
            balances: balances(w),
        }
    }
}

pub fn txn_kind(kind: TxnKind) -> &'static str {
    match kind {
        TxnKind::Credit => "credit",
        TxnKind::Debit => "debit",
        TxnKind::Reservation => "reservation",
        TxnKind::Transfer => "transfer",
        TxnKind::Conversion => "conversion",
    }
}

pub fn direction(d: Direction) -> &'static str {
    match d {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

/// A transaction as the API shows it. Ids, amounts and times are held as
/// values and written as text straight into the answer (`Text`, `Time`).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TxnView {
    pub id: Text<TxnId>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub wallet_id: Text<WalletId>,
    pub asset: AssetCode,
    pub amount: Text<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterparty_wallet_id: Option<Text<WalletId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_amount: Option<Text<Decimal>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buy_asset: Option<AssetCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buy_amount: Option<Text<Decimal>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Text<Decimal>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    pub sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Text<Time>>,
    pub created_at: Text<Time>,
    pub updated_at: Text<Time>,
}

impl TxnView {
    /// The record `t` as wallet `wallet` holds it.
    pub fn new(
        assets: &AssetRegistry,
        wallet: WalletId,
        t: &Txn,
        queue_position: Option<usize>,
    ) -> Self {
        let scale = assets.get(t.asset).map_or(0, |a| a.scale);
        let conversion = t.conversion();
        let info = t.info();
        Self {
            id: Text(t.id),
            kind: txn_kind(t.kind),
            status: t.status.as_str(),
            wallet_id: Text(wallet),
            asset: t.asset,
            amount: amount_text(t.amount, scale),
            direction: t.direction.map(direction),
            counterparty_wallet_id: t.counterparty.map(Text),
            queue_position,
            captured_amount: t.captured().map(|c| amount_text(c, scale)),
            buy_asset: conversion.map(|c| c.buy_asset),
            // The buy side of a conversion to another wallet is in an asset
            // this wallet may not hold: its amount is already at the buy scale.
            buy_amount: conversion.map(|c| Text(c.buy_amount)),
            rate: conversion.map(|c| Text(c.rate.normalize())),
            reference: info.and_then(|i| i.reference.clone()),
            metadata: info.and_then(|i| i.metadata.as_deref()).map(metadata_json),
            sequence: t.sequence,
            expires_at: t.expires_at().map(|at| Text(Time(at))),
            created_at: Text(Time(t.created_at)),
            updated_at: Text(Time(t.updated_at)),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct CustomerView {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub wallet_id: String,
    pub created_at: String,
}

impl CustomerView {
    pub fn new(c: &Customer) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            kind: c.kind.as_str(),
            wallet_id: c.wallet.to_string(),
            created_at: format_time(c.created_at),
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub id: String,
    pub name: String,
    /// Shown once, when the client is created.
    pub api_key: String,
    pub created_at: String,
}

impl ClientView {
    pub fn new(c: &Client, api_key: String) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            api_key,
            created_at: format_time(c.created_at),
        }
    }
}
