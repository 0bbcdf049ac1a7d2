//! Commands: what callers ask of the ledger. Each carries its instant.

use crate::asset::AssetCode;
use crate::ids::{ClientId, CustomerId, Timestamp, TxnId, WalletId};
use crate::txn::{IfInsufficient, TxnInfo};
use crate::wallet::{SettingsPatch, WalletKind, WalletSettings, WalletStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One command: an operation and the instant it happened. The instant is
/// the only time the state machine knows (it drives expiry).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Command {
    pub at: Timestamp,
    pub op: Op,
}

/// Amounts arrive as the client wrote them (any scale) and are validated
/// against the asset here, in the engine, where the scales live.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    OpenWallet {
        wallet: WalletId,
        client: ClientId,
        kind: WalletKind,
        customer: Option<CustomerId>,
        assets: Vec<AssetCode>,
        single_asset: bool,
        settings: WalletSettings,
    },
    SetStatus {
        wallet: WalletId,
        status: WalletStatus,
        reason: Option<String>,
    },
    UpdateSettings {
        wallet: WalletId,
        patch: SettingsPatch,
    },
    Credit {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        pending: bool,
        info: TxnInfo,
    },
    SettlePending {
        wallet: WalletId,
        txn: TxnId,
    },
    RejectPending {
        wallet: WalletId,
        txn: TxnId,
    },
    Debit {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        if_insufficient: IfInsufficient,
        expires_at: Option<Timestamp>,
        info: TxnInfo,
    },
    Reserve {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        expires_at: Option<Timestamp>,
        info: TxnInfo,
    },
    Capture {
        wallet: WalletId,
        txn: TxnId,
        amount: Option<Decimal>,
    },
    Release {
        wallet: WalletId,
        txn: TxnId,
    },
    Cancel {
        wallet: WalletId,
        txn: TxnId,
    },
    Transfer {
        from: WalletId,
        to: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        if_insufficient: IfInsufficient,
        expires_at: Option<Timestamp>,
        info: TxnInfo,
    },
    Convert {
        from: WalletId,
        to: WalletId,
        txn: TxnId,
        sell_asset: AssetCode,
        buy_asset: AssetCode,
        sell_amount: Decimal,
        rate: Decimal,
        if_insufficient: IfInsufficient,
        expires_at: Option<Timestamp>,
        info: TxnInfo,
    },
    /// Timers: expire what is due at the command's instant.
    Expire {
        wallet: WalletId,
    },
}

impl Op {
    /// The operation's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Op::OpenWallet { .. } => "open_wallet",
            Op::SetStatus { .. } => "set_status",
            Op::UpdateSettings { .. } => "update_settings",
            Op::Credit { .. } => "credit",
            Op::SettlePending { .. } => "settle",
            Op::RejectPending { .. } => "reject",
            Op::Debit { .. } => "debit",
            Op::Reserve { .. } => "reserve",
            Op::Capture { .. } => "capture",
            Op::Release { .. } => "release",
            Op::Cancel { .. } => "cancel",
            Op::Expire { .. } => "expire",
            Op::Transfer { .. } => "transfer",
            Op::Convert { .. } => "convert",
        }
    }

    /// The transaction this command creates, if it creates one.
    pub fn created_txn(&self) -> Option<TxnId> {
        match self {
            Op::Credit { txn, .. }
            | Op::Debit { txn, .. }
            | Op::Reserve { txn, .. }
            | Op::Transfer { txn, .. }
            | Op::Convert { txn, .. } => Some(*txn),
            _ => None,
        }
    }

    /// The wallet that executes the command (the source of a transfer).
    pub fn wallet(&self) -> WalletId {
        match self {
            Op::OpenWallet { wallet, .. }
            | Op::SetStatus { wallet, .. }
            | Op::UpdateSettings { wallet, .. }
            | Op::Credit { wallet, .. }
            | Op::SettlePending { wallet, .. }
            | Op::RejectPending { wallet, .. }
            | Op::Debit { wallet, .. }
            | Op::Reserve { wallet, .. }
            | Op::Capture { wallet, .. }
            | Op::Release { wallet, .. }
            | Op::Cancel { wallet, .. }
            | Op::Expire { wallet } => *wallet,
            Op::Transfer { from, .. } | Op::Convert { from, .. } => *from,
        }
    }
}
