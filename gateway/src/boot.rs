//! Starting a durable engine: open the log, load the newest snapshot that
//! verifies, replay the log after it, hand the state to the directory, the
//! idempotency store and the wallet actors, start the snapshotter, and put
//! the front door's `App` on top. `settle serve` and the fault-injection
//! tests start the same way.

use crate::directory::Directory;
use crate::http::auth::Keys;
use crate::http::idempotency::IdempotencyStore;
use crate::http::{App, HttpLimits, Parts};
use crate::journal::Journal;
use crate::recovery::{self, Prefer, Progress, SnapshotUsed};
use crate::snapshotter::{SnapshotPolicy, Snapshotter};
use crate::{Gateway, GatewayConfig};
use settle_engine::StateDigest;
use settle_engine::actor::Clock;
use settle_snapshots::snapshot;
use settle_snapshots::{Recovery, Storage, TornTail, Wal, WalConfig, WalError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to start.
#[derive(Clone, Debug)]
pub struct BootConfig {
    pub gateway: GatewayConfig,
    pub wal: WalConfig,
    /// Where snapshots are (recovery starts from the newest that verifies);
    /// `None`: no snapshots, the whole log is replayed.
    pub snapshot_dir: Option<PathBuf>,
    /// When to take snapshots (`None`: never, except that recovery still
    /// reads those in `snapshot_dir`). Its `dir` is `snapshot_dir`.
    pub snapshots: Option<SnapshotPolicy>,
    pub limits: HttpLimits,
    /// Idempotency records are kept at least this long...
    pub idempotency_ttl: Duration,
    /// ...and at most this many at once.
    pub idempotency_max: usize,
    /// How long a duplicate waits for the first request's answer.
    pub idempotency_wait: Duration,
    /// Webhook deliveries: backoff, timeout, concurrency.
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl BootConfig {
    pub fn new(wal: WalConfig) -> Self {
        Self {
            gateway: GatewayConfig::default(),
            wal,
            snapshot_dir: None,
            snapshots: None,
            limits: HttpLimits::default(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_max: 4_000_000,
            idempotency_wait: Duration::from_secs(5),
            webhooks: crate::webhooks::WebhookConfig::default(),
        }
    }

    /// Snapshots in `dir`, taken as `policy` says.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_dir = Some(policy.dir.clone());
        self.snapshots = Some(policy);
        self
    }
}

/// A started engine, and what recovery found.
#[derive(Debug)]
pub struct Booted {
    pub app: Arc<App>,
    pub journal: Arc<Journal>,
    pub snapshotter: Option<Arc<Snapshotter>>,
    /// The snapshot recovery started from.
    pub snapshot: Option<SnapshotUsed>,
    /// Snapshots passed over, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Log records replayed after the snapshot (or from the start).
    pub records: u64,
    /// The position the state was recovered to.
    pub position: u64,
    pub wallets: usize,
    /// The digest of the recovered state, before anything ran on it.
    pub digest: StateDigest,
    pub torn_tail: Option<TornTail>,
    /// Time to load the snapshot, and to replay the log after it.
    pub load_time: Duration,
    pub replay_time: Duration,
}

/// Sets aside a log that the snapshot `s` has overtaken (every record in
/// it lies at or before the snapshot's position: a repair cut below the
/// snapshot, or an unsynced tail was lost), and opens a new one that starts
/// after the snapshot. Called before anything is appended. The old files go
/// to `<data-dir>/wal-behind-snapshot-<id>-<ms>/`, kept for the operator.
fn start_log_after(
    storage: &Arc<dyn Storage>,
    config: &WalConfig,
    (wal, log): (Wal, Recovery),
    s: &SnapshotUsed,
    now_ms: i64,
) -> Result<(Wal, Recovery), WalError> {
    let ends = log.next_lsn.saturating_sub(1);
    drop(log);
    wal.close()?;
    let aside = config
        .dir
        .with_file_name(format!("wal-behind-snapshot-{}-{now_ms}", s.id));
    settle_snapshots::set_aside(storage.as_ref(), &config.dir, &aside)?;
    tracing::warn!(
        snapshot = %s.id,
        position = s.position,
        log_ends_at = ends,
        set_aside_in = %aside.display(),
        "the newest snapshot is past the end of the log (cut by `settle wal repair`, or an \
         unsynced tail lost): starting from the snapshot, which holds every record the log \
         has; the log was set aside and a new one starts after the snapshot"
    );
    let after = WalConfig {
        first_lsn: s.position + 1,
        ..config.clone()
    };
    Wal::open(Arc::clone(storage), after)
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
/// answers 503 until the caller calls `set_ready`). `progress` hears how
/// far the log's replay has come.
pub async fn boot(
    storage: Arc<dyn Storage>,
    config: BootConfig,
    keys: Keys,
    clock: Arc<dyn Clock>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    progress: Option<Progress<'_>>,
) -> Result<Booted, BootError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| BootError(format!("{what}: {e}"));
    let directory = Arc::new(Directory::new());
    let idempotency = IdempotencyStore::new(
        config.idempotency_ttl,
        config.idempotency_max,
        config.idempotency_wait,
    );
    if let Some(dir) = &config.snapshot_dir {
        for path in snapshot::remove_temporaries(dir).map_err(|e| fail("snapshots", &e))? {
            tracing::info!(file = %path.display(), "removed a snapshot whose writing was interrupted");
        }
    }
    let (mut wal, mut log) = Wal::open(Arc::clone(&storage), config.wal.clone())
        .map_err(|e| fail("cannot open the write-ahead log", &e))?;
    // What the first open cut, even if the log is then set aside.
    let torn_tail = log.torn_tail.clone();
    let started = Instant::now();
    let base = match &config.snapshot_dir {
        Some(dir) => recovery::base(
            dir,
            log.first_lsn,
            log.next_lsn,
            &config.gateway.engine,
            Prefer::Serve,
        )
        .map_err(|e| fail("recovery stopped", &e))?,
        None => recovery::Base {
            image: crate::image::Image::empty(config.gateway.engine.clone()),
            snapshot: None,
            skipped: Vec::new(),
            damaged: Vec::new(),
        },
    };
    if let Some(s) = base
        .snapshot
        .as_ref()
        .filter(|s| s.position >= log.next_lsn)
    {
        (wal, log) = start_log_after(&storage, &config.wal, (wal, log), s, clock.now().millis())
            .map_err(|e| fail("cannot start a new log after the snapshot", &e))?;
    }
    // What is still past the end of the log (newer snapshots that did not
    // load) leaves the directory before anything is appended: no snapshot
    // may cover positions the log is about to reuse.
    if let Some(dir) = &config.snapshot_dir {
        let to = dir.with_file_name(format!("snapshots-past-the-log-{}", clock.now().millis()));
        for e in snapshot::move_past(dir, log.next_lsn, &to).map_err(|e| fail("snapshots", &e))? {
            tracing::warn!(
                snapshot = %e.id,
                position = e.position,
                moved_to = %e.path.display(),
                "a snapshot past the end of the log that could not start recovery was moved out \
                 of the snapshots directory (the log will reuse its positions)"
            );
        }
        recovery::set_aside_damaged(dir, &base.damaged, clock.now().millis())
            .map_err(|e| fail("snapshots", &e))?;
    }
    let load_time = started.elapsed();
    let mut image = base.image;
    let records = recovery::replay(&log, &mut image, u64::MAX, progress)
        .map_err(|e| fail("recovery stopped", &e))?;
    let replay_time = started.elapsed() - load_time;
    let digest = image.digest().map_err(|e| fail("recovery stopped", &e))?;
    let position = image.position;
    let journal = Journal::new(wal, log.next_lsn);
    drop(log);
    let funding = Arc::new(crate::funding::Funding::new(
        config.webhooks.clone(),
        config.gateway.engine.assets.clone(),
    ));
    let incoming = image.take_incoming();
    let wallets = image
        .install(&directory, &idempotency, &funding, clock.now().millis())
        .map_err(|e| fail("recovery stopped", &e))?;
    funding.attach(Arc::clone(&journal));
    let wallet_count = wallets.len();
    let snapshotter = match config.snapshots {
        Some(policy) => Some(Arc::new(
            Snapshotter::start(
                policy,
                Arc::clone(&journal),
                config.gateway.engine.clone(),
                Arc::clone(&clock),
                config.idempotency_ttl,
                base.snapshot.as_ref().map_or(0, |s| s.position),
            )
            .map_err(|e| fail("cannot start the snapshot thread", &e))?,
        )),
        None => None,
    };
    let gateway = Gateway::start_durable(
        config.gateway,
        Arc::clone(&clock),
        Arc::clone(&journal),
        wallets,
        incoming,
        Some(Arc::clone(&funding) as Arc<dyn crate::CommitHook>),
    )
    .await
    .map_err(|e| fail("cannot start the engine", &e))?;
    let app = App::new(Parts {
        gateway,
        directory,
        keys,
        idempotency,
        clock,
        limits: config.limits,
        metrics,
        journal: Some(Arc::clone(&journal)),
        snapshots: snapshotter.clone(),
        funding,
    })
    .map_err(|e| fail("route table", &e))?;
    Ok(Booted {
        app: Arc::new(app),
        journal,
        snapshotter,
        snapshot: base.snapshot,
        skipped: base.skipped,
        records,
        position,
        wallets: wallet_count,
        digest,
        torn_tail,
        load_time,
        replay_time,
    })
}
