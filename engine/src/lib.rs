//! The ledger state machine of settle: pure, deterministic, no I/O.
//!
//! - `asset`, `money`: assets with fixed scales; exact, bounded arithmetic.
//! - `wallet`: one wallet's balances, FIFO queues and transactions;
//!   `decide` (commands to events) and `apply` (events to state).
//! - `message`: how a transfer crosses between wallets (the in-flight protocol).
//! - `ledger`: all wallets and the messages in flight; replay; audit; digest.
//! - `command`, `event`: what comes in and what is recorded.
//!
//! Time is an input (each command carries its instant) and ids are inputs,
//! so the same commands give the same events, and the same events give the
//! same state (`StateDigest`).

pub mod actor;
pub mod asset;
pub mod audit;
pub mod command;
pub mod config;
pub mod digest;
pub mod event;
pub mod ids;
pub mod ledger;
pub mod message;
pub mod money;
pub mod msgpack;
pub mod reject;
pub mod txn;
pub mod wallet;

#[cfg(test)]
mod test_support;

pub use asset::{Asset, AssetCode, AssetRegistry};
pub use audit::AssetAudit;
pub use command::{Command, Op};
pub use config::{EngineConfig, Limits};
pub use digest::StateDigest;
pub use event::Event;
pub use ids::{
    ClientId, CustomerId, PayinAddressId, SnapshotId, Timestamp, TxnId, WalletId, WebhookId,
};
pub use ledger::Ledger;
pub use message::{Leg, Message};
pub use reject::{ApplyError, Reject};
pub use rust_decimal::Decimal;
pub use txn::{
    ConversionTerms, Direction, IfInsufficient, Outbound, Txn, TxnExtra, TxnInfo, TxnKind,
    TxnStatus,
};
pub use wallet::{
    Balance, Done, WalletKind, WalletSettings, WalletSpec, WalletState, WalletStatus,
};
