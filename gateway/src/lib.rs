//! The gateway: the registry of wallet actors, routing, supervision,
//! passivation and backpressure (and, from issue 4, the HTTP front door).
//!
//! - `config`: limits and timings.
//! - `error`: `GatewayError`, the refusals of the gateway itself.
//! - `registry`: wallet id to slot (shared state + actor, if active), sharded.
//! - `runtime`: routing, activation, passivation, restart; the `WalletHost`
//!   the actors run against.
//! - `supervisor`: the gateway actor: supervises wallet actors, sweeps.
//! - `gateway`: `Gateway`, the handle callers use.

mod config;
mod error;
mod gateway;
mod registry;
mod runtime;
mod supervisor;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use gateway::{CommitObserver, Cut, CutView, Gateway, Stats};
pub use settle_engine as engine;
