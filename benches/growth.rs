//! Tables that grow with the traffic: every keyed request stores an
//! idempotency record, and every transaction an entry in the directory's
//! transaction index. A table that grows moves its entries while its shard
//! is locked; shards that grow at the same moment add up to a stall.
//!
//! For each, this grows the table from empty to `SETTLE_KEYS` entries
//! (default 300,000) one request at a time and prints the mean time per
//! request, the worst request, the worst block of 1,000 consecutive
//! requests (where shards growing together add up), and the time of all
//! requests over 100 µs together.
//!
//! `cargo bench --bench growth`
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

use bytes::Bytes;
use hyper::StatusCode;
use settle_engine::actor::{Clock, SystemClock};
use settle_engine::{ClientId, TxnId, WalletId};
use settle_gateway::directory::{Directory, DirectoryRecord};
use settle_gateway::http::app::IdMint;
use settle_gateway::http::idempotency::{Begin, IdempotencyStore, fingerprint};
use settle_gateway::http::reply::Reply;
use std::time::{Duration, Instant};

// The server's allocator (src/main.rs): growth costs what it costs there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Times of one request each, in order.
struct Times(Vec<Duration>);

impl Times {
    fn report(&self, what: &str) {
        let n = self.0.len().max(1);
        let all: Duration = self.0.iter().sum();
        let worst = self.0.iter().max().copied().unwrap_or_default();
        let block = self
            .0
            .chunks(1_000)
            .map(|c| c.iter().sum::<Duration>())
            .max()
            .unwrap_or_default();
        let slow: Vec<&Duration> = self
            .0
            .iter()
            .filter(|t| **t > Duration::from_micros(100))
            .collect();
        println!(
            "{what}, {n} entries: {:.2} µs per request on average; worst {:.2} ms; \
             worst 1,000 in a row {:.1} ms; {} over 100 µs, {:.1} ms in all",
            all.as_secs_f64() * 1e6 / n as f64,
            worst.as_secs_f64() * 1e3,
            block.as_secs_f64() * 1e3,
            slow.len(),
            slow.iter().copied().sum::<Duration>().as_secs_f64() * 1e3,
        );
    }
}

fn idempotency_store(keys: usize) -> Times {
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
    let mut times = Vec::with_capacity(keys);
    runtime.block_on(async {
        for name in &names {
            let t = Instant::now();
            let Begin::Run(run) = store.begin(client, name, fp, 0).await else {
                panic!("{name} is new")
            };
            run.finish(&answer);
            times.push(t.elapsed());
        }
    });
    Times(times)
}

fn transaction_index(keys: usize) -> Times {
    let directory = Directory::new();
    let mint = IdMint::new();
    // Ids as the server mints them, over 100 wallets.
    let records: Vec<DirectoryRecord> = (0..keys)
        .map(|i| DirectoryRecord::TxnCreated {
            txn: TxnId::from_u128(mint.next(SystemClock.now()).0),
            wallet: WalletId::from_u128(1 + (i % 100) as u128),
        })
        .collect();
    let mut times = Vec::with_capacity(keys);
    for r in &records {
        let t = Instant::now();
        directory.apply(r);
        times.push(t.elapsed());
    }
    Times(times)
}

fn main() {
    let keys: usize = std::env::var("SETTLE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    idempotency_store(keys).report("idempotency store");
    transaction_index(keys).report("transaction index");
}
