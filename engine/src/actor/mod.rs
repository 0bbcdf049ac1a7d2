//! Wallet actors: each wallet, while in use, is a `ractor` actor that runs
//! the state machine of this crate on its own state, one message at a time.
//!
//! - `shared`: `WalletShared`, what the actor and the gateway's registry both
//!   hold: the wallet's state (live, or packed while passivated) and a few
//!   atomics the router reads without asking the actor.
//! - `host`: `WalletHost`, everything an actor needs from outside (clock,
//!   configuration, other wallets, the log), implemented by the gateway.
//! - `wallet`: the actor itself.
//!
//! No I/O happens here: the host does it.

mod host;
mod shared;
mod wallet;

pub use host::{Clock, CommitError, ManualClock, SystemClock, Then, WalletHost};
pub use shared::{
    HeldState, LiveState, RESEND_AFTER_MS, ReceiptsWaiting, StateError, WalletShared, decode_state,
    encode_state,
};
pub use wallet::{Ack, Answer, Execute, ExecuteMany, Order, Outcome, WalletActor, WalletMsg};
