//! Events: the facts a wallet's state is made of.
//!
//! Commands are decided; events are applied. `WalletState::apply` is the
//! only code that changes a wallet, and it is used both live and in replay,
//! so applying the emitted events to an empty state rebuilds the same state.
//! Every event carries its wallet and its instant; none needs a clock or a
//! lookup outside the wallet to apply.

use crate::asset::AssetCode;
use crate::ids::{Timestamp, TxnId, WalletId};
use crate::message::Leg;
use crate::txn::{Outbound, TxnInfo};
use crate::wallet::{WalletSettings, WalletSpec, WalletStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    WalletOpened {
        wallet: WalletId,
        spec: Box<WalletSpec>,
        settings: Box<WalletSettings>,
        at: Timestamp,
    },
    StatusChanged {
        wallet: WalletId,
        status: WalletStatus,
        reason: Option<String>,
        at: Timestamp,
    },
    SettingsChanged {
        wallet: WalletId,
        settings: Box<WalletSettings>,
        at: Timestamp,
    },
    /// A credit from outside: into `cash`, or into `pending` for review.
    CreditAccepted {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        pending: bool,
        info: Option<Box<TxnInfo>>,
        at: Timestamp,
    },
    PendingSettled {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    PendingRejected {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    /// An outbound item joins the tail of its (wallet, asset) FIFO queue:
    /// it cannot settle yet. It settles later by `OutboundSettled`.
    OutboundQueued {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        expires_at: Option<Timestamp>,
        info: Option<Box<TxnInfo>>,
        at: Timestamp,
    },
    /// The head of the queue settles: its money leaves `cash`.
    OutboundSettled {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    /// An outbound item settles as it is submitted (its queue is empty and
    /// `cash - reserved` covers it): created `settled`, never seen waiting.
    /// Its money leaves `cash` as by `OutboundSettled`. Logs written before
    /// this event existed hold `OutboundQueued` + `OutboundSettled` for such
    /// an item; the two replay to the same books, flows and record (only
    /// the wallet's event count, `sequence`, differs by one).
    OutboundSettledAtOnce {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        target: Outbound,
        expires_at: Option<Timestamp>,
        info: Option<Box<TxnInfo>>,
        at: Timestamp,
    },
    OutboundCancelled {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    OutboundExpired {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    ReservationHeld {
        wallet: WalletId,
        txn: TxnId,
        asset: AssetCode,
        amount: Decimal,
        expires_at: Option<Timestamp>,
        info: Option<Box<TxnInfo>>,
        at: Timestamp,
    },
    /// `amount` leaves `cash`; the rest of the hold is released.
    ReservationCaptured {
        wallet: WalletId,
        txn: TxnId,
        amount: Decimal,
        at: Timestamp,
    },
    ReservationReleased {
        wallet: WalletId,
        txn: TxnId,
        expired: bool,
        at: Timestamp,
    },
    /// The destination applied a `Deliver`: its cash rises.
    TransferReceived {
        wallet: WalletId,
        leg: Leg,
        at: Timestamp,
    },
    /// The destination refused a `Deliver`; the money goes back.
    TransferBounced {
        wallet: WalletId,
        leg: Leg,
        reason: String,
        at: Timestamp,
    },
    /// The source applied a `Return`: its money is back.
    TransferReturned {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
    /// The source applied a `Receipt`: the transfer is complete.
    TransferDelivered {
        wallet: WalletId,
        txn: TxnId,
        at: Timestamp,
    },
}

impl Event {
    /// The transaction this event creates at its wallet, if it creates one
    /// (that wallet is then the transaction's creator; ids are unique
    /// across the engine, which the ledger checks with this).
    pub fn created_txn(&self) -> Option<TxnId> {
        match self {
            Event::CreditAccepted { txn, .. }
            | Event::OutboundQueued { txn, .. }
            | Event::OutboundSettledAtOnce { txn, .. }
            | Event::ReservationHeld { txn, .. } => Some(*txn),
            _ => None,
        }
    }

    /// The wallet this event changes.
    pub fn wallet(&self) -> WalletId {
        match self {
            Event::WalletOpened { wallet, .. }
            | Event::StatusChanged { wallet, .. }
            | Event::SettingsChanged { wallet, .. }
            | Event::CreditAccepted { wallet, .. }
            | Event::PendingSettled { wallet, .. }
            | Event::PendingRejected { wallet, .. }
            | Event::OutboundQueued { wallet, .. }
            | Event::OutboundSettled { wallet, .. }
            | Event::OutboundSettledAtOnce { wallet, .. }
            | Event::OutboundCancelled { wallet, .. }
            | Event::OutboundExpired { wallet, .. }
            | Event::ReservationHeld { wallet, .. }
            | Event::ReservationCaptured { wallet, .. }
            | Event::ReservationReleased { wallet, .. }
            | Event::TransferReceived { wallet, .. }
            | Event::TransferBounced { wallet, .. }
            | Event::TransferReturned { wallet, .. }
            | Event::TransferDelivered { wallet, .. } => *wallet,
        }
    }

    pub fn at(&self) -> Timestamp {
        match self {
            Event::WalletOpened { at, .. }
            | Event::StatusChanged { at, .. }
            | Event::SettingsChanged { at, .. }
            | Event::CreditAccepted { at, .. }
            | Event::PendingSettled { at, .. }
            | Event::PendingRejected { at, .. }
            | Event::OutboundQueued { at, .. }
            | Event::OutboundSettled { at, .. }
            | Event::OutboundSettledAtOnce { at, .. }
            | Event::OutboundCancelled { at, .. }
            | Event::OutboundExpired { at, .. }
            | Event::ReservationHeld { at, .. }
            | Event::ReservationCaptured { at, .. }
            | Event::ReservationReleased { at, .. }
            | Event::TransferReceived { at, .. }
            | Event::TransferBounced { at, .. }
            | Event::TransferReturned { at, .. }
            | Event::TransferDelivered { at, .. } => *at,
        }
    }
}
