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
mod metric_help;
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
use std::time::Duration;

/// The name of the thread that runs the metrics upkeep.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// How often histogram samples are folded into their buckets when no one
/// scrapes `/metrics` (see `install_metrics`).
pub const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide metrics recorder (once) and returns the handle
/// that renders `/metrics`. `None` if another recorder was installed first.
///
/// The recorder keeps each histogram sample until a render or an upkeep
/// folds it into the buckets: without either, memory grows by every request
/// (measured: ~24 bytes per `GET /healthz`, ~1 GB a day at 500 requests/s),
/// so a server nobody scrapes would leak. A thread runs the upkeep every
/// `METRICS_UPKEEP`. (`build_recorder` spawns none; `install_recorder`
/// would, but also needs a runtime and a listener of its own.)
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
            metric_help::describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                // /metrics still works; its renders drain the samples.
                tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples wait for a scrape of /metrics");
            }
            Some(handle)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the upkeep thread, every histogram sample of a server that is
    /// never scraped stays in memory.
    #[test]
    fn installing_the_recorder_starts_the_upkeep_thread() {
        assert!(install_metrics().is_some());
        if !cfg!(target_os = "linux") {
            return;
        }
        // A thread names itself once it runs: look for up to 10 s (a bound
        // for a busy machine, not a timing).
        let mut names = Vec::new();
        for _ in 0..1_000 {
            names = thread_names();
            if names.iter().any(|n| n == UPKEEP_THREAD) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            names.iter().any(|n| n == UPKEEP_THREAD),
            "threads: {names:?}"
        );
        // Installing again is a no-op that returns the same handle.
        assert!(install_metrics().is_some());
    }

    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .map(|n| n.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}
