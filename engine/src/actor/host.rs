//! What a wallet actor needs from outside, behind traits the gateway implements.

use crate::actor::WalletShared;
use crate::config::EngineConfig;
use crate::event::Event;
use crate::ids::{Timestamp, WalletId};
use crate::message::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The time source. The state machine never reads a clock; the actor reads
/// this one once per message and passes the instant in.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// Wall-clock time, in milliseconds since the epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.millis()))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Why a commit did not become durable (the log failed or is stopping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitError(pub String);

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs once a commit is durable (or has failed): it answers the caller.
pub type Then = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// Everything a wallet actor reaches outside itself.
pub trait WalletHost: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    fn config(&self) -> &EngineConfig;

    /// Sends a message to the wallet it is addressed to, activating that
    /// wallet if needed. Never refused and never blocks: money in flight
    /// must land. Delivery is at least once (senders re-send until
    /// acknowledged; receivers ignore what they already applied).
    fn post(&self, message: Message);

    /// The events one message made `wallet` apply, in order. `then` runs once
    /// they are durable (it answers the caller), or with the error if they
    /// cannot be; the host may run it later, on another thread. With no
    /// events, `then` still waits until everything committed before is
    /// durable (an answer may rest on it). Called before the message's own
    /// posts, so that a log keeps a sender's events ahead of its receivers'.
    fn commit(&self, wallet: WalletId, events: Vec<Event>, then: Then);

    /// The actor has finished one message the host routed to it, which
    /// carried `commands` client commands (0: a message from a wallet or
    /// a timer).
    fn finished(&self, shared: &WalletShared, commands: u32);

    /// The actor is idle and asks to stop. The host packs its state and
    /// answers `true` (the actor then stops) unless messages are on their
    /// way to it.
    fn passivate(&self, shared: &Arc<WalletShared>) -> bool;

    /// The actor `actor` of this wallet failed (`error`: a panic or an
    /// error from the state) and stops. The host logs it and starts a new
    /// actor on the state the wallet's last applied event left.
    fn failed(&self, shared: &Arc<WalletShared>, actor: ractor::ActorId, error: &str);

    /// More actors run than the host wants: an actor that finishes a
    /// message with nothing else on its way asks to passivate at once.
    fn crowded(&self) -> bool {
        false
    }
}
