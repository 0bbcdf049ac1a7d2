//! End-to-end figures of the actor layer, without log or HTTP:
//!
//! - `transfers`: routed transfers per second across 10,000 funded wallets,
//!   from many concurrent callers, each awaiting its answer;
//! - `skeleton`: the same callers and actor hops over bare actors that do no
//!   ledger work: the floor ractor and tokio put under `transfers`;
//! - `memory`: resident memory of 1,000,000 funded wallets once idle (passivated).
//!
//! `cargo bench --bench throughput` runs both; `SETTLE_BENCH=transfers`,
//! `skeleton` or `memory` runs one. `SETTLE_CALLERS` (default 64), `SETTLE_WINDOW` (answers
//! each caller leaves outstanding, default 1), `SETTLE_GROUP` (transfers from
//! one source sent as one message, default 1), `SETTLE_TRANSFERS`
//! (default 1,000,000) and `SETTLE_WALLETS` (default 10,000) tune the
//! first, and `SETTLE_END_CHECK=0` skips its end check (for
//! `benches/sim/transfers.sh`); `SETTLE_WORKERS`,
//! `SETTLE_EVENT_INTERVAL` and `SETTLE_GLOBAL_QUEUE_INTERVAL` the runtime.
#![allow(clippy::float_arithmetic, clippy::cast_possible_truncation)]

/// The host's CPU shares over a run (`settle load` reports the same): on
/// this VM the same binary moves by ±20% from one run to the next, and a
/// figure should say whether the hypervisor took the CPU (steal) or not.
#[path = "../src/load/host.rs"]
#[allow(
    dead_code,
    unused_imports,
    reason = "the module's own unit tests are built but not run here"
)]
mod host;
mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use settle_engine::TxnId;
use settle_engine::actor::Ack;
use settle_engine::actor::{Clock, SystemClock};
use settle_gateway::Submitted;
use settle_gateway::http::app::IdMint;
use settle_gateway::{Gateway, GatewayConfig};
use std::collections::VecDeque;
use std::sync::Arc;
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

/// Runs `callers` tasks (`caller(c)` for c in 0..callers), each doing
/// `per` operations, and prints `label` with the wall time, the rate and
/// the process's CPU per operation.
async fn timed<F, Fut>(label: &str, unit: &str, callers: u64, per: u64, caller: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let host_before = host::sample();
    let tasks: Vec<_> = (0..callers).map(|c| tokio::spawn(caller(c))).collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let n = (per * callers) as f64;
    let host = match host_before.zip(host::sample()) {
        Some((before, after)) => host::share(before, after).map_or(String::new(), |h| {
            format!(" (host busy {:.0}%, steal {:.1}%)", h.busy, h.steal)
        }),
        None => String::new(),
    };
    println!(
        "{label}: {secs:.2} s, {:.0} {unit}s/s, {:.2} CPU-us per {unit}{host}",
        n / secs,
        cpu * 1e6 / n
    );
}

