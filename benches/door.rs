//! The front door's own cost per operation, without sockets or fsync:
//! requests handed to `App::handle` (routing, auth, idempotency, JSON in and
//! out, the wallet actors, the log's encoding and writes with `fsync never`).
//!
//! - one transfer per request (`POST /v1/transfers`);
//! - a batch of 1,000 transfers (`POST /v1/batch`), per operation.
//!
//! What this leaves out (hyper, the socket, fsync, the load generator) is
//! what `settle load` adds; see BENCHMARKS.md.
//!
//! `cargo bench --bench door`
//!
//! On a busy machine wall time says little; `SETTLE_DOOR_CPU=1 cargo bench
//! --bench door` instead hands prebuilt requests to the door (singles from
//! 64 tasks, then batches one after another) and prints the process's CPU
//! time per operation (user + system, from `/proc/self/stat`), which other
//! processes disturb far less.

// A benchmark's report: figures, not money.
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hyper::Method;
use serde_json::{Value, json};
use settle_gateway::http::Request;
use settle_gateway::http::app::App;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod support;
use support::{boot_without_fsync, cpu_seconds};

// The server's allocator (src/main.rs), so that the costs are the server's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADMIN: &str = "bench-admin-key-0123456789";
const WALLETS: usize = 1_000;
const BATCH: usize = 1_000;

static KEYS: AtomicU64 = AtomicU64::new(1);

fn request(path: &str, key: &str, body: &Value) -> Request {
    Request {
        method: Method::POST,
        path: path.to_owned(),
        query: None,
        api_key: Some(key.to_owned()),
        idempotency_key: Some(format!("door-{}", KEYS.fetch_add(1, Ordering::Relaxed))),
        content_type: Some("application/json".to_owned()),
        body: Bytes::from(body.to_string()),
    }
}

async fn post(app: &Arc<App>, path: &str, key: &str, body: &Value) -> Value {
    let out = app.handle(request(path, key, body)).await;
    let status = out.reply.status.as_u16();
    assert!(status == 200 || status == 201, "{path}: {status}");
    serde_json::from_slice(&out.reply.body).unwrap_or_else(|e| panic!("{e}"))
}

/// Hands `req` to the door and checks it was answered `status`.
async fn handled(app: Arc<App>, req: Request, status: u16) {
    assert_eq!(app.handle(req).await.reply.status.as_u16(), status);
}

