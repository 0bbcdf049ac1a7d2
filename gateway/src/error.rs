//! Why the gateway did not carry out a command.

use settle_engine::{Reject, WalletId};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayError {
    /// The engine refused the command (its code is the API's).
    Rejected(Reject),
    /// Too many messages already wait for this wallet (429 `queue_full`).
    Overloaded { wallet: WalletId },
    /// The engine cannot take the command now: at capacity, stopping, or the
    /// wallet restarted before answering (503 `unavailable`; safe to retry
    /// with the same idempotency key).
    Unavailable(String),
}

impl GatewayError {
    /// The API error code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Rejected(r) => r.code(),
            GatewayError::Overloaded { .. } => "queue_full",
            GatewayError::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Rejected(r) => r.fmt(f),
            GatewayError::Overloaded { wallet } => {
                write!(f, "too many operations are waiting for wallet {wallet}")
            }
            GatewayError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for GatewayError {}

impl From<Reject> for GatewayError {
    fn from(r: Reject) -> Self {
        GatewayError::Rejected(r)
    }
}