/// `SETTLE_PREFAULT_MIB=n` (with `MIMALLOC_PURGE_DELAY=-1`, so that the
/// allocator keeps what is freed): writes `n` MiB once and frees it before
/// the run, so that the records the run keeps land in memory the host has
/// already backed. On this VM, memory the guest freed is reported to the
/// host (virtio-balloon free page reporting) and faulting it in again costs
/// 1 to 8 ms per MiB (BENCHMARKS.md): the growth of the wallets' histories
/// then shows in the figure as much as the transfers do.
fn prefault(mib: u64) {
    if mib == 0 {
        return;
    }
    // In blocks of the size the records' chunks take: one huge block
    // would go back to the OS when freed, where these stay in the
    // allocator's arenas for the pages the run allocates.
    const BLOCK: usize = 8 << 10;
    let blocks = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(0) / BLOCK;
    let started = Instant::now();
    let held: Vec<Vec<u8>> = (0..blocks).map(|_| vec![1u8; BLOCK]).collect();
    std::hint::black_box(&held);
    drop(held);
    println!(
        "prefault: {mib} MiB written and freed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Waits for a transfer's answer; a refusal ends the bench (every wallet is
/// funded, so none is expected).
async fn settled(s: Submitted) {
    if let Err(e) = s.answer().await {
        panic!("transfer refused: {e}");
    }
}

async fn transfers() {
    let wallets = env("SETTLE_WALLETS", 10_000);
    let callers = env("SETTLE_CALLERS", 64);
    let total = env("SETTLE_TRANSFERS", 1_000_000);
    let window = usize::try_from(env("SETTLE_WINDOW", 1).max(1)).unwrap_or(1);
    let group = env("SETTLE_GROUP", 1).max(1);
    prefault(env("SETTLE_PREFAULT_MIB", 0));
    let g = funded_gateway(wallets, GatewayConfig::default()).await;
    for round in 1..=env("SETTLE_ROUNDS", 3) {
        let per = total / callers / group * group;
        let how = if group > 1 {
            format!("groups of {group} from one source")
        } else {
            format!("window {window}")
        };
        let label = format!(
            "transfers round {round}: {} routed transfers, {callers} callers ({how}), {wallets} wallets",
            per * callers
        );
        let ids = Arc::new(IdMint::new());
        timed(&label, "transfer", callers, per, |c| {
            let g = g.clone();
            let ids = Arc::clone(&ids);
            async move {
                let mut pairs = Pairs::new(0x9E37_79B9 ^ (c << 20) ^ round, wallets);
                // Up to `window` answers outstanding; the oldest is awaited
                // before the next transfer is sent (a pipelining client).
                if group > 1 {
                    grouped(&g, &ids, &mut pairs, per, group).await;
                    return;
                }
                let mut outstanding = VecDeque::with_capacity(window);
                for _ in 0..per {
                    // Minted as the server mints them: ULIDs from one
                    // monotonic generator, so a wallet's records come in
                    // nearly increasing id order (`wallet::history`).
                    let id = TxnId::from_u128(ids.next(SystemClock.now()).0);
                    let (from, to) = pairs.next();
                    if outstanding.len() == window
                        && let Some(s) = outstanding.pop_front()
                    {
                        settled(s).await;
                    }
                    match g.submit(transfer(from, to, id), Ack::Durable) {
                        Ok(s) => outstanding.push_back(s),
                        Err(e) => panic!("transfer refused: {e}"),
                    }
                }
                while let Some(s) = outstanding.pop_front() {
                    settled(s).await;
                }
            }
        })
        .await;
        let (rss, peak) = rss_mib();
        println!("  resident {rss:.0} MiB, peak {peak:.0} MiB");
    }
    if env("SETTLE_END_CHECK", 1) == 0 {
        // Under a cache simulator (`valgrind --tool=cachegrind`), whose
        // counts cover the whole process: leave out the check's copy of
        // every wallet and the teardown, so that two runs of different
        // lengths differ by their transfers alone.
        std::process::exit(0);
    }
    let cut = g.cut().unwrap_or_else(|e| panic!("{e}"));
    cut.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    g.shutdown();
}

/// `SETTLE_GROUP=k`: a caller sends `k` transfers from one source at a
/// time, in one message (`Gateway::submit_many`, as a batch of payouts
/// travels), and awaits their answers: what routing costs per transfer when
/// a batch's transfers share their source.
async fn grouped(g: &Gateway, ids: &IdMint, pairs: &mut Pairs, per: u64, group: u64) {
    for _ in 0..per / group {
        let (from, _) = pairs.next();
        let mut ops = Vec::new();
        while (ops.len() as u64) < group {
            let (_, to) = pairs.next();
            if to != from {
                let id = TxnId::from_u128(ids.next(SystemClock.now()).0);
                ops.push(transfer(from, to, id));
            }
        }
        let answers = match g.submit_many(ops, Ack::Durable) {
            Ok(s) => s.answers().await,
            Err(e) => panic!("transfers refused: {e}"),
        };
        for answer in answers.unwrap_or_else(|e| panic!("transfers lost: {e}")) {
            if let Err(e) = answer {
                panic!("transfer refused: {e}");
            }
        }
    }
}

/// The messaging alone: 10,000 bare ractor actors that keep one counter
/// each, and the same callers and hops as `transfers` (caller → source actor
/// with a reply port, source → destination, source → caller's reply), with
/// no ledger, registry or routing. What is left of `transfers`' CPU per
/// transfer beyond this is ours.
mod skeleton {
    use ractor::concurrency::{OneshotSender, oneshot};
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    pub enum Msg {
        Send {
            to: ActorRef<Msg>,
            reply: OneshotSender<()>,
        },
        Deliver,
    }

    pub struct Node;

    impl Actor for Node {
        type Msg = Msg;
        type State = u64;
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Msg>, (): ()) -> Result<u64, ActorProcessingErr> {
            Ok(0)
        }

        async fn handle(
            &self,
            _: ActorRef<Msg>,
            msg: Msg,
            count: &mut u64,
        ) -> Result<(), ActorProcessingErr> {
            *count += 1;
            if let Msg::Send { to, reply } = msg {
                to.cast(Msg::Deliver)?;
                let _ = reply.send(());
            }
            Ok(())
        }
    }

    /// One hop of a caller: cast to `from` and await its reply.
    pub async fn send(from: &ActorRef<Msg>, to: &ActorRef<Msg>) {
        let (reply, answered) = oneshot();
        if let Err(e) = from.cast(Msg::Send {
            to: to.clone(),
            reply,
        }) {
            panic!("{e}");
        }
        if answered.await.is_err() {
            panic!("no reply");
        }
    }
}

async fn skeleton() {
    let wallets = 10_000u64;
    let callers = env("SETTLE_CALLERS", 64);
    let total = env("SETTLE_TRANSFERS", 1_000_000);
    let mut nodes = Vec::new();
    for _ in 0..wallets {
        let (node, _) = ractor::Actor::spawn(None, skeleton::Node, ())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        nodes.push(node);
    }
    let nodes = std::sync::Arc::new(nodes);
    for round in 1..=env("SETTLE_ROUNDS", 3) {
        let per = total / callers;
        let label = format!(
            "skeleton round {round}: {} hops of 3 messages, {callers} callers, 10,000 bare actors",
            per * callers
        );
        timed(&label, "hop", callers, per, |c| {
            let nodes = std::sync::Arc::clone(&nodes);
            async move {
                let mut pairs = Pairs::new(0x9E37_79B9 ^ (c << 20) ^ round, wallets);
                let index = |i: u64| usize::try_from(i).unwrap_or(0);
                for _ in 0..per {
                    let (from, to) = pairs.next_indices();
                    skeleton::send(&nodes[index(from)], &nodes[index(to)]).await;
                }
            }
        })
        .await;
    }
    for n in nodes.iter() {
        n.stop(None);
    }
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
    if which == "all" || which == "skeleton" {
        rt.block_on(skeleton());
    }
    if which == "all" || which == "memory" {
        rt.block_on(memory());
    }
}
