//! The idempotency store growing: every request with a key stores one
//! record, so the store's tables grow with the traffic, and a table that
//! grows moves its entries while its shard is locked. This prints how long
//! one request's `begin` + `finish` took at worst, and how much time all the
//! slow ones (over 100 µs: the growths) took together, while the store
//! grows from empty to `SETTLE_KEYS` keys (default 300,000).
//!
//! `cargo bench --bench idempotency`
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

use bytes::Bytes;
use hyper::StatusCode;
use settle_engine::ClientId;
use settle_gateway::http::idempotency::{Begin, IdempotencyStore, fingerprint};
use settle_gateway::http::reply::Reply;
use std::time::{Duration, Instant};

// The server's allocator (src/main.rs): growth costs what it costs there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let keys: usize = std::env::var("SETTLE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = IdempotencyStore::new(
        Duration::from_secs(86_400),
        10_000_000,
        Duration::from_secs(1),
    );
    let client = ClientId::from_u128(7);
    let fp = fingerprint("POST", "/v1/transfers", b"{}");
    let answer = Reply {
        status: StatusCode::CREATED,
        body: Bytes::from_static(b"{\"data\":{}}"),
        retry: false,
    };
    // Keys as a load generator makes them.
    let names: Vec<String> = (0..keys).map(|i| format!("load-{i:016x}")).collect();
    let (mut worst, mut slow, mut slow_n) = (Duration::ZERO, Duration::ZERO, 0u32);
    let start = Instant::now();
    runtime.block_on(async {
        for name in &names {
            let t = Instant::now();
            let Begin::Run(run) = store.begin(client, name, fp, 0).await else {
                panic!("{name} is new")
            };
            run.finish(&answer);
            let took = t.elapsed();
            worst = worst.max(took);
            if took > Duration::from_micros(100) {
                slow += took;
                slow_n += 1;
            }
        }
    });
    let all = start.elapsed();
    println!(
        "idempotency store, {keys} keys: {:.2} µs per request on average; worst {:.2} ms; \
         {slow_n} over 100 µs, {:.1} ms in all",
        all.as_secs_f64() * 1e6 / keys as f64,
        worst.as_secs_f64() * 1e3,
        slow.as_secs_f64() * 1e3,
    );
}
