//! `settle serve`: the data directory, the admin key, the engine, the HTTP
//! front door, and a clean stop on SIGTERM or SIGINT.

use crate::data_lock;
use clap::Args;
use settle_gateway::GatewayConfig;
use settle_gateway::boot::{BootConfig, Booted, boot};
use settle_gateway::engine::actor::SystemClock;
use settle_gateway::http::auth::{Keys, generate_key};
use settle_gateway::http::{self, Server, ServerConfig};
use settle_gateway::journal::Journal;
use settle_gateway::snapshotter::SnapshotPolicy;
use settle_gateway::webhooks::tls;
use settle_snapshots::snapshot;
use settle_snapshots::{FsStorage, FsyncPolicy, WalConfig, WalStatus};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed on standard output).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the server keeps its state (created on first start).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 10_000, value_parser = positive_count)]
    pub max_connections: usize,
    /// Seconds a request (body and answer) may take before 503. Not
    /// `POST /v1/admin/snapshots`: it answers once its snapshot is written.
    /// 0 cuts off every request that has to wait at all (tests only).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub request_timeout: u64,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout: u64,
    /// `always`: fdatasync every group commit before acknowledging (the
    /// default, and the only setting that keeps the durability promise).
    /// `never`: for benchmarks only; a crash loses acknowledged writes.
    #[arg(long, value_enum, default_value_t = Fsync::Always)]
    pub fsync: Fsync,
    /// Size of each log segment file, in MiB (1 to 1024).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub segment_mib: u64,
    /// Seconds between periodic snapshots (0: none by time). A snapshot is
    /// taken only if the log moved since the last one.
    #[arg(long, default_value_t = 60)]
    pub snapshot_interval: u64,
    /// Also take a snapshot once this many log records were written since
    /// the last one (0: never by count).
    #[arg(long, default_value_t = 0)]
    pub snapshot_every: u64,
    /// Snapshots kept (at least 1); log segments are removed once the
    /// oldest kept snapshot covers them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub snapshot_keep: u64,
    /// Webhook retries: the first waits this long (ms), each next twice as long...
    #[arg(long, default_value_t = 1_000)]
    pub webhook_retry_base_ms: u64,
    /// ...up to this (ms).
    #[arg(long, default_value_t = 300_000)]
    pub webhook_retry_cap_ms: u64,
    /// One webhook delivery attempt may take this long (ms).
    #[arg(long, default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Webhook deliveries on their way at once.
    #[arg(long, default_value_t = 64)]
    pub webhook_concurrency: usize,
    /// More trusted roots for `https://` webhook receivers: a PEM file of
    /// one or more CA certificates (a private CA), trusted besides the
    /// public ones built in.
    #[arg(long, value_name = "FILE")]
    pub webhook_ca: Option<PathBuf>,
    /// Wallet actors running at once, at most; past it the least recently
    /// used are passivated early. Each costs ~12 KB the allocator keeps for
    /// reuse after it stops, so this bounds the actors' share of memory.
    #[arg(long, default_value_t = GatewayConfig::default().max_active,
          value_parser = positive_count)]
    pub max_active: usize,
    /// Seconds a wallet actor may sit idle before it is passivated.
    #[arg(long, default_value_t = GatewayConfig::default().idle_after.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_after: u64,
}

fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Never,
}

/// Why the server could not start or stop cleanly.
#[derive(Debug)]
pub struct ServeError(String);

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl std::fmt::Display) -> ServeError {
    ServeError(what.to_string())
}

