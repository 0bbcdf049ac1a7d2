//! Starting a durable engine: open the log, replay it into the engine, the
//! directory and the idempotency store, start the wallet actors on what was
//! recovered, and put the front door's `App` on top. `settle serve` and the
//! fault-injection tests start the same way.

use crate::directory::Directory;
use crate::http::auth::Keys;
use crate::http::idempotency::IdempotencyStore;
use crate::http::{App, HttpLimits, Parts};
use crate::journal::Journal;
use crate::recovery::{self, Sinks};
use crate::{Gateway, GatewayConfig};
use settle_engine::StateDigest;
use settle_engine::actor::Clock;
use settle_snapshots::{Storage, TornTail, Wal, WalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to start.
#[derive(Clone, Debug)]
pub struct BootConfig {
    pub gateway: GatewayConfig,
    pub wal: WalConfig,
    pub limits: HttpLimits,
    /// Idempotency records are kept at least this long...
    pub idempotency_ttl: Duration,
    /// ...and at most this many at once.
    pub idempotency_max: usize,
    /// How long a duplicate waits for the first request's answer.
    pub idempotency_wait: Duration,
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl BootConfig {
    pub fn new(wal: WalConfig) -> Self {
        Self {
            gateway: GatewayConfig::default(),
            wal,
            limits: HttpLimits::default(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_max: 4_000_000,
            idempotency_wait: Duration::from_secs(5),
            webhooks: crate::webhooks::WebhookConfig::default(),
        }
    }
}

/// A started engine, and what recovery found.
#[derive(Debug)]
pub struct Booted {
    pub app: Arc<App>,
    pub journal: Arc<Journal>,
    pub records: u64,
    pub wallets: usize,
    /// The digest of the recovered state, before anything ran on it.
    pub digest: StateDigest,
    pub torn_tail: Option<TornTail>,
    pub replay_time: Duration,
}

/// Why the engine did not start.
#[derive(Debug)]
pub struct BootError(pub String);

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BootError {}

/// Opens the log, recovers and starts. The app is not yet ready (`/healthz`
/// answers 503 until the caller calls `set_ready`).
pub async fn boot(
    storage: Arc<dyn Storage>,
    config: BootConfig,
    keys: Keys,
    clock: Arc<dyn Clock>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<Booted, BootError> {
    let started = Instant::now();
    let directory = Arc::new(Directory::new());
    let idempotency = IdempotencyStore::new(
        config.idempotency_ttl,
        config.idempotency_max,
        config.idempotency_wait,
    );
    let (wal, log) = Wal::open(storage, config.wal.clone())
        .map_err(|e| BootError(format!("cannot open the write-ahead log: {e}")))?;
    let funding = Arc::new(crate::funding::Funding::new(
        config.webhooks.clone(),
        config.gateway.engine.assets.clone(),
    ));
    let sinks = Sinks {
        directory: Some(&directory),
        idempotency: Some((&idempotency, clock.now().millis())),
        funding: Some(&funding),
    };
    let replayed = recovery::replay(&log, log.first_lsn, &config.gateway.engine, &sinks)
        .map_err(|e| BootError(format!("recovery stopped: {e}")))?;
    let replay_time = started.elapsed();
    let digest = replayed
        .digest()
        .map_err(|e| BootError(format!("recovery stopped: {e}")))?;
    let (records, wallets) = (replayed.records, replayed.wallets.len());
    let torn_tail = log.torn_tail.clone();
    let journal = Journal::new(wal, log.next_lsn);
    drop(log);
    funding.attach(Arc::clone(&journal));
    let gateway = Gateway::start_durable(
        config.gateway,
        Arc::clone(&clock),
        Arc::clone(&journal),
        replayed.wallets,
        Some(Arc::clone(&funding) as Arc<dyn crate::CommitHook>),
    )
    .await
    .map_err(|e| BootError(format!("cannot start the engine: {e}")))?;
    let app = App::new(Parts {
        gateway,
        directory,
        keys,
        idempotency,
        clock,
        limits: config.limits,
        metrics,
        journal: Some(Arc::clone(&journal)),
        funding,
    })
    .map_err(|e| BootError(format!("route table: {e}")))?;
    Ok(Booted {
        app: Arc::new(app),
        journal,
        records,
        wallets,
        digest,
        torn_tail,
        replay_time,
    })
}
