//! The gateway: the registry of wallet actors, routing, supervision,
//! passivation and backpressure (and, from issue 4, the HTTP front door).
//!
//! - `config`: limits and timings.
//! - `error`: `GatewayError`, the refusals of the gateway itself.
//! - `registry`: wallet id to slot (shared state + actor, if active), sharded.
//! - `shards`: lock striping, shared by the registry and the indexes.
//! - `runtime`: routing, activation, passivation, restart; the `WalletHost`
//!   the actors run against.
//! - `supervisor`: the gateway actor: sweeps (passivation, timers).
//! - `gateway`: `Gateway`, the handle callers use.
//! - `directory`: clients, customers, tenancy, the transaction index.
//! - `incoming`: the transfers toward each wallet that have not reached it.
//! - `http`: the front door (API.md on hyper).
//! - `answer_body`: an idempotent answer's body as kept for retries (LZ4
//!   when large).
//! - `journal`: the records of the write-ahead log and their encoding.
//! - `image`: the whole durable state as one value at a log position (what
//!   replay builds and a snapshot file holds).
//! - `recovery`: the starting image (newest good snapshot, or empty), then
//!   the log after it.
//! - `snapshotter`: the thread that writes snapshots and compacts the log.
//! - `boot`: open the log, recover, start the actors and the app.
//! - `funding`: pay-in addresses and pay-ins; the webhooks' state.
//! - `webhooks`: notices, the durable outbox, signed delivery.

pub mod answer_body;
pub mod boot;
mod config;
pub mod directory;
mod error;
pub mod funding;
mod gateway;
pub mod http;
pub mod image;
pub mod incoming;
pub mod journal;
pub mod recovery;
mod registry;
mod runtime;
mod shards;
pub mod snapshotter;
mod supervisor;
pub mod survey;
pub mod webhooks;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use gateway::{
    CommitHook, CommitObserver, Cut, CutView, Gateway, Stats, Submitted, SubmittedMany,
};
pub use settle_engine as engine;
