//! The gateway: the registry and routing of wallet actors, and the HTTP front
//! door (auth, idempotency, JSON). The only crate that knows JSON.
//!
//! Built by issues 3 (actors) and 4 (HTTP); today it only pins the crate graph:
//! `gateway` depends on `engine`, and later on `snapshots`.

pub use settle_engine as engine;
