//! The HTTP front door: API.md on hyper.
//!
//! - `server`: sockets, HTTP/1.1 and HTTP/2, limits, logs, shutdown.
//! - `app`: one request from parts to answer: route, auth, idempotency.
//! - `router`: the route table (`ROUTES`, which `openapi.yaml` must match).
//! - `auth`: API keys (generated, hashed, compared).
//! - `idempotency`: the store of answers by idempotency key.
//! - `json`: exact amounts, timestamps, bodies; `views`: response shapes;
//!   `body_without`: a batch operation read as its endpoint's body.
//! - `search`: the wallet search language; `history`: transaction lists.
//! - `handlers`: one module per section of API.md.
//! - `reply`: the JSON envelopes and `ApiError`.

pub mod app;
pub mod auth;
pub mod body_without;
pub mod handlers;
pub mod history;
pub mod idempotency;
pub mod json;
pub mod reply;
pub mod router;
pub mod search;
pub mod server;
pub mod views;

pub use app::{App, HttpLimits, Parts, Request};
pub use router::ROUTES;
pub use server::{Server, ServerConfig};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Installs the process-wide metrics recorder (once) and returns the handle
/// that renders `/metrics`. `None` if another recorder was installed first.
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency buckets from 50 µs to 5 s: the targets are in ms.
            let buckets = [
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            // Records per group commit: powers of two up to the batch cap.
            let batch: Vec<f64> = (0..=12).map(|p| f64::from(1u32 << p)).collect();
            // A snapshot of a million wallets takes seconds.
            let snapshot = [
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("settle_wal_batch_records".into()), &batch)
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("settle_snapshot_duration_seconds".into()),
                    &snapshot,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}