/// A client with `WALLETS` funded USD wallets: (api key, wallet ids).
async fn world(app: &Arc<App>) -> (String, Vec<String>) {
    let client = post(app, "/v1/admin/clients", ADMIN, &json!({"name": "door"})).await;
    let key = client["data"]["apiKey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut wallets = Vec::with_capacity(WALLETS);
    for _ in 0..WALLETS {
        let w = post(app, "/v1/wallets", &key, &json!({"ccyCode": "USD"})).await;
        wallets.push(w["data"]["id"].as_str().unwrap_or_default().to_owned());
    }
    let credits: Vec<Value> = wallets
        .iter()
        .map(|w| json!({"op": "credit", "walletId": w, "asset": "USD", "amount": "1000000.00"}))
        .collect();
    post(app, "/v1/batch", &key, &json!({"operations": credits})).await;
    (key, wallets)
}

/// Transfer `i` of a fixed, varied pattern over the wallets.
fn transfer(wallets: &[String], i: usize) -> Value {
    transfer_from(wallets, wallets.len(), i)
}

/// Transfer `i`, paid from one of the first `sources` wallets (to any
/// other): with fewer sources than a batch's transfers, each source pays
/// several of them, as a merchant's payouts do.
fn transfer_from(wallets: &[String], sources: usize, i: usize) -> Value {
    let n = wallets.len();
    let from = (i * 7) % sources.clamp(1, n);
    let mut to = (i * 13 + 1) % n;
    if to == from {
        to = (to + 1) % n;
    }
    json!({"fromWalletId": wallets[from], "toWalletId": wallets[to], "asset": "USD", "amount": "0.01"})
}

/// CPU per operation (µs) of `requests` handled by `tasks` concurrent tasks.
async fn cpu_per_op(app: &Arc<App>, requests: Vec<Request>, tasks: usize, ops_each: usize) -> f64 {
    let n = requests.len();
    let mut shares: Vec<Vec<Request>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, r) in requests.into_iter().enumerate() {
        shares[i % tasks].push(r);
    }
    let before = cpu_seconds();
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let app = Arc::clone(app);
            tokio::spawn(async move {
                for r in share {
                    let status = app.handle(r).await.reply.status.as_u16();
                    assert!(status == 200 || status == 201, "{status}");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap_or_else(|e| panic!("{e}"));
    }
    (cpu_seconds() - before) * 1e6 / (n * ops_each) as f64
}

fn batch_request(key: &str, wallets: &[String], sources: usize, n: usize) -> Request {
    let ops: Vec<Value> = (0..BATCH)
        .map(|k| {
            let mut t = transfer_from(wallets, sources, n * BATCH + k);
            t["op"] = json!("transfer");
            t
        })
        .collect();
    request("/v1/batch", key, &json!({"operations": ops}))
}

/// A count from the environment (for profiling runs), or `default`.
fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SETTLE_DOOR_SINGLES` and `SETTLE_DOOR_BATCHES` set how many of each are
/// handed over (20,000 and 40); 0 skips that half, for a profile of the other.
/// `SETTLE_DOOR_SOURCES` sets how many wallets pay a batch's transfers
/// (all 1,000: each pays about one; 100: each pays about ten).
fn cpu_report(runtime: &tokio::runtime::Runtime, app: &Arc<App>, key: &str, wallets: &[String]) {
    let singles = env_count("SETTLE_DOOR_SINGLES", 20_000);
    if singles > 0 {
        let requests: Vec<Request> = (0..singles)
            .map(|i| request("/v1/transfers", key, &transfer(wallets, i)))
            .collect();
        let single = runtime.block_on(cpu_per_op(app, requests, 64, 1));
        println!(
            "door CPU per operation: one transfer per request {single:.1} µs ({singles} from 64 tasks)"
        );
    }
    let batches = env_count("SETTLE_DOOR_BATCHES", 40);
    let sources = env_count("SETTLE_DOOR_SOURCES", WALLETS);
    if batches > 0 {
        let requests: Vec<Request> = (0..batches)
            .map(|n| batch_request(key, wallets, sources, n))
            .collect();
        let batched = runtime.block_on(cpu_per_op(app, requests, 1, BATCH));
        println!(
            "door CPU per operation: batch of 1,000 transfers {batched:.1} µs ({batches} batches, {sources} sources)"
        );
    }
}

fn door(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let booted = runtime.block_on(boot_without_fsync(dir.path(), ADMIN));
    let app = Arc::clone(&booted.app);
    let (key, wallets) = runtime.block_on(world(&app));
    if std::env::var_os("SETTLE_DOOR_CPU").is_some() {
        cpu_report(&runtime, &app, &key, &wallets);
        booted.app.gateway.shutdown();
        return;
    }

    let mut g = c.benchmark_group("door");
    g.throughput(Throughput::Elements(1));
    // Requests are built outside the timing (that is the client's work).
    let mut i = 0;
    g.bench_function("one transfer per request", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                i += 1;
                request("/v1/transfers", &key, &transfer(&wallets, i))
            },
            |req| handled(Arc::clone(&app), req, 201),
            BatchSize::SmallInput,
        );
    });

    g.throughput(Throughput::Elements(BATCH as u64));
    let mut n = 0;
    g.bench_function("batch of 1,000 transfers", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                n += 1;
                batch_request(&key, &wallets, WALLETS, n)
            },
            |req| handled(Arc::clone(&app), req, 200),
            BatchSize::SmallInput,
        );
    });
    // Payouts: each of 100 wallets pays ~10 of the batch's transfers, which
    // travel to it as one message (`Gateway::submit_many`).
    g.bench_function("batch of 1,000 transfers from 100 wallets", |b| {
        b.to_async(&runtime).iter_batched(
            || {
                n += 1;
                batch_request(&key, &wallets, 100, n)
            },
            |req| handled(Arc::clone(&app), req, 200),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    booted.app.gateway.shutdown();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = door
}
criterion_main!(benches);
