//! Snapshots at scale: for `SETTLE_WALLETS` funded wallets (default
//! 100,000; run it with 1,000,000 too), each opened and credited once, plus
//! `SETTLE_HISTORY` transfers per wallet (default 0; each adds a record
//! to two wallets' histories):
//!
//! 1. snapshot size and write time (encode, write, fsync, rename);
//! 2. load time (read, check every checksum, decode, restore the ledger);
//! 3. end-to-end recovery: `boot()` of a data directory holding that
//!    snapshot plus a log tail, to the moment the engine could serve;
//! 4. the stall a request sees while a snapshot is taken: durable
//!    (`fsync always`) transfers through the front door's `App::handle`
//!    from 16 tasks, latency p50/p99/max, without and then with snapshots
//!    being taken back to back.
//!
//! `SETTLE_SECONDS` (default 5) sets each latency phase's length.
#![allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod support;

use bytes::Bytes;
use hyper::Method;
use settle_engine::actor::SystemClock;
use settle_engine::{
    ClientId, Command, Decimal, EngineConfig, IfInsufficient, Op, Timestamp, TxnId, TxnInfo,
    WalletId,
};
use settle_gateway::boot::{BootConfig, boot};
use settle_gateway::directory::Client;
use settle_gateway::http::Request;
use settle_gateway::http::auth::{Keys, hash_key};
use settle_gateway::image::{ClientEntry, Image};
use settle_gateway::snapshotter::SnapshotPolicy;
use settle_snapshots::snapshot::{self, SnapshotFile};
use settle_snapshots::{FsStorage, WalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Pairs, cpu_seconds, funded_ledger, usd};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENT_KEY: &str = "sk_bench_snapshot_client_key_0123456789";
const ADMIN_KEY: &str = "bench-admin-key-0123456789";
/// The snapshot's position: as if that many records had been logged.
const POSITION: u64 = 5_000_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time (user + system) of this process so far, in ms: on a shared
/// machine a phase's CPU time says more than its wall time.
fn cpu_ms() -> f64 {
    cpu_seconds() * 1e3
}

/// `n` wallets of one client, each funded, with `history` transfers each.
fn state(n: u64, history: u64) -> Image {
    let client = ClientId::from_u128(7);
    let mut ledger = funded_ledger(n, client);
    let mut events = Vec::new();
    let at = Timestamp::from_millis(1_700_000_000_000);
    let mut pairs = Pairs::new(42, n);
    for t in 1..=u128::from(history * n) {
        let (from, to) = pairs.next();
        let op = Op::Transfer {
            from,
            to,
            txn: TxnId::from_u128(t),
            asset: usd(),
            amount: Decimal::new(1, 2),
            if_insufficient: IfInsufficient::Queue,
            expires_at: None,
            info: TxnInfo::default(),
        };
        ledger.execute(&Command { at, op }, &mut events).unwrap();
        ledger.deliver_all(at, &mut events).unwrap();
        events.clear();
    }
    let mut image = Image::from_ledger(ledger);
    image.position = POSITION;
    image.clients.insert(
        client,
        ClientEntry {
            client: Client {
                id: client,
                name: "bench".into(),
                created_at: at,
            },
            key_hash: hash_key(CLIENT_KEY),
        },
    );
    image
}

