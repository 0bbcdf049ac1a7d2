//! End-to-end figures of the actor layer, without log or HTTP:
//!
//! - `transfers`: routed transfers per second across 10,000 funded wallets,
//!   from many concurrent callers, each awaiting its answer;
//! - `memory`: resident memory of 1,000,000 funded wallets once idle (passivated).
//!
//! `cargo bench --bench throughput` runs both; `SETTLE_BENCH=transfers` or
//! `memory` runs one. `SETTLE_CALLERS` (default 64) and `SETTLE_TRANSFERS`
//! (default 1,000,000) tune the first; `SETTLE_WORKERS`,
//! `SETTLE_EVENT_INTERVAL` and `SETTLE_GLOBAL_QUEUE_INTERVAL` the runtime.
#![allow(clippy::float_arithmetic, clippy::cast_possible_truncation)]

mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use settle_engine::TxnId;
use settle_gateway::GatewayConfig;
use std::time::{Duration, Instant};
use support::{Pairs, cpu_seconds, funded_gateway, transfer};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (resident, peak resident) of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn transfers() {
    let wallets = 10_000;
    let callers = env("SETTLE_CALLERS", 64);
    let total = env("SETTLE_TRANSFERS", 1_000_000);
    let g = funded_gateway(wallets, GatewayConfig::default()).await;
    for round in 1..=env("SETTLE_ROUNDS", 3) {
        let per = total / callers;
        let started = Instant::now();
        let cpu_before = cpu_seconds();
        let mut tasks = Vec::new();
        for c in 0..callers {
            let g = g.clone();
            tasks.push(tokio::spawn(async move {
                let mut pairs = Pairs::new(0x9E37_79B9 ^ (c << 20) ^ round, wallets);
                for k in 0..per {
                    let id = TxnId::from_u128(
                        (u128::from(round) << 120) | (u128::from(c) << 64) | u128::from(k),
                    );
                    let (from, to) = pairs.next();
                    if let Err(e) = g.execute(transfer(from, to, id)).await {
                        panic!("transfer refused: {e}");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap_or_else(|e| panic!("{e}"));
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        let n = (per * callers) as f64;
        println!(
            "transfers round {round}: {} routed transfers, {callers} callers, 10,000 wallets: {secs:.2} s, {:.0} transfers/s, {:.2} CPU-us per transfer",
            per * callers,
            n / secs,
            cpu * 1e6 / n
        );
        let (rss, peak) = rss_mib();
        println!("  resident {rss:.0} MiB, peak {peak:.0} MiB");
    }
    let cut = g.cut().unwrap_or_else(|e| panic!("{e}"));
    cut.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    g.shutdown();
}

async fn memory() {
    let wallets = env("SETTLE_WALLETS", 1_000_000);
    let (before, _) = rss_mib();
    let config = GatewayConfig {
        idle_after: Duration::from_millis(500),
        sweep_every: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let started = Instant::now();
    let g = funded_gateway(wallets, config).await;
    let funded = started.elapsed().as_secs_f64();
    // Wait until every wallet has gone idle and been passivated.
    while g.stats().active > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss, peak) = rss_mib();
    let stats = g.stats();
    println!(
        "memory: {} funded wallets ({:.1} s to open and fund), {} active: resident {:.0} MiB ({:.0} bytes per wallet), peak {:.0} MiB, before {:.0} MiB",
        stats.wallets,
        funded,
        stats.active,
        rss,
        (rss - before) * 1024.0 * 1024.0 / wallets as f64,
        peak,
        before
    );
    g.shutdown();
}

fn main() {
    // Tokio's scheduler settings, to compare them without a rebuild
    // (BENCHMARKS.md): `SETTLE_WORKERS` (default 2), and tokio's
    // `event_interval` and `global_queue_interval` when given.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(usize::try_from(env("SETTLE_WORKERS", 2)).unwrap_or(2))
        .enable_all();
    if let Some(n) = std::env::var("SETTLE_EVENT_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.event_interval(n);
    }
    if let Some(n) = std::env::var("SETTLE_GLOBAL_QUEUE_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.global_queue_interval(n);
    }
    let rt = builder.build().unwrap_or_else(|e| panic!("{e}"));
    let which = std::env::var("SETTLE_BENCH").unwrap_or_else(|_| "all".to_owned());
    if which == "all" || which == "transfers" {
        rt.block_on(transfers());
    }
    if which == "all" || which == "memory" {
        rt.block_on(memory());
    }
}
