//! Why a command was refused, and why an event could not be applied.

use crate::ids::WalletId;
use std::fmt;

/// A command the engine refuses. Refusing changes nothing: a command is
/// checked in full before its first event is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// Zero, negative, too many decimals, out of range.
    InvalidAmount(String),
    /// Not an asset the engine or the wallet knows.
    UnknownAsset(String),
    /// A malformed or contradictory command.
    InvalidRequest(String),
    /// No such wallet or transaction.
    NotFound(String),
    /// A reservation (or an outbound item asked to be refused) that does not fit.
    InsufficientFunds(String),
    /// The object is not in a state that allows this (e.g. capturing a released hold).
    InvalidState(String),
    WalletRestricted(WalletId),
    WalletSuspended(WalletId),
    WalletClosed(WalletId),
    /// The wallet's FIFO queue is at its configured maximum depth.
    QueueFull {
        wallet: WalletId,
        depth: usize,
    },
    /// The engine cannot take the command now, or could not make its effect
    /// durable (the log failed): nothing is acknowledged; retry later.
    Unavailable(String),
    /// The engine's own events did not apply: a defect, never a client error.
    Internal(String),
}

impl Reject {
    /// The error code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::InvalidAmount(_) => "invalid_amount",
            Reject::UnknownAsset(_) => "unknown_asset",
            Reject::InvalidRequest(_) => "invalid_request",
            Reject::NotFound(_) => "not_found",
            Reject::InsufficientFunds(_) => "insufficient_funds",
            Reject::InvalidState(_) => "invalid_state",
            Reject::WalletRestricted(_) => "wallet_restricted",
            Reject::WalletSuspended(_) => "wallet_suspended",
            Reject::WalletClosed(_) => "wallet_closed",
            Reject::QueueFull { .. } => "queue_full",
            Reject::Unavailable(_) => "unavailable",
            Reject::Internal(_) => "internal",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::InvalidAmount(m)
            | Reject::UnknownAsset(m)
            | Reject::InvalidRequest(m)
            | Reject::NotFound(m)
            | Reject::InsufficientFunds(m)
            | Reject::InvalidState(m)
            | Reject::Unavailable(m)
            | Reject::Internal(m) => f.write_str(m),
            Reject::WalletRestricted(w) => write!(f, "wallet {w} is restricted"),
            Reject::WalletSuspended(w) => write!(f, "wallet {w} is suspended"),
            Reject::WalletClosed(w) => write!(f, "wallet {w} is closed"),
            Reject::QueueFull { wallet, depth } => {
                write!(f, "the queue of wallet {wallet} is full ({depth} items)")
            }
        }
    }
}

impl std::error::Error for Reject {}

/// An event that does not fit the state it is applied to. During replay
/// this means the log does not describe a state this engine could reach:
/// recovery stops and names the place instead of guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(pub String);

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event does not apply: {}", self.0)
    }
}

impl std::error::Error for ApplyError {}

impl From<ApplyError> for Reject {
    fn from(e: ApplyError) -> Self {
        Reject::Internal(e.to_string())
    }
}