fn transfer(from: WalletId, to: WalletId, key: u64) -> Request {
    let body =
        format!(r#"{{"fromWalletId":"{from}","toWalletId":"{to}","asset":"USD","amount":"0.01"}}"#);
    Request {
        method: Method::POST,
        path: "/v1/transfers".into(),
        query: None,
        api_key: Some(CLIENT_KEY.into()),
        idempotency_key: Some(format!("bench-{key}")),
        content_type: Some("application/json".into()),
        body: Bytes::from(body),
    }
}

/// Latencies of transfers from 16 tasks for `seconds`; (p50, p99, max, n).
async fn latencies(
    app: &Arc<settle_gateway::http::App>,
    wallets: u64,
    seconds: u64,
    seed: u64,
) -> (Duration, Duration, Duration, usize) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let app = Arc::clone(app);
        tasks.push(tokio::spawn(async move {
            let mut pairs = Pairs::new(seed * 100 + t + 1, wallets);
            let mut out = Vec::new();
            let mut k = (seed << 40) | (t << 32);
            while Instant::now() < deadline {
                let (from, to) = pairs.next();
                k += 1;
                let started = Instant::now();
                let r = app.handle(transfer(from, to, k)).await;
                out.push(started.elapsed());
                assert_eq!(r.reply.status.as_u16(), 201);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    // Nearest rank, in integers: the q-th per-mille.
    let at = |per_mille: usize| all[(all.len() * per_mille / 1000).min(all.len() - 1)];
    (at(500), at(990), all[all.len() - 1], all.len())
}

fn main() {
    let wallets = env("SETTLE_WALLETS", 100_000);
    let seconds = env("SETTLE_SECONDS", 5);
    let history = env("SETTLE_HISTORY", 0);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let snapshots = snapshot::snapshot_dir(&data);

    let t = Instant::now();
    let image = state(wallets, history);
    println!(
        "state: {wallets} wallets, {} transactions, built in {:.0} ms",
        image.summary().unwrap().transactions,
        ms(t.elapsed())
    );
    let want = image.digest().unwrap();

    let t = Instant::now();
    let cpu = cpu_ms();
    let (path, size) = image
        .write_snapshot(
            &snapshots,
            "snp_01JBENCH0000000000000000AA",
            1_700_000_000_000,
        )
        .unwrap();
    let write = t.elapsed();
    println!(
        "write: {:.1} MiB ({:.0} bytes per wallet) in {:.0} ms (CPU {:.0} ms)",
        size as f64 / (1 << 20) as f64,
        size as f64 / wallets as f64,
        ms(write),
        cpu_ms() - cpu
    );
    drop(image);

    let t = Instant::now();
    let cpu = cpu_ms();
    let file = SnapshotFile::open(&path).unwrap();
    let read = t.elapsed();
    let loaded = Image::from_snapshot(&file, EngineConfig::default()).unwrap();
    let load = t.elapsed();
    let load_cpu = cpu_ms() - cpu;
    assert_eq!(
        loaded.digest().unwrap(),
        want,
        "the snapshot restores the state"
    );
    println!(
        "load: {:.0} ms (read and check {:.0} ms, decode and restore {:.0} ms; CPU {:.0} ms)",
        ms(load),
        ms(read),
        ms(load - read),
        load_cpu
    );
    drop((loaded, file));

    // The log goes on from the snapshot's position.
    let wal = WalConfig {
        first_lsn: POSITION + 1,
        ..WalConfig::new(data.join("wal"))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let policy = SnapshotPolicy {
            interval: None,
            ..SnapshotPolicy::new(snapshots.clone())
        };
        let config = BootConfig::new(wal.clone()).with_snapshots(policy.clone());
        // Recovery of the data directory, as `settle serve` starts.
        let start = || async {
            boot(
                Arc::new(FsStorage),
                config.clone(),
                Keys::new(ADMIN_KEY),
                Arc::new(SystemClock),
                None,
                None,
            )
            .await
            .unwrap()
        };
        let t = Instant::now();
        let cpu = cpu_ms();
        let booted = start().await;
        println!(
            "recovery (snapshot, no log): {:.0} ms to ready (load {:.0} ms; CPU {:.0} ms)",
            ms(t.elapsed()),
            ms(booted.load_time),
            cpu_ms() - cpu
        );
        let app = Arc::clone(&booted.app);
        app.set_ready(true);
        let (p50, p99, max, n) = latencies(&app, wallets, seconds, 1).await;
        println!(
            "transfers, no snapshot:     {n} in {seconds} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(p50),
            ms(p99),
            ms(max)
        );
        // Snapshots back to back while the same load runs.
        let snapper = booted.snapshotter.clone().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let taking = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut taken = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let info = snapper.take().await.unwrap();
                    taken.push((t.elapsed(), info.position));
                }
                taken
            })
        };
        let (p50, p99, max, n) = latencies(&app, wallets, seconds, 2).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let taken = taking.await.unwrap();
        println!(
            "transfers, with snapshots:  {n} in {seconds} s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             ({} snapshots taken meanwhile, {:.0} ms each on average)",
            ms(p50),
            ms(p99),
            ms(max),
            taken.len(),
            taken.iter().map(|(d, _)| ms(*d)).sum::<f64>() / taken.len().max(1) as f64
        );
        let records = booted.journal.wal().durable_lsn() - POSITION;
        app.gateway.shutdown();
        drop(app);
        drop(booted);
        // End to end: the newest snapshot plus the log after it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let cpu = cpu_ms();
        let again = start().await;
        println!(
            "recovery (newest snapshot + {} log records of {records}): {:.0} ms to ready \
             (load {:.0} ms, replay {:.0} ms; CPU {:.0} ms)",
            again.records,
            ms(t.elapsed()),
            ms(again.load_time),
            ms(again.replay_time),
            cpu_ms() - cpu
        );
        again.app.gateway.shutdown();
    });
}