const ADMIN_KEY_FILE: &str = "admin.key";
/// The admin key: `SETTLE_ADMIN_KEY`, else the one in `<data-dir>/admin.key`,
/// else a new one written there (0600). The key itself is never logged.
fn admin_key(dir: &Path) -> Result<String, ServeError> {
    if let Ok(key) = std::env::var("SETTLE_ADMIN_KEY") {
        let key = key.trim().to_owned();
        if key.len() < 16 {
            return Err(err(
                "SETTLE_ADMIN_KEY is set but shorter than 16 characters; use a long random key",
            ));
        }
        tracing::info!("admin key from SETTLE_ADMIN_KEY");
        return Ok(key);
    }
    let path = dir.join(ADMIN_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            tracing::info!(path = %path.display(), "admin key read from file");
            return Ok(text.trim().to_owned());
        }
        Ok(_) => {
            return Err(err(format!(
                "{} is empty; delete it or fill it",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("cannot read {}: {e}", path.display()))),
    }
    let key = generate_key("adm_").map_err(|e| err(format!("no randomness for a key: {e}")))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated an admin key (mode 0600)");
    Ok(key)
}

/// The webhook client's TLS settings: the public roots, and the
/// `--webhook-ca` file's if given (a bad file stops the start).
fn webhook_tls(ca: Option<&Path>) -> Result<tls::ClientConfig, ServeError> {
    let Some(path) = ca else {
        return tls::client_config(&[]).map_err(|e| err(format!("webhook TLS: {e}")));
    };
    let flag = |e: String| err(format!("--webhook-ca: {e}"));
    let roots = tls::read_roots(path).map_err(flag)?;
    let config =
        tls::client_config(&roots).map_err(|e| flag(format!("{}: {e}", path.display())))?;
    tracing::info!(file = %path.display(), roots = roots.len(), "webhook TLS: extra trusted roots");
    Ok(config)
}

pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let webhook_tls = webhook_tls(args.webhook_ca.as_deref())?;
    // Bound before anything else: a port already taken is said at once,
    // not after a replay of the whole log, and a new data directory is not
    // created for a server that cannot listen. Connections that arrive
    // during recovery wait in the backlog.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| err(format!("cannot listen on {}: {e}", args.listen)))?;
    let _lock =
        data_lock::lock(&args.data_dir, data_lock::Use::Write { create: true }).map_err(err)?;
    let keys = Keys::new(&admin_key(&args.data_dir)?);
    let mut wal = WalConfig::new(args.data_dir.join("wal"));
    wal.segment_size = args.segment_mib * 1024 * 1024;
    wal.spare_segments = true;
    if args.fsync == Fsync::Never {
        wal.fsync = FsyncPolicy::Never;
        tracing::warn!(
            "--fsync never: acknowledged writes can be lost on a crash; for benchmarks only"
        );
    }
    let policy = SnapshotPolicy {
        interval: (args.snapshot_interval > 0).then(|| Duration::from_secs(args.snapshot_interval)),
        every_records: (args.snapshot_every > 0).then_some(args.snapshot_every),
        keep: usize::try_from(args.snapshot_keep).unwrap_or(3),
        ..SnapshotPolicy::new(snapshot::snapshot_dir(&args.data_dir))
    };
    // Recovery: the newest good snapshot and the log after it, before
    // anything is served.
    let bar = crate::progress::replay_bar();
    let report = |done: u64, total: u64| crate::progress::advance(bar.as_ref(), done, total);
    let mut config = BootConfig::new(wal).with_snapshots(policy);
    config.webhooks.retry_base = Duration::from_millis(args.webhook_retry_base_ms.max(1));
    config.webhooks.retry_cap = Duration::from_millis(args.webhook_retry_cap_ms.max(1));
    config.webhooks.timeout = Duration::from_millis(args.webhook_timeout_ms.max(1));
    config.webhooks.concurrency = args.webhook_concurrency.max(1);
    config.gateway.max_active = args.max_active;
    config.gateway.idle_after = Duration::from_secs(args.idle_after);
    let booted = boot(
        Arc::new(FsStorage),
        config,
        keys,
        Arc::new(SystemClock),
        http::install_metrics(),
        Some(&report),
    )
    .await
    .map_err(err)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for (path, why) in &booted.skipped {
        tracing::warn!(snapshot = %path.display(), %why, "snapshot passed over at recovery");
    }
    match &booted.snapshot {
        Some(s) => tracing::info!(
            snapshot = %s.id,
            position = s.position,
            size_bytes = s.size,
            load_ms = millis(booted.load_time),
            "recovery starts from a snapshot"
        ),
        None => tracing::info!("recovery starts from the empty state (no snapshot)"),
    }
    if let Some(torn) = &booted.torn_tail {
        tracing::warn!(
            segment = %torn.segment.display(),
            offset = torn.offset,
            "the log ended in a torn write (a crash while writing); it was cut there"
        );
    }
    // The digest lets operators and the crash tests compare the recovered
    // state with `settle wal verify` (a replay from scratch).
    tracing::info!(
        records = booted.records,
        position = booted.position,
        wallets = booted.wallets,
        digest = %booted.digest,
        replay_ms = millis(booted.replay_time),
        "recovered from the log"
    );
    let Booted {
        app,
        journal,
        snapshotter,
        ..
    } = booted;
    let gateway = app.gateway.clone();
    let idempotency = Arc::clone(&app.idempotency);
    let config = ServerConfig {
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_secs(args.header_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
        ..ServerConfig::default()
    };
    let server = Server::start(Arc::clone(&app), listener, config)
        .map_err(|e| err(format!("serve: {e}")))?;
    let clock = Arc::clone(&app);
    let expiry = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            idempotency.expire(clock.now().millis());
        }
    });
    if crate::heap::live_bytes().is_some() {
        tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let live = crate::heap::live_bytes().unwrap_or(0);
                #[allow(clippy::cast_precision_loss)] // a gauge: f64 by the metrics API
                metrics::gauge!("settle_heap_live_bytes").set(live as f64);
            }
        });
    }
    // Webhook deliveries, on tasks of their own, from the recovered outbox on.
    let deliveries =
        settle_gateway::webhooks::delivery::spawn(Arc::clone(&app.funding), webhook_tls);
    app.set_ready(true);
    let addr = server.local_addr();
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "settle is serving");
    // On standard output too, for scripts and tests that asked for port 0.
    println!("settle listening on http://{addr}");
    let stop = tokio::select! {
        s = wait_for_signal() => s,
        why = log_failure(&journal) => Err(err(why)),
    };
    if let Err(e) = stop {
        // Fail-stop: durability can no longer be promised; do not go on.
        tracing::error!("{e}");
        return Err(e);
    }
    tracing::info!(
        "stopping: no new connections; finishing accepted requests (a second SIGTERM or Ctrl-C stops at once)"
    );
    app.set_ready(false);
    let finish = async {
        server.shutdown().await;
        expiry.abort();
        deliveries.abort();
        gateway.shutdown();
        flush(&journal).await
    };
    tokio::select! {
        finished = finish => finished?,
        () = warn_while_disk_full(&journal) => {}
        second = wait_for_signal() => {
            second?;
            let e = err(
                "stopped by a second signal before the log was flushed: requests still running \
                 were not answered, and what they changed but did not log is lost (none of it \
                 was acknowledged)",
            );
            return Err(e);
        }
    }
    if let Some(s) = snapshotter {
        // Waits for a snapshot being written; a new one is not started.
        tokio::task::spawn_blocking(move || s.stop())
            .await
            .map_err(|e| err(format!("the snapshot thread: {e}")))?;
    }
    tracing::info!("stopped; the log is flushed");
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Waits until everything appended to the log is durable.
async fn flush(journal: &Arc<Journal>) -> Result<(), ServeError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    journal.sync_point(move |r| {
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(err(format!("the log could not be flushed: {e}"))),
        Err(_) => Err(err("the log stopped before it was flushed")),
    }
}

/// While stopping: says every 10 s that the disk is full, since requests
/// and the log's flush wait for space (the log keeps what it was given and
/// retries), so that a stop that does not end says why.
async fn warn_while_disk_full(journal: &Journal) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        if journal.wal().status() == WalStatus::DiskFull {
            tracing::warn!(
                "stopping: the disk is full; waiting for space to finish the requests and flush \
                 the log (free space, or send SIGTERM again to stop without them)"
            );
        }
    }
}

/// Returns when the log has failed (fail-stop: a failed fsync).
async fn log_failure(journal: &Journal) -> String {
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        every.tick().await;
        if let WalStatus::Failed(why) = journal.wal().status() {
            return format!(
                "the write-ahead log failed; stopping without acknowledging more: {why}"
            );
        }
    }
}

async fn wait_for_signal() -> Result<(), ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| err(format!("SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| err(format!("SIGINT: {e}")))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
